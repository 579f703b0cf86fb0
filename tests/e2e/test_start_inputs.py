"""Starting a story, end to end: `/story` text and the start modal, bad input, channels the app
is or isn't in, escaping of user text, Slack rate limits, HTTP request signing and ack speed.

Every refusal must be an answer the user can act on *and* must leave nothing behind: no job, no
session, no card, no LLM call.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.pipeline.triggers import session_id_for
from storage import keys
from tests.e2e.harness import AppUnderTest, action_ids, block_text, by_slot, session_of, slot_of
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import (
    AckResult,
    ApiCall,
    OpenedView,
    SlackEmulator,
    StoredMessage,
    post_signed,
    sign,
)
from tests.emulators.slack_payloads import (
    encode_http_body,
    slash_command_payload,
    view_submission_payload,
)

TEAM = "T0TEAM"
MAX_ACK_S = 1.0
# The duration bounds the app accepts (bot/pipeline/request.py); a started session stays inside.
MIN_S, MAX_S = 5, 180
HOSTILE = "<!channel> <!here> <!everyone> <!subteam^S1> <@U0BOB> & <https://evil|click>"


# --- small helpers ------------------------------------------------------------------------------


async def session_keys(redis: Redis) -> list[str]:
    """Every per-workspace key: sessions, their ledgers and the intake's dedupe marks."""
    return sorted(str(k) for k in await redis.keys(f"sl:t:{TEAM}:*"))


async def assert_nothing_started(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, *, settle_s: float = 0.3
) -> None:
    """No job, no session, no card, no LLM call — checked after the worker had time to act."""
    await asyncio.sleep(settle_s)
    assert await session_keys(redis) == []
    assert sum([await redis.xlen(s) for s in keys.JOB_STREAMS]) == 0
    assert emu.bot_messages() == []
    assert llm.requests == []


def last_trigger_id(emu: SlackEmulator) -> str:
    return str(emu.deliveries[-1].payload["trigger_id"])


async def wait_card(emu: SlackEmulator, channel: str = "C0PUBLIC") -> StoredMessage:
    cards = await emu.wait_for(lambda: by_slot(emu, "card", channel=channel), timeout=5)
    return cards[-1]  # type: ignore[no-any-return]


async def wait_story(emu: SlackEmulator, card: StoredMessage) -> StoredMessage:
    """The story message in the card's thread, once it shows its review buttons."""

    def ready() -> list[StoredMessage]:
        return [
            m
            for m in by_slot(emu, "story", channel=card.channel)
            if m.thread_ts == card.ts and "story_approve" in action_ids(m)
        ]

    return (await emu.wait_for(ready, timeout=10))[0]  # type: ignore[no-any-return]


async def start_ok(
    emu: SlackEmulator, text: str, *, channel: str = "C0PUBLIC"
) -> tuple[StoredMessage, StoredMessage]:
    ack = await emu.slash_command(text, channel=channel)
    assert ack.ok and ack.seconds < MAX_ACK_S, ack
    card = await wait_card(emu, channel)
    return card, await wait_story(emu, card)


def bot_texts(emu: SlackEmulator) -> list[str]:
    """Everything the app showed anyone: messages (every version), ephemerals, response_urls."""
    texts: list[str] = []
    for msg in emu.messages:
        if msg.is_bot:
            texts += [block_text(msg), *(block_text(v) for v in msg.history)]
    texts += [block_text(e) for e in emu.ephemerals]
    texts += [block_text(r) for r in emu.responses]
    return texts


def call_slot(call: ApiCall) -> str | None:
    meta = call.params.get("metadata")
    if isinstance(meta, str):
        meta = json.loads(meta)
    payload = (meta or {}).get("event_payload") or {}
    return str(payload["slot"]) if payload.get("slot") else None


async def open_modal(emu: SlackEmulator, channel: str = "C0PUBLIC") -> OpenedView:
    ack = await emu.slash_command("", channel=channel)
    assert ack.ok and ack.seconds < MAX_ACK_S, ack
    assert not ack.get("text"), ack  # the modal is the answer; no ephemeral on top
    views = await emu.wait_for(lambda: emu.views_opened, timeout=3)
    return views[-1]  # type: ignore[no-any-return]


def modal_values(
    prompt: str | None, duration: str | None = "45", tone: str | None = None
) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {}
    if prompt is not None:
        values["prompt_block"] = {"prompt_input": {"type": "plain_text_input", "value": prompt}}
    if duration is not None:
        values["duration_block"] = {
            "duration_select": {"type": "static_select", "selected_option": {"value": duration}}
        }
    values["tone_block"] = {"tone_input": {"type": "plain_text_input", "value": tone}}
    return values


async def submit_raw_state(emu: SlackEmulator, view: OpenedView, state_values: Any) -> AckResult:
    """A view submission whose ``state.values`` is exactly ``state_values`` (forged shapes)."""
    payload = view_submission_payload(
        team_id=emu.team_id,
        app_id=emu.app_id,
        bot_id=emu.bot_id,
        user_id="U0ALICE",
        user_name="alice",
        trigger_id=f"raw.{time.monotonic_ns()}",
        view=view.view,
        state_values=state_values,
    )
    return await emu.click_raw(payload)


async def assert_refused_or_sane(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest, ack: AckResult, prompt: str
) -> None:
    """A malformed submission was acked; it either shows field errors and starts nothing, or
    starts a well-formed session (a valid duration and the prompt as typed)."""
    assert ack.ok, ack
    if ack.get("response_action") == "errors":
        assert isinstance(ack.get("errors"), dict) and ack["errors"], ack
        await assert_nothing_started(emu, llm, redis)
        return
    card = await wait_card(emu)
    sid = session_of(card)
    assert sid is not None
    session = await app.session(TEAM, sid)
    assert session is not None
    assert MIN_S <= session.duration_s <= MAX_S, session
    assert session.prompt == prompt


def slash_form(
    emu: SlackEmulator, text: str, *, trigger_id: str, channel: str = "C0PUBLIC"
) -> bytes:
    payload = slash_command_payload(
        command="/story",
        text=text,
        user_id="U0ALICE",
        user_name="alice",
        channel_id=channel,
        channel_name="story-public",
        team_id=emu.team_id,
        app_id=emu.app_id,
        response_url=f"{emu.base_url}/response/forged",
        trigger_id=trigger_id,
    )
    body, content_type = encode_http_body("slash_commands", payload)
    assert content_type == "application/x-www-form-urlencoded"
    return body


async def post_unsigned(url: str, body: bytes) -> int:
    """POST without any Slack signature headers."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status


# --- 1. the start modal ---------------------------------------------------------------------------


async def test_no_text_opens_modal_and_submission_starts_story(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    view = await open_modal(emu)
    assert emu.calls_to("views.open")[-1].ok
    assert view.view["callback_id"] == "story_start_modal"
    assert view.view["private_metadata"] == "C0PUBLIC"
    assert emu.bot_messages() == [] and llm.requests == []  # opening the modal starts nothing

    ack = await emu.submit_view(
        view, modal_values("a lighthouse keeper adopts a seal", "45", "playful and warm")
    )
    assert ack.ok and ack.seconds < MAX_ACK_S, ack
    assert ack.get("response_action") is None, ack
    assert view.closed

    card = await wait_card(emu)
    card_text = block_text(card)
    assert "<@U0ALICE>" in card_text and "a lighthouse keeper adopts a seal" in card_text
    assert "45 s" in card_text and "Tone: playful and warm" in card_text
    story = await wait_story(emu, card)
    assert "target 45 s" in block_text(story)

    session = await app.session(TEAM, session_id_for(TEAM, view.id))
    assert session is not None
    assert (session.duration_s, session.tone, session.channel_id) == (
        45,
        "playful and warm",
        "C0PUBLIC",
    )
    asked = str(llm.requests[0]["json"])
    assert "Target duration: 45 seconds" in asked and "Tone: playful and warm" in asked


WORDLESS = ["", "   ", "🎉🚀✨", "👍🏽 🔥"]


@pytest.mark.parametrize("prompt", WORDLESS)
async def test_modal_without_words_is_refused_and_starts_nothing(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest, prompt: str
) -> None:
    view = await open_modal(emu)
    ack = await emu.submit_view(view, modal_values(prompt, "45"))
    assert ack.ok, ack
    assert ack.get("response_action") == "errors", ack
    (message,) = ack["errors"].values()
    assert "about" in message or "emoji" in message, message  # says what's wrong
    assert len(message) <= 150  # Slack's limit for a field error
    assert not view.closed  # the user fixes the field in place
    await assert_nothing_started(emu, llm, redis)


@pytest.mark.parametrize("prompt", WORDLESS)
async def test_modal_without_words_error_is_on_the_prompt_field(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, prompt: str
) -> None:
    view = await open_modal(emu)
    ack = await emu.submit_view(view, modal_values(prompt, "45"))
    assert ack.get("response_action") == "errors", ack
    assert set(ack["errors"]) == {"prompt_block"}, ack


@pytest.mark.parametrize(
    ("values", "field"),
    [
        pytest.param(modal_values("x" * 2001, "45"), "prompt_block", id="prompt-2001-chars"),
        pytest.param(modal_values("a quiz show", "45", "t" * 101), "tone_block", id="tone-101"),
        pytest.param(modal_values("a quiz show", "9999"), "duration_block", id="duration-9999"),
    ],
)
async def test_modal_field_errors_name_the_field(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis: Redis,
    app: AppUnderTest,
    values: dict[str, dict[str, Any]],
    field: str,
) -> None:
    view = await open_modal(emu)
    ack = await emu.submit_view(view, values)
    assert ack.ok, ack
    assert ack.get("response_action") == "errors", ack
    assert set(ack["errors"]) == {field}, ack
    await assert_nothing_started(emu, llm, redis)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({}, id="no-blocks"),
        pytest.param(modal_values(None, "45", "calm"), id="no-prompt-block"),
        pytest.param({"prompt_block": {}}, id="empty-prompt-block"),
        pytest.param(
            {"prompt_block": {"prompt_input": {"type": "plain_text_input"}}}, id="no-value"
        ),
    ],
)
async def test_modal_missing_prompt_is_refused(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis: Redis,
    app: AppUnderTest,
    values: dict[str, dict[str, Any]],
) -> None:
    view = await open_modal(emu)
    ack = await emu.submit_view(view, values)
    assert ack.ok, ack
    assert ack.get("response_action") == "errors" and ack["errors"], ack
    await assert_nothing_started(emu, llm, redis)


@pytest.mark.parametrize(
    "duration",
    [
        pytest.param("abc", id="letters"),
        pytest.param("9999", id="too-long"),
        pytest.param("0", id="zero"),
        pytest.param("-30", id="negative"),
        pytest.param("30.5", id="decimal"),
        pytest.param("", id="empty"),
        pytest.param(None, id="no-duration-block"),
        pytest.param(
            "²",
            id="superscript-digit",
        ),
    ],
)
async def test_modal_garbage_duration_never_crashes(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis: Redis,
    app: AppUnderTest,
    duration: str | None,
) -> None:
    emu.ack_timeout = 2.0  # a crash means no ack at all; don't wait Slack's full 3 s for it
    view = await open_modal(emu)
    ack = await emu.submit_view(view, modal_values("a robot learns to paint", duration))
    await assert_refused_or_sane(emu, llm, redis, app, ack, "a robot learns to paint")


async def test_modal_selected_option_of_wrong_type_never_crashes(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest
) -> None:
    view = await open_modal(emu)
    values = modal_values("a robot learns to paint", None)
    values["duration_block"] = {
        "duration_select": {"type": "static_select", "selected_option": "45"}
    }
    ack = await emu.submit_view(view, values)
    await assert_refused_or_sane(emu, llm, redis, app, ack, "a robot learns to paint")


@pytest.mark.parametrize(
    "state_values",
    [
        pytest.param({"prompt_block": "a robot learns to paint"}, id="block-is-string"),
        pytest.param(["prompt_block"], id="values-is-list"),
    ],
)
async def test_modal_forged_state_shapes_never_crash(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest, state_values: Any
) -> None:
    emu.ack_timeout = 2.0
    view = await open_modal(emu)
    ack = await submit_raw_state(emu, view, state_values)
    assert ack.ok, ack
    assert ack.get("response_action") == "errors", ack
    await assert_nothing_started(emu, llm, redis)


# --- 2. bad `/story` input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("x" * 2001, ("2,000", "2,001", "Shorten"), id="prompt-2001-chars"),
        pytest.param("30s " + "y" * 2001, ("2,000", "Shorten"), id="duration-and-2001-chars"),
        pytest.param("4s x", ("5 s", "180 s", "4 s", "/story"), id="4s-too-short"),
        pytest.param("181s x", ("5 s", "180 s", "181 s", "/story"), id="181s-too-long"),
        pytest.param("1.5m x", ("1.5m", "15s", "/story"), id="unreadable-duration"),
        pytest.param("30s", ("Add a prompt", "/story"), id="duration-only"),
        pytest.param("🎉🚀✨", ("emoji", "/story"), id="unicode-emoji-only"),
        pytest.param("45s 🎬 🍿", ("emoji", "/story"), id="duration-and-emoji"),
        pytest.param(
            ":tada: :rocket:",
            ("emoji", "/story"),
            id="slack-emoji-shortcodes-only",
        ),
    ],
)
async def test_bad_command_text_is_answered_and_starts_nothing(
    emu: SlackEmulator,
    llm: FakeLLM,
    redis: Redis,
    app: AppUnderTest,
    text: str,
    expected: tuple[str, ...],
) -> None:
    ack = await emu.slash_command(text)
    assert ack.ok and ack.seconds < MAX_ACK_S, ack
    assert ack.get("response_type") == "ephemeral", ack
    answer = str(ack.get("text", ""))
    for phrase in expected:
        assert phrase in answer, (phrase, answer)
    assert [e.text for e in emu.ephemerals_for("U0ALICE")] == [answer]
    assert emu.views_opened == []
    await assert_nothing_started(emu, llm, redis)


async def test_story_in_a_dm_says_to_use_a_channel(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest
) -> None:
    ack = await emu.slash_command("30s eco water bottle launch", channel="D0DM")
    assert ack.ok and ack.seconds < MAX_ACK_S, ack
    assert ack.get("response_type") == "ephemeral", ack
    answer = str(ack.get("text", ""))
    assert "channel" in answer and "/story" in answer and "/invite" in answer, answer
    await assert_nothing_started(emu, llm, redis)
    assert emu.calls_to("chat.postMessage") == []


async def test_modal_in_a_dm_is_not_opened_or_started(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest
) -> None:
    ack = await emu.slash_command("", channel="D0DM")
    assert ack.ok and ack.get("response_type") == "ephemeral", ack
    assert "channel" in str(ack.get("text", ""))
    await assert_nothing_started(emu, llm, redis)
    assert emu.views_opened == []


# --- 3. channels the app is not in ---------------------------------------------------------------


async def test_private_channel_without_bot_asks_for_invite(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    ack = await emu.slash_command("30s eco water bottle launch", channel="C0PRIVNO")
    assert ack.ok and ack.seconds < MAX_ACK_S, ack
    sid = session_id_for(TEAM, last_trigger_id(emu))

    told = await emu.wait_for(lambda: [r for r in emu.responses if "/invite" in r.text], 5)
    assert told[0].status == 200
    assert told[0].body.get("response_type") == "ephemeral"
    assert "/story" in told[0].text and "private channel" in told[0].text

    async def settled() -> bool:
        s = await app.session(TEAM, sid)
        return s is not None and s.active_job is None

    await emu.wait_for(settled, timeout=5)
    session = await app.session(TEAM, sid)
    assert session is not None and session.status.value == "unpostable", session
    assert session.thread_ts is None
    await asyncio.sleep(0.5)  # a job that got retried would tell the user again
    assert len(emu.responses) == 1
    assert emu.bot_messages() == [] and llm.requests == []
    assert not emu.channels["C0PRIVNO"].bot_is_member


async def test_public_channel_not_joined_is_joined_automatically(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_ok(emu, "30s eco water bottle launch", channel="C0NOTJOINED")
    joins = [c for c in emu.calls_to("conversations.join") if c.ok]
    assert [c.params.get("channel") for c in joins] == ["C0NOTJOINED"]
    assert emu.channels["C0NOTJOINED"].bot_is_member
    assert "eco water bottle launch" in block_text(card)
    assert story.channel == "C0NOTJOINED" and story.thread_ts == card.ts
    assert len(by_slot(emu, "card")) == 1 and emu.ephemerals == [] and emu.responses == []


# --- 4. escaping -------------------------------------------------------------------------------


async def test_hostile_prompt_and_feedback_are_shown_literally(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_ok(emu, f"30s {HOSTILE}")
    card_text = block_text(card)
    for literal in (
        "&lt;!channel&gt;",
        "&lt;!here&gt;",
        "&lt;!everyone&gt;",
        "&lt;!subteam^S1&gt;",
        "&lt;@U0BOB&gt;",
        " &amp; ",
        "&lt;https://evil|click&gt;",
    ):
        assert literal in card_text, (literal, card_text)
    # The fake LLM titles the story after the brief's first 40 characters: it echoed them.
    assert "<!channel>" in str(llm.requests[0]["json"])
    assert "Storyloop: &lt;!channel&gt; &lt;!here&gt;" in block_text(story)

    ts = await emu.user_posts(
        "C0PUBLIC",
        "<!channel> <!here> shout it, ping <@U0BOB> too",
        user="U0CAROL",
        thread_ts=card.ts,
    )
    reply = (await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5))[0]
    reply_text = block_text(reply)
    assert "&lt;!channel&gt; &lt;!here&gt; shout it" in reply_text, reply_text
    assert "<@U0CAROL>" in reply_text  # the one mention the app means

    assert emu.unescaped_broadcasts() == []
    for text in bot_texts(emu):
        assert "<@U0BOB>" not in text, text
        assert "<https://evil" not in text, text


# --- 5. Slack rate limits ------------------------------------------------------------------------


async def test_rate_limited_card_post_is_retried_after_retry_after(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    emu.fail_next("chat.postMessage", status=429, retry_after=1)
    ack = await emu.slash_command("30s eco water bottle launch")
    assert ack.ok and ack.seconds < MAX_ACK_S, ack
    card = await wait_card(emu)
    await wait_story(emu, card)

    card_calls = [c for c in emu.calls_to("chat.postMessage") if call_slot(c) == "card"]
    assert [c.status for c in card_calls] == [429, 200], card_calls
    assert card_calls[1].at - card_calls[0].at >= 0.95  # waited for Retry-After: 1
    assert card_calls[1].ok
    assert len(by_slot(emu, "card")) == 1
    assert len([m for m in emu.bot_messages("C0PUBLIC") if slot_of(m) == "card"]) == 1
    assert emu.ephemerals == [] and emu.responses == []


# --- 6. HTTP mode: request signing --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["http"], indirect=True)
async def test_http_rejects_unsigned_forged_and_stale_requests(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, app: AppUnderTest
) -> None:
    url, secret = app.events_url, emu.signing_secret
    now = int(time.time())

    body = slash_form(emu, "30s forged one", trigger_id="forged.1")
    status, _ = await post_signed(url, body, "application/x-www-form-urlencoded", secret="wrong")
    assert status == 401

    body = slash_form(emu, "30s forged two", trigger_id="forged.2")
    status, _ = await post_signed(
        url, body, "application/x-www-form-urlencoded", secret=secret, signature="v0=" + "0" * 64
    )
    assert status == 401

    body = slash_form(emu, "30s forged three", trigger_id="forged.3")
    assert await post_unsigned(url, body) == 401

    body = slash_form(emu, "30s forged four", trigger_id="forged.4")
    stale = now - 6 * 60
    status, _ = await post_signed(
        url,
        body,
        "application/x-www-form-urlencoded",
        secret=secret,
        timestamp=stale,
        signature=sign(secret, stale, body),  # a genuine signature, replayed too late
    )
    assert status == 401

    await assert_nothing_started(emu, llm, redis, settle_s=0.5)
    assert emu.ephemerals == [] and emu.responses == []


@pytest.mark.parametrize("mode", ["http"], indirect=True)
async def test_http_url_verification_and_signed_story(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    challenge = await emu.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    assert challenge.ok and challenge.status == 200, challenge
    assert challenge.get("challenge") == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"

    body = slash_form(emu, "30s signed by hand", trigger_id="signed.1")
    started = time.monotonic()
    status, text = await post_signed(
        app.events_url, body, "application/x-www-form-urlencoded", secret=emu.signing_secret
    )
    assert status == 200 and time.monotonic() - started < MAX_ACK_S, (status, text)
    card = await wait_card(emu)
    assert "signed by hand" in block_text(card)
    assert session_of(card) == session_id_for(TEAM, "signed.1")

    ack = await emu.slash_command("1m signed by the emulator")
    assert ack.ok and ack.status == 200 and ack.seconds < MAX_ACK_S, ack
    await emu.wait_for(lambda: len(by_slot(emu, "card")) == 2, timeout=5)


# --- 7. ack speed under load ---------------------------------------------------------------------


async def test_twenty_concurrent_commands_ack_fast_and_all_start(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    acks = await asyncio.gather(
        *(
            emu.slash_command(f"30s concurrent story number {i}", user=f"U0USER{i:02d}")
            for i in range(20)
        )
    )
    assert all(a.ok for a in acks), [a for a in acks if not a.ok]
    assert all(not a.get("text") for a in acks), acks
    slowest = max(a.seconds for a in acks)
    assert slowest < MAX_ACK_S, slowest

    cards = await emu.wait_for(lambda: len(by_slot(emu, "card")) >= 20 and by_slot(emu, "card"), 30)
    assert len({session_of(c) for c in cards}) == 20
    assert len({c.ts for c in cards}) == 20
    prompts = {i for i in range(20) if any(f"number {i}”" in block_text(c) for c in cards)}
    assert prompts == set(range(20))
