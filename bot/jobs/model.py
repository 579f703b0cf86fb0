"""A job as a worker holds it: the trigger, its stream entry and the session lease's fence."""

from __future__ import annotations

from dataclasses import dataclass

from bot.pipeline.triggers import Trigger


@dataclass(frozen=True)
class Job:
    id: str
    trigger: Trigger
    entry_id: str
    deliveries: int  # 1 on first delivery; more after a crash or a lost lease
    fence: int  # the session lease token every commit of this job is checked against

    @property
    def recover(self) -> bool:
        """A re-delivered job looks in Slack for posts an earlier attempt may have made."""
        return self.deliveries > 1
