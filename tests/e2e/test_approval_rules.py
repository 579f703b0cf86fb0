"""Approval rules end to end: chosen in the start modal (or the workspace default), shown on
the card, enforced on every stage's Approve, counted once per person under a quorum."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.slack import actions as ids
from tests.e2e.harness import AppUnderTest, action_ids, app_env, block_text, by_slot, settings_from
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.support.redis_server import RedisServer

CHANNEL = "C0PUBLIC"


def _card(emu: SlackEmulator) -> StoredMessage:
    return by_slot(emu, "card", channel=CHANNEL)[-1]


def _current(emu: SlackEmulator, msg: StoredMessage) -> StoredMessage:
    found = emu.message(CHANNEL, msg.ts)
    assert found is not None
    return found


async def _open_modal(emu: SlackEmulator) -> Any:
    ack = await emu.slash_command("", user="U0ALICE", channel=CHANNEL)
    assert ack.ok, ack.error
    await emu.wait_for(lambda: emu.views_opened, timeout=5)
    return emu.views_opened[-1]


def _rule(value: str) -> dict[str, Any]:
    return {
        "type": "static_select",
        "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value},
    }


async def start_with(emu: SlackEmulator, extra: dict[str, dict[str, Any]]) -> StoredMessage:
    """Start a session from the modal with the approval inputs in ``extra``; returns the story
    message once it is up for review."""
    opened = await _open_modal(emu)
    values: dict[str, dict[str, Any]] = {
        ids.PROMPT_BLOCK: {ids.PROMPT_ACTION: "eco water bottle launch"},
        ids.DURATION_BLOCK: {
            ids.DURATION_ACTION: {
                "type": "static_select",
                "selected_option": {"text": {"type": "plain_text", "text": "30 s"}, "value": "30"},
            }
        },
        ids.TONE_BLOCK: {ids.TONE_ACTION: None},
        **extra,
    }
    ack = await emu.submit_view(opened, values)
    assert ack.ok and ack.get("response_action") is None, dict(ack)
    await emu.wait_for(
        lambda: [m for m in by_slot(emu, "story") if "story_approve" in action_ids(m)], timeout=10
    )
    return by_slot(emu, "story")[-1]


async def _approved(emu: SlackEmulator) -> list[StoredMessage]:
    return by_slot(emu, "approved", channel=CHANNEL)


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_a_quorum_of_two_counts_each_person_once_even_clicking_at_once(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    story = await start_with(
        emu,
        {
            ids.RULE_BLOCK: {ids.RULE_ACTION: _rule("quorum")},
            ids.QUORUM_BLOCK: {ids.QUORUM_ACTION: {"type": "number_input", "value": "3"}},
        },
    )
    card = _card(emu)
    assert "3 different people in the channel" in block_text(_current(emu, card))
    # Bob twice and Carol at the same instant: two votes, one polite refusal.
    acks = await asyncio.gather(
        emu.click(story, ids.ActionId.APPROVE, user="U0BOB"),
        emu.click(story, ids.ActionId.APPROVE, user="U0BOB"),
        emu.click(story, ids.ActionId.APPROVE, user="U0CAROL"),
    )
    assert all(a.ok for a in acks)
    await emu.wait_for(lambda: "2 of 3 so far" in block_text(_current(emu, card)), timeout=10)
    votes = [m for m in emu.bot_messages(CHANNEL) if m.thread_ts == card.ts and "👍" in m.text]
    assert len(votes) == 2, [m.text for m in votes]
    assert {"<@U0BOB>" in m.text for m in votes} == {True, False}
    await emu.wait_for(lambda: any("already" in e.text for e in emu.ephemerals_for("U0BOB")))
    assert await _approved(emu) == [], "two of three approvals must not move the story on"
    # The third person completes the quorum; the notice names all three.
    await emu.click(_current(emu, story), ids.ActionId.APPROVE, user="U0ALICE")
    notice = (await emu.wait_for(lambda: by_slot(emu, "approved", channel=CHANNEL), timeout=10))[0]
    for user in ("U0BOB", "U0CAROL", "U0ALICE"):
        assert f"<@{user}>" in notice.text
    session = await app.session(emu.team_id, story.metadata["event_payload"]["session"])  # type: ignore[index]
    assert session is not None and session.votes == ()
    story_approval = session.approvals[0]
    assert set(story_approval.co_approvers) == {"U0BOB", "U0CAROL"}
    assert story_approval.user_id == "U0ALICE"


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_named_approvers_and_group_members_may_approve_others_are_told_who_can(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    emu.usergroups.add("S0EDITORS", "editors", ["U0CAROL"])
    opened = await _open_modal(emu)
    # The group picker lists the workspace's groups (an external select).
    options = await emu.suggest(
        opened, block_id=ids.GROUP_BLOCK, action_id=ids.GROUP_ACTION, value="edi"
    )
    assert options.ok
    assert options["options"] == [
        {"text": {"type": "plain_text", "text": "@editors"}, "value": "S0EDITORS"}
    ]
    emu.views_opened.pop()  # start_with opens its own
    story = await start_with(
        emu,
        {
            ids.RULE_BLOCK: {ids.RULE_ACTION: _rule("named")},
            ids.APPROVERS_BLOCK: {
                ids.APPROVERS_ACTION: {"type": "multi_users_select", "selected_users": ["U0BOB"]}
            },
            ids.GROUP_BLOCK: {
                ids.GROUP_ACTION: {
                    "type": "external_select",
                    "selected_option": options["options"][0],
                }
            },
        },
    )
    card_text = block_text(_current(emu, _card(emu)))
    assert "<@U0BOB>" in card_text and "members of @editors" in card_text
    assert "<!subteam" not in card_text, "showing the group must not ping it"
    # The creator isn't named: refused, told who can.
    await emu.click(story, ids.ActionId.APPROVE, user="U0ALICE")
    refusal = await emu.wait_for(lambda: emu.ephemerals_for("U0ALICE"), timeout=10)
    assert "<@U0BOB>" in refusal[-1].text and "@editors" in refusal[-1].text
    assert await _approved(emu) == []
    # A member of the group approves (looked up at the click).
    await emu.click(_current(emu, story), ids.ActionId.APPROVE, user="U0CAROL")
    notice = (await emu.wait_for(lambda: by_slot(emu, "approved", channel=CHANNEL), timeout=10))[0]
    assert "<@U0CAROL>" in notice.text
    assert emu.calls_to("usergroups.users.list"), "membership is checked when someone acts"


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_naming_nobody_is_answered_inline_and_starts_nothing(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    opened = await _open_modal(emu)
    ack = await emu.submit_view(
        opened,
        {
            ids.PROMPT_BLOCK: {ids.PROMPT_ACTION: "eco water bottle launch"},
            ids.RULE_BLOCK: {ids.RULE_ACTION: _rule("named")},
        },
    )
    assert ack.get("response_action") == "errors"
    assert ids.APPROVERS_BLOCK in ack["errors"]
    forged = await _open_modal(emu)
    ack = await emu.submit_view(
        forged,
        {
            ids.PROMPT_BLOCK: {ids.PROMPT_ACTION: "eco water bottle launch"},
            ids.RULE_BLOCK: {ids.RULE_ACTION: _rule("everyone-and-their-dog")},
        },
    )
    assert ack.get("response_action") == "errors" and ids.RULE_BLOCK in ack["errors"]
    await asyncio.sleep(0.3)
    assert by_slot(emu, "card") == []


@pytest.fixture
async def anyone_app(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer, redis: Redis
) -> AsyncIterator[AppUnderTest]:
    env = app_env(emu, llm, redis_server.url, mode="socket", STORYLOOP_APPROVAL="anyone")
    running = await AppUnderTest(settings_from(env), redis_server.url).start()
    await emu.wait_connected()
    emu.mode = "socket"
    yield running
    await running.stop(grace_s=2)


async def test_the_workspace_default_applies_to_slash_command_sessions(
    emu: SlackEmulator, llm: FakeLLM, anyone_app: AppUnderTest
) -> None:
    ack = await emu.slash_command("30s eco water bottle launch", user="U0ALICE", channel=CHANNEL)
    assert ack.ok
    await emu.wait_for(
        lambda: [m for m in by_slot(emu, "story") if "story_approve" in action_ids(m)], timeout=10
    )
    assert "anyone in the channel" in block_text(_current(emu, _card(emu)))
    await emu.click(by_slot(emu, "story")[-1], ids.ActionId.APPROVE, user="U0BOB")
    notice = (await emu.wait_for(lambda: by_slot(emu, "approved", channel=CHANNEL), timeout=10))[0]
    assert "<@U0BOB>" in notice.text
