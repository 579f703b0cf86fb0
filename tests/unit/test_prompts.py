"""Prompts: what the LLM is told, who said what, and a conversation size that levels off."""

from __future__ import annotations

from typing import Any

import pytest

from bot.pipeline.models import Scene, Session, Status, Story, Turn, TurnRole
from bot.pipeline.prompts import (
    CHANGE_CHARS,
    MAX_REQUESTED_CHANGES,
    TURN_CHARS,
    ChatMessage,
    feedback_messages,
    fold_changes,
    render_story,
    story_messages,
)

STORY = Story(
    title="The Bottle That Came Back",
    logline="A bottle refuses to be thrown away.",
    narrative="It starts in a kitchen and ends on a mountain.",
    scenes=(
        Scene(number=1, duration_s=12, visuals="A kitchen at dawn", voiceover="Meet Bo."),
        Scene(number=2, duration_s=18, visuals="A mountain top", voiceover=""),
    ),
)


def make_session(**changes: Any) -> Session:
    fields: dict[str, Any] = {
        "id": "sess_1",
        "team_id": "T0TEAM",
        "channel_id": "C0TALES",
        "owner_id": "U0ALICE",
        "prompt": "eco water bottle launch",
        "duration_s": 45,
        "status": Status.AWAITING_REVIEW,
        "version": 3,
        "created_at": 1.0,
        "updated_at": 2.0,
    }
    fields.update(changes)
    return Session(**fields)


def user(text: str, user_id: str = "U0BOB", ts: str = "1.1") -> Turn:
    return Turn(role=TurnRole.USER, ts=ts, user_id=user_id, text=text)


def assistant(text: str, ts: str = "1.1", planned: tuple[str, ...] = ()) -> Turn:
    return Turn(role=TurnRole.ASSISTANT, ts=ts, text=text, planned_changes=planned)


def user_content(messages: list[ChatMessage]) -> str:
    assert [m["role"] for m in messages] == ["system", "user"]
    return messages[1]["content"]


def total_chars(messages: list[ChatMessage]) -> int:
    return sum(len(m["content"]) for m in messages)


# --- story prompt -----------------------------------------------------------------------------


def test_first_story_prompt_has_brief_and_target_duration() -> None:
    text = user_content(story_messages(make_session(version=0), None, [], []))
    assert "<brief>\neco water bottle launch\n</brief>" in text
    assert text.rstrip().endswith("Write the story. Target duration: 45 seconds.")
    assert "<story>" not in text
    assert "Requested changes" not in text


def test_tone_is_included_when_set() -> None:
    text = user_content(story_messages(make_session(tone="playful"), None, [], []))
    assert "Tone: playful" in text


def test_regeneration_includes_the_current_version_and_changes() -> None:
    changes = ["make it funnier", "shorter intro"]
    text = user_content(story_messages(make_session(), STORY, [], changes))
    assert f"Current version (v3):\n<story>\n{render_story(STORY)}\n</story>" in text
    assert "Requested changes:\n- make it funnier\n- shorter intro" in text
    assert "Rewrite the story taking all requested changes into account" in text
    assert "Target duration: 45 seconds." in text


def test_story_prompt_sends_user_feedback_only_with_authors() -> None:
    feedback = [user("add a dog", "U0BOB"), assistant("Sure, a dog."), user("blue", "U0CAROL")]
    text = user_content(story_messages(make_session(), STORY, feedback, []))
    assert "<feedback>\n<@U0BOB>: add a dog\n<@U0CAROL>: blue\n</feedback>" in text
    assert "Sure, a dog." not in text


def test_render_story_lists_every_scene() -> None:
    rendered = render_story(STORY)
    assert rendered.startswith("Title: The Bottle That Came Back\n")
    assert "Scene 1 (12 s): visuals: A kitchen at dawn | voice-over: Meet Bo." in rendered
    assert "Scene 2 (18 s): visuals: A mountain top | voice-over: " in rendered


# --- feedback prompt --------------------------------------------------------------------------


def test_feedback_prompt_attributes_authors() -> None:
    context = [user("make it funnier", "U0BOB"), assistant("Will do.")]
    new = [user("and add a dog", "U0CAROL")]
    text = user_content(feedback_messages(make_session(), STORY, context, new))
    assert "Earlier in the thread:\n<@U0BOB>: make it funnier\nStoryloop: Will do." in text
    assert "New feedback to answer:\n<feedback>\n<@U0CAROL>: and add a dog\n</feedback>" in text


def test_feedback_prompt_lists_changes_already_agreed() -> None:
    session = make_session(requested_changes=("funnier", "add a dog"))
    text = user_content(feedback_messages(session, STORY, [], [user("ok")]))
    assert "Changes already agreed:\n- funnier\n- add a dog" in text


def test_long_turns_are_clipped() -> None:
    text = user_content(feedback_messages(make_session(), None, [], [user("z" * 5000)]))
    assert "z" * (TURN_CHARS - 1) + "…" in text
    assert "z" * TURN_CHARS not in text


def test_status_and_failure_text_never_reach_the_prompt() -> None:
    session = make_session(
        status=Status.FAILED,
        failure="NOTICE: the LLM endpoint timed out",
        failed_op="regenerate",
        approved_by="U0ZED",
    )
    feedback = [user("funnier please")]
    for messages in (
        story_messages(session, STORY, feedback, ["funnier"]),
        feedback_messages(session, STORY, feedback, feedback),
    ):
        joined = "\n".join(m["content"] for m in messages)
        assert "NOTICE" not in joined
        assert "timed out" not in joined
        assert "U0ZED" not in joined
        assert "failed" not in joined.lower()


# --- boundedness ------------------------------------------------------------------------------


def simulate(turns: int) -> tuple[Session, list[Turn]]:
    """A thread of alternating feedback and answers; every answer plans three changes."""
    history: list[Turn] = []
    changes: tuple[str, ...] = ()
    for i in range(turns):
        ts = f"{1000 + i}.000100"
        if i % 2 == 0:
            text = f"feedback {i:04d}: " + "more energy in the opening shot, please. " * 8
            history.append(user(text, f"U{i % 7:07d}", ts))
        else:
            planned = tuple(f"change {i:04d}-{k}: " + "adjust pacing " * 6 for k in range(3))
            history.append(assistant(f"answer {i:04d}: " + "sounds good. " * 20, ts, planned))
            changes = fold_changes(changes, planned)
    return make_session(requested_changes=changes), history


@pytest.mark.parametrize("build", ["story", "feedback"])
def test_prompt_size_levels_off_as_the_thread_grows(build: str) -> None:
    sizes: dict[int, int] = {}
    for n in (20, 50, 100, 500):
        session, history = simulate(n)
        assert len(session.requested_changes) == MAX_REQUESTED_CHANGES
        if build == "story":
            messages = story_messages(session, STORY, history, session.requested_changes)
        else:
            messages = feedback_messages(session, STORY, history[:-1], history[-1:])
        sizes[n] = total_chars(messages)
    for n in (50, 100, 500):
        assert abs(sizes[n] - sizes[20]) <= 0.10 * sizes[20], sizes
    assert abs(sizes[500] - sizes[100]) <= 0.01 * sizes[100], sizes


def test_unfolded_changes_passed_directly_are_still_capped_and_clipped() -> None:
    changes = [f"change {i}: " + "x" * 1000 for i in range(200)]
    text = user_content(story_messages(make_session(), STORY, [], changes))
    lines = [line for line in text.splitlines() if line.startswith("- change")]
    assert len(lines) == MAX_REQUESTED_CHANGES
    assert lines[-1].startswith("- change 199:")
    assert all(len(line) <= CHANGE_CHARS + 2 for line in lines)


# --- fold_changes -----------------------------------------------------------------------------


def test_fold_changes_appends_new_changes_in_order() -> None:
    assert fold_changes(("funnier",), ["add a dog", "blue sky"]) == (
        "funnier",
        "add a dog",
        "blue sky",
    )


def test_fold_changes_drops_repeats_and_blanks_and_normalises_spaces() -> None:
    folded = fold_changes(("add a dog",), ["add  a\ndog", "", "   ", "blue sky", "blue sky"])
    assert folded == ("add a dog", "blue sky")


def test_fold_changes_is_capped_without_duplicates() -> None:
    folded: tuple[str, ...] = ()
    for round_ in range(40):
        folded = fold_changes(folded, [f"change {round_}", f"change {round_ // 2}", "same"])
        assert len(folded) <= MAX_REQUESTED_CHANGES
        assert len(set(folded)) == len(folded)
    assert folded[-3:] == ("change 39", "change 19", "same")


def test_fold_changes_clips_each_change() -> None:
    (change,) = fold_changes((), ["y" * 1000])
    assert len(change) == CHANGE_CHARS
    assert change.endswith("…")


def test_fold_changes_keeps_a_change_that_was_just_requested_again() -> None:
    existing = tuple(f"change {i}" for i in range(MAX_REQUESTED_CHANGES))
    folded = fold_changes(existing, ["change 0", "brand new"])
    assert "change 0" in folded
    assert "brand new" in folded
