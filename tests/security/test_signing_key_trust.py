"""Which signing keys the real ``authnode`` trusts, attacked through MongoDB and the CLI.

- A key planted in the ``signing_keys`` collection by someone who can write to MongoDB but
  does not know SECRET_KEY is refused, by a running instance and by one started after.
- ``authnode keys retire KID``: both of two running processes refuse tokens of that key
  (cached ones too) within the documented 5 s.
- The previous key, even stolen, is refused once the access-token lifetime plus the
  rotation slack (refresh interval 5 s + clock skew 5 s) has passed since the rotation.
- SECRET_KEY rotated with SECRET_KEY_PREVIOUS: tokens keep verifying, `authnode migrate`
  re-seals the stored keys under the new secret, new keys are written under it, and the
  previous secret can then be dropped.
- Keys stored by a version without MACs are refused until ``authnode migrate`` stamps
  them (after checking that their sealed private half opens under SECRET_KEY).
- A retired key is purged from FerretDB once it can verify nothing.

The minted tokens use only PyJWT and the test's own knowledge of SECRET_KEY (as a thief
of the previous key would have its private half), so they mean the same to any version
of authnode.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import DESCENDING, MongoClient
from pymongo.collection import Collection

from authnode.settings import Secret
from authnode.tokens.signing_keys import SigningKeyError, open_private_key
from tests.acceptance.test_accounts_support import (
    assert_access_refused,
    assert_access_works,
    bearer,
    login,
    refresh,
    register_verified,
    running,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder, wait_until

# README ("Operate"): a retirement reaches every instance within 5 s while MongoDB
# answers. The wait allows that plus room for a loaded test machine.
RETIRE_BOUND_S = 5.0
LOAD_SLACK_S = 10.0
# README: the previous key verifies for ACCESS_TOKEN_TTL + 10 s after a rotation.
ROTATION_SLACK_S = 10


def _keys(env: AuthnodeEnv) -> Iterator[Collection[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(env.variables["MONGODB_URI"],
                                                      tz_aware=True)
    try:
        yield client.get_default_database()["signing_keys"]
    finally:
        client.close()


@pytest.fixture
def keys(authnode_env: AuthnodeEnv) -> Iterator[Collection[dict[str, Any]]]:
    yield from _keys(authnode_env)


def _admin(env: AuthnodeEnv, *args: str) -> dict[str, Any]:
    result = env.run(*args, "--json")
    assert result.returncode == 0, f"authnode {' '.join(args)}: {result.stderr}"
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def _kid(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def _mint(private_key: Ed25519PrivateKey, kid: str, session: dict[str, Any], *,
          lifetime_s: int = 3600) -> str:
    """An access token for a real session, signed with ``private_key``; a far expiry, as
    someone holding a key would choose."""
    now = int(time.time())
    claims = {"iss": session["iss"], "sub": session["sub"], "sid": session["sid"],
              "iat": now, "exp": now + lifetime_s, "jti": secrets.token_urlsafe(16)}
    return jwt.encode(claims, private_key, algorithm="EdDSA", headers={"kid": kid})


def _session(access_token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return claims


def _status(client: httpx.Client, token: str) -> int:
    return client.get("/v1/users/me", headers=bearer(token)).status_code


def _published(client: httpx.Client) -> set[str]:
    return {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------- planted key


def test_a_key_planted_in_mongodb_without_secret_key_is_refused(
        authnode: AuthnodeProcess, authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
        keys: Collection[dict[str, Any]]) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    session = _session(login(client, email)["access_token"])
    newest = keys.find_one(sort=[("generation", DESCENDING)])
    assert newest is not None

    # Everything a writer to MongoDB can produce: their own pair as the newest generation,
    # "sealed" under a key of their own, and a MAC field they cannot compute.
    attacker = Ed25519PrivateKey.generate()
    raw = serialization.Encoding.Raw
    kid = "planted" + secrets.token_hex(4)
    keys.insert_one({
        "_id": kid, "alg": "EdDSA", "generation": newest["generation"] + 1,
        "sealed_private_key": Fernet(Fernet.generate_key()).encrypt(
            attacker.private_bytes(raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())),
        "public_jwk": {"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                       "use": "sig",
                       "x": _b64url(attacker.public_key().public_bytes(
                           raw, serialization.PublicFormat.Raw))},
        "created_at": datetime.now(UTC),
        "mac": secrets.token_bytes(32),
    })
    forged = _mint(attacker, kid, session)
    # An unknown kid makes the instance re-read the store at once: it finds the plant.
    assert_access_refused(client, forged, "token signed by a planted key")
    assert kid not in _published(client)

    with running(authnode_env, "api") as fresh:  # loads with the plant already there
        assert_access_refused(fresh.client, forged, "planted key, instance started after")
        assert kid not in _published(fresh.client)
        token = login(fresh.client, email)["access_token"]
        assert _kid(token) == newest["_id"]  # still signs with the genuine key
        assert_access_works(client, token, "the genuine key still verifies")
    print(f"\nplanted key {kid}: refused by a running and a freshly started instance")


# --------------------------------------------------------------------------- retire


def test_a_retired_key_is_refused_by_both_of_two_processes(
        authnode: AuthnodeProcess, authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    email, _ = register_verified(authnode.client, smtp)
    with running(authnode_env, "api") as second:
        processes = [authnode, second]
        token = login(authnode.client, email)["access_token"]
        for process in processes:  # each now holds the token in its verified cache
            assert_access_works(process.client, token, f"before retirement ({process.port})")
        kid = _kid(token)

        result = _admin(authnode_env, "keys", "retire", kid)
        retired_at = time.monotonic()
        assert result["retired"] == kid and result["kid"] != kid
        assert kid not in result["published"]

        def refused_everywhere() -> bool:
            return all(_status(p.client, token) == 401 for p in processes)

        wait_until(refused_everywhere, RETIRE_BOUND_S + LOAD_SLACK_S,
                   "both processes to refuse the retired key's token")
        took_s = time.monotonic() - retired_at
        for process in processes:
            assert_access_refused(process.client, token, f"retired key ({process.port})")
            assert kid not in _published(process.client)
        # Signing goes on with the key that replaced it, on both.
        fresh = login(second.client, email)["access_token"]
        assert _kid(fresh) == result["kid"]
        for process in processes:
            assert_access_works(process.client, fresh, f"the new key ({process.port})")

        listed = json.loads(authnode_env.run("keys", "list", "--json").stdout)
        assert {row["kid"]: row["status"] for row in listed} == {
            kid: "retired", result["kid"]: "current"}

        again = authnode_env.run("keys", "retire", "noSuchKid")
        assert again.returncode == 1 and "noSuchKid" in again.stderr
    print(f"\nretired key refused by both processes {took_s:.1f} s after `keys retire` returned "
          f"(documented bound {RETIRE_BOUND_S:g} s)")


# --------------------------------------------------------------------------- previous key


def test_the_previous_key_is_refused_once_the_token_lifetime_has_passed(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
        keys: Collection[dict[str, Any]]) -> None:
    ttl_s = 2
    env = authnode_env.with_overrides(ACCESS_TOKEN_TTL=str(ttl_s))
    with running(env, "all") as process:
        client = process.client
        email, _ = register_verified(client, smtp)
        session = _session(login(client, email)["access_token"])
        old = keys.find_one(sort=[("generation", DESCENDING)])
        assert old is not None
        # The thief's copy of the key about to become the previous one.
        stolen = open_private_key(old["sealed_private_key"],
                                  Secret(env.variables["SECRET_KEY"]))

        rotated = _admin(env, "keys", "rotate")
        new = keys.find_one({"_id": rotated["kid"]})
        assert new is not None
        window_ends = new["created_at"].timestamp() + ttl_s + ROTATION_SLACK_S
        forged = _mint(stolen, old["_id"], session)
        assert_access_works(client, forged, "previous key, inside its window")

        def refused() -> bool:
            return _status(client, forged) == 401

        wait_until(refused, window_ends - time.time() + RETIRE_BOUND_S + LOAD_SLACK_S,
                   "the previous key to stop verifying")
        refused_at = time.time()
        # Not before the tokens it signed could have expired...
        assert refused_at >= window_ends - 1, (refused_at, window_ends)
        # ...and then for good, whatever the token says (the cached one and a new one).
        assert_access_refused(client, forged, "previous key after its window")
        assert_access_refused(client, _mint(stolen, old["_id"], session),
                              "fresh token of the previous key after its window")
        assert old["_id"] not in _published(client)
    print(f"\nprevious key refused {refused_at - window_ends + ttl_s + ROTATION_SLACK_S:.1f} s "
          f"after the rotation (ACCESS_TOKEN_TTL={ttl_s} s + {ROTATION_SLACK_S} s)")


# --------------------------------------------------------------------------- SECRET_KEY


def test_secret_key_rotation_keeps_tokens_and_moves_keys_to_the_new_secret(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
        keys: Collection[dict[str, Any]]) -> None:
    old_secret = authnode_env.variables["SECRET_KEY"]
    new_secret = secrets.token_urlsafe(32)
    with running(authnode_env, "all") as before:
        email, _ = register_verified(before.client, smtp)
        tokens = login(before.client, email)
    original_kid = _kid(tokens["access_token"])

    both = authnode_env.with_overrides(SECRET_KEY=new_secret, SECRET_KEY_PREVIOUS=old_secret)
    with running(both, "api") as during:
        assert_access_works(during.client, tokens["access_token"],
                            "token signed before SECRET_KEY changed")
        migrated = both.run("migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert "signing keys: 1 sealed and MACed under SECRET_KEY" in migrated.stdout
        rotated = _admin(both, "keys", "rotate")
        for doc in keys.find({}):  # every stored key now opens with the new secret only
            open_private_key(doc["sealed_private_key"], Secret(new_secret))
            with pytest.raises(SigningKeyError):
                open_private_key(doc["sealed_private_key"], Secret(old_secret))
        assert {doc["_id"] for doc in keys.find({})} == {original_kid, rotated["kid"]}
        renewed = refresh(during.client, tokens["refresh_token"])

    after = authnode_env.with_overrides(SECRET_KEY=new_secret)  # SECRET_KEY_PREVIOUS gone
    with running(after, "api") as process:
        assert_access_works(process.client, tokens["access_token"],
                            "token of the old key once SECRET_KEY_PREVIOUS is gone")
        assert_access_works(process.client, renewed["access_token"], "token after migrate")
        token = login(process.client, email)["access_token"]
        assert _kid(token) == rotated["kid"]
        assert_access_works(process.client, token, "token of the key written after")
    print("\nSECRET_KEY rotated: tokens kept verifying; keys re-sealed under the new secret")


# --------------------------------------------------------------------------- upgrade


def test_keys_stored_before_macs_are_refused_until_migrate_stamps_them(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
        keys: Collection[dict[str, Any]]) -> None:
    with running(authnode_env, "all") as before:
        email, _ = register_verified(before.client, smtp)
        token = login(before.client, email)["access_token"]
    keys.update_many({}, {"$unset": {"mac": ""}})  # as a version without MACs stored them

    refused = authnode_env.start("api", wait=False)
    try:
        code = refused.proc.wait(60)
    finally:
        refused.kill()
    assert code != 0
    assert "authnode migrate" in refused.logs()

    migrated = authnode_env.run("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "signing keys: 1 sealed and MACed under SECRET_KEY" in migrated.stdout
    with running(authnode_env, "api") as after:
        assert_access_works(after.client, token, "token signed before the upgrade")


# --------------------------------------------------------------------------- purge


@pytest.mark.anyio
async def test_a_retired_key_is_purged_from_ferretdb_once_it_verifies_nothing(
        mongo_uri: str) -> None:
    from authnode.clients.mongo import create_mongo
    from authnode.repositories.signing_keys import SigningKeyRepository
    from authnode.settings import load_settings
    from authnode.tokens.keyring import KeyRing
    from authnode.tuning import HostResources

    secret = secrets.token_urlsafe(32)
    settings = load_settings({"MONGODB_URI": mongo_uri, "SECRET_KEY": secret},
                             host=HostResources(cpus=2, memory_bytes=8 << 30))
    mongo = create_mongo(settings)
    now = [time.time()]
    try:
        repo = SigningKeyRepository(mongo.primary)
        await repo.ensure_indexes()
        ring = KeyRing(repo, Secret(secret), rotation_s=86400, clock=lambda: now[0],
                       access_token_ttl_s=900)
        await ring.load()
        compromised = ring.current_signing_key().kid
        current = await ring.retire(compromised)
        assert await ring.purge() == []  # retired just now: still listed for a while
        now[0] += ring.previous_trust_s
        assert await ring.purge() == [compromised]
        stored = [doc["_id"] async for doc in mongo.primary["signing_keys"].find({})]
        assert stored == [current.kid]
    finally:
        await mongo.close()
