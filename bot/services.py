"""What handlers are given: the settings and the durable intake. Nothing slow."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.config import Settings
from bot.jobs.crashpoints import CrashPoints
from bot.pipeline.triggers import Trigger
from storage.intake import Intake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HandlerServices:
    settings: Settings
    intake: Intake
    crash: CrashPoints

    async def record(self, trigger: Trigger) -> bool:
        """Durably record a command/click/modal trigger; False (logged) if storage failed.

        The handler acks either way: with its usual answer, or with a friendly error.
        """
        try:
            await self.intake.submit(trigger)
        except Exception:
            log.exception("intake failed for %s", trigger.kind)
            return False
        self.crash.reach("after_intake")
        return True
