"""The LLM port: one OpenAI-compatible client with short timeouts and our own retry policy.

Every attempt is visible here and bounded (no hidden SDK retries; ``llm_timeout_s`` per connect
and per read, ``call_limit_s`` for the whole call). Structured outputs are requested as JSON
schema; servers that reject ``json_schema`` are remembered and asked for ``json_object``.

Calls are plain aiohttp POSTs to ``/chat/completions``, parsed here. The openai SDK built a
pydantic model per streamed chunk (about half of a replica's CPU under load) and, even raw, went
through four layers (httpx, httpcore, h11, anyio) per read; non-streamed calls through it cost
the worker ~3 % of its CPU in request building and response models alone (bench/README.md, the
profiles). All a call needs is one POST, its status and its bytes; errors are classified by
status, Retry-After, timeouts and dropped connections, and the same retries apply. The SDK is
kept for ``ping`` (``storyloop check``), where its error messages are the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import openai
import orjson
from pydantic import BaseModel, ValidationError

from bot.metrics import Metrics
from bot.pipeline.drafts import SCHEMA_NAMES, FeedbackAnswer, StoryDraft
from bot.pipeline.models import Usage
from bot.pipeline.partial_json import FieldScanner
from bot.pipeline.prompts import ChatMessage
from bot.pipeline.stage_drafts import STAGE_SCHEMA_NAMES

log = logging.getLogger(__name__)
ModelT = TypeVar("ModelT", bound=BaseModel)
# Sees the parts of the text so far (joining them is left to the caller, who throttles).
Progress = Callable[[Sequence[str]], Awaitable[None]]
# Sees a streamed feedback answer's reply text so far.
ReplyProgress = Callable[[str], Awaitable[None]]


# After the first text is shown, a stream's socket is read at most this often. Tokens arrive
# one per network packet (~20 ms apart at 50 tokens/s), and reading each one — a wake-up of the
# loop, a read() and a parse — was most of the worker's system calls (~1,000 reads a session in
# the bench). Paused, the kernel gathers them: one read takes all that came in the pause. It
# delays what is shown (already throttled to one Slack edit a second or more) by at most that.
STREAM_BATCH_S = 0.1


class StreamError(Exception):
    """The server reported an error inside an otherwise successful (200) stream."""


def _stream_events(buffer: bytearray, data: bytes) -> list[bytes]:
    """Append ``data``; return the complete SSE ``data:`` payloads and keep the rest buffered.

    Events end with a blank line; an event's ``data:`` lines are joined with newlines (the SSE
    rule). Comments (``:``) and other fields (``event:``, ``id:``) carry nothing we use.
    """
    buffer += data
    events: list[bytes] = []
    while True:
        end = _event_end(buffer)
        if end is None:
            return events
        raw, length = end
        block = bytes(buffer[:raw])
        del buffer[: raw + length]
        lines = [line.rstrip(b"\r") for line in block.split(b"\n")]
        payload = [line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:")]
        if payload:
            events.append(b"\n".join(payload))


def _event_end(buffer: bytearray) -> tuple[int, int] | None:
    for sep in (b"\n\n", b"\r\n\r\n"):
        index = buffer.find(sep)
        if index != -1:
            return index, len(sep)
    return None


class _HTTPStatusError(Exception):
    """A streamed request answered with an error status (read by aiohttp, not the SDK)."""

    def __init__(self, status: int, body: str, retry_after: str | None) -> None:
        super().__init__(f"status {status}: {body[:200]}")
        self.status = status
        self.body = body
        self.retry_after = retry_after


class LLMError(Exception):
    """A failed LLM call. ``user_message`` is safe to show in Slack; ``retryable`` drives retry."""

    def __init__(self, user_message: str, *, retryable: bool, detail: str = "") -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.retryable = retryable


def _extract_json(text: str) -> Any:
    """Parse JSON tolerant of code fences or prose around one object."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    if start == -1 or end <= start:
        raise ValueError("no JSON object in the answer")
    return json.loads(text[start : end + 1])


def parse_structured(model: type[ModelT], text: str) -> ModelT:
    try:
        return model.model_validate(_extract_json(text))
    except (ValueError, ValidationError) as exc:
        raise LLMError(
            "The story writer sent back something I couldn't read.",
            retryable=True,
            detail=f"malformed structured output: {type(exc).__name__}",
        ) from None


def _classify(exc: Exception) -> LLMError:
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, TimeoutError):  # asyncio.wait_for, or aiohttp's connect / read timeout
        return LLMError(
            "The story writer took too long to answer.", retryable=True, detail="timeout"
        )
    if isinstance(exc, aiohttp.ClientError):
        return LLMError("I couldn't reach the story writer.", retryable=True, detail="connection")
    if isinstance(exc, _HTTPStatusError):
        return _by_status(exc.status)
    return LLMError("The story writer had a problem answering.", retryable=True, detail=repr(exc))


def _by_status(status: int) -> LLMError:
    if status == 429:
        return LLMError("The story writer is busy right now.", retryable=True, detail="429")
    if status in (401, 403):
        return LLMError(
            "The story writer refused our credentials; an admin needs to check the LLM settings.",
            retryable=False,
            detail=f"auth {status}",
        )
    return LLMError(
        "The story writer had a problem answering.",
        retryable=status >= 500 or status in (408, 409),
        detail=f"status {status}",
    )


def _schema_rejected(exc: Exception) -> bool:
    """A 400 saying the server lacks ``response_format: json_schema``."""
    return isinstance(exc, _HTTPStatusError) and exc.status == 400 and "response_format" in exc.body


def _retry_after(exc: Exception) -> float | None:
    value = exc.retry_after if isinstance(exc, _HTTPStatusError) else None
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _read_chunk(event: bytes, text: list[str]) -> tuple[bool, Usage | None]:
    """Add one chunk's text delta to ``text``; returns (text grew, usage if this chunk has it)."""
    try:
        chunk = orjson.loads(event)  # one per streamed token: the C parser
    except ValueError:
        raise StreamError("a stream chunk was not JSON") from None
    if not isinstance(chunk, dict):
        raise StreamError("a stream chunk was not an object")
    if chunk.get("error"):
        raise StreamError("the server reported an error mid-stream")
    grew = False
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            text.append(content)
            grew = True
    found = chunk.get("usage")
    if isinstance(found, dict):
        return grew, Usage(
            prompt_tokens=int(found.get("prompt_tokens") or 0),
            completion_tokens=int(found.get("completion_tokens") or 0),
        )
    return grew, None


def _completion(raw: bytes) -> tuple[str, Usage]:
    """A non-streamed chat completion's message text and usage."""
    try:
        body = orjson.loads(raw)
    except ValueError:
        raise StreamError("the answer was not JSON") from None
    if not isinstance(body, dict):
        raise StreamError("the answer was not an object")
    choices = body.get("choices") or []
    first = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = first.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    found = body.get("usage")
    usage = Usage()
    if isinstance(found, dict):
        usage = Usage(
            prompt_tokens=int(found.get("prompt_tokens") or 0),
            completion_tokens=int(found.get("completion_tokens") or 0),
        )
    return content if isinstance(content, str) else "", usage


async def _gather(response: aiohttp.ClientResponse, seconds: float) -> None:
    """Leave the socket unread for ``seconds`` (see ``STREAM_BATCH_S``).

    The transport is paused, not aiohttp's protocol: pausing the protocol also pauses its
    parser, which then hands back one held event at the resume and the rest only a pause later.
    Nothing reads the response meanwhile, so aiohttp's own flow control has nothing to undo;
    its read timeout (``llm_timeout_s``, seconds) cannot trip in a pause this short.
    """
    connection = response.connection
    transport = connection.transport if connection is not None else None
    if transport is None or not transport.is_reading():
        await asyncio.sleep(seconds)
        return
    transport.pause_reading()
    try:
        await asyncio.sleep(seconds)
    finally:
        if not transport.is_closing():
            transport.resume_reading()


async def listed_models(base_url: str, api_key: str) -> list[str]:
    """The ids an OpenAI-compatible endpoint lists (``storyloop check``; nothing paid). The
    SDK, for its plain error messages, where speed doesn't matter."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, timeout=10, max_retries=0)
    try:
        models = await client.models.list()
    finally:
        await client.close()
    return [m.id for m in models.data]


def _dumps(body: Any) -> str:
    """Request bodies by orjson: a prompt carries the whole conversation, every call."""
    return orjson.dumps(body).decode()


@functools.cache
def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema, built once: pydantic rebuilds it on every call, which was ~2 % of
    the worker's CPU (one per LLM request) in the bench's profile."""
    return model.model_json_schema()


class LLMClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        timeout_s: float,
        attempts: int,
        backoff_s: float = 1.0,
        call_limit_s: float | None = None,
        stream_batch_s: float = STREAM_BATCH_S,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self._base_url = base_url
        self._api_key = api_key
        # One aiohttp session for every call (opened at the first, inside the running loop).
        self._chat_url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        # Like the SDK's timeout: per connect and per read, not for the whole call.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
        self._http: aiohttp.ClientSession | None = None
        self.model = model
        self.attempts = attempts
        self.backoff_s = backoff_s
        # The SDK's timeout is per read: a slow but steady stream never trips it. Cap the call.
        self.call_limit_s = call_limit_s or timeout_s * 5
        self.stream_batch_s = stream_batch_s
        self._json_schema_ok = True

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            # The SDK's pool size; a worker streams at most one answer per job slot.
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000), json_serialize=_dumps
            )
        return self._http

    @contextlib.asynccontextmanager
    async def _chat(self, body: dict[str, Any]) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST ``body`` to ``/chat/completions``; an error status raises (``_classify``)."""
        async with self._session().post(
            self._chat_url, json=body, headers=self._headers, timeout=self._timeout
        ) as response:
            if response.status != 200:
                raise _HTTPStatusError(
                    response.status, await response.text(), response.headers.get("retry-after")
                )
            yield response

    def _format(self, model: type[BaseModel], name: str | None = None) -> dict[str, Any]:
        if not self._json_schema_ok:
            return {"type": "json_object"}
        return {
            "type": "json_schema",
            "json_schema": {
                "name": name or {**SCHEMA_NAMES, **STAGE_SCHEMA_NAMES}[model],
                "schema": _schema(model),
            },
        }

    async def _with_retries(self, call: Callable[[], Awaitable[ModelT]], op: str) -> ModelT:
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.metrics.provider_call("llm", op):  # each attempt: the endpoint's latency
                    return await asyncio.wait_for(call(), self.call_limit_s)
            except Exception as exc:
                if self._json_schema_ok and _schema_rejected(exc):
                    # Not a failed attempt: the server lacks JSON-schema support. Ask again.
                    log.info("LLM endpoint rejects json_schema; using json_object from now on")
                    self._json_schema_ok = False
                    attempt -= 1
                    continue
                error = _classify(exc)
                log.warning("LLM attempt %d/%d failed: %s", attempt, self.attempts, error)
                if not error.retryable or attempt >= self.attempts:
                    raise error from None
                delay = _retry_after(exc) or self.backoff_s * 2 ** (attempt - 1)
                await asyncio.sleep(min(delay, 30.0))

    async def write_story(
        self, messages: Sequence[ChatMessage], on_progress: Progress | None = None
    ) -> tuple[StoryDraft, Usage]:
        """Stream a story; ``on_progress`` sees the text so far (the caller throttles)."""
        return await self._streamed(messages, StoryDraft, lambda: on_progress)

    async def stream_feedback(
        self, messages: Sequence[ChatMessage], on_reply: ReplyProgress
    ) -> tuple[FeedbackAnswer, Usage]:
        """A feedback answer, streamed: ``on_reply`` sees its ``reply`` text so far, decoded
        from the JSON as it arrives. A retried attempt starts again from the first word, so the
        text it sees may then be shorter than before (the caller decides what to show)."""

        def per_attempt() -> Progress:
            scanner = FieldScanner("reply")
            read = 0

            async def on_text(parts: Sequence[str]) -> None:
                nonlocal read
                grew = False
                for part in parts[read:]:
                    grew = scanner.feed(part) or grew
                read = len(parts)
                if grew:
                    await on_reply(scanner.text)

            return on_text

        return await self._streamed(messages, FeedbackAnswer, per_attempt)

    async def _streamed(
        self,
        messages: Sequence[ChatMessage],
        model: type[ModelT],
        progress: Callable[[], Progress | None],
    ) -> tuple[ModelT, Usage]:
        """One structured answer of ``model``, streamed; ``progress()`` gives each attempt its
        own callback (it sees the text parts so far). Same retries and limits as every call."""
        usage = Usage()

        async def call() -> ModelT:
            nonlocal usage
            on_progress = progress()
            text: list[str] = []
            body = {
                "model": self.model,
                "messages": list(messages),
                "response_format": self._format(model),
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with self._chat(body) as response:
                buffer = bytearray()
                shown = False
                async for data in response.content.iter_any():
                    grew = done = False
                    for event in _stream_events(buffer, data):
                        if event.strip() == b"[DONE]":
                            done = True
                            break
                        more, found = _read_chunk(event, text)
                        grew = grew or more
                        usage = found or usage
                    if grew and on_progress is not None:
                        await on_progress(text)  # once per read, however many tokens came
                        shown = True
                    if done:
                        return parse_structured(model, "".join(text))
                    if shown or on_progress is None:
                        await _gather(response, self.stream_batch_s)
            return parse_structured(model, "".join(text))

        answer = await self._with_retries(call, "stream")
        self.metrics.tokens(usage.prompt_tokens, usage.completion_tokens)
        return answer, usage

    async def answer_feedback(
        self, messages: Sequence[ChatMessage]
    ) -> tuple[FeedbackAnswer, Usage]:
        return await self.structured(messages, FeedbackAnswer)

    async def structured(
        self, messages: Sequence[ChatMessage], model: type[ModelT], name: str | None = None
    ) -> tuple[ModelT, Usage]:
        """One non-streamed structured answer (schema ``name``, default by model)."""
        usage = Usage()

        async def call() -> ModelT:
            nonlocal usage
            body = {
                "model": self.model,
                "messages": list(messages),
                "response_format": self._format(model, name),
            }
            async with self._chat(body) as response:
                raw = await response.read()
            content, usage = _completion(raw)
            return parse_structured(model, content)

        answer = await self._with_retries(call, "structured")
        self.metrics.tokens(usage.prompt_tokens, usage.completion_tokens)
        return answer, usage

    async def ping(self) -> str:
        """List models (used by ``storyloop check``)."""
        ids = await listed_models(self._base_url, self._api_key)
        return ", ".join(ids[:5]) or "(no models listed)"
