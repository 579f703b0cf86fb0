"""Job ids come from Slack's own identity for an event, so re-deliveries map onto one job."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from bot.pipeline.triggers import (
    Approve,
    Feedback,
    Regenerate,
    Retry,
    StartSession,
    Trigger,
    session_id_for,
)

BASE = {"team_id": "T0TEAM", "channel_id": "C0TALES", "user_id": "U0ALICE"}


def click(cls: type[Approve | Regenerate | Retry], **changes: Any) -> Approve | Regenerate | Retry:
    fields = BASE | {
        "session_id": "sess_1",
        "version": 2,
        "message_ts": "1700000000.000100",
        "action_ts": "1700000050.123456",
    }
    return cls(**(fields | changes))


def feedback(**changes: Any) -> Feedback:
    fields = BASE | {
        "session_id": "sess_1",
        "thread_ts": "1700000000.000100",
        "ts": "1700000100.000200",
        "text": "funnier",
    }
    return Feedback(**(fields | changes))


@pytest.mark.parametrize("cls", [Approve, Regenerate, Retry])
def test_click_job_id_is_deterministic(cls: type[Approve | Regenerate | Retry]) -> None:
    assert click(cls).job_id == click(cls).job_id


@pytest.mark.parametrize("cls", [Approve, Regenerate, Retry])
def test_distinct_clicks_get_distinct_jobs(cls: type[Approve | Regenerate | Retry]) -> None:
    assert click(cls).job_id != click(cls, action_ts="1700000051.000001").job_id


def test_a_redelivered_click_maps_to_the_same_job_whatever_its_payload_extras() -> None:
    first = click(Approve, response_url="https://hooks.slack.test/a")
    again = click(Approve, response_url="https://hooks.slack.test/b")
    assert first.job_id == again.job_id


def test_click_job_id_depends_on_kind_user_session_and_team() -> None:
    ids = {
        click(Approve).job_id,
        click(Regenerate).job_id,
        click(Approve, user_id="U0BOB").job_id,
        click(Approve, session_id="sess_2").job_id,
        click(Approve, team_id="T0OTHER").job_id,
    }
    assert len(ids) == 5


def test_feedback_job_id_is_the_message_identity() -> None:
    assert feedback().job_id == feedback(text="edited text").job_id
    assert feedback().job_id != feedback(ts="1700000101.000000").job_id
    assert feedback().job_id != feedback(channel_id="C0OTHER").job_id
    assert feedback().job_id != feedback(team_id="T0OTHER").job_id


def test_start_job_id_follows_the_session_id() -> None:
    def start(**changes: Any) -> StartSession:
        fields = BASE | {"session_id": "sess_1", "prompt": "launch", "duration_s": 30}
        return StartSession(**(fields | changes))

    assert start().job_id == start(prompt="other words").job_id
    assert start().job_id != start(session_id="sess_2").job_id
    assert start().job_id != start(team_id="T0OTHER").job_id


def test_session_id_is_stable_per_interaction_and_team() -> None:
    sid = session_id_for("T0TEAM", "trigger.123")
    assert sid == session_id_for("T0TEAM", "trigger.123")
    assert sid != session_id_for("T0OTHER", "trigger.123")
    assert sid != session_id_for("T0TEAM", "trigger.124")
    assert len(sid) == 20
    assert sid.isalnum()


def test_triggers_round_trip_through_the_discriminated_union() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(Trigger)
    for trigger in (click(Approve), click(Regenerate), click(Retry), feedback()):
        restored = adapter.validate_json(adapter.dump_json(trigger))
        assert type(restored) is type(trigger)
        assert restored == trigger
        assert restored.job_id == trigger.job_id
