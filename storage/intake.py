"""Durable intake: the one Redis round trip a handler makes before it acks.

Each trigger is deduplicated by its Slack identity and enqueued on the jobs stream in a single
Lua script, so a re-delivered event, a double click's retry or redis-py's own re-send of the
command all collapse into one job.
"""

from __future__ import annotations

from enum import Enum

from pydantic import TypeAdapter

from bot.pipeline.models import Turn
from bot.pipeline.triggers import Feedback, Trigger
from storage import keys
from storage.scripts import Scripts

TRIGGER: TypeAdapter[Trigger] = TypeAdapter(Trigger)


class Outcome(Enum):
    ENQUEUED = "enqueued"
    DUPLICATE = "duplicate"
    NOT_OURS = "not_ours"  # a thread reply in a thread no session owns


class Intake:
    def __init__(self, scripts: Scripts, *, session_ttl_s: int) -> None:
        self._scripts = scripts
        self._session_ttl_s = session_ttl_s

    async def submit(self, trigger: Trigger) -> Outcome:
        """Record a command or click trigger (dedupe + enqueue, atomically)."""
        done = await self._scripts.run(
            "intake",
            [keys.dedupe(trigger.team_id, trigger.job_id), keys.JOBS_STREAM],
            [trigger.job_id, trigger.model_dump_json(), keys.DEDUPE_TTL_S],
        )
        return Outcome.ENQUEUED if int(done) == 1 else Outcome.DUPLICATE

    async def submit_feedback(self, feedback: Feedback, turn: Turn) -> Outcome:
        """Record a thread reply: only for a session thread; appends the turn to its history."""
        status, _sid = await self._scripts.run(
            "intake_feedback",
            [
                keys.thread(feedback.team_id, feedback.channel_id, feedback.thread_ts),
                keys.dedupe(feedback.team_id, feedback.job_id),
                keys.JOBS_STREAM,
            ],
            [
                feedback.job_id,
                feedback.model_dump_json(),
                turn.model_dump_json(),
                keys.DEDUPE_TTL_S,
                keys.thread_prefix(feedback.team_id),
                self._session_ttl_s,
            ],
        )
        return {1: Outcome.ENQUEUED, 0: Outcome.NOT_OURS}.get(int(status), Outcome.DUPLICATE)
