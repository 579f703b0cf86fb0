"""The story-review loop end to end: start, review, talk, regenerate, approve."""

from __future__ import annotations

from typing import Any

import pytest

from bot.slack.actions import ButtonValue
from tests.e2e.harness import AppUnderTest, action_ids, block_text, by_slot
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage


async def start_story(
    emu: SlackEmulator,
    text: str = "30s eco water bottle launch",
    *,
    user: str = "U0ALICE",
    channel: str = "C0PUBLIC",
) -> tuple[StoredMessage, StoredMessage]:
    ack = await emu.slash_command(text, user=user, channel=channel)
    assert ack.ok, ack.error
    card = (await emu.wait_for(lambda: by_slot(emu, "card", channel=channel), timeout=5))[-1]
    await emu.wait_for(
        lambda: [
            m
            for m in by_slot(emu, "story", channel=channel)
            if m.thread_ts == card.ts and "story_approve" in action_ids(m)
        ],
        timeout=10,
    )
    story = next(m for m in by_slot(emu, "story", channel=channel) if m.thread_ts == card.ts)
    return card, story


@pytest.mark.parametrize("mode", ["socket", "http"], indirect=True)
async def test_start_review_card_and_story(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    ack = await emu.slash_command("30s eco water bottle launch")
    assert ack.ok and ack.seconds < 1.0
    card = (await emu.wait_for(lambda: by_slot(emu, "card"), timeout=2))[0]
    card_text = block_text(card)
    assert "<@U0ALICE>" in card_text and "eco water bottle launch" in card_text
    assert "30 s" in card_text and "Story" in card_text and "Images" in card_text
    story = (await emu.wait_for(lambda: by_slot(emu, "story"), timeout=2))[0]
    assert story.thread_ts == card.ts
    first = story.history[0] if story.history else story
    assert "Generating your story" in block_text(first)
    await emu.wait_for(lambda: "story_approve" in action_ids(emu.message("C0PUBLIC", story.ts)))
    shown = emu.message("C0PUBLIC", story.ts)
    assert shown is not None
    text = block_text(shown)
    assert "Story v1" in text and "target 30 s" in text and "words" in text and "tokens" in text
    assert "Scene 1" in text and "Visuals" in text and "Voice-over" in text
    assert action_ids(shown) == ["story_approve", "story_regenerate"]
    approve = next(
        e
        for b in shown.blocks or []
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"] == "story_approve"
    )
    assert approve.get("style") == "primary"
    assert emu.unescaped_broadcasts() == []


async def test_story_durations_fit_target(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _card, story = await start_story(emu, "1m launch teaser")
    session = await app.session(emu.team_id, _session_id(story))
    assert session is not None and session.duration_s == 60
    version = await app.runtime.worker.repo.version(session, 1)  # type: ignore[union-attr]
    assert version is not None
    assert abs(version.story.total_duration_s - 60) <= 6


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)


def _session_id(msg: StoredMessage) -> str:
    return str((msg.metadata or {})["event_payload"]["session"])


async def test_progress_is_shown_while_writing(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    llm.set_latency(0.1, 400)  # ~2-3 s of streaming
    _card, story = await start_story(emu)
    texts = [block_text(v) for v in story.history]
    assert any("characters so far" in t for t in texts), texts


async def test_thread_reply_is_answered_with_attribution(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_story(emu)
    ts = await emu.user_posts(
        "C0PUBLIC", "make it funnier, focus on the refill", user="U0BOB", thread_ts=card.ts
    )
    reply = (await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5))[0]
    text = block_text(reply)
    assert "Got it" in text and "<@U0BOB>" in text
    session = await app.session(emu.team_id, _session_id(story))
    assert session is not None
    repo = app.runtime.worker.repo  # type: ignore[union-attr]

    async def turns() -> list[tuple[str, str | None]]:
        return [(t.role.value, t.user_id) for t in await repo.history(session)]

    # The answer is posted, then its turn committed: await the state, never read it once.
    await emu.wait_for(
        lambda: _equals(turns(), [("user", "U0BOB"), ("assistant", None)]), timeout=5
    )


async def test_noise_is_ignored(emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest) -> None:
    card, _story = await start_story(emu)
    before = len(llm.requests)
    await emu.user_posts("C0PUBLIC", "unrelated top-level chatter")
    other = await emu.user_posts("C0PUBLIC", "another thread root")
    await emu.user_posts("C0PUBLIC", "reply in a thread we didn't start", thread_ts=other)
    ts = await emu.user_posts("C0PUBLIC", "first thought", thread_ts=card.ts)
    await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5)
    await emu.user_edits("C0PUBLIC", ts, "edited thought")
    await emu.user_deletes("C0PUBLIC", ts)
    bot_event = {
        "type": "message",
        "subtype": "bot_message",
        "bot_id": "B0OTHER",
        "text": "beep",
        "channel": "C0PUBLIC",
        "ts": "1767229999.000100",
        "thread_ts": card.ts,
    }
    await emu.emit_event(bot_event)
    await emu.user_posts("C0PUBLIC", "second thought", thread_ts=card.ts)
    await emu.wait_for(lambda: len(by_slot(emu, "reply:", prefix=True)) == 2, timeout=5)
    assert len(llm.requests) == before + 2  # only the two real replies reached the LLM


async def test_regenerate_button_replaces_story_in_place(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_story(emu)
    ts = await emu.user_posts(
        "C0PUBLIC", "add a running gag about the lid", user="U0BOB", thread_ts=card.ts
    )
    await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5)
    llm.set_latency(0.3, None)
    ack = await emu.click(story.ts, "story_regenerate", user="U0BOB")
    assert ack.ok
    await emu.wait_for(
        lambda: any("Regenerating" in block_text(v) for v in [*story.history, story]), timeout=5
    )
    notice = (await emu.wait_for(lambda: by_slot(emu, "notice:2"), timeout=10))[0]
    assert "Story updated to v2" in block_text(notice)
    current = emu.message("C0PUBLIC", story.ts)
    assert current is not None
    text = block_text(current)
    assert "Story v2" in text and "add a running gag about the lid" in text
    assert action_ids(current) == ["story_approve", "story_regenerate", "stage_versions"]
    regenerating = [v for v in current.history if "Regenerating" in block_text(v)]
    assert regenerating and all(not action_ids(v) for v in regenerating)  # type: ignore[arg-type]
    assert len(by_slot(emu, "story")) == 1  # replaced in place, not re-posted
    session = await app.session(emu.team_id, _session_id(story))
    assert session is not None and session.version == 2
    versions = await app.runtime.worker.repo.all_versions(session)  # type: ignore[union-attr]
    assert [v.number for v in versions] == [1, 2]
    assert versions[1].feedback_ts == (ts,)


async def test_regenerate_by_writing_it(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_story(emu)
    await emu.user_posts("C0PUBLIC", "regenerate the story", thread_ts=card.ts)
    await emu.wait_for(lambda: by_slot(emu, "notice:2"), timeout=10)
    assert "Story v2" in block_text(emu.message("C0PUBLIC", story.ts))


async def test_llm_recognised_rewrite_request(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, _story = await start_story(emu)
    ts = await emu.user_posts(
        "C0PUBLIC", "this isn't working, start over with a beach setting", thread_ts=card.ts
    )
    await emu.wait_for(lambda: by_slot(emu, f"reply:{ts}"), timeout=5)
    await emu.wait_for(lambda: by_slot(emu, "notice:2"), timeout=10)


async def test_approve_moves_to_reference_images(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    """Every state that becomes visible later is awaited, never read once: the notice, the
    story losing its buttons and the card's update land in that order, but not at once."""
    card, story = await start_story(emu)
    ack = await emu.click(story.ts, "story_approve", user="U0ALICE")
    assert ack.ok
    notice = (await emu.wait_for(lambda: by_slot(emu, "approved"), timeout=5))[0]
    assert "Story approved" in block_text(notice)
    assert "Making the reference images" in block_text(notice)
    # The notice comes first (the quick answer to the click); then the story loses its buttons.
    await emu.wait_for(lambda: action_ids(emu.message("C0PUBLIC", story.ts)) == [], timeout=5)
    await emu.wait_for(
        lambda: "Approved v1 by <@U0ALICE>" in block_text(emu.message("C0PUBLIC", story.ts)),
        timeout=5,
    )
    await emu.wait_for(
        lambda: "Story ✅ · Images" in block_text(emu.message("C0PUBLIC", card.ts)), timeout=5
    )
    await emu.wait_for(
        lambda: "Story v1 approved by <@U0ALICE>" in block_text(emu.message("C0PUBLIC", card.ts)),
        timeout=5,
    )
    # The images stage runs: its review message arrives in the thread.
    await emu.wait_for(lambda: by_slot(emu, "reference_image:v1"), timeout=15)
    session = await app.session(emu.team_id, _session_id(story))
    assert session is not None and session.stage.value == "reference_image"
    assert session.approved_version == 1 and session.approved_by == "U0ALICE"


async def test_only_the_creator_may_approve(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _card, story = await start_story(emu, user="U0ALICE")
    await emu.click(story.ts, "story_approve", user="U0BOB")
    refusal = await emu.wait_for(lambda: [r for r in emu.responses if "Only" in r.text], timeout=5)
    assert "<@U0ALICE>" in refusal[0].text
    assert refusal[0].body.get("response_type") == "ephemeral"
    session = await app.session(emu.team_id, _session_id(story))
    assert session is not None and session.stage.value == "story"


async def test_double_click_approves_once(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    _card, story = await start_story(emu)
    await emu.click(story.ts, "story_approve")
    await emu.click(story.ts, "story_approve")
    await emu.wait_for(lambda: by_slot(emu, "approved"), timeout=5)
    await emu.wait_for(
        lambda: [r for r in emu.responses if "already approved" in r.text], timeout=5
    )
    assert len(by_slot(emu, "approved")) == 1


async def test_outdated_version_click_is_refused(
    emu: SlackEmulator, llm: FakeLLM, app: AppUnderTest
) -> None:
    card, story = await start_story(emu)
    await emu.click(story.ts, "story_regenerate")
    await emu.wait_for(lambda: by_slot(emu, "notice:2"), timeout=10)
    value = ButtonValue(session=_session_id(story), version=1).encode()
    await emu.click(story.ts, "story_approve", value=value)
    refusal = await emu.wait_for(
        lambda: [r for r in emu.responses if "v1" in r.text and "v2" in r.text], timeout=5
    )
    assert refusal
    session = await app.session(emu.team_id, _session_id(story))
    assert session is not None and session.stage.value == "story"
    del card
