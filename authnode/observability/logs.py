"""JSON log lines on stdout (for journald and log pipelines).

Fields are whitelisted: a record's message plus the ``extra`` keys listed in
``SAFE_FIELDS``. Nothing else from a record (arguments, request bodies) is written, so a
password or token cannot reach the log by accident through ``extra``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

SAFE_FIELDS = (
    "request_id", "method", "route", "status", "duration_ms", "instance", "remote",
    "task", "job_id", "attempt", "outcome", "user_id", "session_id", "dependency",
    "role", "bind", "limit", "queue", "kind", "recipient",
)


class JsonFormatter(logging.Formatter):
    def __init__(self, instance: str) -> None:
        super().__init__()
        self._instance = instance

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "instance": self._instance,
        }
        for name in SAFE_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        job = record.__dict__.get("job")
        if record.name.startswith("procrastinate") and isinstance(job, dict):
            # procrastinate's message quotes the job's arguments (an email address): keep
            # its action and the job's identity instead.
            line["message"] = f"procrastinate {record.__dict__.get('action', 'job')}"
            line.setdefault("task", job.get("task_name"))
            line.setdefault("job_id", job.get("id"))
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def configure_logging(level: str, instance: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(instance))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that log request details or job arguments at INFO stay at WARNING.
    for noisy in ("hypercorn.access", "hypercorn.error", "procrastinate", "pymongo",
                  "asyncio", "aiosmtplib", "quart.serving"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
