"""What every flow needs: the ports (repository, Slack gateway, LLM) and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings
from bot.jobs.crashpoints import CrashPoints
from bot.jobs.model import Job
from bot.llm.client import LLMClient
from bot.pipeline.models import Session
from bot.slack.gateway import SlackGateway
from storage.repository import Repository, Writes


@dataclass
class FlowContext:
    settings: Settings
    repo: Repository
    gateway: SlackGateway
    llm: LLMClient
    crash: CrashPoints
    clock: Callable[[], float] = field(default=time.time)

    async def commit(
        self, job: Job, old: Session, *, writes: Writes | None = None, **changes: Any
    ) -> Session:
        """Commit ``changes`` to the session under this job's lease (compare-and-set)."""
        new = old.model_copy(update={**changes, "updated_at": self.clock()})
        return await self.repo.commit(old, new, fence=job.fence, writes=writes)
