"""Log redaction: configured secrets and token-shaped strings never reach the output."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.logs import RedactingFilter, correlation_id

SECRET = "hunter2-signing-secret"
TOKENS = {
    "bot": "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
    "user": "xoxp-1234567890-0987654321-AbCdEfGhIjKl",
    "app": "xapp-1-A0123456-1234567890-abcdef0123",
    "openai": "sk-proj-AbCdEf0123456789_ghIJ-kl",
}
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"


class Captured:
    def __init__(self, logger: logging.Logger, stream: io.StringIO) -> None:
        self.logger = logger
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def log(request: pytest.FixtureRequest) -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([SECRET, "", "ab"]))
    handler.setFormatter(logging.Formatter("%(levelname)s [%(correlation_id)s] %(message)s"))
    logger = logging.getLogger(f"storyloop.test.{request.node.name}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield Captured(logger, stream)
    logger.handlers.clear()


def assert_clean(text: str) -> None:
    assert SECRET not in text
    for token in TOKENS.values():
        assert token not in text
        assert token[8:] not in text  # no tail of a token survives either
    assert "eyJhbGciOiJIUzI1NiJ9" not in text


def test_configured_secret_is_redacted_in_message_and_args(log: Captured) -> None:
    log.logger.info("secret is %s and again " + SECRET, SECRET)
    assert_clean(log.text)
    assert log.text.count("[redacted]") == 2
    assert "secret is" in log.text


@pytest.mark.parametrize("kind", sorted(TOKENS))
def test_token_shaped_strings_are_redacted(log: Captured, kind: str) -> None:
    log.logger.warning("calling with token=%s ok", TOKENS[kind])
    assert_clean(log.text)
    assert "token=[redacted] ok" in log.text


def test_bearer_header_is_redacted(log: Captured) -> None:
    log.logger.debug("headers: {'Authorization': '%s'}", BEARER)
    assert_clean(log.text)
    assert "Authorization" in log.text


def test_secrets_inside_an_exception_traceback_are_redacted(log: Captured) -> None:
    try:
        try:
            raise ValueError(f"bad token {TOKENS['bot']} for {SECRET}")
        except ValueError as inner:
            raise RuntimeError(f"wrapped {TOKENS['openai']} / {BEARER}") from inner
    except RuntimeError:
        log.logger.exception("request failed with %s", TOKENS["app"])
    assert "Traceback" in log.text
    assert "RuntimeError: wrapped [redacted]" in log.text
    assert "ValueError: bad token [redacted]" in log.text
    assert_clean(log.text)


def test_traceback_is_written_once(log: Captured) -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        log.logger.exception("boom")
    assert log.text.count("Traceback") == 1


def test_ordinary_text_is_left_alone(log: Captured) -> None:
    log.logger.info("sk-short xoxb- task-manager bearer of news %d%%", 50)
    assert log.text.strip().endswith("sk-short xoxb- task-manager bearer of news 50%")


def test_correlation_id_is_on_every_record(log: Captured) -> None:
    seen: list[str] = []

    class Spy(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(record.correlation_id)  # type: ignore[attr-defined]
            return True

    log.logger.handlers[0].addFilter(Spy())
    token = correlation_id.set("job:T0TEAM:abc")
    try:
        log.logger.info("inside a job")
    finally:
        correlation_id.reset(token)
    log.logger.info("outside")
    assert seen == ["job:T0TEAM:abc", "-"]
    assert "[job:T0TEAM:abc] inside a job" in log.text
    assert "[-] outside" in log.text


def test_short_and_empty_secrets_do_not_blank_the_log() -> None:
    assert RedactingFilter(["", "ab", SECRET]).secrets == [SECRET]
