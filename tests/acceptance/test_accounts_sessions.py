"""Sessions over HTTP: refresh-token reuse inside and outside the grace window, logout-all,
listing sessions and ending one of them."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from tests.acceptance.test_accounts_support import (
    SESSION_KEYS,
    assert_access_refused,
    assert_access_works,
    assert_error,
    assert_refresh_refused,
    bearer,
    describe,
    login,
    refresh,
    register_verified,
    running,
)
from tests.harness import AuthnodeEnv, AuthnodeProcess
from tests.services import SmtpRecorder

GRACE_S = 1


def session_id_of(access_token: str) -> str:
    """The ``sid`` claim (read only; the server verifies tokens, not this test)."""
    claims: dict[str, Any] = jwt.decode(access_token, options={"verify_signature": False})
    return str(claims["sid"])


def wait_out_grace(rotated_at: float) -> None:
    """Time itself is the subject: let more than REFRESH_REUSE_GRACE_S pass since the
    rotation (measured from when its answer arrived, so the server saw at least as much)."""
    deadline = rotated_at + GRACE_S + 0.3
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)


def test_refresh_reuse_within_grace_window(authnode: AuthnodeProcess,
                                           smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    first = login(client, email)

    # The same old token twice, one after the other: both succeed with the same successor.
    one = refresh(client, first["refresh_token"])
    two = refresh(client, first["refresh_token"])
    assert one["refresh_token"] != first["refresh_token"]
    assert two["refresh_token"] == one["refresh_token"], \
        "a refresh retried within the grace window must get the same new refresh token"
    for tokens in (one, two):
        assert_access_works(client, tokens["access_token"], "access token of a grace refresh")

    # The shared successor rotates normally, and the session is alive throughout.
    latest = refresh(client, one["refresh_token"])
    assert latest["refresh_token"] not in {first["refresh_token"], one["refresh_token"]}
    assert_access_works(client, latest["access_token"], "after grace refreshes")
    assert_access_works(client, first["access_token"], "first access token of the session")
    sessions = client.get("/v1/sessions", headers=bearer(latest["access_token"])).json()
    assert len(sessions["sessions"]) == 1, sessions


def test_refresh_reuse_after_grace_window_revokes_the_session(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    env = authnode_env.with_overrides(REFRESH_REUSE_GRACE_S=str(GRACE_S))
    with running(env) as process:
        client = process.client
        email, _ = register_verified(client, smtp)
        first = login(client, email)
        other = login(client, email, user_agent="another device")
        second = refresh(client, first["refresh_token"])
        wait_out_grace(time.monotonic())

        assert_refresh_refused(client, first["refresh_token"], "replayed after the grace window")
        # Reuse means theft: the whole session is over, the newest tokens included.
        assert_refresh_refused(client, second["refresh_token"],
                               "newest refresh token of a session whose old token was replayed")
        assert_access_refused(client, second["access_token"], "session revoked by reuse")
        assert_access_refused(client, first["access_token"], "session revoked by reuse")

        # Only that session: the user's other session lives on, and logging in works.
        assert_access_works(client, other["access_token"], "another session of the user")
        refresh(client, other["refresh_token"])
        assert_access_works(client, login(client, email)["access_token"], "new login")


def test_refresh_reuse_of_an_older_token_revokes_the_session(
        authnode_env: AuthnodeEnv, smtp: SmtpRecorder) -> None:
    """Any already-rotated token counts, not only the one replaced last: a thief who kept
    token N while the client moved on to N+2 must still trip reuse detection."""
    env = authnode_env.with_overrides(REFRESH_REUSE_GRACE_S=str(GRACE_S))
    with running(env) as process:
        client = process.client
        email, _ = register_verified(client, smtp)
        first = login(client, email)
        second = refresh(client, first["refresh_token"])
        third = refresh(client, second["refresh_token"])
        wait_out_grace(time.monotonic())

        assert_refresh_refused(client, first["refresh_token"], "token rotated two times ago")
        newest = client.post("/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
        assert newest.status_code == 401, (
            "BUG authnode/accounts/authentication.py::_replayed: a refresh token rotated "
            "before the previous one (here two rotations ago), replayed after the grace "
            "window, is refused but does NOT revoke the session; only the immediately "
            f"previous token trips reuse detection. {describe(newest)}")
        assert_error(newest, 401, "invalid_token")
        assert_access_refused(client, third["access_token"], "session revoked by reuse")


def check_logout_all(client: httpx.Client, smtp: SmtpRecorder) -> None:
    """POST /v1/auth/logout-all ends every session of the user at once."""
    email, _ = register_verified(client, smtp, prefix="everywhere")
    phone = login(client, email, user_agent="phone")
    laptop = login(client, email, user_agent="laptop")
    renewed = refresh(client, laptop["refresh_token"])

    out = client.post("/v1/auth/logout-all", headers=bearer(phone["access_token"]))
    assert out.status_code == 204, describe(out)
    assert out.content == b""

    for tokens, which in ((phone, "the calling session"), (laptop, "another session"),
                          (renewed, "another session, refreshed")):
        assert_access_refused(client, tokens["access_token"], f"after logout-all ({which})")
    assert_refresh_refused(client, phone["refresh_token"], "after logout-all")
    assert_refresh_refused(client, renewed["refresh_token"], "after logout-all")
    assert_error(client.post("/v1/auth/logout-all", headers=bearer(phone["access_token"])),
                 401, "invalid_token")

    # A new login right after works at once, within the same second too.
    fresh = login(client, email)
    assert_access_works(client, fresh["access_token"], "login right after logout-all")
    assert_access_works(client, refresh(client, fresh["refresh_token"])["access_token"],
                        "refresh right after logout-all")
    listed = client.get("/v1/sessions", headers=bearer(fresh["access_token"])).json()
    assert [s["id"] for s in listed["sessions"]] == [session_id_of(fresh["access_token"])]


def test_sessions_list_delete_and_logout_all(authnode: AuthnodeProcess,
                                             smtp: SmtpRecorder) -> None:
    client = authnode.client
    email, _ = register_verified(client, smtp)
    phone = login(client, email, user_agent="phone-app/1.0")
    laptop = login(client, email, user_agent="laptop-browser/2.0")
    phone_sid = session_id_of(phone["access_token"])
    laptop_sid = session_id_of(laptop["access_token"])

    listed = client.get("/v1/sessions", headers=bearer(phone["access_token"]))
    assert listed.status_code == 200, describe(listed)
    assert listed.headers.get("cache-control") == "no-store"
    sessions = listed.json()["sessions"]
    assert {s["id"] for s in sessions} == {phone_sid, laptop_sid}, sessions
    for session in sessions:
        assert set(session) == SESSION_KEYS, session
        assert session["ip"] == "127.0.0.1"
        assert session["created_at"].endswith("Z")
    by_id = {s["id"]: s for s in sessions}
    assert by_id[phone_sid]["current"] is True
    assert by_id[laptop_sid]["current"] is False
    assert by_id[phone_sid]["user_agent"] == "phone-app/1.0"
    assert by_id[laptop_sid]["user_agent"] == "laptop-browser/2.0"
    from_laptop = client.get("/v1/sessions", headers=bearer(laptop["access_token"])).json()
    assert {s["id"]: s["current"] for s in from_laptop["sessions"]} == {
        phone_sid: False, laptop_sid: True}

    # Someone else's session, an unknown id, odd ids: 404 not_found, and nothing ends.
    stranger_email, _ = register_verified(client, smtp, prefix="stranger")
    stranger = login(client, stranger_email)
    for target in (session_id_of(stranger["access_token"]), "no-such-session",
                   "x" * 300, "..%2F..%2Fetc", "%24gt"):
        response = client.delete(f"/v1/sessions/{target}", headers=bearer(phone["access_token"]))
        assert_error(response, 404, "not_found")
    assert_access_works(client, stranger["access_token"], "another user's session")
    refresh(client, stranger["refresh_token"])

    # Ending another of the user's sessions: 204, and its tokens die at once.
    ended = client.delete(f"/v1/sessions/{laptop_sid}", headers=bearer(phone["access_token"]))
    assert ended.status_code == 204, describe(ended)
    assert_access_refused(client, laptop["access_token"], "deleted session")
    assert_refresh_refused(client, laptop["refresh_token"], "deleted session")
    assert_error(client.delete(f"/v1/sessions/{laptop_sid}",
                               headers=bearer(phone["access_token"])), 404, "not_found")
    remaining = client.get("/v1/sessions", headers=bearer(phone["access_token"])).json()
    assert [(s["id"], s["current"]) for s in remaining["sessions"]] == [(phone_sid, True)]
    assert_access_works(client, phone["access_token"], "the session that stayed")

    # Unauthenticated: 401 with a Bearer challenge.
    anonymous = client.get("/v1/sessions")
    assert_error(anonymous, 401, "invalid_token")
    assert anonymous.headers.get("www-authenticate", "").lower().startswith("bearer")

    check_logout_all(client, smtp)
