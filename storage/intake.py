"""Durable intake: the one Redis round trip a handler makes before it acks.

Each trigger is deduplicated by its Slack identity and enqueued on the jobs stream in a single
Lua script, so a re-delivered event, a double click's retry or redis-py's own re-send of the
command all collapse into one job.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from enum import Enum

from pydantic import TypeAdapter

from bot.pipeline import slots
from bot.pipeline.models import Session, Turn
from bot.pipeline.triggers import Feedback, Trigger, TriggerKind
from storage import jobview, keys
from storage.jobview import JobView
from storage.scripts import Scripts

TRIGGER: TypeAdapter[Trigger] = TypeAdapter(Trigger)


# Slack wants an ack within 3 s. If Redis hasn't answered in this time, the handler answers with
# an error rather than letting the ack time out (the command may still have been recorded).
INTAKE_TIMEOUT_S = 2.0


class Outcome(Enum):
    ENQUEUED = "enqueued"
    DUPLICATE = "duplicate"
    NOT_OURS = "not_ours"  # a thread reply in a thread no session owns


@dataclass(frozen=True)
class Recorded:
    """What the intake did with a trigger; ``fence`` > 0: the eager lane holds the session."""

    outcome: Outcome
    fence: int = 0
    # With a fence: the session as the script read it while taking the lease (None: no session).
    session: Session | None = None
    # With a fence: the script created ``session`` (``create``): a new session, nothing posted.
    created: bool = False


class Intake:
    def __init__(self, scripts: Scripts, *, session_ttl_s: int) -> None:
        self._scripts = scripts
        self._session_ttl_s = session_ttl_s

    async def submit(
        self, trigger: Trigger, *, eager_lease_ms: int = 0, create: Session | None = None
    ) -> Recorded:
        """Record a command or click trigger (dedupe + enqueue, atomically).

        With ``eager_lease_ms`` the same script also takes the session's lease when it is free,
        so the listener can show the first change itself right after the ack (bot/jobs/eager.py);
        ``create`` (a new /story's session, rev 1) is then written if there is no session yet —
        the commit the lane would otherwise make before it can post the session card.
        """
        team, sid = trigger.team_id, trigger.session_id
        script_keys = [keys.dedupe(team, trigger.job_id), keys.jobs_stream(team)]
        args: list[object] = [trigger.job_id, trigger.model_dump_json(), keys.DEDUPE_TTL_S]
        if eager_lease_ms > 0:
            script_keys += [
                keys.lock(team, sid),
                keys.fence(team, sid),
                keys.session(team, sid),
                keys.eager(team, trigger.job_id),
                keys.tombstone(team, sid),
                keys.history(team, sid),
                keys.messages(team, sid),
            ]
            args += [
                eager_lease_ms,
                self._session_ttl_s,
                keys.DEDUPE_TTL_S,
                keys.EAGER_TTL_S,
                create.model_dump_json() if create is not None else "",
            ]
        if trigger.kind is TriggerKind.CANCEL:
            # The render under way holds the lease for minutes: it watches this key instead.
            script_keys.append(keys.cancel(team, sid))
            args.append(json.dumps({"job": trigger.job_id, "user": trigger.user_id}))
        async with asyncio.timeout(INTAKE_TIMEOUT_S):
            done, fence, *data = await self._scripts.run("intake", script_keys, args)
        if int(done) != 1:
            return Recorded(Outcome.DUPLICATE)
        session = Session.model_validate_json(data[0]) if data and data[0] else None
        if int(fence):
            # What the script read with the lease, for the eager lane: the lane's task is
            # started from this one (it inherits the context) and reads it instead of Redis.
            tomb, history_len, ledger, created = data[1:5]
            jobview.begin(
                JobView(
                    team_id=team,
                    session_id=sid,
                    job_id=trigger.job_id,
                    session=session,
                    done=None,
                    eager=None,
                    tombstone=dict(json.loads(tomb)) if tomb else None,
                    history=None,
                    history_len=int(history_len),
                    ledger={
                        str(k): str(v) for k, v in zip(ledger[0::2], ledger[1::2], strict=True)
                    },
                    markers=False,
                    unflushed={},
                    defer=True,
                    not_in=asyncio.current_task(),
                )
            )
            return Recorded(Outcome.ENQUEUED, int(fence), session, created=bool(int(created)))
        return Recorded(Outcome.ENQUEUED, int(fence), session)

    async def submit_feedback(
        self, feedback: Feedback, turn: Turn, *, replying_to_us: bool = False
    ) -> Outcome:
        """Record a thread reply: only for a session thread; appends the turn to its history.

        ``replying_to_us``: the thread's parent is a message of ours. Such a reply may arrive in
        the moment between the card being posted and its thread being indexed; it is kept
        aside and adopted by the session when the index is written.
        """
        async with asyncio.timeout(INTAKE_TIMEOUT_S):
            status, _sid = await self._scripts.run(
                "intake_feedback",
                [
                    keys.thread(feedback.team_id, feedback.channel_id, feedback.thread_ts),
                    keys.dedupe(feedback.team_id, feedback.job_id),
                    keys.jobs_stream(feedback.team_id),
                    keys.early_replies(feedback.team_id, feedback.channel_id, feedback.thread_ts),
                ],
                [
                    feedback.job_id,
                    feedback.model_dump_json(),
                    turn.model_dump_json(),
                    keys.DEDUPE_TTL_S,
                    keys.thread_prefix(feedback.team_id),
                    self._session_ttl_s,
                    "1" if replying_to_us else "0",
                    slots.stream_mark(slots.reply(feedback.ts)),
                ],
            )
        outcomes = {1: Outcome.ENQUEUED, 2: Outcome.ENQUEUED, 0: Outcome.NOT_OURS}
        return outcomes.get(int(status), Outcome.DUPLICATE)
