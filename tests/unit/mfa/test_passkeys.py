"""authnode.mfa.passkeys against a software authenticator: what verifies and what not."""

from __future__ import annotations

import pytest

from authnode.mfa import passkeys
from authnode.mfa.passkeys import PasskeyError, RelyingParty
from tests.software_authenticator import SoftAuthenticator

RP = RelyingParty.for_public_url("https://auth.example.com:8443/")
USER_ID = "0123456789abcdef0123456789abcdef"


def _registered(authenticator: SoftAuthenticator) -> passkeys.NewPasskey:
    options = passkeys.registration_options(RP, user_id=USER_ID, user_name="a@example.com",
                                            existing=[])
    answer = authenticator.create(options.public_key)
    assert passkeys.challenge_of(answer) == options.challenge
    return passkeys.verify_registration(RP, answer, options.challenge)


def test_relying_party_is_the_public_url_host_and_origin() -> None:
    assert RP == RelyingParty("auth.example.com", "authnode", "https://auth.example.com:8443")


def test_registration_asks_for_a_discoverable_credential_and_excludes_existing() -> None:
    options = passkeys.registration_options(RP, user_id=USER_ID, user_name="a@example.com",
                                            existing=["AAAA"])
    body = options.public_key
    assert body["rp"] == {"id": "auth.example.com", "name": "authnode"}
    assert body["authenticatorSelection"]["residentKey"] == "required"
    assert body["excludeCredentials"] == [{"id": "AAAA", "type": "public-key"}]
    assert body["attestation"] == "none"


def test_a_registered_passkey_then_signs_in_and_its_counter_grows() -> None:
    authenticator = SoftAuthenticator(RP.origin)
    stored = _registered(authenticator)
    assert stored.credential_id == authenticator.credentials[0].id
    options = passkeys.authentication_options(RP, allowed=None)
    assert options.public_key["userVerification"] == "required"
    answer = authenticator.get(options.public_key)
    assert passkeys.user_handle_of(answer) == USER_ID
    count = passkeys.verify_authentication(RP, answer, options.challenge,
                                           public_key=stored.public_key,
                                           sign_count=stored.sign_count,
                                           require_user_verification=True)
    assert count == 1


def test_a_counter_that_goes_back_is_refused() -> None:
    authenticator = SoftAuthenticator(RP.origin)
    stored = _registered(authenticator)
    options = passkeys.authentication_options(RP, allowed=[stored.credential_id])
    answer = authenticator.get(options.public_key, sign_count=4)
    with pytest.raises(PasskeyError):
        passkeys.verify_authentication(RP, answer, options.challenge,
                                       public_key=stored.public_key, sign_count=5,
                                       require_user_verification=False)


@pytest.mark.parametrize("attack", ["other origin", "other challenge", "other key", "no UV"])
def test_assertions_that_must_not_verify(attack: str) -> None:
    authenticator = SoftAuthenticator(RP.origin, user_verified=attack != "no UV")
    stored = _registered(authenticator)
    other = _registered(SoftAuthenticator(RP.origin))
    options = passkeys.authentication_options(RP, allowed=None)
    answer = authenticator.get(
        options.public_key,
        origin="https://evil.example" if attack == "other origin" else None)
    challenge = b"x" * 64 if attack == "other challenge" else options.challenge
    key = other.public_key if attack == "other key" else stored.public_key
    with pytest.raises(PasskeyError):
        passkeys.verify_authentication(RP, answer, challenge, public_key=key, sign_count=0,
                                       require_user_verification=True)


def test_registration_from_another_origin_is_refused() -> None:
    options = passkeys.registration_options(RP, user_id=USER_ID, user_name="a@example.com",
                                            existing=[])
    answer = SoftAuthenticator("https://evil.example").create(options.public_key)
    with pytest.raises(PasskeyError):
        passkeys.verify_registration(RP, answer, options.challenge)


@pytest.mark.parametrize("junk", [None, "text", [], {"id": 3}, {"response": {}},
                                  {"id": "x", "response": {"clientDataJSON": "!!"}}])
def test_junk_is_a_passkey_error_not_a_crash(junk: object) -> None:
    options = passkeys.authentication_options(RP, allowed=None)
    with pytest.raises(PasskeyError):
        passkeys.challenge_of(junk)
    with pytest.raises(PasskeyError):
        passkeys.verify_authentication(RP, junk, options.challenge, public_key=b"",
                                       sign_count=0, require_user_verification=True)
