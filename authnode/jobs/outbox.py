"""The API's side of the job queue: turn an email request into a durable job."""

from __future__ import annotations

from collections.abc import Callable

import procrastinate
from procrastinate.exceptions import ConnectorException

from authnode.accounts.outbox import EmailKind
from authnode.errors import Unavailable
from authnode.jobs.app import SEND_EMAIL_TASK


class JobQueueOutbox:
    def __init__(self, app: procrastinate.App, *,
                 on_deferred: Callable[[str], None] | None = None) -> None:
        self._task = app.configure_task(SEND_EMAIL_TASK)
        self._on_deferred = on_deferred or (lambda task: None)  # metrics: called per job

    async def request(self, kind: EmailKind, *, email: str, user_id: str | None = None,
                      registration_id: str | None = None) -> None:
        try:
            await self._task.defer_async(kind=kind, email=email, user_id=user_id,
                                         registration_id=registration_id)
        except (ConnectorException, OSError) as error:
            raise Unavailable("postgresql", "The job queue (postgresql) is unavailable; "
                              "nothing was done, try again shortly.") from error
        self._on_deferred(SEND_EMAIL_TASK)
