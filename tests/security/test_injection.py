"""Hostile input 10: injection attempts are rejected or stored inert, never interpreted.

Against a real server, in both Redis modes (the rate limits key on the hostile strings), in
every string field of every JSON route:

* **MongoDB operators** and other non-strings (``{"$gt": ""}``, ``{"$ne": null}``,
  ``{"$regex": ".*"}``, arrays, numbers, booleans) in place of a string: exactly 422
  ``invalid_request``; and afterwards nothing changed (the victim's password, session,
  refresh token and pending registration are as before: a login with ``{"$ne": null}`` as the
  email or password logged no one in);
* operator-looking *strings* (``'{"$ne": null}'``, ``"$where"``): stored and echoed back
  literally;
* **very long strings**: 10,000 and 60,000 characters (inside the 64 KiB body limit) get
  422; a body over the limit gets 413 ``payload_too_large`` (also when sent chunked,
  without a Content-Length);
* **NUL bytes**, **lone surrogates** (``"\\ud800"`` escaped in the JSON text) and **invalid
  UTF-8** (raw bytes sent as ``application/json``): a 4xx (400 for the undecodable bodies),
  or a 2xx that changes nothing (forgot/resend answer 202 whatever the address), and never
  a 5xx; a password with a NUL in the middle is not cut short at it;
* **header injection** through names that end up in emails (``"Eve\\r\\nBcc: ..."`` and
  other line breaks): refused with 422, or stored inert, in which case the recorded email
  has no Bcc header, its To is the bare address and its envelope recipients are exactly
  the user; no message ever goes to the attacker's address.

Every response is recorded; the test prints a histogram per category and fails listing
every request that broke a rule (it does not stop at the first).
"""

from __future__ import annotations

import json
import secrets
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from pymongo import MongoClient

from tests.acceptance.test_accounts_support import (
    PASSWORD,
    VERIFY_SUBJECT,
    assert_tokens,
    bearer,
    describe,
    login,
    register,
    register_verified,
    verification_token,
    wait_email_jobs_settled,
    wait_mail,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess, unique_email
from tests.services import SmtpRecorder

ATTACKER = "attacker@example.com"
STRONG = "lilac tractor 42 sings"
BODY_LIMIT = 64 * 1024
OPERATORS: list[Any] = [
    {"$gt": ""}, {"$ne": None}, {"$regex": ".*"}, {"$exists": True}, {"$in": ["a", "b"]},
    {"$where": "sleep(1000)"}, ["$ne", None], {}, [], 0, 1.5, True,
]
INJECTED_NAMES = [
    "Eve\r\nBcc: attacker@example.com",
    "Eve\nBcc: attacker@example.com",
    "Eve\rBcc: attacker@example.com",
    "Eve\r\n\r\nInjected body",
    "Eve\u2028Bcc: attacker@example.com",
    "Eve\u0085Bcc: attacker@example.com",
    "Eve\tBcc: attacker@example.com",
]
# Printable names that look like headers or markup: stored inert, escaped where shown.
INERT_NAMES = [
    "Eve Bcc: attacker@example.com",
    '<b>Eve</b> "Bcc: attacker@example.com" =?utf-8?q?=0D=0ABcc:_attacker@example.com?=',
]


@dataclass
class Route:
    method: str
    path: str
    body: dict[str, Any]
    authenticated: bool = False

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Findings:
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    broken: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requests: int = 0

    def record(self, category: str, why: str, response: httpx.Response,
               allowed: set[int] | None = None, code: str | None = None) -> None:
        self.requests += 1
        self.statuses[category][response.status_code] += 1
        status = response.status_code
        if status >= 500:
            self.broken.append(f"[{category}] {why}: server error {describe(response)}")
        elif allowed is not None and status not in allowed:
            self.broken.append(f"[{category}] {why}: expected {sorted(allowed)}, got "
                               f"{describe(response)}")
        elif code is not None and _error_code(response) != code:
            self.broken.append(f"[{category}] {why}: expected error code {code!r}, got "
                               f"{describe(response)}")


def _error_code(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class World:
    client: httpx.Client
    victim_email: str
    access: str
    refresh: str
    pending_email: str
    pending_password: str

    def routes(self) -> list[Route]:
        return [
            Route("POST", "/v1/auth/register", {"email": unique_email("inj"),
                                                "password": STRONG, "name": "Ok"}),
            Route("POST", "/v1/auth/verify-email", {"token": "t" * 43}),
            Route("POST", "/v1/auth/verify-email/resend", {"email": self.pending_email}),
            Route("POST", "/v1/auth/login", {"email": self.victim_email, "password": PASSWORD}),
            Route("POST", "/v1/auth/refresh", {"refresh_token": self.refresh}),
            Route("POST", "/v1/auth/password/forgot", {"email": self.victim_email}),
            Route("POST", "/v1/auth/password/reset", {"token": "t" * 43, "password": STRONG}),
            Route("POST", "/v1/auth/password/change", {"current_password": PASSWORD,
                                                       "new_password": STRONG}, True),
            Route("PATCH", "/v1/users/me", {"name": "Ok"}, True),
            Route("DELETE", "/v1/users/me", {"password": PASSWORD}, True),
        ]

    def send_once(self, route: Route, body: Any) -> httpx.Response:
        """On a connection of its own, which the server may close afterwards."""
        headers = {"Content-Type": "application/json"}
        if route.authenticated:
            headers.update(bearer(self.access))
        with httpx.Client(base_url=self.client.base_url, timeout=30) as one_shot:
            return one_shot.request(route.method, route.path, content=json.dumps(body),
                                    headers=headers)

    def send(self, route: Route, body: Any = None, *, content: bytes | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        all_headers = dict(headers or {})
        if route.authenticated:
            all_headers.update(bearer(self.access))
        if content is None:
            content = json.dumps(body).encode()  # ensure_ascii: "\ud800" stays escaped
        all_headers.setdefault("Content-Type", "application/json")
        return self.client.request(route.method, route.path, content=content,
                                   headers=all_headers)


def _string_fields(route: Route) -> Iterator[str]:
    yield from (name for name, value in route.body.items() if isinstance(value, str))


def test_injection_is_rejected_or_inert(authnode_env: AuthnodeEnv,
                                        smtp: SmtpRecorder) -> None:
    server = authnode_env.start("all")
    try:
        _scenario(server, authnode_env, smtp)
    finally:
        code = server.stop()
    assert code == 0, server.logs()[-3000:]


def _scenario(server: AuthnodeProcess, env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    client = server.client
    victim_email, _ = register_verified(client, smtp, prefix="victim")
    tokens = login(client, victim_email)
    pending_email = unique_email("pending")
    pending_password = "pending " + secrets.token_hex(6)
    register(client, pending_email, pending_password)
    world = World(client, victim_email, tokens["access_token"], tokens["refresh_token"],
                  pending_email, pending_password)
    findings = Findings()

    _operators(world, findings)
    _long_strings(world, findings)
    _nul_bytes(world, findings)
    _lone_surrogates(world, findings)
    _invalid_utf8(world, findings)
    _pages(world, findings)
    recipients = _header_injection(world, findings, smtp)
    _nothing_changed(world, findings, env, smtp)
    _no_mail_to_the_attacker(findings, smtp, recipients, env)

    print(f"\ninjection: {findings.requests} hostile requests")
    for category, statuses in findings.statuses.items():
        print(f"  {category:<34} " + " ".join(f"{code}:{n}"
                                             for code, n in sorted(statuses.items())))
    for note in findings.notes:
        print(f"  {note}")
    for problem in findings.broken:
        print("  BROKEN " + problem)
    broken = len(findings.broken)
    assert broken == 0, (f"{broken} injected request(s) broke a rule (all printed above):\n"
                         + "\n".join(findings.broken[:40]))


def _operators(world: World, findings: Findings) -> None:
    for route in world.routes():
        for name in _string_fields(route):
            for operator in OPERATORS:
                response = world.send(route, {**route.body, name: operator})
                findings.record("operator in a string field", f"{route.label} {name}="
                                f"{json.dumps(operator)}", response, {422}, "invalid_request")
    # Operator-looking strings are just strings: refused as credentials, stored literally.
    for literal in ('{"$ne": null}', "$where", '{"$gt": ""}'):
        response = world.client.post("/v1/auth/login",
                                     json={"email": literal, "password": PASSWORD})
        findings.record("operator-looking string", f"login email={literal!r}", response,
                        {401}, "invalid_credentials")
        response = world.client.patch("/v1/users/me", json={"name": literal},
                                      headers=bearer(world.access))
        findings.record("operator-looking string", f"rename to {literal!r}", response, {200})
        shown = world.client.get("/v1/users/me", headers=bearer(world.access))
        if response.status_code == 200 and shown.json().get("name") != literal:
            findings.broken.append(f"name {literal!r} came back as {shown.json()!r}")
    findings.record("operator-looking string", "rename back",
                    world.client.patch("/v1/users/me", json={"name": None},
                                       headers=bearer(world.access)), {200})


def _long_strings(world: World, findings: Findings) -> None:
    for route in world.routes():
        for name in _string_fields(route):
            for size in (10_000, 60_000):
                response = world.send(route, {**route.body, name: "a" * size})
                findings.record("long string (inside 64 KiB)", f"{route.label} {name} "
                                f"of {size} chars", response, {422}, "invalid_request")
            response = world.send_once(route, {**route.body, name: "a" * 100_000})
            findings.record("body over 64 KiB", f"{route.label} {name} of 100000 chars",
                            response, {413}, "payload_too_large")
            _announces_close(findings, response, f"{route.label} {name} of 100000 chars")
    login_route = world.routes()[3]
    big = json.dumps({**login_route.body, "password": "b" * (BODY_LIMIT + 10)}).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    with httpx.Client(base_url=world.client.base_url, timeout=30) as one_shot:
        response = one_shot.post("/v1/auth/login", content=chunks(),
                                 headers={"Content-Type": "application/json"})
    findings.record("body over 64 KiB", "chunked login body without Content-Length",
                    response, {413}, "payload_too_large")


def _announces_close(findings: Findings, response: httpx.Response, why: str) -> None:
    """The server answers 413 before reading the body and then closes the connection; it
    must say so (``Connection: close``), or a keep-alive client sends its next request
    into a closing socket and fails ("server disconnected without sending a response")."""
    if response.status_code == 413 and \
            response.headers.get("connection", "").lower() != "close":
        findings.broken.append(f"[body over 64 KiB] {why}: 413 without 'Connection: close' "
                               f"(headers {dict(response.headers)})")


def _nul_bytes(world: World, findings: Findings) -> None:
    for route in world.routes():
        for name in _string_fields(route):
            for variant in (route.body[name] + "\x00", "\x00" + route.body[name],
                            route.body[name][:3] + "\x00" + route.body[name][3:]):
                response = world.send(route, {**route.body, name: variant})
                findings.record("NUL byte", f"{route.label} {name}={variant!r}", response)
                _never_accepted_credentials(findings, route, name, response, "NUL byte")


def _lone_surrogates(world: World, findings: Findings) -> None:
    for route in world.routes():
        for name in _string_fields(route):
            for variant in ("\ud800", route.body[name] + "\udfff",
                            "\ud800" + route.body[name]):
                response = world.send(route, {**route.body, name: variant})
                findings.record("lone surrogate", f"{route.label} {name}={variant!r}",
                                response)
                _never_accepted_credentials(findings, route, name, response, "lone surrogate")


def _never_accepted_credentials(findings: Findings, route: Route, name: str,
                                response: httpx.Response, category: str) -> None:
    """A changed credential field must never be accepted as the original."""
    credential_fields = {("POST", "/v1/auth/login"): {"email", "password"},
                         ("POST", "/v1/auth/refresh"): {"refresh_token"},
                         ("POST", "/v1/auth/password/change"): {"current_password"},
                         ("DELETE", "/v1/users/me"): {"password"}}
    if name in credential_fields.get((route.method, route.path), set()) \
            and response.status_code < 300:
        findings.broken.append(f"[{category}] {route.label}: an altered {name} was accepted: "
                               f"{describe(response)}")


def _invalid_utf8(world: World, findings: Findings) -> None:
    for route in world.routes():
        for name in _string_fields(route):
            for raw in (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"):
                text = json.dumps({**route.body, name: "@@MARK@@"}).encode()
                content = text.replace(b"@@MARK@@", b"a" + raw + b"b")
                response = world.send(route, content=content)
                findings.record("invalid UTF-8 body", f"{route.label} {name} holding {raw!r}",
                                response, {400}, "invalid_request")
        response = world.send(route, content=b"\xff" * 64)
        findings.record("invalid UTF-8 body", f"{route.label} body of 0xff bytes", response,
                        {400}, "invalid_request")


def _pages(world: World, findings: Findings) -> None:
    """The HTML pages reached from email links take the token from the query or a form."""
    client = world.client
    for query in ("token[$ne]=1", "token=%7B%22%24ne%22%3Anull%7D", "token=%00%00",
                  "token=%ED%A0%80", "token=" + "a" * 10_000):
        response = client.get(f"/verify-email?{query}")
        findings.record("email-link pages", f"GET /verify-email?{query[:40]}", response,
                        {400})
    for form in ({"token[$ne]": "1", "password": STRONG},
                 {"token": '{"$ne": null}', "password": STRONG},
                 {"token": "\x00" * 43, "password": STRONG}):
        response = client.post("/reset-password", data=form)
        findings.record("email-link pages", f"POST /reset-password {list(form)}", response,
                        {400})
    script = '"><script>alert(1)</script>'
    response = client.get("/reset-password", params={"token": script})
    findings.record("email-link pages", "GET /reset-password?token=<script>", response, {200})
    if "<script>alert(1)</script>" in response.text:
        findings.broken.append("the reset page echoes the token unescaped (XSS)")


def _header_injection(world: World, findings: Findings,
                      smtp: SmtpRecorder) -> dict[str, str]:
    """Names with line breaks: 422, or stored inert. Returns {address: name} registered."""
    client = world.client
    registered: dict[str, str] = {}
    for name in INJECTED_NAMES + INERT_NAMES:
        address = unique_email("named")
        response = client.post("/v1/auth/register",
                               json={"email": address, "password": STRONG, "name": name})
        findings.record("header injection via name", f"register name={name!r}", response,
                        {202, 422})
        if name in INERT_NAMES and response.status_code != 202:
            findings.broken.append(f"a printable name was refused: {name!r}: "
                                   f"{describe(response)}")
        if response.status_code == 202:
            registered[address] = name
        response = client.patch("/v1/users/me", json={"name": name},
                                headers=bearer(world.access))
        findings.record("header injection via name", f"rename to {name!r}", response,
                        {200, 422})
        if response.status_code == 200:
            registered[world.victim_email] = name
            # A reset email greets the user by this name.
            client.post("/v1/auth/password/forgot", json={"email": world.victim_email})
    for address in (f"victim@example.com\r\nBcc: {ATTACKER}",
                    f"victim@example.com\nBcc: {ATTACKER}",
                    f"victim@example.com, {ATTACKER}", f"<victim@example.com>, <{ATTACKER}>",
                    f'"victim@example.com\\r\\nBcc: {ATTACKER}"@example.com'):
        response = client.post("/v1/auth/register",
                               json={"email": address, "password": STRONG})
        findings.record("header injection via email", f"register email={address!r}",
                        response, {422})
        for path in ("/v1/auth/password/forgot", "/v1/auth/verify-email/resend"):
            response = client.post(path, json={"email": address})
            findings.record("header injection via email", f"{path} email={address!r}",
                            response, {202, 422})

    for address in registered:
        if address != world.victim_email:
            # Its verification email (which never shows the name) has been sent.
            wait_mail(smtp, address, VERIFY_SUBJECT)
    return registered


def _check_message(findings: Findings, message: Any) -> None:
    """No Bcc/Cc, one envelope recipient equal to the bare To address, nothing of the
    attacker's in the headers, and no markup of a name unescaped in the HTML part."""
    headers = {key.lower() for key in message.message.keys()}
    problems = []
    if "bcc" in headers or "cc" in headers:
        problems.append(f"has Bcc/Cc headers: {sorted(headers)}")
    if len(message.rcpt_tos) != 1 or message.to.strip().lower() != message.rcpt_tos[0].lower():
        problems.append(f"envelope recipients {message.rcpt_tos} vs To {message.to!r}")
    raw_headers = message.raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    if ATTACKER.encode() in raw_headers.lower():
        problems.append("the attacker's address is in the headers")
    if "<b>Eve</b>" in (message.html or ""):
        problems.append("a name's markup reached the HTML part unescaped")
    if problems:
        findings.broken.append(f"[header injection] email {message.subject!r} to "
                               f"{message.rcpt_tos}: " + "; ".join(problems))


def _nothing_changed(world: World, findings: Findings, env: AuthnodeEnv,
                     smtp: SmtpRecorder) -> None:
    client = world.client
    me = client.get("/v1/users/me", headers=bearer(world.access))
    if me.status_code != 200:
        findings.broken.append(f"the victim's access token died: {describe(me)}")
    response = client.post("/v1/auth/login",
                           json={"email": world.victim_email, "password": PASSWORD})
    if response.status_code != 200:
        findings.broken.append(f"the victim's password no longer works: {describe(response)}")
    else:
        assert_tokens(response, email=world.victim_email)
    refreshed = client.post("/v1/auth/refresh", json={"refresh_token": world.refresh})
    if refreshed.status_code != 200:
        findings.broken.append(f"the victim's refresh token was spent or revoked: "
                               f"{describe(refreshed)}")
    # The pending registration is intact: no account before its link is confirmed, and
    # confirming its first link creates the account with the password it was made with.
    pending = client.post("/v1/auth/login", json={"email": world.pending_email,
                                                  "password": world.pending_password})
    if pending.status_code != 401:
        findings.broken.append(f"the pending registration changed state: {describe(pending)}")
    confirmed = client.post("/v1/auth/verify-email",
                            json={"token": verification_token(smtp, world.pending_email)})
    pending = client.post("/v1/auth/login", json={"email": world.pending_email,
                                                  "password": world.pending_password})
    if confirmed.status_code != 200 or pending.status_code != 200:
        findings.broken.append(f"the pending registration changed: {describe(confirmed)}; "
                               f"{describe(pending)}")

    with MongoClient(env.variables["MONGODB_URI"], serverSelectionTimeoutMS=5000) as mongo:
        users = mongo.get_default_database()["users"]
        odd = list(users.find({"$or": [{"email": {"$not": {"$type": "string"}}},
                                       {"name": {"$not": {"$type": ["string", "null"]}}},
                                       {"password_hash": {"$not": {"$type": "string"}}}]},
                              {"email": 1, "name": 1}))
        count = users.count_documents({})
    if odd:
        findings.broken.append(f"stored non-string fields: {odd}")
    findings.notes.append(f"stored accounts: {count}, with a non-string email/name/hash: "
                          f"{len(odd)}")


def _no_mail_to_the_attacker(findings: Findings, smtp: SmtpRecorder,
                             registered: dict[str, str], env: AuthnodeEnv) -> None:
    wait_email_jobs_settled(env)
    messages = smtp.messages()
    for message in messages:
        if any(ATTACKER in rcpt.lower() for rcpt in message.rcpt_tos) or \
                ATTACKER in message.to.lower():
            findings.broken.append(f"a message went to the attacker: {message.rcpt_tos} "
                                   f"{message.subject!r}")
        _check_message(findings, message)
    to_attacker = sum(1 for m in messages if any(ATTACKER in r.lower() for r in m.rcpt_tos))
    findings.notes.append(f"emails recorded: {len(messages)} (to the attacker: {to_attacker}); "
                          f"accounts holding a line-break/markup name attempt: "
                          f"{len(registered)}")
