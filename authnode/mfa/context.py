"""What the second-factor flows need beside the accounts', built once per process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from authnode.mfa.challenges import MfaChallenges
from authnode.mfa.passkeys import RelyingParty
from authnode.mfa.recovery_codes import RecoveryCodeHasher
from authnode.repositories.protocols import SecondFactorStore, SpendGuardStore
from authnode.settings import Secret
from authnode.tokens.sealing import TOTP_SEEDS, SealedBox


@dataclass(frozen=True)
class MfaContext:
    factors: SecondFactorStore
    guards: SpendGuardStore  # single use of a recovery code, atomic on any store
    challenges: MfaChallenges
    seeds: SealedBox  # TOTP seeds
    recovery: RecoveryCodeHasher
    relying_party: RelyingParty
    issuer: str  # shown by authenticator apps next to the account

    @classmethod
    def build(cls, *, factors: SecondFactorStore, guards: SpendGuardStore,
              challenges: MfaChallenges, secrets_newest_first: Sequence[Secret | None],
              public_url: str) -> MfaContext:
        """``secrets_newest_first``: SECRET_KEY, then SECRET_KEY_PREVIOUS if set."""
        keys = [secret for secret in secrets_newest_first if secret is not None]
        relying_party = RelyingParty.for_public_url(public_url)
        return cls(factors=factors, guards=guards, challenges=challenges,
                   seeds=SealedBox(keys, purpose=TOTP_SEEDS), recovery=RecoveryCodeHasher(keys),
                   relying_party=relying_party, issuer=relying_party.id)
