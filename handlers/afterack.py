"""Slack calls a handler makes once its answer is on its way: opening a modal, a private hint.

Bolt runs with ``process_before_response=True`` (docs/DESIGN.md), so whatever a listener awaits
delays its ack; a Web API call is a round trip to Slack that can take seconds on a bad day.
These calls are started as tasks instead and run while Bolt sends the ack.

They are deliberately not durable jobs: a ``trigger_id`` is dead three seconds after the click,
so a ``views.open`` replayed after a restart could only fail, and a hint ("mention me with what
the story is about") is advice, not work. A failure is logged, never shown as an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class AfterAck:
    """Runs small Slack calls after the ack; keeps a reference so a task isn't collected."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def run(self, what: str, call: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(self._guarded(what, call))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    @staticmethod
    async def _guarded(what: str, call: Coroutine[Any, Any, Any]) -> None:
        try:
            await call
        except Exception:
            log.warning("%s failed", what, exc_info=True)
