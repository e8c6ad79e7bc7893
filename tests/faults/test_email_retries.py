"""Email retries: the SMTP server refuses the first attempts of a message (451, a transient
failure), and the worker tries again with exponential backoff.

* refused twice, the message is delivered on the third attempt, exactly once; the second
  and third attempts start no sooner than the backoff allows (2 s, then 4 s:
  procrastinate's ``exponential_wait=2``), which is a lower bound a busy machine cannot
  break, and the job ends ``succeeded``;
* with ``EMAIL_MAX_ATTEMPTS=2`` and a server that keeps refusing, the job stops after two
  sends (the setting counts sends, not retries) and is ``failed`` (listed by
  ``authnode jobs list --status failed``), and nothing is delivered.

The retry loop is the job queue's (PostgreSQL) and the SMTP server's: no Redis key is
involved beyond the registration's rate limit, so one Redis mode is enough.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.acceptance.test_accounts_support import VERIFY_SUBJECT, register
from tests.faults.conftest import EnvFactory
from tests.faults.load import show
from tests.harness import AuthnodeEnv, unique_email
from tests.services import SmtpRecorder, wait_until

pytestmark = pytest.mark.alone

REFUSALS = 2
BACKOFF_S = [2, 4]  # exponential_wait=2: 2 ** 1, 2 ** 2 seconds
# Job runs are logged with millisecond timestamps; the scheduled time is rounded too.
CLOCK_SLACK_S = 0.05
SETTLE_TIMEOUT_S = 40.0


def _email_job_states(env: AuthnodeEnv) -> list[tuple[str, int]]:
    with psycopg.connect(env.variables["POSTGRES_URL"], connect_timeout=5) as conn:
        rows = conn.execute("SELECT status::text, attempts FROM procrastinate_jobs "
                            "WHERE queue_name = 'email' ORDER BY id").fetchall()
    return [(status, int(attempts)) for status, attempts in rows]


def _job_runs(log: str) -> list[dict[str, Any]]:
    runs = []
    for line in log.splitlines():
        if line.startswith("{") and '"message":"job"' in line:
            record = json.loads(line)
            if record.get("task") == "authnode.send_email":
                runs.append(record)
    return runs


def test_refused_email_is_retried_with_backoff_and_sent_once(
        single_env: EnvFactory, smtp: SmtpRecorder, capsys: pytest.CaptureFixture[str]) -> None:
    env = single_env()
    address = unique_email("retry")
    smtp.refuse_next(REFUSALS)
    api = env.start("api")
    worker = env.start("worker")
    try:
        register(api.client, address)
        wait_until(lambda: _email_job_states(env) == [("succeeded", REFUSALS + 1)],
                   SETTLE_TIMEOUT_S, lambda: f"the email job to succeed: "
                                             f"{_email_job_states(env)}")
        runs = _job_runs(worker.logs())
    finally:
        codes = (api.stop(), worker.stop())
    received = smtp.messages(address)
    gaps_s = [later - earlier for earlier, later in zip(smtp.refused_at,
                                                       smtp.refused_at[1:], strict=False)]
    delivered_after_s = (received[0].received_at - smtp.refused_at[-1]
                         if received and smtp.refused_at else None)
    show(capsys, f"SMTP refuses the first {REFUSALS} attempts (451)", {
        "attempts refused": len(smtp.refused_at),
        "seconds between the refused attempts": [round(g, 2) for g in gaps_s],
        "seconds from the last refusal to delivery": (
            round(delivered_after_s, 2) if delivered_after_s is not None else None),
        "backoff (s)": BACKOFF_S,
        "job runs (attempt: outcome)": [f"{r['attempt']}: {r['outcome']}" for r in runs],
        "messages delivered": len(received),
    })
    assert codes == (0, 0)
    assert len(smtp.refused_at) == REFUSALS
    assert [m.subject for m in received] == [VERIFY_SUBJECT]
    assert len(smtp) == 1
    assert [(r["attempt"], r["outcome"]) for r in runs] == [(1, "retried"), (2, "retried"),
                                                             (3, "sent")]
    assert gaps_s[0] >= BACKOFF_S[0] - CLOCK_SLACK_S, gaps_s
    assert delivered_after_s is not None and delivered_after_s >= BACKOFF_S[1] - CLOCK_SLACK_S


def test_email_job_fails_after_max_attempts(single_env: EnvFactory, smtp: SmtpRecorder,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    env = single_env(EMAIL_MAX_ATTEMPTS="2")
    address = unique_email("give-up")
    smtp.refuse_next(1000)
    api = env.start("api")
    worker = env.start("worker")
    try:
        register(api.client, address)
        wait_until(lambda: _email_job_states(env) == [("failed", 2)], SETTLE_TIMEOUT_S,
                   lambda: f"the email job to fail: {_email_job_states(env)}")
        runs = _job_runs(worker.logs())
        listed = env.run("jobs", "list", "--status", "failed", "--json")
    finally:
        codes = (api.stop(), worker.stop())
    show(capsys, "SMTP keeps refusing, EMAIL_MAX_ATTEMPTS=2", {
        "attempts refused": len(smtp.refused_at),
        "job runs (attempt: outcome)": [f"{r['attempt']}: {r['outcome']}" for r in runs],
        "messages delivered": len(smtp),
    })
    assert codes == (0, 0)
    assert len(smtp) == 0
    assert len(smtp.refused_at) == 2
    assert [(r["attempt"], r["outcome"]) for r in runs] == [(1, "retried"), (2, "failed")]
    assert listed.returncode == 0, listed.stderr
    failed = json.loads(listed.stdout)
    assert [job["task"] for job in failed] == ["authnode.send_email"], failed
