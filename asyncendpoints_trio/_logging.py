"""Log records as text or as JSON lines, and the fields every line about a job carries.

A line about a job passes ``extra=job_fields(job)``: ``job_id``, ``job_name`` and
``attempt`` become attributes of the record, which the JSON format writes as fields of their
own (a log pipeline can select a job's lines without parsing messages).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from ._job import Job

JOB_FIELDS = ("job_id", "job_name", "attempt")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def job_fields(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "job_name": job.name, "attempt": job.attempt}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the job's fields, and the
    exception (type, message, traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,  # serve --workers N: which process said it
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = {"type": record.exc_info[0].__name__,
                                  "message": str(record.exc_info[1]),
                                  "traceback": self.formatException(record.exc_info)}
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str = "text") -> None:
    """The root logger's handler, at ``level``, in ``fmt`` (``text`` or ``json``): our
    loggers and Hypercorn's (which the CLI routes through ours) all go through it."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


class AsServerLogger(logging.Filter):
    """Give Hypercorn's records our server logger's name."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.name = "asyncendpoints_trio.server"
        return True


# For ``serve --workers N``: each worker process makes Hypercorn's error logger from the
# config, and a logger object does not travel to a new process, so it is named by "-",
# which gives it a stderr handler of Hypercorn's format. Hypercorn applies this after: the
# handler goes, the records pass up to our root handler, under our name.
HYPERCORN_WORKER_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"as_server": {"()": f"{__name__}.AsServerLogger"}},
    "loggers": {"hypercorn.error": {"handlers": [], "filters": ["as_server"],
                                    "propagate": True}},
}
