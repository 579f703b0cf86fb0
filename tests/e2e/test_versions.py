"""Versions end to end: list every version of a stage, compare two, restore one as a new version.

The real app (Bolt over Socket Mode or signed HTTP) against the Slack emulator, whose modal
clicks carry the view (no channel, no response_url) like Slack's, and the OpenAI emulator, which
counts every LLM and image call — a restore must make none.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from bot.pipeline.artifacts import ImageSetVersion
from bot.pipeline.models import Session, Stage
from bot.slack.actions import RestoreButtonValue, VersionsAction
from tests.e2e.harness import AppUnderTest, action_ids, block_text, by_slot
from tests.e2e.test_stages_flow import approve_story, reviewed
from tests.e2e.test_story_flow import _session_id, start_story
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.emulators.slack_state import OpenedView

CHANNEL = "C0PUBLIC"
OPEN = VersionsAction.OPEN.value
RESTORE = VersionsAction.RESTORE.value


async def session_now(app: AppUnderTest, sid: str) -> Session:
    s = await app.session("T0TEAM", sid)
    assert s is not None
    return s


def story_calls(llm: FakeLLM) -> int:
    return sum(1 for r in llm.requests if "story" in json.dumps(r["json"].get("response_format")))


async def story_at(emu: SlackEmulator, story: StoredMessage, n: int) -> StoredMessage:
    """The story message once it shows version ``n`` under review."""

    def shown() -> StoredMessage | None:
        msg = emu.message(CHANNEL, story.ts)
        ok = msg is not None and f"Story v{n}" in block_text(msg)
        return msg if ok and "story_approve" in action_ids(msg) else None

    found = await emu.wait_for(shown, timeout=10)
    assert found is not None
    return found


async def regenerate_with(
    emu: SlackEmulator, card: StoredMessage, story: StoredMessage, n: int, text: str, user: str
) -> StoredMessage:
    """``user`` asks for a change in the thread; the owner regenerates: version ``n``."""
    ts = await emu.user_posts(CHANNEL, text, user=user, thread_ts=card.ts)
    await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}", channel=CHANNEL), timeout=10)
    await emu.click(story.ts, "story_regenerate")
    return await story_at(emu, story, n)


async def open_versions(
    emu: SlackEmulator, msg: StoredMessage, user: str = "U0ALICE"
) -> OpenedView:
    before = len(emu.views_opened)
    await emu.click(msg.ts, OPEN, user=user)
    await emu.wait_for(lambda: len(emu.views_opened) > before, timeout=5)
    return emu.views_opened[-1]


async def story_with_three_versions(
    emu: SlackEmulator,
) -> tuple[StoredMessage, StoredMessage, str]:
    card, story = await start_story(emu)
    await regenerate_with(emu, card, story, 2, "make it funnier", "U0BOB")
    await regenerate_with(emu, card, story, 3, "add a dog named Pixel", "U0CAROL")
    return card, story, _session_id(story)


def restore_value(sid: str, stage: Stage, version: object, current: int) -> str:
    """A Restore button's value, possibly forged (a version that isn't an int)."""
    if isinstance(version, int):
        return RestoreButtonValue(
            session=sid, stage=stage, version=version, current=current
        ).encode()
    return json.dumps(
        {"v": 3, "session": sid, "stage": str(stage), "version": version, "current": current}
    )


def ephemerals(emu: SlackEmulator, user: str, *words: str) -> list[str]:
    """What ``user`` was told privately (chat.postEphemeral or a response_url)."""
    return [e.text for e in emu.ephemerals_for(user) if all(w in e.text for w in words)]


async def restore_click(emu: SlackEmulator, opened: OpenedView, value: str | None = None) -> None:
    """Click Restore v1 in the list (going back to it first if the modal shows a notice)."""
    if "Restore v1" not in emu.modals.texts(opened):
        await emu.modals.click(VersionsAction.BACK.value, view=opened)
        await view_says(emu, opened, "Restore v1")
    drawn = opened.hash
    await emu.modals.click(RESTORE, view=opened, block_id="version_1", value=value)
    await emu.wait_for(lambda: opened.hash != drawn, timeout=5)


async def view_says(emu: SlackEmulator, opened: OpenedView, *words: str) -> str:
    await emu.wait_for(lambda: all(w in emu.modals.texts(opened) for w in words), timeout=5)
    return emu.modals.texts(opened)


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_list_compare_and_restore_a_story_version(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story, sid = await story_with_three_versions(emu)
    current = await story_at(emu, story, 3)
    assert action_ids(current) == ["story_approve", "story_regenerate", OPEN]

    # The list: v1..v3, when (Slack's date token), who asked, what changed, which is current.
    opened = await open_versions(emu, current)
    text = emu.modals.texts(opened)
    assert opened.view["title"]["text"] == "Story versions"
    for n in (1, 2, 3):
        assert f"*v{n}*" in text
    assert text.count("<!date^") == 3
    assert "started by <@U0ALICE>" in text  # v1
    assert "asked by <@U0BOB>" in text and "asked by <@U0CAROL>" in text
    assert "*v3* · current" in text and "First version." in text
    restores = [b for b in opened.view["blocks"] if (b.get("accessory") or {}).get("action_id")]
    assert [b["block_id"] for b in restores] == ["version_2", "version_1"]  # not the current

    # Compare v1 with v3: the picks are kept in the view's state and sent with Compare.
    await emu.modals.select(VersionsAction.COMPARE_FROM.value, "1", view=opened)
    await emu.modals.click(VersionsAction.COMPARE.value, view=opened)
    diff = await view_says(emu, opened, "v1 → v3")
    assert opened.view["title"]["text"] == "Compare versions"
    assert "*Logline* · changed" in diff and "~1)~ *3)*" in diff  # "(draft 1)" → "(draft 3)"
    assert "*Narrative* · changed" in diff and "*Changes applied:" in diff
    assert "Unchanged:" in diff and "Scene 1" in diff

    # Back to the list, then restore v1: v4 is v1's story, no LLM call, a notice in the thread.
    await emu.modals.click(VersionsAction.BACK.value, view=opened)
    await view_says(emu, opened, "Restore v1")
    calls = len(llm.requests)
    await emu.modals.click(RESTORE, view=opened, block_id="version_1")
    await view_says(emu, opened, "Restoring v1")
    shown = await story_at(emu, story, 4)
    notice = await emu.wait_for(
        lambda: by_slot(emu, "restored:story:4", channel=CHANNEL, prefix=True), timeout=5
    )
    assert len(notice) == 1 and "↩️ <@U0ALICE> restored v1 as v4" in block_text(notice[0])
    assert notice[0].thread_ts == card.ts
    assert "restored from v1" in block_text(shown)
    s = await session_now(app, sid)
    repo = app.runtime.worker.repo  # type: ignore[union-attr]
    v1, v4 = await repo.version(s, 1), await repo.version(s, 4)
    assert v1 is not None and v4 is not None
    assert v4.story == v1.story and (v4.restored_from, v4.restored_by) == (1, "U0ALICE")
    assert s.version == 4 and s.stage is Stage.STORY
    await asyncio.sleep(0.3)  # nothing else is on its way
    assert len(llm.requests) == calls
    assert len(by_slot(emu, "story", channel=CHANNEL)) == 1  # edited in place, as a regenerate
    assert emu.unescaped_broadcasts() == []

    # The new version's Versions lists v4 as a restore.
    relisted = await open_versions(emu, shown)
    assert "restored by <@U0ALICE> from v1" in emu.modals.texts(relisted)


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_restoring_reference_images_makes_and_uploads_nothing(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _card, sid, review1 = await approve_story(emu)
    await emu.click(review1.ts, "story_regenerate")
    review2 = await reviewed(emu, "reference_image:v2")
    made, files = llm.images_generated, len(emu.uploaded_files)
    assert made == 8

    opened = await open_versions(emu, review2)
    assert opened.view["title"]["text"] == "Images versions"
    await emu.modals.click(RESTORE, view=opened, block_id="version_1")
    review3 = await reviewed(emu, "reference_image:v3")
    assert "Reference images v3" in block_text(review3)
    assert "restored from v1" in block_text(review3)
    notice = by_slot(emu, "restored:reference_image:3", channel=CHANNEL, prefix=True)
    assert notice and "restored v1 as v3" in block_text(notice[0])
    await emu.wait_for(lambda: action_ids(emu.message(CHANNEL, review2.ts)) == [], timeout=5)
    assert "Superseded" in block_text(emu.message(CHANNEL, review2.ts))

    s = await session_now(app, sid)
    repo = app.runtime.worker.repo  # type: ignore[union-attr]
    v1 = await repo.artifact(s, Stage.REFERENCE_IMAGE, 1, ImageSetVersion)
    v3 = await repo.artifact(s, Stage.REFERENCE_IMAGE, 3, ImageSetVersion)
    assert v1 is not None and v3 is not None
    assert [i.file_id for i in v3.images] == [i.file_id for i in v1.images]
    assert v3.cost_usd == 0.0
    await asyncio.sleep(0.3)
    assert llm.images_generated == made and len(emu.uploaded_files) == files
    assert s.version == 3 and s.stage is Stage.REFERENCE_IMAGE
    # Still reviewable: approving the restored set moves on to the storyboard.
    await emu.click(review3.ts, "story_approve")
    await reviewed(emu, "storyboard:v1:p")


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_a_restore_racing_a_regenerate_has_one_winner(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_story(emu)
    sid = _session_id(story)
    v2 = await regenerate_with(emu, card, story, 2, "make it funnier", "U0BOB")
    opened = await open_versions(emu, v2)
    await asyncio.gather(
        emu.modals.click(RESTORE, view=opened, block_id="version_1"),
        emu.click(story.ts, "story_regenerate"),
    )
    await story_at(emu, story, 3)
    refusal = await emu.wait_for(
        lambda: ephemerals(emu, "U0ALICE", "v2") or ephemerals(emu, "U0ALICE", "right now"),
        timeout=10,
    )
    await asyncio.sleep(0.5)  # the loser's answer is in; nothing else is coming
    restored = by_slot(emu, "restored:story:3", channel=CHANNEL, prefix=True)
    regenerated = by_slot(emu, "notice:3", channel=CHANNEL)
    assert len(restored) + len(regenerated) == 1, (restored, regenerated)
    assert len(refusal) == 1
    s = await session_now(app, sid)
    assert s.version == 3 and s.active_job is None
    assert by_slot(emu, "story", channel=CHANNEL)[0].ts == story.ts
    assert not by_slot(emu, "notice:4", channel=CHANNEL)


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_forged_restores_are_refused_and_change_nothing(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest, redis: Redis
) -> None:
    card, story = await start_story(emu)
    sid = _session_id(story)
    v2 = await regenerate_with(emu, card, story, 2, "make it funnier", "U0BOB")
    await emu.slash_command("a second story about kites")
    cards = await emu.wait_for(lambda: len(by_slot(emu, "card", channel=CHANNEL)) == 2)
    other = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "story", channel=CHANNEL) if m.ts != story.ts]
    )
    other_sid = _session_id(other[0])
    assert cards and other_sid != sid
    await emu.wait_for(lambda: "story_approve" in action_ids(emu.message(CHANNEL, other[0].ts)))
    opened = await open_versions(emu, v2)
    before = await session_now(app, sid)
    other_before = await session_now(app, other_sid)

    # Forged version numbers: the worker refuses each in words, privately.
    for forged in (0, -1, 99):
        await restore_click(emu, opened, restore_value(sid, Stage.STORY, forged, 2))
    await emu.wait_for(lambda: len(ephemerals(emu, "U0ALICE", "There is no")) == 3, timeout=10)
    assert ephemerals(emu, "U0ALICE", "version numbered 0")
    assert ephemerals(emu, "U0ALICE", "version numbered -1")
    assert ephemerals(emu, "U0ALICE", "There is no v99 of the story")
    # The current version, and a list drawn before a change.
    await restore_click(emu, opened, restore_value(sid, Stage.STORY, 2, 2))
    await emu.wait_for(lambda: ephemerals(emu, "U0ALICE", "already the current version"))
    await restore_click(emu, opened, restore_value(sid, Stage.STORY, 1, 1))
    await emu.wait_for(lambda: ephemerals(emu, "U0ALICE", "changed since you opened"))

    # A version that isn't a number: the modal says the button doesn't work; nothing recorded.
    await restore_click(emu, opened, restore_value(sid, Stage.STORY, "abc", 2))
    await view_says(emu, opened, "doesn't work any more")

    # A value naming another session (a real one, in this channel) than the modal lists.
    await restore_click(emu, opened, restore_value(other_sid, Stage.STORY, 1, 1))
    await emu.wait_for(lambda: ephemerals(emu, "U0ALICE", "doesn't belong to this session"))

    # Another workspace clicking Restore on this session: refused in the modal, not recorded.
    opened = await open_versions(emu, v2)
    drawn = opened.hash
    await emu.modals.click(RESTORE, view=opened, block_id="version_1", team_id="T0OTHER")
    await emu.wait_for(lambda: opened.hash != drawn, timeout=5)
    assert "isn't installed in this workspace" in emu.modals.texts(opened)
    assert await redis.keys("sl:t:T0OTHER:*") == []

    await asyncio.sleep(0.5)
    after, other_after = await session_now(app, sid), await session_now(app, other_sid)
    assert (after.version, after.rev) == (before.version, before.rev) == (2, before.rev)
    assert (other_after.version, other_after.rev) == (other_before.version, other_before.rev)
    assert not by_slot(emu, "restored:", channel=CHANNEL, prefix=True)
    assert emu.unescaped_broadcasts() == []
