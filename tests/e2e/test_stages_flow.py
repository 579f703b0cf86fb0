"""Stages 2 and 3 end to end: story → reference images → storyboard → (video not yet).

The real app (Bolt over Socket Mode or signed HTTP) against the Slack emulator, which serves
the external upload flow and shows shared files in the thread, and the OpenAI emulator, which
makes real PNGs and counts every paid call.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.pipeline.models import Stage, Status
from bot.slack.actions import StageButtonValue
from tests.e2e.harness import AppUnderTest, action_ids, block_text, by_slot
from tests.e2e.test_story_flow import _session_id, start_story
from tests.emulators.openai_images import read_png
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage

CHANNEL = "C0PUBLIC"


async def reviewed(emu: SlackEmulator, slot: str, *, timeout: float = 15) -> StoredMessage:
    """The message of ``slot`` (a prefix when it ends with ``:p``: a storyboard's pages) once
    it shows its Approve or Regenerate buttons."""
    found = await emu.wait_for(
        lambda: [
            m
            for m in by_slot(emu, slot, channel=CHANNEL, prefix=slot.endswith(":p"))
            if {"story_approve", "story_regenerate"} & set(action_ids(m))
        ],
        timeout=timeout,
    )
    return found[-1]


def value(sid: str, stage: Stage, version: int, item: int | None = None) -> str:
    return StageButtonValue(session=sid, stage=stage, version=version, item=item).encode()


def refusals(emu: SlackEmulator, *words: str) -> list[str]:
    return [r.text for r in emu.responses if all(w in r.text for w in words)]


async def approve_story(emu: SlackEmulator) -> tuple[StoredMessage, str, StoredMessage]:
    card, story = await start_story(emu)
    sid = _session_id(story)
    await emu.click(story.ts, "story_approve")
    images = await reviewed(emu, "reference_image:v1")
    return card, sid, images


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_story_to_images_to_storyboard_and_video_not_yet(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, sid, review1 = await approve_story(emu)

    # 1. Story approved → reference images, uploaded as files into the thread, then reviewed.
    notice = by_slot(emu, "approved", channel=CHANNEL)
    assert notice and "Making the reference images" in block_text(notice[0])
    files = emu.files_in_thread(CHANNEL, card.ts)
    assert len(files) == 4 and llm.images_generated == 4
    assert all(f.filename.endswith(".png") and read_png(f.bytes).width == 1024 for f in files)
    assert all(f.thread_ts == card.ts for f in files)
    text = block_text(review1)
    assert "Reference images v1" in text and "Hero" in text and "Style frame" in text
    assert action_ids(review1).count("stage_redo") == 4
    await emu.wait_for(lambda: "Spent so far" in block_text(emu.message(CHANNEL, card.ts)))
    card_text = block_text(emu.message(CHANNEL, card.ts))
    assert "Story ✅" in card_text and "Reference images v1" in card_text
    # The progress message ends saying what was made.
    progress = by_slot(emu, "reference_image:v1:progress", channel=CHANNEL)[0]
    assert "4 of 4 made" in block_text(emu.message(CHANNEL, progress.ts))

    # 2. Talk about the images: the answer names the image; Redo remakes only that one.
    ts = await emu.user_posts(CHANNEL, "make image 2 brighter, more sunlight", thread_ts=card.ts)
    answer = await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}", channel=CHANNEL))
    assert "brighter" in block_text(answer[0])
    await emu.click(review1.ts, "stage_redo", value=value(sid, Stage.REFERENCE_IMAGE, 1, item=2))
    review2 = await reviewed(emu, "reference_image:v2")
    assert llm.images_generated == 5  # one paid call for one Redo
    assert "redo of image 2" in block_text(review2)
    assert "brighter" in llm.image_requests[-1].prompt  # the feedback that concerns image 2
    await emu.wait_for(lambda: action_ids(emu.message(CHANNEL, review1.ts)) == [])
    assert "Superseded" in block_text(emu.message(CHANNEL, review1.ts))

    # A click on the older version is refused politely; nothing is made.
    await emu.click(review2.ts, "story_approve", value=value(sid, Stage.REFERENCE_IMAGE, 1))
    await emu.wait_for(lambda: refusals(emu, "v1", "v2"))
    assert llm.images_generated == 5

    # Regenerate by writing it: the whole set, with all feedback so far.
    await emu.user_posts(CHANNEL, "regenerate the images", thread_ts=card.ts)
    review3 = await reviewed(emu, "reference_image:v3")
    assert llm.images_generated == 9

    # 3. Images approved → storyboard: pages in the thread, the same shot list as a file.
    await emu.click(review3.ts, "story_approve")
    board = await reviewed(emu, "storyboard:v1:p", timeout=15)
    text = "\n".join(block_text(m) for m in by_slot(emu, "storyboard:v1:p", prefix=True))
    assert "Storyboard v1" in text and "Shot 1" in text and "Scene 1" in text and "Hero" in text
    md = [f for f in emu.files_in_thread(CHANNEL, card.ts) if f.filename.endswith(".md")]
    assert len(md) == 1 and b"| # |" in md[0].bytes
    await emu.wait_for(lambda: action_ids(emu.message(CHANNEL, review3.ts)) == [], timeout=5)
    assert "Approved v3" in block_text(emu.message(CHANNEL, review3.ts))

    # Same loop: feedback, Regenerate, Approve.
    await emu.user_posts(CHANNEL, "shot 2 should be a close-up", thread_ts=card.ts)
    await emu.wait_for(lambda: len(by_slot(emu, "reply:", channel=CHANNEL, prefix=True)) >= 2)
    await emu.click(board.ts, "story_regenerate")
    board2 = await reviewed(emu, "storyboard:v2:p")
    await emu.click(board2.ts, "story_approve", value=value(sid, Stage.STORYBOARD, 1))
    await emu.wait_for(lambda: refusals(emu, "v1", "v2", "storyboard"))  # a stale click
    await emu.click(board2.ts, "story_approve")

    # 4. Storyboard approved: the video's plan and cost, waiting for a confirmation
    #    (tests/e2e/test_video_flow.py goes on from here).
    plan = (await emu.wait_for(lambda: by_slot(emu, "video:plan:1", channel=CHANNEL)))[0]
    assert "Estimated cost" in block_text(plan)
    await emu.wait_for(
        lambda: "waiting for confirmation" in block_text(emu.message(CHANNEL, card.ts)),
        timeout=5,
    )
    session = await app.session(emu.team_id, sid)
    assert session is not None
    assert session.stage is Stage.VIDEO and session.status is Status.AWAITING_CONFIRMATION
    assert [a.stage for a in session.approvals] == [
        Stage.STORY,
        Stage.REFERENCE_IMAGE,
        Stage.STORYBOARD,
    ]
    assert session.spent_usd > 0
    assert llm.images_generated == 9  # nothing paid after the images
    assert llm.video_creates == []  # nor before a confirmation
    assert emu.unescaped_broadcasts() == []


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_a_stale_click_at_each_stage_is_refused(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _card, sid, images = await approve_story(emu)
    # The story's buttons are gone; a forged story Approve is answered "already approved".
    await emu.click(images.ts, "story_approve", value=value(sid, Stage.STORY, 1))
    await emu.wait_for(lambda: refusals(emu, "already approved"))
    # A storyboard button before the storyboard exists.
    await emu.click(images.ts, "story_approve", value=value(sid, Stage.STORYBOARD, 1))
    await emu.wait_for(lambda: refusals(emu, "isn't at"))
    # Redo with an item out of range.
    await emu.click(images.ts, "stage_redo", value=value(sid, Stage.REFERENCE_IMAGE, 1, item=9))
    await emu.wait_for(lambda: refusals(emu, "no image 9"))
    assert llm.images_generated == 4


async def test_only_the_creator_approves_images(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _card, sid, images = await approve_story(emu)
    await emu.click(images.ts, "story_approve", user="U0BOB")
    await emu.wait_for(lambda: refusals(emu, "Only", "<@U0ALICE>"))
    session = await app.session(emu.team_id, sid)
    assert session is not None and session.stage is Stage.REFERENCE_IMAGE


async def test_approving_a_set_five_times_at_once_approves_it_once(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _card, sid, images = await approve_story(emu)
    await asyncio.gather(*(emu.click(images.ts, "story_approve") for _ in range(5)))
    await reviewed(emu, "storyboard:v1:p")
    await emu.wait_for(lambda: len(refusals(emu, "already approved")) == 4, timeout=10)
    assert len(by_slot(emu, "approved:reference_image", channel=CHANNEL)) == 1
    storyboards = [r for r in llm.requests if "storyboard" in str(r["json"].get("response_format"))]
    assert len(storyboards) == 1
    session = await app.session(emu.team_id, sid)
    assert session is not None and session.stage is Stage.STORYBOARD
    assert [a.stage for a in session.approvals] == [Stage.STORY, Stage.REFERENCE_IMAGE]
