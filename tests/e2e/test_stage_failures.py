"""Failures in the paid stage, said plainly in the thread — and never paid for twice.

Nothing fails silently: a refusal by the image provider's safety system names the image and
says what to do; a 429 or a provider error offers Retry; a workspace that doesn't allow uploads
is told so; a daily spending limit refuses before anything is spent. Every paid call is counted
by the image emulator.
"""

from __future__ import annotations

from bot.pipeline.models import Stage, Status
from bot.slack.actions import StageButtonValue
from tests.e2e.harness import AppUnderTest, action_ids, block_text, by_slot
from tests.e2e.test_failures import running_app
from tests.e2e.test_stages_flow import CHANNEL, approve_story, reviewed
from tests.e2e.test_story_flow import _session_id, start_story
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage
from tests.support.redis_server import RedisServer


def failures(emu: SlackEmulator) -> list[StoredMessage]:
    return [m for m in by_slot(emu, "fail:", channel=CHANNEL, prefix=True)]


async def test_a_moderation_refusal_names_the_image_and_redo_fixes_it(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    llm.enqueue_image_fault("moderation_blocked")  # the first image of the set
    card, story = await start_story(emu)
    sid = _session_id(story)
    await emu.click(story.ts, "story_approve")
    review = await emu.wait_for(
        lambda: [m for m in by_slot(emu, "reference_image:v1") if action_ids(m)], timeout=15
    )
    text = block_text(review[0])
    assert "Couldn't be made" in text and "safety system" in text and "reword" in text
    assert "story_approve" not in action_ids(review[0])  # an incomplete set can't be approved
    assert len(llm.image_requests) == 4 and llm.images_generated == 3  # never retried by itself
    forged = StageButtonValue(session=sid, stage=Stage.REFERENCE_IMAGE, version=1).encode()
    await emu.click(review[0].ts, "story_regenerate", value=forged)  # still possible
    await reviewed(emu, "reference_image:v2")
    assert llm.images_generated == 7
    assert card.ts  # (the thread stayed the session's)


async def test_a_rate_limited_set_offers_retry_and_stops_paying(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    llm.enqueue_image_fault("status", status=429, retry_after=1)
    _card, story = await start_story(emu)
    sid = _session_id(story)
    await emu.click(story.ts, "story_approve")
    failed = await emu.wait_for(lambda: failures(emu), timeout=15)
    assert "busy" in block_text(failed[0]) and "story_retry" in action_ids(failed[0])
    assert len(llm.image_requests) == 1  # the rest wasn't attempted after a 429
    session = await app.session(emu.team_id, sid)
    assert session is not None
    assert session.stage is Stage.REFERENCE_IMAGE and session.status is Status.FAILED
    await emu.click(failed[0].ts, "story_retry")
    await reviewed(emu, "reference_image:v1")
    assert len(llm.image_requests) == 5 and llm.images_generated == 4


async def test_uploads_turned_off_are_explained_and_nothing_more_is_paid(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _card, story = await start_story(emu)
    emu.file_uploads_disabled = True
    await emu.click(story.ts, "story_approve")
    failed = await emu.wait_for(lambda: failures(emu), timeout=15)
    assert "File uploads are turned off" in block_text(failed[0])
    assert "story_retry" in action_ids(failed[0])
    assert len(llm.image_requests) == 1  # the first image was made; no more until fixed
    assert emu.uploaded_files == []


async def test_the_daily_spending_limit_refuses_before_anything_is_spent(
    emu: SlackEmulator, llm: FakeLLM, redis_server: RedisServer
) -> None:
    async with running_app(emu, llm, redis_server, STORYLOOP_DAILY_SPEND_LIMIT_USD="0.1"):
        _card, story = await start_story(emu)
        await emu.click(story.ts, "story_approve")
        failed = await emu.wait_for(lambda: failures(emu), timeout=15)
        text = block_text(failed[0])
        assert "daily spending limit" in text and "$0.10" in text
        assert "story_retry" in action_ids(failed[0])
        assert llm.image_requests == []


async def test_the_card_shows_the_estimate_before_and_the_cost_after(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, _sid, review = await approve_story(emu)
    shown = emu.message(CHANNEL, card.ts)
    assert shown is not None
    texts = [block_text(m) for m in [*shown.history, shown]]
    assert any("Estimated $0.20" in t for t in texts), texts
    await emu.wait_for(lambda: "Spent so far" in block_text(emu.message(CHANNEL, card.ts)))
    assert "Estimated" not in block_text(emu.message(CHANNEL, card.ts))
    assert "for this version" in block_text(review)
