"""What handlers are given: the settings and the durable intake. Nothing slow."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.crashpoints import CrashPoints
from bot.pipeline.triggers import StartSession, Trigger, TriggerKind
from storage.home import HomeMarks
from storage.intake import Intake
from storage.repository import Repository

if TYPE_CHECKING:
    from bot.jobs.eager import EagerLane

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandlerServices:
    settings: Settings
    intake: Intake
    crash: CrashPoints
    eager: EagerLane | None = None
    # Read only in handlers: the Versions modal lists what is stored (handlers/versions.py).
    repo: Repository | None = None
    # The App Home's viewer marks (handlers/home.py): opening the tab records, the worker publishes.
    home: HomeMarks | None = None

    async def record(self, trigger: Trigger) -> bool:
        """Durably record a command/click/modal trigger; False (logged) if storage failed.

        The handler acks either way: with its usual answer, or with a friendly error. When the
        intake took the session's lease, the eager lane starts showing the first change; its
        task runs once the handler has returned its ack.
        """
        lease_ms = self.eager.lease_ms if self.eager is not None else 0
        if trigger.kind is TriggerKind.DELETE:
            lease_ms = 0  # a worker deletes: it takes the lease even from a running render
        create = None
        if isinstance(trigger, StartSession) and lease_ms:
            create = trigger.new_session(
                default_policy=self.settings.approval_policy, now=time.time()
            ).model_copy(update={"rev": 1})
        try:
            recorded = await self.intake.submit(trigger, eager_lease_ms=lease_ms, create=create)
        except Exception:
            log.exception("intake failed for %s", trigger.kind)
            return False
        self.crash.reach("after_intake")
        if recorded.fence and self.eager is not None:
            self.eager.start(trigger, recorded.fence, recorded.session, created=recorded.created)
        return True
