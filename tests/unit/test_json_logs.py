"""LOG_FORMAT=json: one parseable object per record, naming the workspace and session, with
secrets scrubbed and tracebacks kept inside the line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bot.logs import JsonFormatter, RedactingFilter, correlation_id, session_id, team_id

SECRET = "hunter2-signing-secret"


@pytest.fixture
def log(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([SECRET]))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"storyloop.json.{request.node.name}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_object_with_every_field(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log
    logger.warning("job %s failed: %r", "j1", {"why": 'a "quoted"\nline'})
    (line,) = lines(stream)
    assert set(line) == {"time", "level", "logger", "message", "correlation_id", "team", "session"}
    assert line["level"] == "WARNING"
    assert line["logger"] == logger.name
    assert line["message"] == "job j1 failed: {'why': 'a \"quoted\"\\nline'}"
    assert line["correlation_id"] == "-"
    assert line["team"] is None and line["session"] is None
    assert line["time"].endswith("Z") and line["time"][10] == "T" and len(line["time"]) == 24


def test_context_names_the_workspace_session_and_correlation_id(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log
    tokens = (correlation_id.set("start:T1:s1#1"), team_id.set("T1"), session_id.set("s1"))
    try:
        logger.info("inside a job")
    finally:
        session_id.reset(tokens[2])
        team_id.reset(tokens[1])
        correlation_id.reset(tokens[0])
    logger.info("outside")
    inside, outside = lines(stream)
    assert (inside["team"], inside["session"], inside["correlation_id"]) == (
        "T1",
        "s1",
        "start:T1:s1#1",
    )
    assert (outside["team"], outside["session"]) == (None, None)


def test_secrets_and_tracebacks_stay_inside_one_clean_line(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = log
    try:
        raise RuntimeError(f"boom with {SECRET} and xoxb-1234567890-abcdefghij")
    except RuntimeError:
        logger.exception("call failed for %s", SECRET)
    text = stream.getvalue()
    assert text.count("\n") == 1  # the traceback's newlines are escaped inside the JSON
    assert SECRET not in text and "xoxb-1234567890" not in text
    (line,) = lines(stream)
    assert line["level"] == "ERROR"
    assert (
        "Traceback" in line["message"] and "RuntimeError: boom with [redacted]" in line["message"]
    )


def test_without_the_filter_the_traceback_is_still_kept() -> None:
    formatter = JsonFormatter()
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "oops", None, sys.exc_info())
    line = json.loads(formatter.format(record))
    assert line["message"].startswith("oops\nTraceback") and "ValueError: bad" in line["message"]
    assert line["correlation_id"] is None
