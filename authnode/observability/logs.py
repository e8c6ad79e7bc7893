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


_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode


class JsonFormatter(logging.Formatter):
    def __init__(self, instance: str) -> None:
        super().__init__()
        self._instance = instance
        self._second = -1
        self._second_text = ""

    def _time(self, created: float) -> str:
        # The access log writes a line per request: the date part is formatted once a
        # second (the format of datetime.isoformat(timespec="milliseconds") + "Z").
        second = int(created)
        if second != self._second:
            self._second_text = datetime.fromtimestamp(second, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._second_text}.{int(created * 1000) % 1000:03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "instance": self._instance,
        }
        fields = record.__dict__
        for name in SAFE_FIELDS:
            value = fields.get(name)
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
        return _encode(line)


def configure_logging(level: str, instance: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(instance))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # No caller lookup (sys._getframe) per record: no line shows the file or line number,
    # and it was a quarter of the cost of an access-log line (bench/README.md).
    logging._srcfile = None
    # Libraries that log request details or job arguments at INFO stay at WARNING.
    for noisy in ("hypercorn.access", "hypercorn.error", "procrastinate", "pymongo",
                  "asyncio", "aiosmtplib", "quart.serving"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
