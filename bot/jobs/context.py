"""What every flow needs: the ports (session store, chat and files, writer, images — see
``bot/jobs/ports.py``), where paid bytes wait on their way to Slack (the spool), and a clock.

The fields are typed with the ports, not the Redis/Slack/OpenAI classes, so the flows run the
same against the production objects (``bot/app.py``) and the in-memory fakes of the unit tests
(``tests/unit/fakes.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.crashpoints import CrashPoints
from bot.jobs.model import Job
from bot.jobs.ports import Chat, FileSharer, ImageMaker, JobStore, Writer
from bot.media.speech import SpeechMaker
from bot.media.video import VideoProvider
from bot.metrics import Metrics
from bot.pipeline.models import Session, Stage
from bot.pipeline.pricing import ImagePrices
from storage.repository import Writes

if TYPE_CHECKING:
    from bot.jobs.stages.base import StageWork


@dataclass
class FlowContext:
    settings: Settings
    repo: JobStore  # production: storage.repository.Repository
    gateway: Chat  # production: bot.slack.gateway.SlackGateway
    llm: Writer  # production: bot.llm.client.LLMClient
    crash: CrashPoints
    images: ImageMaker  # production: bot.media.images.ImageClient
    uploads: FileSharer  # production: bot.slack.uploads.Uploads
    spool: Path
    video: VideoProvider  # production: bot.media.video.OpenAIVideoJobs
    speech: SpeechMaker  # production: bot.media.speech.SpeechClient
    clock: Callable[[], float] = field(default=time.time)
    # The process's metrics (bot/metrics.py): paid spending is counted where it is recorded.
    metrics: Metrics = field(default_factory=Metrics)
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
        self,
        job: Job,
        old: Session,
        *,
        writes: Writes | None = None,
        last: bool = False,
        **changes: Any,
    ) -> Session:
        """Commit ``changes`` to the session under this job's lease (compare-and-set).

        ``last``: nothing of the job follows (its outcome is shown): the commit also
        acknowledges the job and gives the lease back — one round trip instead of two."""
        new = old.model_copy(update={**changes, "updated_at": self.clock()})
        finish = job.entry_id if last and not job.eager else ""
        return await self.repo.commit(old, new, fence=job.fence, writes=writes, finish=finish)
