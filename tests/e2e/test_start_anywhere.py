"""Starting a story from anywhere, end to end in both connection modes: a mention in a channel,
the global "New story" shortcut and the "Turn into a story" message shortcut.

Each must answer as `/story` does — the same session, the same refusals — and Slack's habits
must not make two of anything: a mention arrives as both ``app_mention`` and ``message``, and an
unacked event comes again. Refusals (no prompt, a bad duration, a DM, another workspace) are
private answers that leave nothing behind: no job, no session, no card, no LLM call.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.pipeline.triggers import session_id_for
from storage import keys
from tests.e2e.harness import AppUnderTest, action_ids, block_text, by_slot, session_of
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import AckResult, OpenedView, SlackEmulator, StoredMessage
from tests.emulators.slack_payloads import slash_command_payload
from tests.emulators.slack_shortcuts import mention_from

TEAM = "T0TEAM"
OTHER_TEAM = "T0OTHER"
BOT = "<@U0BOT>"
MAX_ACK_S = 1.0
BOTH_MODES = pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)


# --- helpers ------------------------------------------------------------------------------------


async def assert_nothing_recorded(
    emu: SlackEmulator, llm: FakeLLM, redis: Redis, *, settle_s: float = 0.3
) -> None:
    """No job, no session, no card, no LLM call, in any workspace's keys."""
    await asyncio.sleep(settle_s)
    assert sorted(await redis.keys("sl:t:*")) == []
    assert sum([await redis.xlen(s) for s in keys.JOB_STREAMS]) == 0
    assert emu.bot_messages() == []
    assert llm.requests == []


def acks_for(emu: SlackEmulator, ts: str) -> list[tuple[str, AckResult]]:
    """Every delivery of the events about the message ``ts``: (event type, ack)."""
    return [
        (str(d.payload["event"]["type"]), d.result)
        for d in emu.deliveries
        if isinstance(d.payload.get("event"), dict) and d.payload["event"].get("ts") == ts
    ]


def assert_fast_acks(emu: SlackEmulator, ts: str, kinds: list[str]) -> None:
    acks = acks_for(emu, ts)
    assert sorted(kind for kind, _ in acks) == sorted(kinds), acks
    assert all(ack.ok and ack.seconds < MAX_ACK_S for _, ack in acks), acks


async def wait_ready_story(emu: SlackEmulator, channel: str, root: str) -> StoredMessage:
    """The story in the thread ``root``, once it shows its review buttons."""

    def ready() -> list[StoredMessage]:
        return [
            m
            for m in by_slot(emu, "story", channel=channel)
            if m.thread_ts == root and "story_approve" in action_ids(m)
        ]

    return (await emu.wait_for(ready, timeout=10))[0]  # type: ignore[no-any-return]


async def wait_answer(emu: SlackEmulator, reply_ts: str) -> StoredMessage:
    """The app's answer to the thread reply ``reply_ts``."""
    answers = await emu.wait_for(lambda: by_slot(emu, f"reply:{reply_ts}"), timeout=5)
    return answers[0]  # type: ignore[no-any-return]


async def wait_hint(emu: SlackEmulator, user: str = "U0ALICE") -> str:
    """The one ephemeral the user got, as Slack shows it (entities decoded)."""
    shown = await emu.wait_for(lambda: emu.ephemerals_for(user), timeout=3)
    await asyncio.sleep(0.2)  # a second one would be a bug: give it the time to show up
    assert len(emu.ephemerals_for(user)) == 1, emu.ephemerals_for(user)
    return html.unescape(shown[0].text)


async def wait_view(emu: SlackEmulator) -> OpenedView:
    views = await emu.wait_for(lambda: emu.views_opened, timeout=3)
    return views[-1]  # type: ignore[no-any-return]


def view_block(view: OpenedView, block_id: str) -> dict[str, Any] | None:
    return next((b for b in view.view["blocks"] if b.get("block_id") == block_id), None)


def modal_values(prompt: str, channel: str | None = None) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {
        "prompt_block": {"prompt_input": {"type": "plain_text_input", "value": prompt}},
        "duration_block": {
            "duration_select": {"type": "static_select", "selected_option": {"value": "45"}}
        },
    }
    if channel is not None:
        values["channel_block"] = {
            "channel_select": {"type": "conversations_select", "selected_conversation": channel}
        }
    return values


# --- mentions -----------------------------------------------------------------------------------


@BOTH_MODES
async def test_mention_starts_a_session_threaded_on_the_mention(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    ts = await emu.user_posts("C0PUBLIC", f"{BOT} 45s a launch video for our refillable bottle")
    # Slack sends it twice (app_mention + message); both are acked at once.
    assert_fast_acks(emu, ts, ["app_mention", "message"])

    story = await wait_ready_story(emu, "C0PUBLIC", ts)
    thread = emu.thread("C0PUBLIC", ts)
    assert thread[0].ts == ts and not thread[0].is_bot  # the mention is the thread's root
    card = thread[1]
    assert (card.is_bot, session_of(card)) == (True, session_of(story))
    assert by_slot(emu, "card") == [card]  # the card is the first reply, and the only card
    card_text = block_text(card)
    assert "a launch video for our refillable bottle" in card_text and "45 s" in card_text
    assert BOT not in block_text(story) and BOT not in card_text

    sid = session_id_for(TEAM, f"C0PUBLIC:{ts}")
    assert session_of(card) == sid
    session = await app.session(TEAM, sid)
    assert session is not None
    assert (session.thread_ts, session.card_ts, session.channel_id) == (ts, card.ts, "C0PUBLIC")
    assert (session.duration_s, session.owner_id) == (45, "U0ALICE")
    assert emu.ephemerals == []

    # Slack redelivers the app_mention (its ack "timed out"): the same session, nothing new.
    mention = next(
        d for d in emu.deliveries if (d.payload.get("event") or {}).get("type") == "app_mention"
    )
    again = await emu.deliver_event(mention.payload, retry_attempt=1, retry_reason="timeout")
    assert again.ok
    await asyncio.sleep(0.5)
    assert by_slot(emu, "card") == [card] and len(by_slot(emu, "story")) == 1
    assert len(llm.requests) == 1  # one story written, once

    # Replies in that thread are feedback, answered there once each (one after the other:
    # replies arriving while an answer is written are answered together).
    plain = await emu.user_posts("C0PUBLIC", "shorter intro please", user="U0BOB", thread_ts=ts)
    assert (await wait_answer(emu, plain)).thread_ts == ts
    mentioned = await emu.user_posts(
        "C0PUBLIC", f"{BOT} and end on the refill station", user="U0CAROL", thread_ts=ts
    )
    assert_fast_acks(emu, mentioned, ["app_mention", "message"])
    assert (await wait_answer(emu, mentioned)).thread_ts == ts
    await asyncio.sleep(0.5)
    assert len(by_slot(emu, f"reply:{mentioned}")) == 1
    assert by_slot(emu, "card") == [card]
    assert emu.ephemerals == []


@BOTH_MODES
async def test_mention_without_a_prompt_gets_a_private_hint(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, redis: Redis
) -> None:
    ts = await emu.user_posts("C0PUBLIC", f"  {BOT}   ")
    assert_fast_acks(emu, ts, ["app_mention", "message"])
    hint = await wait_hint(emu)
    assert "Mention me with what the story is about" in hint and "`@storyloop 30s" in hint
    eph = emu.ephemerals_for("U0ALICE")[0]
    assert (eph.channel, eph.thread_ts) == ("C0PUBLIC", None)
    await assert_nothing_recorded(emu, llm, redis)


@BOTH_MODES
async def test_mention_with_a_bad_duration_is_refused_like_story(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, redis: Redis
) -> None:
    ts = await emu.user_posts("C0PUBLIC", f"{BOT} 500s a launch video")
    assert_fast_acks(emu, ts, ["app_mention", "message"])
    hint = await wait_hint(emu)
    assert "between 5 s and 180 s" in hint and "500 s" in hint
    # Word for word what `/story` answers to the same text.
    ack = await emu.slash_command("500s a launch video", user="U0BOB")
    assert ack.ok and hint == ack["text"]
    await assert_nothing_recorded(emu, llm, redis)


@BOTH_MODES
async def test_mention_in_threads_feedback_or_hint(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    """A mention in a session's thread is feedback; in any other thread, a hint."""
    ack = await emu.slash_command("30s eco water bottle launch")
    assert ack.ok
    card = (await emu.wait_for(lambda: by_slot(emu, "card"), timeout=5))[0]
    await wait_ready_story(emu, "C0PUBLIC", card.ts)
    requests_before = len(llm.requests)

    ts = await emu.user_posts(
        "C0PUBLIC", f"{BOT} 30s make it about the refill", user="U0BOB", thread_ts=card.ts
    )
    assert_fast_acks(emu, ts, ["app_mention", "message"])
    answer = await wait_answer(emu, ts)
    assert answer.thread_ts == card.ts
    await asyncio.sleep(0.5)
    assert len(by_slot(emu, f"reply:{ts}")) == 1  # answered once, not twice
    assert by_slot(emu, "card") == [card]  # and no second session from the mention's text
    assert len(llm.requests) == requests_before + 1
    assert emu.ephemerals == []

    other = await emu.user_posts("C0PUBLIC", "lunch plans?", user="U0CAROL")
    in_other = await emu.user_posts(
        "C0PUBLIC", f"{BOT} 30s a lunch story", user="U0CAROL", thread_ts=other
    )
    assert_fast_acks(emu, in_other, ["app_mention", "message"])
    hint = await wait_hint(emu, "U0CAROL")
    assert "mention me in the channel itself" in hint
    assert emu.ephemerals_for("U0CAROL")[0].thread_ts == other
    await asyncio.sleep(0.3)
    assert by_slot(emu, "card") == [card] and by_slot(emu, f"reply:{in_other}") == []
    assert len(llm.requests) == requests_before + 1


# --- shortcuts ----------------------------------------------------------------------------------


@BOTH_MODES
async def test_global_shortcut_opens_a_modal_with_a_channel_picker(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    ack = await emu.global_shortcut("new_story", user="U0BOB")
    assert ack.ok and ack.seconds < MAX_ACK_S and dict(ack) == {}, ack
    view = await wait_view(emu)
    assert view.user == "U0BOB" and view.view["private_metadata"] == ""
    picker = view_block(view, "channel_block")
    assert picker is not None and picker["element"]["type"] == "conversations_select"
    prompt = view_block(view, "prompt_block")
    assert prompt is not None and "initial_value" not in prompt["element"]

    done = await emu.submit_view(view, modal_values("a teaser for the night market", "C0PRIVATE"))
    assert done.ok and "errors" not in done, done
    card = (await emu.wait_for(lambda: by_slot(emu, "card", channel="C0PRIVATE"), timeout=5))[0]
    story = await wait_ready_story(emu, "C0PRIVATE", card.ts)
    session = await app.session(TEAM, str(session_of(story)))
    assert session is not None
    assert (session.channel_id, session.owner_id, session.duration_s) == ("C0PRIVATE", "U0BOB", 45)
    assert by_slot(emu, "card", channel="C0PUBLIC") == []


@BOTH_MODES
async def test_message_shortcut_opens_the_modal_prefilled(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    text = "We launch the refillable bottle on Monday & want a 30 s teaser <!here>"
    ts = await emu.user_posts("C0PUBLIC", text, user="U0BOB")
    ack = await emu.message_shortcut(ts, "turn_into_story", user="U0CAROL", channel="C0PUBLIC")
    assert ack.ok and ack.seconds < MAX_ACK_S and dict(ack) == {}, ack
    view = await wait_view(emu)
    assert view.user == "U0CAROL" and view.view["private_metadata"] == "C0PUBLIC"
    assert view_block(view, "channel_block") is None  # the message's channel is the place
    prompt = view_block(view, "prompt_block")
    assert prompt is not None and prompt["element"]["initial_value"] == text

    done = await emu.submit_view(view, modal_values(prompt["element"]["initial_value"]))
    assert done.ok and "errors" not in done, done
    card = (await emu.wait_for(lambda: by_slot(emu, "card", channel="C0PUBLIC"), timeout=5))[0]
    assert card.thread_ts is None  # a new card in the channel, as from the modal of /story
    story = await wait_ready_story(emu, "C0PUBLIC", card.ts)
    session = await app.session(TEAM, str(session_of(story)))
    assert session is not None and session.owner_id == "U0CAROL"
    assert "refillable bottle" in session.prompt
    assert emu.unescaped_broadcasts() == []


@BOTH_MODES
async def test_message_shortcut_in_a_dm_is_refused(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, redis: Redis
) -> None:
    emu.add_channel("D0ALICEDM", name="directmessage")
    ts = await emu.user_posts("D0ALICEDM", "a heist in space", deliver=False)
    ack = await emu.message_shortcut(ts, "turn_into_story", channel="D0ALICEDM")
    assert ack.ok and ack.seconds < MAX_ACK_S, ack
    hint = await wait_hint(emu)
    assert "Storyloop works in channels" in hint
    assert emu.ephemerals_for("U0ALICE")[0].channel == "D0ALICEDM"
    assert emu.views_opened == []
    await assert_nothing_recorded(emu, llm, redis)


@BOTH_MODES
async def test_other_workspace_is_refused_and_nothing_recorded(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, redis: Redis
) -> None:
    ack = await emu.global_shortcut("new_story", team_id=OTHER_TEAM)
    assert ack.ok and ack.seconds < MAX_ACK_S, ack  # acked (Slack shows no error) ...
    await asyncio.sleep(0.3)
    assert emu.views_opened == [] and emu.calls_to("views.open") == []  # ... and nothing else

    ts = await emu.user_posts("C0PUBLIC", "turn me into a story", deliver=False)
    ack = await emu.message_shortcut(ts, "turn_into_story", team_id=OTHER_TEAM)
    assert ack.ok, ack
    hint = await wait_hint(emu)
    assert "isn't installed in this workspace" in hint
    assert emu.views_opened == []

    _ts, mention_ack = await mention_from(
        emu, "C0PUBLIC", f"{BOT} 30s a heist in space", team_id=OTHER_TEAM, user="U0BOB"
    )
    assert mention_ack.ok and mention_ack.seconds < MAX_ACK_S, mention_ack

    command = slash_command_payload(
        command="/story",
        text="30s a heist in space",
        user_id="U0CAROL",
        user_name="carol",
        channel_id="C0PUBLIC",
        channel_name="story-public",
        team_id=OTHER_TEAM,
        app_id=emu.app_id,
        response_url=f"{emu.base_url}/response/none",
        trigger_id="1.T0OTHER.forged",
    )
    refused = await emu._deliver("slash_commands", command, accepts_response_payload=True)
    assert refused.ok and "isn't installed in this workspace" in str(refused.get("text"))

    await assert_nothing_recorded(emu, llm, redis)
    assert emu.ephemerals_for("U0BOB") == []  # a mention from elsewhere gets no answer here
