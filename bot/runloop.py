"""Running a process's main coroutine on the configured event loop.

uvloop (libuv underneath) does the loop's own work — ready callbacks, timers, socket reads and
writes — in C. A replica is mostly that work: Socket Mode frames and acks in the listener,
streamed LLM chunks, Redis replies and Slack calls in the worker (bench/README.md, the profile).
``STORYLOOP_EVENT_LOOP=asyncio`` keeps the standard library's loop, e.g. to compare the two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], loop: Literal["uvloop", "asyncio"] = "uvloop") -> T:
    """``asyncio.run(main)`` on ``loop``."""
    if loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only the processes that run on it load it

        return uvloop.run(main)
    return asyncio.run(main)
