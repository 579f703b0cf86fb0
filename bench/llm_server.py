"""The tests' FakeLLM as its own process, recording when each answer ended.

``python -m bench.llm_server`` prints ``READY <llm_port> <control_port>`` and serves until
SIGTERM. The control port answers ``GET /stats`` (one record per chat-completions request: the
bench session tag found in the prompt, schema, start/end on the shared monotonic clock, prompt
tokens), ``POST /reset`` and ``POST /config`` (``{"latency": s, "tps": n | null}``).

Running it apart from the load generator keeps thousands of paced SSE writes per second out of
the event loop that times the acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import signal
import sys
import time
from typing import Any

from aiohttp import web

from tests.emulators.openai_server import FakeLLM, Fault

TAG = re.compile(r"bench-s(\d+)")


def _text(messages: list[Any]) -> str:
    parts = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
    return "\n".join(parts)


def _schema(body: dict[str, Any]) -> str | None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        schema = fmt.get("json_schema")
        if isinstance(schema, dict) and isinstance(schema.get("name"), str):
            return str(schema["name"])
    return None


class RecordingLLM(FakeLLM):
    """FakeLLM that notes, per request, which bench session asked and when the answer ended."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.records: list[dict[str, Any]] = []

    async def _answer(
        self,
        request: web.Request,
        body: dict[str, Any],
        messages: list[Any],
        prompt_tokens: int,
        fault: Fault | None,
    ) -> web.StreamResponse:
        start = time.monotonic()
        try:
            return await super()._answer(request, body, messages, prompt_tokens, fault)
        finally:
            # For a streamed story this is right after its last token (and the usage chunk);
            # for a plain completion, when its body was handed to the transport.
            found = TAG.search(_text(messages))
            name = _schema(body)
            content = self._canned_content(name, body, messages, count=False)
            self.records.append(
                {
                    "completion_tokens": math.ceil(len(content) / 4),
                    "tag": int(found.group(1)) if found else None,
                    "schema": name,
                    "stream": bool(body.get("stream")),
                    "start": start,
                    "end": time.monotonic(),
                    "prompt_tokens": prompt_tokens,
                }
            )

    def reset(self) -> None:
        self.records.clear()
        self.requests.clear()
        self.prompt_tokens_log.clear()
        self.story_requests_served = 0
        self.image_requests.clear()
        self.video_creates.clear()
        self.speech_requests.clear()


async def serve() -> None:
    llm = RecordingLLM(first_token_latency=0.0, tokens_per_second=None)
    # Video jobs scaled down from minutes: 0.2 s queued, 1 s rendering.
    llm.video_queue_s, llm.video_render_s, llm.video_poll_after_ms = 0.2, 1.0, 200
    await llm.start()

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "records": llm.records,
                "requests": len(llm.requests),
                "image_requests": len(llm.image_requests),
                "images": llm.images_generated,
                "video_creates": len(llm.video_creates),
                "speech_requests": len(llm.speech_requests),
            }
        )

    async def reset(_request: web.Request) -> web.Response:
        llm.reset()
        return web.json_response({"ok": True})

    async def config(request: web.Request) -> web.Response:
        data = await request.json()
        tps = data.get("tps")
        llm.set_latency(float(data.get("latency") or 0.0), float(tps) if tps else None)
        return web.json_response({"ok": True})

    control = web.Application()
    control.router.add_get("/stats", stats)
    control.router.add_post("/reset", reset)
    control.router.add_post("/config", config)
    runner = web.AppRunner(control, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    control_port = int(runner.addresses[0][1])
    port = llm.base_url.rsplit(":", 1)[1].split("/")[0]
    sys.stdout.write(f"READY {port} {control_port}\n")
    sys.stdout.flush()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await llm.stop()


if __name__ == "__main__":
    asyncio.run(serve())
