"""Fault 2: the worker is SIGKILLed in the middle of sending 100 emails, then started again.

100 registrations queue 100 verification emails while no worker runs; a worker
(``WORKER_CONCURRENCY=2``) starts sending and is SIGKILLed at an arbitrary moment after
30 have arrived. The jobs it held stay ``doing``; a new worker requeues them once their
heartbeat is older than ``STALLED_JOB_AFTER_S`` (6 s in the tests) and sends the rest.

What holds, and is asserted:

* every address gets its email (nothing is lost);
* an address gets two copies only if its job was in flight (``doing``) at the kill, so
  there are at most as many duplicates as jobs in flight, which is at most
  ``WORKER_CONCURRENCY``; no address gets three;
* a duplicate carries the same Message-ID as the first copy (it is derived from the job),
  so receivers can drop it.

Exactly-once over SMTP is impossible across a crash: the worker checks an idempotency key
(``sent_emails``) before sending and records it the moment the SMTP server answers the
DATA command, before it says QUIT or logs anything, but a kill between that answer and
the record reaching MongoDB makes the retry send the message again. The window is one
MongoDB insert long; a kill at a random moment rarely lands in it, so the duplicates are
counted and printed, not required.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter

import anyio
import httpx
import psycopg
import pytest

from tests.acceptance.test_accounts_support import PASSWORD
from tests.faults.conftest import EnvFactory
from tests.faults.load import show
from tests.harness import AuthnodeEnv
from tests.services import SmtpRecorder, wait_until

pytestmark = pytest.mark.alone

EMAILS = 100
KILL_AFTER = 30
WORKER_CONCURRENCY = 2
DELIVERY_TIMEOUT_S = 60.0


def _in_flight(env: AuthnodeEnv) -> set[str]:
    with psycopg.connect(env.variables["POSTGRES_URL"], connect_timeout=5) as conn:
        rows = conn.execute("SELECT args->>'email' FROM procrastinate_jobs "
                            "WHERE queue_name = 'email' AND status = 'doing'").fetchall()
    return {email for (email,) in rows}


def _job_states(env: AuthnodeEnv) -> dict[str, int]:
    with psycopg.connect(env.variables["POSTGRES_URL"], connect_timeout=5) as conn:
        rows = conn.execute("SELECT status::text, count(*) FROM procrastinate_jobs "
                            "WHERE queue_name = 'email' GROUP BY status").fetchall()
    return {status: count for status, count in rows}


async def _register_all(url: str, addresses: list[str]) -> None:
    async def register(client: httpx.AsyncClient, chunk: list[str]) -> None:
        for address in chunk:
            response = await client.post("/v1/auth/register",
                                         json={"email": address, "password": PASSWORD})
            assert response.status_code == 202, response.text

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        async with anyio.create_task_group() as tasks:
            for offset in range(4):
                tasks.start_soon(register, client, addresses[offset::4])


@pytest.mark.slow
@pytest.mark.anyio
async def test_worker_sigkilled_mid_batch(either_env: EnvFactory, smtp: SmtpRecorder,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    env = either_env(WORKER_CONCURRENCY=str(WORKER_CONCURRENCY))
    tag = secrets.token_hex(3)
    addresses = [f"kill-{tag}-{i:03d}@example.com" for i in range(EMAILS)]
    api = env.start("api")
    first = second = None
    try:
        await _register_all(api.url, addresses)
        assert _job_states(env) == {"todo": EMAILS}

        first = env.start("worker", wait=False, name="worker-killed")
        with anyio.fail_after(DELIVERY_TIMEOUT_S):
            while len(smtp) < KILL_AFTER:
                assert first.proc.poll() is None, first.logs()[-3000:]
                await anyio.sleep(0.005)
        # Not on the arrival of a message: that is inside the duplicate window by design.
        delay_s = random.uniform(0.0, 0.1)
        await anyio.sleep(delay_s)
        first.kill()
        delivered_at_kill = len(smtp)
        states_at_kill = _job_states(env)
        in_flight = _in_flight(env)

        restarted = time.monotonic()
        second = env.start("worker", wait=False, name="worker-restarted")

        def everyone_served() -> bool:
            return {m.rcpt_tos[0] for m in smtp.messages()} >= set(addresses)

        await anyio.to_thread.run_sync(lambda: wait_until(
            everyone_served, DELIVERY_TIMEOUT_S, lambda: f"{len(smtp)} of {EMAILS} emails"))
        all_in_s = time.monotonic() - restarted
        await anyio.to_thread.run_sync(lambda: wait_until(
            lambda: set(_job_states(env)) == {"succeeded"}, DELIVERY_TIMEOUT_S,
            lambda: f"every email job to succeed: {_job_states(env)}"))

        per_recipient = Counter(m.rcpt_tos[0] for m in smtp.messages())
        twice = {address: n for address, n in per_recipient.items() if n > 1}
        message_ids = {address: {str(m.message["Message-ID"]) for m in smtp.messages(address)}
                       for address in twice}
        requeued = second.logs().count("stalled job requeued")
        show(capsys, "worker SIGKILLed in the middle of 100 emails", {
            "kill, seconds after the 30th email": round(delay_s, 3),
            "emails delivered when the worker was killed": delivered_at_kill,
            "jobs at the kill": states_at_kill,
            "stalled jobs requeued by the new worker": requeued,
            "seconds from restart to all 100 delivered": round(all_in_s, 2),
            "emails received (total)": len(smtp),
            "addresses served": len(per_recipient),
            "jobs in flight at the kill": len(in_flight),
            "addresses with a duplicate (at most the jobs in flight)": len(twice),
        })
        assert KILL_AFTER <= delivered_at_kill < EMAILS, "the kill was not mid-batch"
        assert set(per_recipient) == set(addresses), "an email was lost"
        assert len(in_flight) <= WORKER_CONCURRENCY, in_flight
        assert requeued == len(in_flight), (requeued, in_flight)
        assert set(twice) <= in_flight, f"a duplicate of a job not in flight: {twice}"
        assert all(n == 2 for n in twice.values()), twice
        assert all(len(ids) == 1 for ids in message_ids.values()), message_ids
    finally:
        for process in (first, second):
            if process is not None:
                process.kill()
        code = api.stop()
    assert code == 0, api.logs()[-3000:]
