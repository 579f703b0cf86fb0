"""``bot/slack/streams.py`` on its own: the gateway and the real slack_sdk client against the
Slack emulator, with a dict for the ledger — the branches the end-to-end runs rarely reach."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.models import Session
from bot.slack import blocks
from bot.slack.gateway import SlackGateway
from bot.slack.mrkdwn import escape
from bot.slack.streams import STREAM_MARK
from tests.emulators.slack import SlackEmulator
from tests.emulators.slack_streams import APPEND_STREAM, START_STREAM, STOP_STREAM


class DictLedger:
    def __init__(self) -> None:
        self.slots: dict[str, str] = {}

    async def message_ts(self, session: Session, slot: str) -> str | None:
        return self.slots.get(slot)

    async def record_message(self, session: Session, slot: str, ts: str) -> str:
        return self.slots.setdefault(slot, ts)

    async def note_message(self, session: Session, slot: str, value: str) -> None:
        self.slots[slot] = value


@pytest.fixture
async def emu() -> AsyncIterator[SlackEmulator]:
    emulator = SlackEmulator()
    emulator.echo_bot_events = False
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def gateway(emu: SlackEmulator) -> SlackGateway:
    client = AsyncWebClient(token=emu.bot_token, base_url=emu.api_url, retry_handlers=[])
    return SlackGateway(client, DictLedger())


async def session_in_thread(emu: SlackEmulator, gateway: SlackGateway) -> tuple[Session, str]:
    root = await gateway.client.chat_postMessage(channel="C0PUBLIC", text="card")
    reply = await emu.user_posts("C0PUBLIC", "warmer", thread_ts=root["ts"], deliver=False)
    s = Session(
        id="s1",
        team_id=emu.team_id,
        channel_id="C0PUBLIC",
        owner_id="U0ALICE",
        prompt="a story",
        duration_s=30,
        created_at=0.0,
        updated_at=0.0,
        thread_ts=str(root["ts"]),
    )
    return s, reply


async def answer(
    gateway: SlackGateway, s: Session, after: str, slot: str, text: str, *, stream: bool = True
) -> str:
    shown = await gateway.open_answer(
        s,
        slot,
        recipient_id="U0ALICE",
        after_ts=after,
        draft=lambda partial: blocks.feedback_reply_draft(partial, ["U0ALICE"]),
        stream=stream,
    )
    for end in range(1, len(text) + 1, 7):
        await shown.show(text[:end])
    await shown.show(text)
    return await shown.finish(blocks.feedback_reply(text, ["U0ALICE"]))


def whole(emu: SlackEmulator, ts: str, text: str) -> bool:
    msg = emu.message("C0PUBLIC", ts)
    assert msg is not None
    shown = " ".join(str(b.get("text", {}).get("text", "")) for b in msg.blocks or [])
    return escape(text) in shown and (msg.metadata or {}).get("event_type") == (
        "storyloop_delivery"
    )


async def test_a_rate_limited_start_answers_by_edits_this_time_only(
    emu: SlackEmulator, gateway: SlackGateway
) -> None:
    s, reply = await session_in_thread(emu, gateway)
    emu.fail_next(START_STREAM, status=429, retry_after=30)
    ts = await answer(gateway, s, reply, "reply:1", "first & <b>")
    assert whole(emu, ts, "first & <b>") and not emu.streams.streams
    ts2 = await answer(gateway, s, reply, "reply:2", "second")
    assert ("C0PUBLIC", ts2) in emu.streams.streams  # streamed: the 429 wasn't remembered
    assert not emu.streams.is_streaming("C0PUBLIC", ts2) and whole(emu, ts2, "second")
    assert gateway.answers.refused == {}


@pytest.mark.parametrize(
    ("error", "remembered"), [("feature_not_enabled", True), ("channel_type_not_supported", False)]
)
async def test_only_a_workspace_refusal_is_remembered(
    error: str, remembered: bool, emu: SlackEmulator, gateway: SlackGateway
) -> None:
    s, reply = await session_in_thread(emu, gateway)
    emu.fail_next(START_STREAM, status=200, error=error)
    ts = await answer(gateway, s, reply, "reply:1", "first")
    assert whole(emu, ts, "first")
    await answer(gateway, s, reply, "reply:2", "second")
    assert len(emu.calls_to(START_STREAM)) == (1 if remembered else 2)
    assert (s.team_id in gateway.answers.refused) is remembered


async def test_a_slot_taken_by_another_worker_meanwhile_keeps_theirs(
    emu: SlackEmulator, gateway: SlackGateway
) -> None:
    s, reply = await session_in_thread(emu, gateway)
    theirs = await gateway.post_once(s, "other", blocks.ephemeral("theirs"), thread_ts=s.thread_ts)
    shown = await gateway.open_answer(
        s,
        "reply:1",
        recipient_id="U0ALICE",
        after_ts=reply,
        draft=lambda partial: blocks.feedback_reply_draft(partial, []),
    )
    ledger = gateway.ledger
    assert isinstance(ledger, DictLedger)
    ledger.slots["reply:1"] = theirs  # recorded while our startStream was on its way
    await shown.show("ours")
    assert await shown.finish(blocks.feedback_reply("ours, final", [])) == theirs
    [ours] = [ts for (_, ts) in emu.streams.streams]
    stored = emu.message("C0PUBLIC", ours)
    assert stored is not None and stored.deleted
    stops = emu.calls_to(STOP_STREAM)
    assert [c.params["ts"] for c in stops if c.ok] == [ours]  # ours ended; theirs isn't a stream
    assert whole(emu, theirs, "ours, final")


async def test_the_stream_mark_and_ts_are_recorded_before_any_append(
    emu: SlackEmulator, gateway: SlackGateway
) -> None:
    s, reply = await session_in_thread(emu, gateway)
    seen: list[dict[str, str]] = []
    ledger = gateway.ledger
    assert isinstance(ledger, DictLedger)
    shown = await gateway.open_answer(
        s,
        "reply:1",
        recipient_id="U0ALICE",
        after_ts=reply,
        draft=lambda partial: blocks.feedback_reply_draft(partial, []),
        reach=lambda point: seen.append(dict(ledger.slots)) if point == "mid_stream" else None,
    )
    gateway.answers.append_interval_s = 0.0
    await shown.show("one")
    await shown.show("one two")
    [at_append] = seen
    assert at_append["reply:1" + STREAM_MARK] == "1"
    assert at_append["reply:1"] == emu.calls_to(START_STREAM)[0].response["ts"]  # type: ignore[index]
    assert [c.params["markdown_text"] for c in emu.calls_to(APPEND_STREAM)] == [" two"]
    await shown.finish(blocks.feedback_reply("one two", []))


async def _open(gateway: SlackGateway, s: Session, after: str, **kwargs: object) -> None:
    await gateway.open_answer(
        s,
        "reply:1",
        recipient_id="U0ALICE",
        after_ts=after,
        draft=lambda partial: blocks.feedback_reply_draft(partial, []),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_first_answer_to_one_reply_does_not_look_in_slack_for_a_stream(
    emu: SlackEmulator, gateway: SlackGateway
) -> None:
    """The reply's intake set the mark (nothing streamed yet): a first attempt answering only
    this reply makes no ``conversations.replies`` call before it streams."""
    s, reply = await session_in_thread(emu, gateway)
    ledger = gateway.ledger
    assert isinstance(ledger, DictLedger)
    ledger.slots["reply:1" + STREAM_MARK] = "1"
    await _open(gateway, s, reply)
    assert emu.calls_to("conversations.replies") == []


async def test_a_retry_or_an_answer_to_several_replies_looks_for_a_begun_stream(
    emu: SlackEmulator, gateway: SlackGateway
) -> None:
    s, reply = await session_in_thread(emu, gateway)
    ledger = gateway.ledger
    assert isinstance(ledger, DictLedger)
    ledger.slots["reply:1" + STREAM_MARK] = "1"
    ledger.slots["reply:0" + STREAM_MARK] = "1"
    await _open(gateway, s, reply, recover=True)
    assert len(emu.calls_to("conversations.replies")) == 1
    await _open(gateway, s, reply, earlier=["reply:0"])
    assert len(emu.calls_to("conversations.replies")) == 2
