"""A real OpenID Connect provider: panva's oidc-provider under Node (``oidc_node/``,
installed by scripts/bootstrap.sh), on a free loopback port.

Its interaction signs in, at once, the account named by the authorization request's
``login_hint`` (a test adds it to the provider's URL); accounts and their claims are
declared with :meth:`OidcProviderServer.put_account`.
"""

from __future__ import annotations

import json
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ._util import (
    HOST,
    ServiceError,
    find_executable,
    free_port,
    spawn,
    stop_process,
    tail,
    wait_until,
)

NODE_DIR = Path(__file__).resolve().parent / "oidc_node"
CLIENT_ID = "authnode-test"
CLIENT_SECRET = "test-client-secret-of-32-characters!"


@dataclass
class OidcProviderServer:
    dir: Path
    redirect_uris: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "oidc-provider.log"

    def start(self, timeout: float = 20.0) -> None:
        if not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
            raise ServiceError("oidc-provider is not installed; run scripts/bootstrap.sh")
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "oidc-provider.json"
        config.write_text(json.dumps({"port": self.port, "clients": [{
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
            "redirect_uris": self.redirect_uris, "grant_types": ["authorization_code"],
            "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic",
        }]}))
        node = find_executable("node", env_var="AUTHNODE_TEST_NODE")
        self.proc = spawn([node, str(NODE_DIR / "server.mjs"), str(config)], self.log_path,
                          cwd=NODE_DIR)

        def ready() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise ServiceError(f"oidc-provider exited early:\n{tail(self.log_path)}")
            response = httpx.get(f"{self.issuer}/.well-known/openid-configuration",
                                 timeout=1)
            return response.status_code == 200

        wait_until(ready, timeout, f"oidc-provider on {self.issuer}")

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, 10)
        self.proc = None

    def put_account(self, account_id: str, **claims: Any) -> None:
        """Declare (or change) an account: ``email``, ``email_verified``, ``name``…"""
        response = httpx.put(f"{self.issuer}/test/accounts/{account_id}", json=claims,
                             timeout=5)
        response.raise_for_status()
