"""A job as a worker holds it: the trigger, its stream entry and the session lease's fence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.pipeline.models import Session
from bot.pipeline.triggers import Trigger


class SessionReader(Protocol):
    async def get(self, team_id: str, session_id: str) -> Session | None: ...


@dataclass(frozen=True)
class Job:
    id: str
    trigger: Trigger
    entry_id: str
    deliveries: int  # 1 on first delivery; more after a crash or a lost lease
    fence: int  # the session lease token every commit of this job is checked against
    # Run by the listener's eager lane: stop (raise Deferred) where a worker's work begins.
    eager: bool = False
    # The eager lane already showed this job's placeholder: the worker doesn't edit it again.
    shown: bool = False
    # Eager lane only: the session as read together with the lease (None: there is none).
    session: Session | None = None
    # Eager lane only: the intake script created ``session`` (a new /story): nothing was posted.
    created: bool = False

    async def load(self, repo: SessionReader) -> Session | None:
        """The session this job works on: the eager lane's copy, else read now."""
        if self.eager:
            return self.session
        return await repo.get(self.trigger.team_id, self.trigger.session_id)

    @property
    def recover(self) -> bool:
        """A re-delivered job looks in Slack for posts an earlier attempt may have made."""
        return self.deliveries > 1


class Deferred(Exception):
    """The eager lane reached the work that belongs to a worker (an LLM call) and stops."""
