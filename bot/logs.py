"""Logging: a correlation id on every line, and secrets scrubbed before anything is written.

``LOG_FORMAT=json`` writes one JSON object per line (time, level, logger, message, correlation
id, workspace and session) for log collectors; the default is one readable line.

The redaction filter replaces configured secret values and anything shaped like a Slack token
or an API key, so a token can't reach the logs even through a library's debug message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar

correlation_id: ContextVar[str] = ContextVar("correlation_id", default="-")
# The workspace and session a line is about (set by the worker per job, by the app per request).
team_id: ContextVar[str | None] = ContextVar("team_id", default=None)
session_id: ContextVar[str | None] = ContextVar("session_id", default=None)

_TOKEN_SHAPES = re.compile(
    r"xox[abposre]-[A-Za-z0-9-]{6,}|xapp-[A-Za-z0-9-]{6,}|sk-[A-Za-z0-9_-]{12,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_SHAPES.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = correlation_id.get()
        record.team = team_id.get()
        record.session = session_id.get()
        message = record.getMessage()
        if record.exc_info:
            formatter = logging.Formatter()
            message += "\n" + formatter.formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = self.scrub(message)
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Runs after ``RedactingFilter``, whose scrubbed message already
    carries any traceback, so a line is always one complete, secret-free object."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
            "team": getattr(record, "team", None),
            "session": getattr(record, "session", None),
        }
        if record.exc_info:  # only without the filter (it folds tracebacks into the message)
            line["message"] = f"{line['message']}\n{self.formatException(record.exc_info)}"
        return json.dumps(line, ensure_ascii=False, default=str)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """UTC, ISO 8601 with milliseconds: sortable and unambiguous across hosts."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def setup(level: str, secrets: Iterable[str], fmt: str = "text") -> None:
    """Configure the root logger once, at start (``fmt``: ``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
