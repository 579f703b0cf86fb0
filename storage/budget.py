"""Slack's rate limits as one budget shared by every replica, kept in Redis.

Why: each replica pacing itself can't know what the others send, and 100 concurrent generations
in one workspace make far more ``chat.update`` calls than Slack's Tier 3 allows (~50 a minute per
workspace), so progress edits ate the room the results needed and 429s delayed stories. Here every
``chat.postMessage`` and ``chat.update`` takes a token first, from token buckets in Redis
(``lua/budget.lua``, one round trip): the channel's (posts and edits, ~1 a second with a small
burst) and, for edits, the workspace's. Results and answers always get a token, waiting their
turn when the buckets are empty (a bounded wait); progress edits get one only when the buckets
hold more than a reserve kept for results, and are skipped otherwise, never queued — so nothing a
person is waiting for ever waits behind a progress edit.

Redis trouble never stops a post: the budget fails open (Slack's 429 handling still guards).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from redis.exceptions import RedisError

from storage import keys
from storage.scripts import Scripts

log = logging.getLogger(__name__)

UPDATE = "chat_update"
POST = "chat_postMessage"
BUDGETED = frozenset({UPDATE, POST})


@dataclass(frozen=True)
class Bucket:
    """A token bucket's size: ``per_s`` tokens a second, up to ``burst``; a progress edit needs
    more than ``reserve`` + 1 tokens in it."""

    per_s: float
    burst: float
    reserve: float


class RedisRateBudget:
    """The shared budget (``bot.slack.gateway.RateBudget``)."""

    def __init__(
        self, scripts: Scripts, *, channel: Bucket, updates: Bucket, max_wait_s: float
    ) -> None:
        self.scripts = scripts
        self.channel = channel
        self.updates = updates
        self.max_wait_ms = max(1, int(max_wait_s * 1000))
        # A bucket refills fully within this (from the deepest debt); then its key may go.
        refill_s = max(b.burst / b.per_s for b in (channel, updates)) + max_wait_s
        self.ttl_ms = math.ceil(refill_s * 1000) + 1000

    async def take(
        self, team_id: str, channel_id: str, method: str, *, best_effort: bool
    ) -> float | None:
        """Seconds to wait before calling ``method`` (0: now); None: skip this progress edit."""
        if method not in BUDGETED:
            return 0.0
        buckets = [(keys.budget_channel(team_id, channel_id), self.channel)]
        if method == UPDATE:
            buckets.append((keys.budget_updates(team_id), self.updates))
        args: list[str | int | float] = ["1" if best_effort else "0", self.max_wait_ms, self.ttl_ms]
        for _, b in buckets:
            args += [b.per_s, b.burst, b.reserve]
        try:
            wait_ms = int(await self.scripts.run("budget", [k for k, _ in buckets], args))
        except (RedisError, OSError) as exc:
            log.warning("rate budget unavailable (%s); calling Slack unpaced", exc)
            return 0.0
        if wait_ms < 0:
            return None
        return wait_ms / 1000
