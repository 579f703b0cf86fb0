"""What handlers are given: the settings and the durable intake. Nothing slow."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.jobs.crashpoints import CrashPoints
from storage.intake import Intake


@dataclass(frozen=True)
class HandlerServices:
    settings: Settings
    intake: Intake
    crash: CrashPoints
