"""Expiry and the purge job: FerretDB has no TTL monitor, so the explicit expiry checks in
every read and the periodic ``authnode.purge_expired`` job are the only guards.

Lifetimes are set per process: an API process and a worker started with the shortest
lifetimes the settings allow (``REFRESH_TOKEN_TTL``, ``EMAIL_TOKEN_TTL`` and
``VERIFY_EMAIL_TOKEN_TTL`` of 1 s) issue the tokens that expire, while processes with the
defaults issue the controls, so each refusal is shown to be about the lifetime alone. The
wait is on the stored ``expires_at`` (the server compares it with the same clock), plus a
small margin, not a fixed sleep.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import procrastinate
import psycopg
import pytest
from pymongo import MongoClient

from authnode.jobs.app import MAINTENANCE_QUEUE
from tests.acceptance.test_accounts_support import (
    NEW_PASSWORD,
    assert_error,
    assert_refresh_refused,
    describe,
    login,
    refresh,
    register,
    reset_token,
    running,
    verification_token,
    verify,
)
from tests.harness import AuthnodeEnv, unique_email
from tests.services import SmtpRecorder, wait_until

SHORT = {"REFRESH_TOKEN_TTL": "1", "EMAIL_TOKEN_TTL": "1", "VERIFY_EMAIL_TOKEN_TTL": "1"}
SHORT_S = 1
# The defaults (README: Configure) of the processes that issue the controls.
LONG_S = {"verify_email": 24 * 3600, "password_reset": 3600, "refresh": 30 * 24 * 3600}
# Past the stored expiry before asking: the stored times have millisecond precision.
PAST_EXPIRY_S = 0.05
PURGE_TIMEOUT_S = 30.0
PURGE_TASK = "authnode.purge_expired"
PERIODIC_EVERY_S = 600  # the job's own schedule: cron "*/10 * * * *"
PERIODIC_GUARD_S = 60.0  # longer than this test takes on a busy machine
PURGED = ("sessions", "email_tokens", "spend_guards", "sent_emails")


def _database(env: AuthnodeEnv) -> Any:
    client: MongoClient[dict[str, Any]] = MongoClient(
        env.variables["MONGODB_URI"], serverSelectionTimeoutMS=5000, tz_aware=True)
    return client


def _link_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _session_id(refresh_token: str) -> str:
    """``rt_<session id>.<secret>``."""
    return refresh_token.removeprefix("rt_").split(".", 1)[0]


def _lifetime_s(document: dict[str, Any]) -> float:
    return float((document["expires_at"] - document["created_at"]).total_seconds())


def _wait_past(expiries: list[datetime]) -> float:
    """Sleep until every expiry has passed (the server reads the same clock); the seconds
    waited."""
    remaining_s = max(e.timestamp() for e in expiries) - time.time() + PAST_EXPIRY_S
    if remaining_s > 0:
        time.sleep(remaining_s)
    return max(remaining_s, 0.0)


def _post(client: httpx.Client, path: str, body: dict[str, str]) -> httpx.Response:
    return client.post(path, json=body)


def _ask(client: httpx.Client, path: str, email: str) -> None:
    response = _post(client, path, {"email": email})
    assert response.status_code == 202, describe(response)


def test_expired_refresh_token_reset_link_and_verification_link_are_refused(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
        capsys: pytest.CaptureFixture[str]) -> None:
    env = authnode_env
    with running(env, "api", name="api-long") as api, \
            running(env, "api", name="api-short", extra_env=SHORT) as short_api:
        client = api.client
        owner, pending = unique_email("expiry-owner"), unique_email("expiry-pending")
        with running(env, "worker", name="worker-long"):
            register(client, owner)
            verify(client, verification_token(smtp, owner))
            register(client, pending)
            verify_long = verification_token(smtp, pending)
            _ask(client, "/v1/auth/password/forgot", owner)
            reset_long = reset_token(smtp, owner)
        with running(env, "worker", name="worker-short", extra_env=SHORT):
            _ask(client, "/v1/auth/verify-email/resend", pending)
            verify_short = verification_token(smtp, pending, count=2)
            _ask(client, "/v1/auth/password/forgot", owner)
            reset_short = reset_token(smtp, owner, count=2)
        live = login(client, owner)
        short = login(short_api.client, owner)

        with _database(env) as mongo:
            db = mongo.get_default_database()
            links = {name: db.email_tokens.find_one({"_id": _link_hash(token)})
                     for name, token in (("verify_short", verify_short),
                                         ("verify_long", verify_long),
                                         ("reset_short", reset_short),
                                         ("reset_long", reset_long))}
            sessions = {name: db.sessions.find_one({"_id": _session_id(tokens["refresh_token"])})
                        for name, tokens in (("short", short), ("live", live))}
        # The settings took effect: exactly the configured lifetimes were stored.
        lifetimes = {**{k: _lifetime_s(v) for k, v in links.items()},
                     **{f"session_{k}": _lifetime_s(v) for k, v in sessions.items()}}
        assert lifetimes == {"verify_short": SHORT_S, "reset_short": SHORT_S,
                             "session_short": SHORT_S,
                             "verify_long": LONG_S["verify_email"],
                             "reset_long": LONG_S["password_reset"],
                             "session_live": LONG_S["refresh"]}, lifetimes
        waited_s = _wait_past([links["verify_short"]["expires_at"],
                               links["reset_short"]["expires_at"],
                               sessions["short"]["expires_at"]])

        # Expired: refused with the error of an unknown token. Then the control from the
        # same flow, issued by a process with the default lifetime, works.
        assert_refresh_refused(client, short["refresh_token"], "expired refresh token")
        refresh(client, live["refresh_token"])
        assert_error(_post(client, "/v1/auth/verify-email", {"token": verify_short}), 400,
                     "invalid_token")
        verify(client, verify_long)
        assert_error(_post(client, "/v1/auth/password/reset",
                           {"token": reset_short, "password": NEW_PASSWORD}),
                     400, "invalid_token")
        reset = _post(client, "/v1/auth/password/reset",
                      {"token": reset_long, "password": NEW_PASSWORD})
        assert reset.status_code == 204, describe(reset)
        login(client, owner, NEW_PASSWORD)
    with capsys.disabled():
        print(f"\n[expiry] lifetimes stored (s): {lifetimes}; waited {waited_s:.2f}s past "
              f"the short ones; expired refresh token, verification and reset links "
              f"refused, the controls accepted")


def _clear_of_the_periodic_purge() -> None:
    """The worker also runs the purge every 10 minutes on its own; if this test would
    straddle such a tick, wait until the tick has passed, so the only purge between the
    two snapshots is the one the test asks for (checked after the fact too)."""
    to_tick_s = PERIODIC_EVERY_S - time.time() % PERIODIC_EVERY_S
    if to_tick_s < PERIODIC_GUARD_S:
        time.sleep(to_tick_s + 5)


def _snapshot(db: Any) -> dict[str, set[Any]]:
    return {name: {doc["_id"] for doc in db[name].find({}, projection={"_id": 1})}
            for name in db.list_collection_names()}


def _purge_jobs(env: AuthnodeEnv, after_id: int = 0) -> list[tuple[int, str]]:
    with psycopg.connect(env.variables["POSTGRES_URL"], connect_timeout=5) as conn:
        rows = conn.execute("SELECT id, status::text FROM procrastinate_jobs WHERE "
                            "task_name = %s AND id > %s ORDER BY id", (PURGE_TASK, after_id))
        return [(int(job_id), status) for job_id, status in rows.fetchall()]


def _last_job_id(env: AuthnodeEnv) -> int:
    with psycopg.connect(env.variables["POSTGRES_URL"], connect_timeout=5) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM procrastinate_jobs").fetchone()
    assert row is not None
    return int(row[0])


def _defer_purge(env: AuthnodeEnv) -> int:
    """What the periodic deferrer does every 10 minutes, asked for now."""
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(
        conninfo=env.variables["POSTGRES_URL"]))
    with app.open():
        job_id = app.configure_task(PURGE_TASK, queue=MAINTENANCE_QUEUE).defer(
            timestamp=int(time.time()))
    return int(job_id)


# The purge is MongoDB work only (no Redis key is involved): one Redis mode is enough.
@pytest.mark.parametrize("redis_target", ["single"], indirect=True)
def test_purge_removes_exactly_what_has_expired(authnode_env: AuthnodeEnv, smtp: SmtpRecorder,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _clear_of_the_periodic_purge()
    env = authnode_env
    owner = unique_email("purge")
    with running(env, "api", name="api-long") as api, \
            running(env, "api", name="api-short", extra_env=SHORT) as short_api:
        client = api.client
        with running(env, "worker", name="worker-long"):
            register(client, owner)
            used_link = verification_token(smtp, owner)
            verify(client, used_link)  # a used link, and its spend guard (kept an hour)
            _ask(client, "/v1/auth/password/forgot", owner)
            live_link = reset_token(smtp, owner)
        with running(env, "worker", name="worker-short", extra_env=SHORT):
            _ask(client, "/v1/auth/password/forgot", owner)
            expiring_link = reset_token(smtp, owner, count=2)
        live = login(client, owner)
        rotated = refresh(client, live["refresh_token"])  # a spend guard on the old hash
        ended = login(client, owner)
        logout = client.post("/v1/auth/logout",
                             headers={"Authorization": f"Bearer {ended['access_token']}"})
        assert logout.status_code == 204, describe(logout)  # revoked just now: kept a day
        expiring = login(short_api.client, owner)

    # What no flow makes within a test's time (a session revoked days ago, a guard an
    # hour old, an email sent a week ago), written straight into the database beside a
    # counterpart on the other side of the purge's line.
    mark = _last_job_id(env)
    now = datetime.now(UTC)
    aged = {"revoked": uuid.uuid4().hex, "revoked_recently": uuid.uuid4().hex,
            "guard": f"refresh:aged-{uuid.uuid4().hex}",
            "guard_fresh": f"refresh:fresh-{uuid.uuid4().hex}",
            "sent": f"job:aged-{uuid.uuid4().hex}",
            "sent_recently": f"job:recent-{uuid.uuid4().hex}",
            "audit": f"aged-{uuid.uuid4().hex}", "audit_kept": f"kept-{uuid.uuid4().hex}"}
    with _database(env) as mongo:
        db = mongo.get_default_database()
        template = db.sessions.find_one({"_id": _session_id(rotated["refresh_token"])})
        assert template is not None
        db.sessions.insert_many([
            {**template, "_id": aged["revoked"], "revoked_at": now - timedelta(days=2)},
            {**template, "_id": aged["revoked_recently"],
             "revoked_at": now - timedelta(hours=20)}])
        db.spend_guards.insert_many([
            {"_id": aged["guard"], "expires_at": now - timedelta(minutes=1)},
            {"_id": aged["guard_fresh"], "expires_at": now + timedelta(minutes=30)}])
        db.sent_emails.insert_many([
            {"_id": aged["sent"], "kind": "verify_email", "sent_at": now - timedelta(days=8)},
            {"_id": aged["sent_recently"], "kind": "verify_email",
             "sent_at": now - timedelta(days=6)}])
        # AUDIT_RETENTION_DAYS (180 by default) keeps the one and drops the other.
        db.audit_events.insert_many([
            {"_id": aged["audit"], "at": now - timedelta(days=181), "event": "login.failed",
             "user_id": None, "actor": "user", "outcome": "wrong_password"},
            {"_id": aged["audit_kept"], "at": now - timedelta(days=179),
             "event": "login.failed", "user_id": None, "actor": "user",
             "outcome": "wrong_password"}])
        expiring_session = db.sessions.find_one({"_id": _session_id(
            expiring["refresh_token"])})
        expiring_token = db.email_tokens.find_one({"_id": _link_hash(expiring_link)})
        assert expiring_session is not None and expiring_token is not None
        _wait_past([expiring_session["expires_at"], expiring_token["expires_at"]])

        before = _snapshot(db)
        job_id = _defer_purge(env)
        with running(env, "worker", name="worker-purge") as worker:
            wait_until(lambda: _purge_jobs(env, job_id - 1)[:1] == [(job_id, "succeeded")],
                       PURGE_TIMEOUT_S, lambda: f"purge job {job_id}: {_purge_jobs(env, mark)}")
        after = _snapshot(db)
    purged_line = [line for line in worker.logs().splitlines() if '"purged"' in line]
    assert _purge_jobs(env, mark) == [(job_id, "succeeded")], "a periodic purge ran too"

    expected: dict[str, set[Any]] = {name: set() for name in before}
    expected["sessions"] = {_session_id(expiring["refresh_token"]), aged["revoked"]}
    expected["email_tokens"] = {_link_hash(used_link), _link_hash(expiring_link)}
    expected["spend_guards"] = {aged["guard"]}
    expected["sent_emails"] = {aged["sent"]}
    expected["audit_events"] = {aged["audit"]}
    removed = {name: before[name] - after.get(name, set()) for name in before}
    counts = {name: f"{len(before[name])} -> {len(after.get(name, set()))}"
              for name in sorted(before)}
    with capsys.disabled():
        print(f"\n[purge] documents per collection, before -> after: {counts}\n"
              f"[purge] {purged_line[-1] if purged_line else '(no log line)'}")
    assert set(PURGED) <= set(before), sorted(before)
    assert set(after) == set(before), (sorted(before), sorted(after))
    assert all(after[name] <= before[name] for name in before), "documents appeared"
    assert removed == expected, {name: (removed[name], expected[name]) for name in before
                                 if removed[name] != expected[name]}
    # Named survivors, so that "nothing else" is visibly about live things.
    assert {_session_id(live["refresh_token"]), _session_id(ended["refresh_token"]),
            aged["revoked_recently"]} <= after["sessions"]
    assert _link_hash(live_link) in after["email_tokens"]
    assert {aged["guard_fresh"], f"email:{_link_hash(used_link)}"} <= after["spend_guards"]
    assert aged["sent_recently"] in after["sent_emails"]
    assert aged["audit_kept"] in after["audit_events"]
