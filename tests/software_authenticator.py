"""A WebAuthn authenticator in software, for API-level tests of passkeys.

It makes ES256 (P-256) discoverable credentials with "none" attestation and answers
assertions as a browser plus a security key would: clientDataJSON with the challenge and
origin, authenticator data with the RP ID hash, flags and a sign counter, and an ECDSA
signature over both. Real browsers are covered by the Chromium virtual-authenticator
tests; this one lets tests also do what no honest authenticator does (counters going back,
another origin, a replayed challenge).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_AT = 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cose_es256(public_key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = public_key.public_numbers()
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                        -3: numbers.y.to_bytes(32, "big")})


@dataclass
class SoftCredential:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    @property
    def id(self) -> str:
        return b64url(self.credential_id)


@dataclass
class SoftAuthenticator:
    origin: str
    user_verified: bool = True
    credentials: list[SoftCredential] = field(default_factory=list)

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge,
                           "origin": origin or self.origin,
                           "crossOrigin": False}).encode("utf-8")

    def _flags(self, *, attested: bool) -> int:
        flags = FLAG_UP | (FLAG_UV if self.user_verified else 0)
        return flags | (FLAG_AT if attested else 0)

    def create(self, options: dict[str, Any], *, origin: str | None = None) -> dict[str, Any]:
        """Answer ``navigator.credentials.create({publicKey: options})``."""
        rp_id = options["rp"]["id"]
        key = ec.generate_private_key(ec.SECP256R1())
        credential = SoftCredential(secrets.token_bytes(32), key, rp_id,
                                    b64url_decode(options["user"]["id"]))
        self.credentials.append(credential)
        attested = (bytes(16) + struct.pack(">H", len(credential.credential_id))
                    + credential.credential_id + _cose_es256(key.public_key()))
        auth_data = (hashlib.sha256(rp_id.encode()).digest()
                     + bytes([self._flags(attested=True)]) + struct.pack(">I", 0) + attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {"id": credential.id, "rawId": credential.id, "type": "public-key",
                "response": {"clientDataJSON": b64url(client_data),
                             "attestationObject": b64url(attestation),
                             "transports": ["internal"]},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform"}

    def get(self, options: dict[str, Any], *, credential: SoftCredential | None = None,
            origin: str | None = None, sign_count: int | None = None) -> dict[str, Any]:
        """Answer ``navigator.credentials.get({publicKey: options})`` with ``credential``
        (default: the first allowed one, else the first of this authenticator)."""
        if credential is None:
            allowed = {item["id"] for item in options.get("allowCredentials") or []}
            candidates = [c for c in self.credentials if not allowed or c.id in allowed]
            credential = candidates[0]
        credential.sign_count = (credential.sign_count + 1 if sign_count is None
                                 else sign_count)
        auth_data = (hashlib.sha256(credential.rp_id.encode()).digest()
                     + bytes([self._flags(attested=False)])
                     + struct.pack(">I", credential.sign_count))
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = credential.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {"id": credential.id, "rawId": credential.id, "type": "public-key",
                "response": {"clientDataJSON": b64url(client_data),
                             "authenticatorData": b64url(auth_data),
                             "signature": b64url(signature),
                             "userHandle": b64url(credential.user_handle)},
                "clientExtensionResults": {}, "authenticatorAttachment": "platform"}
