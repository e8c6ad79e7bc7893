"""Every Redis key authnode uses, one builder each.

All keys start with ``an:`` so authnode can share a Redis with other software. Keys that
one command reads together carry the same ``{hash tag}`` so they land in the same Redis
Cluster slot; keys of different users carry different tags so load spreads over shards.
Subjects that are personal data (emails, IP addresses) are hashed before they become part
of a key, so a ``KEYS``/``SCAN`` of Redis does not list who uses the service.
"""

from __future__ import annotations

import hashlib

PREFIX = "an"


def _digest(subject: str) -> str:
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()[:32]


def user_tag(user_id: str) -> str:
    return "{u:" + user_id + "}"


def revoked_session(user_id: str, session_id: str) -> str:
    """Present while the access tokens of this session must be refused."""
    return f"{PREFIX}:rev:{user_tag(user_id)}:s:{session_id}"


def revoked_before(user_id: str) -> str:
    """Epoch seconds; access tokens of this user issued before it are refused."""
    return f"{PREFIX}:rev:{user_tag(user_id)}:all"


def profile(user_id: str) -> str:
    return f"{PREFIX}:profile:{user_tag(user_id)}"


def rate_limit(limit_name: str, subject: str) -> str:
    """One key per limit and subject (account, IP, address) so the check is one command."""
    return f"{PREFIX}:rl:{limit_name}:{{{_digest(subject)}}}"


def account_tag(address: str) -> str:
    """The hash tag of everything the lockout keeps about one account (by its address, so
    an address with no account locks the same way and tells nothing)."""
    return "{a:" + _digest(address) + "}"


def login_failures(address: str, client: str) -> str:
    """Failed password checks of one account from one client address."""
    return f"{PREFIX}:lock:{account_tag(address)}:c:{_digest(client)}"


def login_failures_total(address: str) -> str:
    """Failed password checks of one account from every client address together."""
    return f"{PREFIX}:lock:{account_tag(address)}:all"


def email_sent(idempotency_key: str) -> str:
    return f"{PREFIX}:mail:sent:{{{_digest(idempotency_key)}}}"


def online_shard(shard: int, minute: int) -> str:
    """Online users are spread over shards (see :mod:`authnode.shared.online`)."""
    return f"{PREFIX}:online:{{s{shard}}}:{minute}"


def mfa_pending(token_digest: str) -> str:
    """A login waiting for its second factor (the ``mfa_token``, by its SHA-256)."""
    return f"{PREFIX}:mfa:pending:{{{token_digest[:32]}}}"


def totp_used(user_id: str, step: int) -> str:
    """Present while one TOTP time step's code of this user has been used (no replay)."""
    return f"{PREFIX}:mfa:totp:{user_tag(user_id)}:{step}"


def webauthn_challenge(challenge_digest: str) -> str:
    """A WebAuthn challenge handed out and not yet answered (single use)."""
    return f"{PREFIX}:mfa:wa:{{{challenge_digest[:32]}}}"


def oidc_state(state_digest: str) -> str:
    """A provider sign-in in progress: its nonce, PKCE verifier, return_to (single use)."""
    return f"{PREFIX}:oidc:state:{{{state_digest[:32]}}}"


def oidc_code(code_digest: str) -> str:
    """A finished provider sign-in waiting for the app's exchange (single use)."""
    return f"{PREFIX}:oidc:code:{{{code_digest[:32]}}}"


def oidc_link(token_digest: str) -> str:
    """A provider identity waiting for the owner of the matching account to confirm."""
    return f"{PREFIX}:oidc:link:{{{token_digest[:32]}}}"


def oidc_document(url: str) -> str:
    """A provider's discovery document or JWKS, cached for its HTTP lifetime."""
    return f"{PREFIX}:oidc:doc:{{{_digest(url)}}}"


def oidc_jwks_refetched(url: str) -> str:
    """Present for a while after an unknown ``kid`` made us refetch this JWKS."""
    return f"{PREFIX}:oidc:refetch:{{{_digest(url)}}}"


def oidc_unlink_lock(user_id: str) -> str:
    """Held while one of the user's sign-in methods is being removed."""
    return f"{PREFIX}:oidc:unlink:{user_tag(user_id)}"


def oidc_link_by_email(user_id: str) -> str:
    """The provider identity waiting for its account's emailed confirmation (the newest
    request of this user)."""
    return f"{PREFIX}:oidc:link-email:{user_tag(user_id)}"
