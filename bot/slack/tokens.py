"""Which bot token serves a workspace (OAuth distribution, docs/INSTALL.md).

With one ``SLACK_BOT_TOKEN`` every call uses it and nothing here runs. With OAuth, each
workspace has its own token in Bolt's installation store; the gateway asks a ``TokenSource``
for the token of the workspace a job serves. Tokens are cached briefly so a busy job doesn't
read Redis before every call, and briefly enough that an uninstall stops calls within seconds
(Slack refuses a revoked token anyway). No process is told of an uninstall: Bolt deletes the
installation in whichever replica receives the event; the others see it gone when their cache
entry runs out, and a job that then finds no token ends (``NotInstalled``, bot/jobs/worker.py).
"""

from __future__ import annotations

import time
from typing import Protocol

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore

TOKEN_CACHE_S = 10.0


class TokenSource(Protocol):
    async def token(self, team_id: str) -> str | None:
        """The workspace's bot token, or None if the app is not installed there."""
        ...


class InstalledTokens:
    """Tokens from Bolt's installation store (``bot.oauth.RedisInstallationStore``)."""

    def __init__(self, store: AsyncInstallationStore, ttl_s: float = TOKEN_CACHE_S) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def token(self, team_id: str) -> str | None:
        now = time.monotonic()
        cached = self._cache.get(team_id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        bot = await self.store.async_find_bot(enterprise_id=None, team_id=team_id)
        token = bot.bot_token if bot is not None else None
        self._cache[team_id] = (now, token)
        return token
