"""Signed requests to the app, as Slack's HTTP sender makes them (SLACK.md §3)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import aiohttp

from bot.console import payloads as p


@dataclass
class AppLink:
    """POSTs to the app's ``/slack/events``: JSON events, form commands, ``payload=`` clicks."""

    url: str
    secret: str
    http: aiohttp.ClientSession

    async def send(self, body: bytes, content_type: str) -> tuple[int, str]:
        headers = p.signed_headers(self.secret, int(time.time()), body, content_type)
        try:
            async with self.http.post(self.url, data=body, headers=headers) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 0, type(exc).__name__

    async def event(self, payload: p.JSON) -> tuple[int, str]:
        return await self.send(json.dumps(payload).encode(), "application/json")

    async def interactive(self, payload: p.JSON) -> tuple[int, str]:
        return await self.send(p.interactive_body(payload), p.FORM)
