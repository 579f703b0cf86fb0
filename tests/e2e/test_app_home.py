"""The App Home end to end: opened over Socket Mode or HTTP, published with views.publish by the
worker's Home publisher, kept current as sessions change, paged, and coalesced under load.

Timing: a Home is published ``STORYLOOP_HOME_SETTLE`` (2 s) after its first unpublished change,
checked every ``STORYLOOP_HOME_INTERVAL`` (1 s); opening it publishes at the next check.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.pipeline.models import Session, Stage, Status
from bot.slack.actions import CHANNEL_ACTION, CHANNEL_BLOCK
from storage.repository import Repository
from tests.e2e.harness import AppUnderTest, action_ids, by_slot, session_of
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage

TEAM = "T0TEAM"
SETTLE_S = 2.0  # the defaults of Settings.home_settle_s / home_interval_s
INTERVAL_S = 1.0


def repo_of(app: AppUnderTest) -> Repository:
    assert app.runtime is not None
    repo = app.runtime.worker.repo
    assert isinstance(repo, Repository)
    return repo


def home_blocks(emu: SlackEmulator, user: str) -> dict[str, dict[str, Any]]:
    """The user's current Home, block by block_id."""
    view = emu.home.view_of(user) or {}
    return {str(b.get("block_id")): b for b in view.get("blocks", [])}


def block_str(block: dict[str, Any] | None) -> str:
    if block is None:
        return ""
    text = block.get("text")
    if isinstance(text, dict):
        return str(text.get("text", ""))
    return " ".join(str(e.get("text", "")) for e in block.get("elements", []))


async def wait_home(
    emu: SlackEmulator, user: str, *wanted: str, timeout: float = 8.0
) -> dict[str, dict[str, Any]]:
    """Wait until the user's Home shows every one of ``wanted``; returns its blocks."""
    await emu.wait_for(
        lambda: all(w in emu.home.text_of(user) for w in wanted),
        timeout=timeout,
        message=f"{user}'s Home to show {wanted!r} (shows: {emu.home.text_of(user)!r})",
    )
    return home_blocks(emu, user)


async def start_story(emu: SlackEmulator, text: str, *, user: str) -> tuple[StoredMessage, str]:
    """``/story text`` by ``user``; returns the story message once it awaits review, and the
    session id."""
    before = {m.ts for m in by_slot(emu, "card")}
    ack = await emu.slash_command(text, user=user)
    assert ack.ok, ack
    card = (await emu.wait_for(lambda: [m for m in by_slot(emu, "card") if m.ts not in before], 5))[
        0
    ]
    story = (
        await emu.wait_for(
            lambda: [
                m
                for m in by_slot(emu, "story")
                if m.thread_ts == card.ts and "story_approve" in action_ids(m)
            ],
            10,
        )
    )[0]
    sid = session_of(card)
    assert sid is not None
    return story, sid


def make_session(sid: str, owner: str, prompt: str, *, at: float) -> Session:
    return Session(
        id=sid,
        team_id=TEAM,
        channel_id="C0PUBLIC",
        owner_id=owner,
        prompt=prompt,
        duration_s=30,
        stage=Stage.STORY,
        status=Status.GENERATING,
        created_at=at,
        updated_at=at,
    )


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_opening_the_home_shows_my_sessions_and_the_teams(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _story, bobs = await start_story(emu, "30s a robot learns to bake", user="U0BOB")
    _story, alices = await start_story(emu, "30s a lighthouse keeper's last night", user="U0ALICE")

    ack = await emu.home.open("U0ALICE")
    assert ack.ok and ack.seconds < 1.0, ack
    blocks = await wait_home(emu, "U0ALICE", "My sessions", "Team's recent sessions")
    # Her own session waits for her (the default rule: the creator approves) and links to
    # its thread; Bob's is only in the team's list.
    assert "Waiting for your approval* (1)" in block_str(blocks["group_waiting"])
    mine = block_str(blocks[f"mine_{alices}"])
    assert "a lighthouse keeper's last night" in mine and "Story v1: awaiting review" in mine
    assert f"<{emu.base_url}/archives/C0PUBLIC/p" in mine  # chat.getPermalink of the card
    assert f"mine_{bobs}" not in blocks
    assert "a robot learns to bake" in block_str(blocks[f"team_{bobs}"])
    assert "<@U0BOB>" in block_str(blocks[f"team_{bobs}"])
    assert f"team_{alices}" in blocks
    assert action_ids_of(emu, "U0ALICE") == ["home_new_story"]
    assert emu.home.publishes["U0ALICE"] == 1

    # The Messages tab is not the Home; and Bob never opened his, so he gets none.
    await emu.home.open("U0ALICE", tab="messages")
    await asyncio.sleep(SETTLE_S + INTERVAL_S)
    assert emu.home.publishes["U0ALICE"] == 1
    assert emu.home.publishes["U0BOB"] == 0
    # Each permalink was asked for once and kept with its session.
    assert len(emu.calls_to("chat.getPermalink")) == 2


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_the_home_follows_a_session_without_being_reopened(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    await emu.home.open("U0ALICE")
    await wait_home(emu, "U0ALICE", "Stories you start, or are asked to approve, show up here.")

    story, sid = await start_story(emu, "30s a seal adopts a lighthouse", user="U0ALICE")
    blocks = await wait_home(emu, "U0ALICE", "Story v1: awaiting review")
    assert f"mine_{sid}" in blocks and "group_waiting" in blocks

    ack = await emu.click(story, "story_approve", user="U0ALICE")
    assert ack.ok, ack
    # Approved: the story is no longer waiting; the session moved on to its images.
    blocks = await wait_home(emu, "U0ALICE", "Reference images", timeout=12)
    assert "Reference images" in block_str(blocks[f"mine_{sid}"])
    assert "Story v1: awaiting review" not in emu.home.text_of("U0ALICE")
    opened = [
        d for d in emu.deliveries if d.payload.get("event", {}).get("type") == "app_home_opened"
    ]
    assert len(opened) == 1  # every update above came without the Home being reopened


async def test_paging_through_the_teams_sessions(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    repo = repo_of(app)
    now = time.time()
    for n in range(25):
        await repo.commit(
            None,
            make_session(f"seed{n:02d}", "U0BOB", f"seeded story {n:02d}", at=now + n),
            fence=None,
        )
    await emu.home.open("U0ALICE")
    blocks = await wait_home(emu, "U0ALICE", "Page 1 of 3")
    team = [b for b in blocks if b.startswith("team_")]
    assert team == [f"team_seed{n:02d}" for n in range(24, 14, -1)]  # newest change first
    assert action_ids_of(emu, "U0ALICE") == ["home_new_story", "home_page_next"]

    await emu.home.click("U0ALICE", "home_page_next")
    blocks = await wait_home(emu, "U0ALICE", "Page 2 of 3")
    assert next(b for b in blocks if b.startswith("team_")) == "team_seed14"
    assert action_ids_of(emu, "U0ALICE") == [
        "home_new_story",
        "home_page_previous",
        "home_page_next",
    ]
    await emu.home.click("U0ALICE", "home_page_next")
    blocks = await wait_home(emu, "U0ALICE", "Page 3 of 3")
    assert [b for b in blocks if b.startswith("team_")] == [
        f"team_seed{n:02d}" for n in range(4, -1, -1)
    ]
    assert action_ids_of(emu, "U0ALICE") == ["home_new_story", "home_page_previous"]

    # The page is kept: reopening the tab shows the same page, refreshed.
    count = emu.home.publishes["U0ALICE"]
    await emu.home.open("U0ALICE")
    await emu.wait_for(lambda: emu.home.publishes["U0ALICE"] == count + 1, 5)
    assert "Page 3 of 3" in emu.home.text_of("U0ALICE")

    # A forged page value is not obeyed: the Home is shown again as it was.
    forged = '{"v":1,"page":-1}'
    ack = await emu.home.click("U0ALICE", "home_page_previous", value=forged)
    assert ack.ok, ack
    await emu.wait_for(lambda: emu.home.publishes["U0ALICE"] == count + 2, 5)
    assert "Page 3 of 3" in emu.home.text_of("U0ALICE")
    await emu.home.click("U0ALICE", "home_page_previous")
    await wait_home(emu, "U0ALICE", "Page 2 of 3")


def action_ids_of(emu: SlackEmulator, user: str) -> list[str]:
    ids: list[str] = []
    for block in (emu.home.view_of(user) or {}).get("blocks", []):
        if block.get("type") == "actions":
            ids += [str(e.get("action_id")) for e in block.get("elements", [])]
    return ids


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_new_story_opens_the_start_modal_with_a_channel_picker(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    await emu.home.open("U0ALICE")
    await wait_home(emu, "U0ALICE", "New story")
    ack = await emu.home.click("U0ALICE", "home_new_story")
    assert ack.ok and ack.seconds < 1.0, ack
    view = (await emu.wait_for(lambda: emu.views_opened, 5))[-1]
    assert view.user == "U0ALICE" and view.view["callback_id"] == "story_start_modal"
    picker = next(b for b in view.view["blocks"] if b.get("block_id") == CHANNEL_BLOCK)
    assert picker["element"]["type"] == "conversations_select"
    assert view.view["private_metadata"] == ""  # the Home has no channel: the picker decides

    values = {
        CHANNEL_BLOCK: {
            CHANNEL_ACTION: {"type": "conversations_select", "selected_conversation": "C0PUBLIC"}
        },
        "prompt_block": {"prompt_input": "a tugboat's first day at sea"},
        "duration_block": {
            "duration_select": {"type": "static_select", "selected_option": {"value": "30"}}
        },
    }
    ack = await emu.submit_view(view, values)
    assert ack.ok and ack.get("response_action") is None, ack
    card = (await emu.wait_for(lambda: by_slot(emu, "card", channel="C0PUBLIC"), 5))[0]
    sid = session_of(card)
    blocks = await wait_home(emu, "U0ALICE", "a tugboat's first day at sea")
    assert f"mine_{sid}" in blocks


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_a_burst_of_commits_is_one_publish(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    """31 commits touching one person over ~1.5 s — longer than the publisher's 1 s tick,
    shorter than the 2 s settle time: one publish for the whole burst, showing its last commit.

    The bound: a Home is taken only once its first unpublished change is ``settle`` old, so
    publishes are at least ``settle`` apart and a burst of length D gets at most
    1 + D // settle of them. (Without the settle time, every tick during the burst would
    publish: two or three here.)"""
    await emu.home.open("U0ALICE")
    await wait_home(emu, "U0ALICE", "My sessions")
    repo = repo_of(app)
    start = time.monotonic()
    s = await repo.commit(
        None, make_session("burst", "U0ALICE", "a burst", at=time.time()), fence=None
    )
    statuses = [Status.GENERATING, Status.AWAITING_REVIEW, Status.REGENERATING]
    for n in range(29):
        await asyncio.sleep(0.05)
        new = s.model_copy(
            update={"status": statuses[n % 3], "version": n // 3 + 1, "updated_at": time.time()}
        )
        s = await repo.commit(s, new, fence=None)
    s = await repo.commit(
        s, s.model_copy(update={"status": Status.DONE, "stage": Stage.COMPLETE}), fence=None
    )
    burst_s = time.monotonic() - start
    assert burst_s > INTERVAL_S  # the burst spans at least one tick of the publisher

    blocks = await wait_home(emu, "U0ALICE", "Complete")
    assert "Done* (1)" in block_str(blocks["group_done"])
    await asyncio.sleep(SETTLE_S + INTERVAL_S + 0.5)  # room for any publish that would follow
    assert emu.home.publishes_since("U0ALICE", start) == 1 + int(burst_s // SETTLE_S)
    assert "Complete" in block_str(home_blocks(emu, "U0ALICE")["mine_burst"])


async def test_twenty_concurrent_sessions_coalesce(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    """20 stories started at once by one person (about 80 commits touching her): publishes
    come at least ``settle`` apart, so over activity lasting D seconds she sees at most
    1 + (D + interval) / settle of them — not one per commit — and the last is current."""
    await emu.home.open("U0ALICE")
    await wait_home(emu, "U0ALICE", "My sessions")
    repo = repo_of(app)
    start = time.monotonic()
    acks = await asyncio.gather(
        *(emu.slash_command(f"30s story number {n}", user="U0ALICE") for n in range(20))
    )
    assert all(a.ok for a in acks)

    async def all_waiting() -> bool:
        ids = {session_of(m) for m in by_slot(emu, "card")}
        if len(ids) < 20:
            return False
        sessions = [await repo.get(TEAM, str(sid)) for sid in ids]
        return all(s is not None and s.status is Status.AWAITING_REVIEW for s in sessions)

    await emu.wait_for(all_waiting, 30)
    active_s = time.monotonic() - start
    blocks = await wait_home(emu, "U0ALICE", "Waiting for your approval* (20)", timeout=10)
    assert len([b for b in blocks if b.startswith("mine_")]) == 10  # one page of them
    await asyncio.sleep(SETTLE_S + INTERVAL_S + 0.5)
    published = emu.home.publishes_since("U0ALICE", start)
    bound = 1 + int((active_s + INTERVAL_S + 0.5) / SETTLE_S)
    assert 1 <= published <= bound, (published, bound, active_s)
    assert published < 20  # far fewer than the sessions, let alone their commits


async def test_rate_limited_publish_waits_for_retry_after(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    emu.fail_next("views.publish", status=429, retry_after=2)
    await emu.home.open("U0ALICE")
    await wait_home(emu, "U0ALICE", "My sessions", timeout=10)
    first, second = emu.calls_to("views.publish")[:2]
    assert first.status == 429 and second.ok
    assert second.at - first.at >= 2.0 - 0.05  # Retry-After honoured
    assert len(emu.calls_to("views.publish")) == 2


async def test_home_tab_disabled_is_not_retried(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    emu.home.not_enabled = True
    await emu.home.open("U0ALICE")
    await emu.wait_for(lambda: emu.calls_to("views.publish"), 5)
    await asyncio.sleep(SETTLE_S + INTERVAL_S)
    assert [c.error for c in emu.calls_to("views.publish")] == ["not_enabled"]


async def test_a_home_published_elsewhere_is_replaced_not_overwritten_blindly(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    """The publisher sends the hash of the Home it published last; when the Home changed since
    (another publish), Slack answers hash_conflict and the publisher renders again."""
    await emu.home.open("U0ALICE")
    await wait_home(emu, "U0ALICE", "My sessions")
    client = AsyncWebClient(token=emu.bot_token, base_url=emu.api_url)
    other = {
        "type": "home",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "elsewhere"}}],
    }
    await client.views_publish(user_id="U0ALICE", view=other)
    await emu.home.open("U0ALICE")
    await wait_home(emu, "U0ALICE", "My sessions")
    errors = [c.error for c in emu.calls_to("views.publish")]
    assert errors[-2:] == ["hash_conflict", None], errors
    assert "elsewhere" not in emu.home.text_of("U0ALICE")
