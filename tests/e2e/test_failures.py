"""Failure paths end to end: the LLM misbehaves, and Slack only ever sees plain words.

Each test drives the real app (Socket Mode) against the Slack emulator and the fake LLM, makes
the LLM fail in one specific way (status errors, hangs, broken streams, unreadable or oversized
answers, a server without JSON-schema support) and checks what people in Slack see, what the
session in Redis says, and what reached the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

import bot.logs
from bot.pipeline.models import Session, Stage, Status, StoryVersion
from bot.slack.story_blocks import block_text_length
from tests.e2e.harness import (
    AppUnderTest,
    action_ids,
    app_env,
    block_text,
    by_slot,
    session_of,
    settings_from,
)
from tests.emulators.openai_server import FakeLLM, RecordedRequest
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.emulators.slack_state import MessageVersion, validate_blocks
from tests.support.redis_server import RedisServer

CHANNEL = "C0PUBLIC"
OWNER = "U0ALICE"
API_KEY = "sk-test-key-not-real-0000"  # harness.app_env's OPENAI_API_KEY
REVIEW_BUTTONS = ["story_approve", "story_regenerate"]

# Anything that would mean an exception or an upstream error body leaked into Slack.
RAW_ERROR_MARKERS = (
    "Traceback",
    "Error:",
    "Error code",
    "openai",
    "OpenAI",
    "httpx",
    "status 500",
    "status 429",
    "APIStatusError",
    "InternalServerError",
    "RateLimitError",
    "APITimeoutError",
    "RemoteProtocolError",
    "ValidationError",
    "JSONDecodeError",
    "Sorry about that",  # FakeLLM's 500 body
    "Rate limit reached",  # FakeLLM's 429 body
)
BLOCK_LIMIT_ERRORS = {
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_blocks_too_long",
    "msg_too_long",
    "too_many_blocks",
}
CANARY = "canary: bot token %s, api key %s"
_SCHEMA_NAME = re.compile(r"JSON schema name: (\w+)")


# --- running an app with its own settings ----------------------------------------------------


@contextlib.asynccontextmanager
async def running_app(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, **extra: str
) -> AsyncIterator[AppUnderTest]:
    """The real app in Socket Mode with extra environment settings; stopped on exit."""
    env = app_env(emu, llm, redis_server.url, mode="socket", **extra)
    running = await AppUnderTest(settings_from(env), redis_server.url).start()
    try:
        await emu.wait_connected()
        emu.mode = "socket"
        yield running
    finally:
        await running.stop(grace_s=2)


# --- Slack helpers ---------------------------------------------------------------------------


def current(emu: SlackEmulator, msg: StoredMessage) -> StoredMessage:
    found = emu.message(msg.channel, msg.ts)
    assert found is not None and not found.deleted, f"message {msg.ts} is gone"
    return found


async def start_session(
    emu: SlackEmulator, text: str = "30s eco water bottle launch"
) -> tuple[StoredMessage, StoredMessage]:
    """`/story` → (card, story message); the story message may still be a placeholder."""
    ack = await emu.slash_command(text, user=OWNER, channel=CHANNEL)
    assert ack.ok, ack.error
    card: StoredMessage = (await emu.wait_for(lambda: by_slot(emu, "card"), timeout=5))[-1]
    stories = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "story") if m.thread_ts == card.ts], timeout=5
    )
    story: StoredMessage = stories[0]
    return card, story


async def wait_story(
    emu: SlackEmulator,
    story: StoredMessage,
    predicate: Callable[[StoredMessage], bool],
    *,
    timeout: float = 10,
    what: str = "story message state",
) -> StoredMessage:
    await emu.wait_for(lambda: predicate(current(emu, story)), timeout=timeout, message=what)
    return current(emu, story)


async def wait_reviewable(
    emu: SlackEmulator, story: StoredMessage, *, what: str = "story in review", timeout: float = 10
) -> StoredMessage:
    """Wait until the story is in review, failing at once if a failure with Retry shows up."""
    settled = await wait_story(
        emu, story, lambda m: has_review_buttons(m) or has_retry(m), timeout=timeout, what=what
    )
    assert has_review_buttons(settled), f"expected {what}, got: {block_text(settled)}"
    return settled


def has_review_buttons(msg: StoredMessage) -> bool:
    # From v2 on a review message also has Versions (list, compare, restore).
    return [a for a in action_ids(msg) if a != "stage_versions"] == REVIEW_BUTTONS


def has_retry(msg: StoredMessage) -> bool:
    return action_ids(msg) == ["story_retry"]


def sid_of(msg: StoredMessage) -> str:
    sid = session_of(msg)
    assert sid, f"message {msg.ts} carries no session metadata"
    return sid


async def session(app: AppUnderTest, emu: SlackEmulator, msg: StoredMessage) -> Session:
    s = await app.session(emu.team_id, sid_of(msg))
    assert s is not None
    return s


async def versions(app: AppUnderTest, s: Session) -> list[StoryVersion]:
    assert app.runtime is not None
    return await app.runtime.worker.repo.all_versions(s)


def everything_shown(emu: SlackEmulator) -> list[str]:
    """Every text the bot ever showed: all versions of its messages, ephemerals, responses."""
    texts: list[str] = []
    for msg in emu.messages:
        if not msg.is_bot:
            continue
        texts += [block_text(v) for v in shown_versions(msg)]
    texts += [block_text(e) for e in emu.ephemerals]
    texts += [block_text(r) for r in emu.responses]
    return texts


def assert_no_raw_errors(emu: SlackEmulator) -> None:
    leaks = [
        (marker, text[:200])
        for text in everything_shown(emu)
        for marker in RAW_ERROR_MARKERS
        if marker in text
    ]
    assert leaks == [], f"raw error text reached Slack: {leaks}"


def shown_versions(msg: StoredMessage) -> list[StoredMessage | MessageVersion]:
    """A message as it is now plus every earlier version it was edited from."""
    return [msg, *msg.history]


def ever_offered_retry(emu: SlackEmulator) -> bool:
    """Whether any version of any bot message ever carried a Retry button."""
    return any(
        "story_retry" in str(version.blocks or "")
        for msg in emu.messages
        if msg.is_bot
        for version in shown_versions(msg)
    )


def block_limit_errors(emu: SlackEmulator) -> list[tuple[str, str | None, Any]]:
    return [(c.method, c.error, c.response) for c in emu.calls if c.error in BLOCK_LIMIT_ERRORS]


def failed_chat_calls(emu: SlackEmulator) -> list[tuple[str, str | None]]:
    return [(c.method, c.error) for c in emu.calls if c.method.startswith("chat.") and not c.ok]


# --- LLM helpers -----------------------------------------------------------------------------


def schema_of(request: RecordedRequest) -> str | None:
    body = request["json"] or {}
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return str((fmt.get("json_schema") or {}).get("name"))
    text = "\n".join(str(m.get("content", "")) for m in body.get("messages") or [])
    match = _SCHEMA_NAME.search(text)
    return match.group(1) if match else None


def format_of(request: RecordedRequest) -> str | None:
    fmt = (request["json"] or {}).get("response_format") or {}
    return fmt.get("type")


def story_requests(llm: FakeLLM) -> list[RecordedRequest]:
    return [r for r in llm.requests if schema_of(r) == "story"]


def feedback_requests(llm: FakeLLM) -> list[RecordedRequest]:
    return [r for r in llm.requests if schema_of(r) == "feedback_reply"]


def fail_llm(llm: FakeLLM, times: int = 3, status: int = 500) -> None:
    for _ in range(times):
        llm.enqueue_fault("status", status=status)


# --- logging helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def production_logging(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> Iterator[None]:
    """Root logging as ``bot.logs.setup`` configures it in production, at DEBUG.

    pytest's capture handler is kept *in front of* the production handler: it formats each
    record before the redacting filter rewrites it, so ``caplog.text`` is the raw output and
    stderr (``capsys``) is what production would write. Handlers and level are restored after.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    caplog.set_level(logging.DEBUG)
    bot.logs.setup("DEBUG", secrets)
    production = root.handlers[:]
    assert len(production) == 1
    root.handlers[:] = [caplog.handler, *production]
    try:
        yield
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def lines_with(lines: list[str], needles: list[str]) -> list[str]:
    return [line[:300] for line in lines if any(n in line for n in needles)]


# --- 1. the first story keeps failing ----------------------------------------------------------


async def test_first_story_failure_offers_retry_in_plain_words(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    fail_llm(llm, 3)
    card, story = await start_session(emu)
    failed = await wait_story(emu, story, has_retry, what="failure with Retry")
    text = block_text(failed)
    assert "⚠️" in text and "story writer" in text, text
    assert "Generating" not in text
    assert len(by_slot(emu, "story")) == 1 and failed.thread_ts == card.ts

    s = await session(app, emu, story)
    assert s.status is Status.FAILED and s.version == 0 and s.failed_op == "generate"
    assert s.failure and "story writer" in s.failure
    card_now = await emu.wait_for(
        lambda: "Retry" in block_text(current(emu, card)) and current(emu, card), timeout=5
    )
    card_text = block_text(card_now)
    assert "⚠️" in card_text and "story writer" in card_text, card_text
    assert len(story_requests(llm)) == 3 and llm.faults_pending() == 0
    assert_no_raw_errors(emu)

    ack = await emu.click(story.ts, "story_retry", user=OWNER)
    assert ack.ok
    shown = await wait_story(emu, story, has_review_buttons, what="story v1 after Retry")
    assert "Story v1" in block_text(shown) and "Scene 1" in block_text(shown)
    assert len(story_requests(llm)) == 3 + 1
    s = await session(app, emu, story)
    assert s.status is Status.AWAITING_REVIEW and s.version == 1
    assert s.failure is None and s.failed_op is None
    await emu.wait_for(lambda: "⚠️" not in block_text(current(emu, card)), timeout=5)
    assert "awaiting review" in block_text(current(emu, card))
    assert len(by_slot(emu, "story")) == 1
    assert_no_raw_errors(emu)


@pytest.mark.parametrize("text", ["try again", "regenerate the story"])
async def test_writing_try_again_after_a_failed_first_story_retries_it(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, text: str
) -> None:
    """Found as a new user: the reply used to get a chat answer. It retries, as Retry does."""
    fail_llm(llm, 3)
    card, story = await start_session(emu)
    await wait_story(emu, story, has_retry, what="failure with Retry")
    ts = await emu.user_posts(CHANNEL, text, user=OWNER, thread_ts=card.ts)
    shown = await wait_story(emu, story, has_review_buttons, what="story v1 after the reply")
    assert "Story v1" in block_text(shown)
    assert len(story_requests(llm)) == 3 + 1
    assert not by_slot(emu, f"reply:{ts}")  # the new story is the answer, not a chat message
    s = await session(app, emu, story)
    assert s.status is Status.AWAITING_REVIEW and s.answered_until == 1  # the reply counts
    assert_no_raw_errors(emu)


# --- 2. one transient failure is retried silently ----------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, "0.5"), (500, None)], ids=["429-retry-after", "500"]
)
async def test_one_transient_failure_is_retried_silently(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, status: int, retry_after: str | None
) -> None:
    if retry_after is None:
        llm.enqueue_fault("status", status=status)
    else:
        llm.enqueue_fault("status", status=status, retry_after=retry_after)
    _card, story = await start_session(emu)
    shown = await wait_reviewable(emu, story, what="story v1")
    assert "Story v1" in block_text(shown)

    requests = story_requests(llm)
    assert [r["fault"] for r in requests] == ["status", None]
    if retry_after is not None:  # the server's Retry-After wins over the 0.05 s backoff
        assert requests[1]["time"] - requests[0]["time"] >= float(retry_after) * 0.9
    s = await session(app, emu, story)
    assert s.status is Status.AWAITING_REVIEW and s.version == 1 and s.failure is None
    assert not ever_offered_retry(emu)
    assert not any("⚠️" in t for t in everything_shown(emu))
    assert_no_raw_errors(emu)


# --- 3. a hanging LLM times out into a failure, in bounded time --------------------------------


@pytest.mark.parametrize("how", ["hang-before-headers", "stall-after-headers"])
async def test_hanging_llm_times_out_into_retryable_failure(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis, how: str
) -> None:
    async with running_app(
        emu, llm, redis_server, STORYLOOP_LLM_TIMEOUT="1", STORYLOOP_LLM_ATTEMPTS="2"
    ) as app:
        if how == "hang-before-headers":
            for _ in range(2):
                llm.enqueue_fault("hang", seconds=30)
        else:  # the stream opens, then no token comes
            llm.set_latency(30.0, None)
        started = time.monotonic()
        card, story = await start_session(emu)
        # 2 attempts x 1 s timeout + backoff; far less than the 30 s hang.
        failed = await wait_story(emu, story, has_retry, timeout=8, what="timeout failure")
        elapsed = time.monotonic() - started
        assert elapsed < 5, elapsed
        text = block_text(failed)
        assert "took too long" in text and "Generating" not in text, text
        assert len(story_requests(llm)) == 2 and llm.faults_pending() == 0

        s = await session(app, emu, story)
        assert s.status is Status.FAILED and s.version == 0 and s.active_job is None
        await emu.wait_for(lambda: "Retry" in block_text(current(emu, card)), timeout=5)
        assert "Writing" not in block_text(current(emu, card))
        # Nothing late (a progress edit, a stale job) puts it back on "Generating…".
        await asyncio.sleep(1.0)
        assert has_retry(current(emu, story))
        assert "Generating" not in block_text(current(emu, story))
        assert_no_raw_errors(emu)

        llm.set_latency(0.0, None)
        await emu.click(story.ts, "story_retry", user=OWNER)
        shown = await wait_story(emu, story, has_review_buttons, what="story v1 after Retry")
        assert "Story v1" in block_text(shown)


# --- 4. unreadable structured output -------------------------------------------------------


@pytest.mark.parametrize("kind", ["malformed", "non_json", "empty"])
async def test_unreadable_story_fails_cleanly_and_thread_still_works(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, kind: str
) -> None:
    for _ in range(3):
        llm.enqueue_fault(kind)  # type: ignore[arg-type]
    card, story = await start_session(emu)
    failed = await wait_story(emu, story, has_retry, what=f"failure after 3x {kind}")
    assert "couldn't read" in block_text(failed), block_text(failed)
    assert len(story_requests(llm)) == 3

    s = await session(app, emu, story)
    assert s.version == 0 and s.status is Status.FAILED and s.stage is Stage.STORY
    assert s.story_message_ts == story.ts and s.thread_ts == card.ts
    assert await versions(app, s) == []
    assert app.runtime is not None
    repo = app.runtime.worker.repo
    assert await repo.session_for_thread(emu.team_id, CHANNEL, card.ts) == s.id

    ts = await emu.user_posts(CHANNEL, "make it funnier", user="U0BOB", thread_ts=card.ts)
    reply = (await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5))[0]
    assert reply.thread_ts == card.ts and "Got it" in block_text(reply)
    assert "<@U0BOB>" in block_text(reply)
    s = await session(app, emu, story)
    assert s.status is Status.FAILED and s.version == 0  # feedback doesn't hide the failure
    assert has_retry(current(emu, story))

    await emu.click(story.ts, "story_retry", user=OWNER)
    await wait_story(emu, story, has_review_buttons, what="story v1 after Retry")
    s = await session(app, emu, story)
    [v1] = await versions(app, s)
    assert v1.number == 1 and v1.feedback_ts == (ts,)  # the feedback given meanwhile is used
    assert_no_raw_errors(emu)


# --- 5. a stream cut off part-way is retried; the story is whole ----------------------------


async def test_midstream_disconnect_is_retried_and_story_is_whole(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    llm.enqueue_fault("disconnect_midstream", fraction=0.5)
    _card, story = await start_session(emu)
    shown = await wait_reviewable(emu, story, what="story v1")
    assert [r["fault"] for r in story_requests(llm)] == ["disconnect_midstream", None]

    s = await session(app, emu, story)
    assert s.version == 1 and s.status is Status.AWAITING_REVIEW
    [v1] = await versions(app, s)
    assert len(v1.story.scenes) == 4 and v1.story.total_duration_s == 30
    assert v1.story.narrative.endswith("answers the opening.")
    text = block_text(shown)
    assert "Story v1" in text and "characters so far" not in text
    for n in range(1, 5):
        assert f"Scene {n} " in text
    assert "answers the opening." in text
    assert len(by_slot(emu, "story")) == 1
    assert by_slot(emu, "story:", prefix=True) == []  # no continuation pages either
    assert not ever_offered_retry(emu)
    assert_no_raw_errors(emu)


# --- 6. a failed regeneration keeps v1 and offers Retry -------------------------------------


async def test_failed_regeneration_restores_v1_and_retry_makes_v2(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_session(emu)
    await wait_reviewable(emu, story, what="story v1")
    fail_llm(llm, 3)
    before = len(story_requests(llm))
    ack = await emu.click(story.ts, "story_regenerate", user=OWNER)
    assert ack.ok

    notices = await emu.wait_for(lambda: by_slot(emu, "fail:", prefix=True), timeout=10)
    assert len(notices) == 1
    notice = notices[0]
    assert notice.thread_ts == card.ts and has_retry(notice)
    assert "⚠️" in block_text(notice) and "story writer" in block_text(notice)
    shown = await wait_story(emu, story, has_review_buttons, what="v1 back in review")
    assert "Story v1" in block_text(shown) and "Regenerating" not in block_text(shown)
    assert any("Regenerating" in block_text(v) for v in shown.history)
    assert len(story_requests(llm)) == before + 3

    s = await session(app, emu, story)
    assert s.version == 1 and s.status is Status.FAILED and s.failed_op == "regenerate"
    assert [v.number for v in await versions(app, s)] == [1]
    await emu.wait_for(lambda: "Retry" in block_text(current(emu, card)), timeout=5)
    assert_no_raw_errors(emu)

    await emu.click(notice.ts, "story_retry", user=OWNER)
    updated = (await emu.wait_for(lambda: by_slot(emu, "notice:2"), timeout=10))[0]
    assert "Story updated to v2" in block_text(updated)
    shown = await wait_story(
        emu, story, lambda m: "Story v2" in block_text(m) and has_review_buttons(m)
    )
    assert len(by_slot(emu, "story")) == 1
    s = await session(app, emu, story)
    assert s.version == 2 and s.status is Status.AWAITING_REVIEW and s.failure is None
    assert [v.number for v in await versions(app, s)] == [1, 2]
    assert_no_raw_errors(emu)


async def test_a_notice_slack_failed_to_take_is_shown_by_the_jobs_retry(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    """v2 is committed, then Slack answers the notice's post with a 5xx: the job is retried
    (not finished without it) and its replay posts the notice — once."""
    _card, story = await start_session(emu)
    await wait_reviewable(emu, story, what="story v1")
    emu.fail_next("chat.postMessage", status=503)
    ack = await emu.click(story.ts, "story_regenerate", user=OWNER)
    assert ack.ok
    notice = (await emu.wait_for(lambda: by_slot(emu, "notice:2"), timeout=20))[0]
    assert "Story updated to v2" in block_text(notice)
    await wait_story(emu, story, lambda m: "Story v2" in block_text(m) and has_review_buttons(m))
    failed = [c for c in emu.calls_to("chat.postMessage") if c.status == 503]
    assert len(failed) == 1  # the notice's first try: Slack took nothing
    s = await session(app, emu, story)
    assert s.version == 2 and [v.number for v in await versions(app, s)] == [1, 2]
    await asyncio.sleep(0.5)
    assert len(by_slot(emu, "notice:2")) == 1
    assert_no_raw_errors(emu)


# --- 7. no JSON-schema support: json_object fallback ----------------------------------------


async def test_json_object_fallback_is_not_a_failed_attempt(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.llm.client")
    llm.supports_json_schema = False
    fail_llm(llm, 2)  # with the rejected json_schema request, that's 4 requests for 3 attempts
    _card, story = await start_session(emu)
    shown = await wait_reviewable(emu, story, what="story v1 via json_object")
    assert "Story v1" in block_text(shown) and "Scene 1" in block_text(shown)

    requests = story_requests(llm)
    assert [format_of(r) for r in requests] == [
        "json_schema",
        "json_object",
        "json_object",
        "json_object",
    ]
    assert [r["fault"] for r in requests] == [None, "status", "status", None]
    attempts = [r.getMessage() for r in caplog.records if "LLM attempt" in r.getMessage()]
    assert len(attempts) == 2 and all("/3 failed" in a for a in attempts), attempts
    assert not any("3/3" in a for a in attempts)
    assert not ever_offered_retry(emu)
    s = await session(app, emu, story)
    assert s.version == 1 and s.status is Status.AWAITING_REVIEW

    # The fallback is remembered: feedback asks for json_object straight away.
    ts = await emu.user_posts(CHANNEL, "make it funnier", thread_ts=s.thread_ts)
    reply = (await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5))[0]
    assert "Got it" in block_text(reply)
    assert [format_of(r) for r in feedback_requests(llm)] == ["json_object"]


# --- 8. an oversized answer fits Slack's limits -----------------------------------------------


async def test_oversized_story_respects_block_kit_limits(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    llm.enqueue_fault("oversized")
    card, story = await start_session(emu)
    shown = await wait_reviewable(emu, story, what="oversized story v1")
    assert "Story v1" in block_text(shown)
    # The card is updated after every page of the story is out.
    await emu.wait_for(lambda: "awaiting review" in block_text(current(emu, card)), timeout=5)
    assert block_limit_errors(emu) == []
    assert failed_chat_calls(emu) == []

    for msg in emu.bot_messages(CHANNEL):
        validate_blocks(msg.blocks)  # raises BlockError naming the broken rule
        assert len(msg.blocks or []) <= 50
        assert block_text_length(msg.blocks) <= 12_000
        assert len(msg.text) <= 4_000
    pages = by_slot(emu, "story:v1:p", prefix=True)
    assert all(p.thread_ts == card.ts for p in pages)
    assert all("continued" in block_text(p) for p in pages)
    assert all(not action_ids(p) for p in pages)  # buttons stay on the first message

    s = await session(app, emu, story)
    assert s.extra_message_ts == tuple(p.ts for p in pages)
    [v1] = await versions(app, s)
    assert abs(v1.story.total_duration_s - s.duration_s) <= 0.1 * s.duration_s
    whole = "\n".join(block_text(m) for m in [shown, *pages])
    # 40 scenes for 30 s: the 11 past the 29th share the last scene; nothing is cut.
    assert len(v1.story.scenes) == 30
    assert "Scene 1 " in whole and "Scene 30 " in whole and "Sunflower field" in whole
    assert "Part 40 of a very long story." in whole
    # The whole 60,000-character narrative is in the thread, across the pages.
    assert len(v1.story.narrative) == 60_000
    sections = [
        b["text"]["text"]
        for m in [shown, *pages]
        for b in m.blocks or []
        if b.get("type") == "section" and not b["text"]["text"].startswith(("*", "_"))
    ]
    squeezed = "".join("".join(sections).split())  # sections split at spaces
    assert squeezed == "".join(v1.story.narrative.split())
    assert_no_raw_errors(emu)


# --- 9. the feedback answer fails -----------------------------------------------------------


async def test_failed_feedback_answer_says_feedback_is_saved(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_session(emu)
    await wait_reviewable(emu, story, what="story v1")
    fail_llm(llm, 3)
    first = await emu.user_posts(CHANNEL, "make the lid the hero", user="U0BOB", thread_ts=card.ts)
    reply = (await emu.wait_for(lambda: by_slot(emu, f"reply:{first}"), timeout=10))[0]
    text = block_text(reply)
    assert reply.thread_ts == card.ts
    assert "saved" in text and "feedback" in text and "Got it" not in text, text
    assert len(feedback_requests(llm)) == 3 and llm.faults_pending() == 0
    assert not reply.blocks or not action_ids(reply)

    second = await emu.user_posts(CHANNEL, "and add a dog", user="U0CAROL", thread_ts=card.ts)
    answer = (await emu.wait_for(lambda: by_slot(emu, f"reply:{second}"), timeout=10))[0]
    assert "Got it" in block_text(answer) and "<@U0CAROL>" in block_text(answer)
    assert len(feedback_requests(llm)) == 4

    s = await session(app, emu, story)
    assert app.runtime is not None
    history = await app.runtime.worker.repo.history(s)
    assert [(t.role.value, t.ts) for t in history if t.role.value == "user"] == [
        ("user", first),
        ("user", second),
    ]
    assert s.version == 1 and s.status is Status.AWAITING_REVIEW
    assert has_review_buttons(current(emu, story))

    # "Saved" is true: the next version takes the unanswered reply into account too.
    await emu.click(story.ts, "story_regenerate", user=OWNER)
    await emu.wait_for(lambda: by_slot(emu, "notice:2"), timeout=10)
    v2 = (await versions(app, await session(app, emu, story)))[-1]
    assert v2.number == 2 and v2.feedback_ts == (first, second)
    assert_no_raw_errors(emu)


# --- 10. secrets never reach the logs -------------------------------------------------------


async def test_secrets_never_logged(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis_server: RedisServer,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    secrets = [emu.bot_token, emu.app_token, emu.signing_secret, API_KEY]
    settings_secrets = settings_from(app_env(emu, llm, redis_server.url, mode="socket")).secrets()
    assert sorted(settings_secrets) == sorted(secrets)

    with production_logging(caplog, settings_secrets):
        async with running_app(emu, llm, redis_server) as app:
            llm.enqueue_fault("status", status=500)
            card, story = await start_session(emu)
            await wait_reviewable(emu, story, what="story v1")
            ts = await emu.user_posts(CHANNEL, "more sparkle", user="U0BOB", thread_ts=card.ts)
            await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5)
            await emu.click(story.ts, "story_regenerate", user=OWNER)
            await emu.wait_for(lambda: by_slot(emu, "notice:2"), timeout=10)
            await emu.click(story.ts, "story_approve", user=OWNER)
            await emu.wait_for(lambda: by_slot(emu, "approved"), timeout=5)
            s = await session(app, emu, story)
            assert s.stage is Stage.REFERENCE_IMAGE
        # A control line proves the set-up: raw in caplog, scrubbed on stderr.
        logging.getLogger("tests.canary").debug(CANARY, emu.bot_token, API_KEY)

    scrubbed = capsys.readouterr().err.splitlines()
    raw = caplog.text.splitlines()
    canary = CANARY.split("%", 1)[0]
    [raw_canary] = lines_with(raw, [canary])
    assert emu.bot_token in raw_canary and API_KEY in raw_canary
    [scrubbed_canary] = lines_with(scrubbed, [canary])
    assert "[redacted]" in scrubbed_canary
    assert emu.bot_token not in scrubbed_canary and API_KEY not in scrubbed_canary
    scrubbed = [line for line in scrubbed if canary not in line]
    raw = [line for line in raw if canary not in line]
    # Both really captured the run at DEBUG, libraries included, and the LLM failure.
    for output in (scrubbed, raw):
        text = "\n".join(output)
        assert "LLM attempt 1/3 failed" in text
        assert "slack_sdk" in text and "DEBUG" in text
    leaked = lines_with(scrubbed, secrets)
    assert leaked == [], f"secrets in the production log output: {leaked}"
    raw_leaks = lines_with(raw, secrets)
    assert raw_leaks == [], f"secrets in unfiltered log records: {raw_leaks}"
