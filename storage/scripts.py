"""The Lua scripts, loaded from ``storage/lua`` once and run by SHA (EVALSHA, EVAL fallback)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript

from storage.connection import Client

_LUA = Path(__file__).with_name("lua")
NAMES = (
    "intake",
    "intake_feedback",
    "commit",
    "acquire",
    "renew",
    "release",
    "handoff",
    "item",
    "spend",
    "home_open",
    "home_take",
    "seize",
    "erase",
    "budget",
    "claim",
    "finish",
    "hput",
)


# Scripts that use a shared Lua function get its file prepended (Redis has no includes).
PRELUDES: dict[str, tuple[str, ...]] = {
    "acquire": ("lease",),
    "claim": ("lease",),
    "intake": ("lease",),
    "seize": ("lease",),
    "finish": ("records",),
    "handoff": ("records",),
    "hput": ("records",),
}


@cache
def source(name: str) -> str:
    parts = [*PRELUDES.get(name, ()), name]
    return "\n".join((_LUA / f"{part}.lua").read_text(encoding="utf-8") for part in parts)


class Scripts:
    """Registered scripts for one client; redis-py re-loads them after a Redis restart (or on
    a cluster primary that hasn't seen them). Keys are always passed as KEYS, so the cluster
    client routes EVALSHA by them (and refuses keys of several slots before sending)."""

    def __init__(self, redis: Client) -> None:
        self.redis = redis
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source(name)) for name in NAMES
        }

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)
