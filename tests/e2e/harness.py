"""Running the real app against the local Slack and OpenAI-compatible servers.

``AppUnderTest`` builds the app exactly as production does (``build_runtime`` from a
``Settings``), connected over Socket Mode (WebSocket) or HTTP (signed requests), with its worker.
Helpers find the app's messages by the delivery slot each one carries in its metadata.
"""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.app import Runtime, build_runtime
from bot.config import Settings, load_settings
from bot.pipeline.models import Session
from bot.runtime import start_http, start_socket_mode
from tests.e2e.processes import scratch_dir
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator, StoredMessage


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_env(
    emu: SlackEmulator, llm: FakeLLM, redis_url: str, *, mode: str, **extra: str
) -> dict[str, str]:
    """The environment a production deployment would have, pointed at the local servers."""
    env = {
        "SLACK_BOT_TOKEN": emu.bot_token,
        "SLACK_SIGNING_SECRET": emu.signing_secret,
        "SLACK_API_URL": emu.api_url,
        "OPENAI_API_KEY": "sk-test-key-not-real-0000",
        "OPENAI_BASE_URL": llm.base_url,
        "STORYLOOP_MODEL": "storyloop-test",
        "REDIS_URL": redis_url,
        "STORYLOOP_LEASE_SECONDS": "2",
        "STORYLOOP_PROGRESS_INTERVAL": "0.2",
        "STORYLOOP_WORKERS": "8",
        "STORYLOOP_LLM_TIMEOUT": "5",
        "STORYLOOP_LLM_BACKOFF": "0.05",
        "LOG_LEVEL": "INFO",
        # The shared Slack rate budget runs (every post and edit takes its token) but roomy:
        # these flows post in one channel far faster than Slack's ~1/s, and their timeouts
        # assume no pacing. tests/e2e/test_rate_budget.py runs it at Slack's sizes.
        "STORYLOOP_CHANNEL_PER_S": "50",
        "STORYLOOP_CHANNEL_BURST": "50",
        "STORYLOOP_UPDATES_PER_MINUTE": "6000",
        "STORYLOOP_UPDATE_BURST": "100",
        # Socket Mode's metrics port is off unless a test asks for it (replicas share a host).
        "STORYLOOP_METRICS_PORT": "0",
        # Where image bytes wait between the provider and Slack (kept across a restart).
        "STORYLOOP_DATA_DIR": scratch_dir("storyloop-data-"),
    }
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = emu.app_token
    else:
        env["PORT"] = str(free_port())
    env.update(extra)
    return env


def settings_from(env: dict[str, str]) -> Settings:
    return load_settings(_env_file=None, **env)


@dataclass
class AppUnderTest:
    settings: Settings
    redis_url: str
    runtime: Runtime | None = None
    handler: AsyncSocketModeHandler | None = None
    runner: web.AppRunner | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}/slack/events"

    async def start(self, *, worker: bool = True) -> AppUnderTest:
        """``worker=False``: the listener only (its eager lane included), no job worker."""
        self.runtime = build_runtime(self.settings, self.redis_url)
        if worker:
            await self.runtime.worker.start()
        if self.settings.socket_mode:
            self.handler = await start_socket_mode(self.runtime)
        else:
            self.runner = await start_http(self.runtime, host="127.0.0.1")
        return self

    async def stop(self, *, grace_s: float = 5.0) -> None:
        """Graceful stop, as on SIGTERM."""
        if self.handler is not None:
            with contextlib.suppress(Exception):
                await self.handler.close_async()  # type: ignore[no-untyped-call]
            self.handler = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.runtime is not None:
            if self.runtime.eager is not None:
                await self.runtime.eager.stop(grace_s=grace_s)
            await self.runtime.worker.stop(grace_s=grace_s)
            await self.runtime.close()
            self.runtime = None

    async def session(self, team: str, sid: str) -> Session | None:
        assert self.runtime is not None
        repo = self.runtime.worker.repo
        return await repo.get(team, sid)


# --- finding the app's messages ---------------------------------------------------------------


def slot_of(msg: StoredMessage) -> str | None:
    payload = (msg.metadata or {}).get("event_payload") or {}
    slot = payload.get("slot")
    return str(slot) if slot else None


def session_of(msg: StoredMessage) -> str | None:
    payload = (msg.metadata or {}).get("event_payload") or {}
    sid = payload.get("session")
    return str(sid) if sid else None


def by_slot(
    emu: SlackEmulator, slot: str, *, channel: str | None = None, prefix: bool = False
) -> list[StoredMessage]:
    found = []
    for msg in emu.bot_messages(channel):
        s = slot_of(msg)
        if s is not None and (s.startswith(slot) if prefix else s == slot) and not msg.deleted:
            found.append(msg)
    return found


def block_text(msg: StoredMessage | Any) -> str:
    """All text of a message: fallback text plus every text in its blocks."""
    parts = [str(getattr(msg, "text", "") or "")]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    parts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(getattr(msg, "blocks", None) or [])
    return "\n".join(parts)


def action_ids(msg: StoredMessage | None) -> list[str]:
    """Every button of a message: action blocks' elements and sections' accessories."""
    ids = []
    for block in (msg.blocks if msg is not None else None) or []:
        if block.get("type") == "actions":
            ids += [str(e.get("action_id")) for e in block.get("elements", [])]
        elif isinstance(block.get("accessory"), dict) and block["accessory"].get("action_id"):
            ids.append(str(block["accessory"]["action_id"]))
    return ids
