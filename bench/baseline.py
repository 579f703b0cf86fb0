"""The baseline: a bare ``slack_bolt`` AsyncApp doing the least a Slack app can do.

It acks the same requests Storyloop gets (``/story``, the Approve/Regenerate clicks, thread
replies) and, in Bolt's usual style, posts one ``chat.postMessage`` per trigger right after the
ack. No Redis, no LLM, no state. Its ``/story`` message carries Approve/Regenerate buttons and
every post names a delivery slot in its metadata, so the load generator drives and watches it
exactly like Storyloop.

Run it as its own process (the bench does): ``python -m bench.baseline`` with SLACK_BOT_TOKEN,
SLACK_API_URL, SLACK_SIGNING_SECRET and either SLACK_APP_TOKEN (Socket Mode) or PORT (HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("bench.baseline")


def _meta(slot: str) -> dict[str, Any]:
    return {"event_type": "bench_baseline", "event_payload": {"slot": slot}}


def _button(text: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": "baseline",
    }


def build_baseline(*, bot_token: str, api_url: str, signing_secret: str) -> AsyncApp:
    app = AsyncApp(
        client=AsyncWebClient(token=bot_token, base_url=api_url),
        signing_secret=signing_secret,
        raise_error_for_unhandled_request=False,
    )

    @app.command("/story")
    async def story(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.chat_postMessage(
            channel=command["channel_id"],
            text=f"Story for: {command.get('text', '')}",
            blocks=[
                {"type": "section", "text": {"type": "mrkdwn", "text": "Story"}},
                {
                    "type": "actions",
                    "block_id": "review",
                    "elements": [
                        _button("Approve", "story_approve"),
                        _button("Regenerate", "story_regenerate"),
                    ],
                },
            ],
            metadata=_meta("card"),
        )

    async def click(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        action = (body.get("actions") or [{}])[0]
        container = body.get("container") or {}
        slot = "approved" if action.get("action_id") == "story_approve" else "regenerated"
        await client.chat_postMessage(
            channel=body["channel"]["id"],
            thread_ts=container.get("thread_ts") or container.get("message_ts"),
            text=f"{slot.capitalize()}.",
            metadata=_meta(slot),
        )

    app.action("story_approve")(click)
    app.action("story_regenerate")(click)

    @app.event("message")
    async def message(event: dict[str, Any], client: AsyncWebClient) -> None:
        thread_ts = event.get("thread_ts")
        if event.get("subtype") or event.get("bot_id") or not thread_ts:
            return
        if thread_ts == event.get("ts"):
            return
        await client.chat_postMessage(
            channel=event["channel"],
            thread_ts=thread_ts,
            text="Noted.",
            metadata=_meta(f"reply:{event['ts']}"),
        )

    return app


async def serve() -> None:
    env = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("SLACK_")]:
        del os.environ[name]  # keep Bolt from reading anything by itself
    app = build_baseline(
        bot_token=env["SLACK_BOT_TOKEN"],
        api_url=env["SLACK_API_URL"],
        signing_secret=env["SLACK_SIGNING_SECRET"],
    )
    handler: AsyncSocketModeHandler | None = None
    runner: web.AppRunner | None = None
    if env.get("SLACK_APP_TOKEN"):
        handler = AsyncSocketModeHandler(
            app, app_token=env["SLACK_APP_TOKEN"], web_client=app.client
        )
        await asyncio.wait_for(handler.connect_async(), 30)  # type: ignore[no-untyped-call]
    else:
        port = int(env.get("PORT", "3000"))
        runner = web.AppRunner(app.web_app(path="/slack/events", port=port), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    log.info("baseline running (%s)", "Socket Mode" if handler else "HTTP")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if handler is not None:
        with contextlib.suppress(Exception):
            await handler.close_async()  # type: ignore[no-untyped-call]
    if runner is not None:
        await runner.cleanup()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve())
