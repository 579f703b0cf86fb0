"""What every flow needs: the ports (repository, Slack gateway and uploads, LLM, images), where
paid bytes wait on their way to Slack (the spool), and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.crashpoints import CrashPoints
from bot.jobs.model import Job
from bot.llm.client import LLMClient
from bot.media.images import ImageMaker
from bot.pipeline.models import Session, Stage
from bot.pipeline.pricing import ImagePrices
from bot.slack.gateway import SlackGateway
from bot.slack.uploads import Uploads
from storage.repository import Repository, Writes

if TYPE_CHECKING:
    from bot.jobs.stages.base import StageWork


@dataclass
class FlowContext:
    settings: Settings
    repo: Repository
    gateway: SlackGateway
    llm: LLMClient
    crash: CrashPoints
    images: ImageMaker
    uploads: Uploads
    spool: Path
    clock: Callable[[], float] = field(default=time.time)
    # Each stage's job-side part (bot/jobs/stages), filled in by ``Flows``.
    stages: dict[Stage, StageWork] = field(default_factory=dict)

    @property
    def image_prices(self) -> ImagePrices:
        s = self.settings
        return ImagePrices(
            estimate_usd=s.image_estimate_usd,
            text_input_per_m=s.image_text_input_per_m_usd,
            image_input_per_m=s.image_image_input_per_m_usd,
            output_per_m=s.image_output_per_m_usd,
        )

    def today(self) -> str:
        """The UTC day spending limits count in (``YYYYMMDD``)."""
        return time.strftime("%Y%m%d", time.gmtime(self.clock()))

    async def commit(
        self, job: Job, old: Session, *, writes: Writes | None = None, **changes: Any
    ) -> Session:
        """Commit ``changes`` to the session under this job's lease (compare-and-set)."""
        new = old.model_copy(update={**changes, "updated_at": self.clock()})
        return await self.repo.commit(old, new, fence=job.fence, writes=writes)
