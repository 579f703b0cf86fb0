"""A local OpenAI-compatible chat-completions server for tests and benchmarks.

Storyloop talks to its LLM through the official ``openai`` SDK, so the most faithful
test double is a real HTTP server that speaks the same wire format: the SDK's own
request building, SSE parsing, error mapping and timeouts then run exactly as in
production. ``FakeLLM`` answers deterministically (so assertions can be exact), paces
its output like a real model (so latency-sensitive code and benchmarks can be
exercised) and can be told to misbehave one request at a time (so retry, timeout and
validation paths can be driven on purpose).

Typical use::

    llm = FakeLLM(first_token_latency=0.0, tokens_per_second=None)
    await llm.start()
    client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test")
    ...
    await client.close()
    await llm.stop()
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Self, TypedDict, get_args

from aiohttp import web

from tests.emulators.openai_images import (
    ImageGenerationMixin,
    image_plan_json,
    image_redo_json,
    storyboard_json,
)
from tests.emulators.openai_video import SpeechMixin, VideoJobsMixin

__all__ = ["MODEL_ID", "FakeLLM", "Fault", "FaultKind", "RecordedRequest"]

MODEL_ID: Final = "storyloop-test"
"""The one model ``GET /v1/models`` lists. Requests may name any model; it is echoed back."""

FaultKind = Literal[
    "status",
    "hang",
    "disconnect_midstream",
    "malformed",
    "non_json",
    "oversized",
    "empty",
]

_FAULT_KWARGS: Final[dict[str, frozenset[str]]] = {
    "status": frozenset({"status", "retry_after", "message"}),
    "hang": frozenset({"seconds"}),
    "disconnect_midstream": frozenset({"fraction"}),
    "malformed": frozenset(),
    "non_json": frozenset(),
    "oversized": frozenset(),
    "empty": frozenset(),
}
_CONTENT_FAULTS: Final = frozenset({"malformed", "non_json", "oversized", "empty"})

_CHARS_PER_TOKEN: Final = 4
_DEFAULT_TARGET_S: Final = 30
_SECONDS_PER_SCENE: Final = 8
_OVERSIZED_NARRATIVE_CHARS: Final = 60_000
_OVERSIZED_SCENES: Final = 40
_REGENERATE_PHRASES: Final = ("start over", "redo it", "scrap this", "from scratch")

_TARGET_RE: Final = re.compile(r"Target duration: (\d+) seconds")
_SCHEMA_NAME_RE: Final = re.compile(r"JSON schema name: (\w+)")
_BRIEF_RE: Final = re.compile(r"^[ \t]*Brief:[ \t]*(.*)$", re.MULTILINE)
_TAG_RE: Final = re.compile(r"</?[A-Za-z_][\w-]*>")
_TARGETS_RE: Final = re.compile(r"\b(?:image|shot)\s*#?\s*(\d+)\b|#(\d+)\b", re.IGNORECASE)

# Default error bodies per status, worded like OpenAI's so log lines and user-facing
# messages in tests look like the real thing: (message, type, code).
_STATUS_ERRORS: Final[dict[int, tuple[str, str, str | None]]] = {
    429: (
        "Rate limit reached for requests. Please try again later.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
}


@dataclass(frozen=True)
class Fault:
    """One queued misbehaviour, applied to exactly one chat-completions request."""

    kind: FaultKind
    params: Mapping[str, Any] = field(default_factory=dict)


class RecordedRequest(TypedDict):
    """What the server saw of one ``POST /v1/chat/completions`` request.

    Tests assert on the exact prompts and options the app sent, so the parsed body is
    kept verbatim. Header names are lower-cased so lookups do not depend on how the
    client spelled them.
    """

    path: str
    json: Any  # the parsed body; None when the body was not JSON
    headers: dict[str, str]
    time: float  # time.monotonic() when the request arrived
    prompt_tokens: int
    fault: FaultKind | None  # the fault applied to this request, if any


Responder = Callable[[dict[str, Any]], str | None]


class _ServerClosing(Exception):
    """Raised inside a handler that was waiting when ``stop()`` was called."""


class FakeLLM(ImageGenerationMixin, VideoJobsMixin, SpeechMixin):
    """Deterministic, pace-able, fault-injectable OpenAI chat-completions server.

    Only chat-completions requests are recorded in ``requests`` and
    ``prompt_tokens_log`` (one entry each, same order, including requests that were
    rejected or faulted), so ``len(llm.requests)`` counts the app's LLM calls. Image
    generations (``POST /v1/images/generations``, see ``openai_images``) have their own
    log, ``image_requests``, fault queue and ``image_latency``, so paid image calls are
    counted apart from chat calls. Video jobs (``/v1/videos``) and speech
    (``POST /v1/audio/speech``), see ``openai_video``, likewise keep their own logs
    (``video_creates``, ``speech_requests``, ...), fault queues and pacing.
    """

    def __init__(
        self,
        first_token_latency: float = 0.0,
        tokens_per_second: float | None = None,
        *,
        supports_json_schema: bool = True,
        image_latency: float = 0.0,
        video_queue_s: float = 0.2,
        video_render_s: float = 0.5,
    ) -> None:
        self.first_token_latency = first_token_latency
        self.tokens_per_second = tokens_per_second
        self.supports_json_schema = supports_json_schema
        self.responder: Responder | None = None
        #: The ``reply`` of feedback answers (schema ``feedback_reply``) instead of the canned
        #: "Got it — …"; the answer is then sent ASCII-only, so non-ASCII travels as ``\uXXXX``
        #: escapes that the stream's 4-character tokens cut in half (as some models send it).
        self.feedback_reply: str | None = None
        self.requests: list[RecordedRequest] = []
        self.prompt_tokens_log: list[int] = []
        self.story_requests_served = 0
        self.models_requests = 0
        self._faults: deque[Fault] = deque()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = asyncio.Event()
        self._init_image_state(image_latency)
        self._init_video_state(video_queue_s, video_render_s)
        self._init_speech_state()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port (port 0 avoids clashes between parallel runs)."""
        if self._runner is not None:
            raise RuntimeError("FakeLLM is already running")
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post("/v1/chat/completions", self._handle_chat_completions)
        app.router.add_post("/v1/images/generations", self._handle_image_generations)
        app.router.add_post("/v1/videos", self._handle_video_create)
        app.router.add_get("/v1/videos", self._handle_video_list)
        app.router.add_get("/v1/videos/{video_id}", self._handle_video_get)
        app.router.add_delete("/v1/videos/{video_id}", self._handle_video_delete)
        app.router.add_get("/v1/videos/{video_id}/content", self._handle_video_content)
        app.router.add_post("/v1/audio/speech", self._handle_speech)
        # handler_cancellation: when a client gives up (timeout), stop working on its
        # request like a real server would, instead of finishing into a dead socket.
        # A short shutdown_timeout keeps stop() fast even if something still runs.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and end in-flight requests promptly.

        Handlers that are sleeping (pacing, ``hang`` faults) are woken and drop their
        connection, so stopping never waits for a long hang to run out.
        """
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        await runner.cleanup()
        self._port = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """The URL to give ``AsyncOpenAI(base_url=...)``, ending in ``/v1``."""
        if self._port is None:
            raise RuntimeError("FakeLLM is not running; call start() first")
        return f"http://127.0.0.1:{self._port}/v1"

    # ------------------------------------------------------------------ controls

    def set_latency(self, first_token_latency: float, tokens_per_second: float | None) -> None:
        """Change pacing for requests that start from now on (benchmarks vary it mid-run)."""
        self.first_token_latency = first_token_latency
        self.tokens_per_second = tokens_per_second

    def enqueue_fault(self, kind: FaultKind, **kw: Any) -> None:
        """Queue a fault for the next chat-completions request that passes validation.

        Faults are consumed first-in first-out, one per request; enqueue the same
        fault N times to hit the next N requests. Requests rejected with a 400 (bad
        body, unsupported ``json_schema``) do not consume a fault, so a fault meant
        for "the next LLM call" is not eaten by a capability probe.

        Kinds and keyword arguments:

        - ``status``: ``status`` (required, 4xx/5xx), ``retry_after`` (sets the
          ``Retry-After`` header), ``message`` (overrides the error message).
        - ``hang``: ``seconds`` (default 60) to wait before answering normally.
        - ``disconnect_midstream``: ``fraction`` (default 0.3) of the content chunks
          sent before the connection is dropped; non-streaming drops at once.
        - ``malformed``, ``non_json``, ``oversized``, ``empty``: no arguments.
        """
        if kind not in _FAULT_KWARGS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {get_args(FaultKind)}")
        unknown = set(kw) - _FAULT_KWARGS[kind]
        if unknown:
            raise ValueError(f"fault {kind!r} does not take {sorted(unknown)}")
        if kind == "status":
            status = kw.get("status")
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise ValueError("fault 'status' needs status=<int 400..599>")
        if kind == "hang" and float(kw.get("seconds", 60.0)) < 0:
            raise ValueError("fault 'hang' needs seconds >= 0")
        if kind == "disconnect_midstream" and not 0.0 <= float(kw.get("fraction", 0.3)) <= 1.0:
            raise ValueError("fault 'disconnect_midstream' needs 0 <= fraction <= 1")
        self._faults.append(Fault(kind, dict(kw)))

    def faults_pending(self) -> int:
        """How many queued faults have not been consumed yet."""
        return len(self._faults)

    # ------------------------------------------------------------------ handlers

    async def _handle_models(self, request: web.Request) -> web.Response:
        """List the single test model, as ``client.models.list()`` expects."""
        self.models_requests += 1
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": MODEL_ID,
                        "object": "model",
                        "created": 1_700_000_000,
                        "owned_by": "storyloop",
                    }
                ],
            },
            headers=_common_headers(),
        )

    async def _handle_chat_completions(self, request: web.Request) -> web.StreamResponse:
        """Validate, record, apply any fault, then answer streaming or not."""
        arrived = time.monotonic()
        headers = {k.lower(): v for k, v in request.headers.items()}
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        messages = body.get("messages") if isinstance(body, dict) else None
        prompt_tokens = _prompt_tokens(messages) if isinstance(messages, list) else 0
        record = RecordedRequest(
            path=request.path,
            json=body,
            headers=headers,
            time=arrived,
            prompt_tokens=prompt_tokens,
            fault=None,
        )
        self.requests.append(record)
        self.prompt_tokens_log.append(prompt_tokens)

        if not isinstance(body, dict):
            return _error_response(
                400,
                "We could not parse the JSON body of your request.",
                "invalid_request_error",
            )
        if not isinstance(messages, list) or not messages:
            return _error_response(
                400,
                "'messages' is a required property and must be a non-empty array.",
                "invalid_request_error",
                param="messages",
            )
        response_format = body.get("response_format")
        format_type = response_format.get("type") if isinstance(response_format, dict) else None
        if format_type == "json_schema" and not self.supports_json_schema:
            return _error_response(
                400,
                "response_format json_schema is not supported",
                "invalid_request_error",
                param="response_format",
            )
        if format_type == "json_object" and "json" not in _all_text(messages).lower():
            # OpenAI enforces this; keeping it means the app's JSON-mode fallback
            # prompt is checked against the same rule.
            return _error_response(
                400,
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                "invalid_request_error",
                param="messages",
            )

        fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            record["fault"] = fault.kind
        try:
            return await self._answer(request, body, messages, prompt_tokens, fault)
        except _ServerClosing:
            _drop_connection(request)
            return web.Response(status=503)

    async def _answer(
        self,
        request: web.Request,
        body: dict[str, Any],
        messages: list[Any],
        prompt_tokens: int,
        fault: Fault | None,
    ) -> web.StreamResponse:
        """Produce the response for a validated request, honouring ``fault``."""
        if fault is not None and fault.kind == "status":
            return _status_fault_response(fault)
        if fault is not None and fault.kind == "hang":
            await self._sleep(float(fault.params.get("seconds", 60.0)))

        content = self._content_for(body, messages, fault)
        completion_tokens = _tokens(len(content))
        disconnect_at: float | None = None
        if fault is not None and fault.kind == "disconnect_midstream":
            disconnect_at = float(fault.params.get("fraction", 0.3))
        requested_model = body.get("model")
        model = requested_model if isinstance(requested_model, str) else MODEL_ID
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

        if body.get("stream") is True:
            stream_options = body.get("stream_options")
            include_usage = isinstance(stream_options, dict) and bool(
                stream_options.get("include_usage")
            )
            return await self._stream(
                request, model, content, usage if include_usage else None, disconnect_at
            )

        if disconnect_at is not None:
            # Drop the connection before any response bytes: the client sees the
            # server vanish ("Server disconnected without sending a response").
            _drop_connection(request)
            return web.Response(status=503)
        tps = self.tokens_per_second
        await self._sleep(self.first_token_latency + (completion_tokens / tps if tps else 0.0))
        return web.json_response(
            {
                "id": _completion_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_storyloop",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": content,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
            headers=_common_headers(),
        )

    async def _stream(
        self,
        request: web.Request,
        model: str,
        content: str,
        usage: dict[str, int] | None,
        disconnect_at: float | None,
    ) -> web.StreamResponse:
        """Send ``content`` as OpenAI-style SSE ``chat.completion.chunk`` events.

        Content goes out one ~4-character token per event. With a token rate set,
        token i is scheduled at ``first_token_latency + i / tokens_per_second`` from
        the start (absolute schedule, so sleep overshoot does not accumulate).
        """
        response = web.StreamResponse(
            headers={
                **_common_headers(),
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        response.enable_chunked_encoding()
        await response.prepare(request)

        completion_id = _completion_id()
        created = int(time.time())

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_storyloop",
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
            }
            if usage is not None:
                chunk["usage"] = None  # OpenAI sends null usage on every chunk but the last
            return _sse(chunk)

        loop = asyncio.get_running_loop()
        start = loop.time()
        tokens = [
            content[i : i + _CHARS_PER_TOKEN] for i in range(0, len(content), _CHARS_PER_TOKEN)
        ]
        cut = len(tokens) if disconnect_at is None else math.floor(len(tokens) * disconnect_at)

        await self._sleep(self.first_token_latency)
        await response.write(event({"role": "assistant", "content": "", "refusal": None}))
        tps = self.tokens_per_second
        if tps:
            for i, token in enumerate(tokens[:cut]):
                due = start + self.first_token_latency + i / tps
                await self._sleep(due - loop.time())
                await response.write(event({"content": token}))
        elif cut:
            await response.write(b"".join(event({"content": t}) for t in tokens[:cut]))

        if disconnect_at is not None:
            # close() (not abort()) flushes what was written, then ends the
            # connection without the terminating chunk: an incomplete body.
            _drop_connection(request)
            return response

        await response.write(event({}, "stop"))
        if usage is not None:
            await response.write(
                _sse(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_storyloop",
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but raise ``_ServerClosing`` at once if the server is being stopped."""
        if seconds <= 0:
            if self._closing.is_set():
                raise _ServerClosing
            return
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return
        raise _ServerClosing

    # ------------------------------------------------------------------ content

    def _content_for(self, body: dict[str, Any], messages: list[Any], fault: Fault | None) -> str:
        """Pick the assistant content: content fault, then responder, then the canned answer."""
        name = _schema_name(body, messages)
        if fault is not None and fault.kind in _CONTENT_FAULTS:
            return self._fault_content(fault.kind, name, body, messages)
        if self.responder is not None:
            custom = self.responder(body)
            if custom is not None:
                return custom
        return self._canned_content(name, body, messages, count=True)

    def _fault_content(
        self, kind: FaultKind, name: str | None, body: dict[str, Any], messages: list[Any]
    ) -> str:
        """Content for the content-level faults (the HTTP exchange itself is healthy)."""
        if kind == "empty":
            return ""
        if kind == "non_json":
            return (
                "Sure! Here is a story about a lighthouse keeper who finds a message in a "
                "bottle. It opens at dawn, with gulls circling the tower, and ends with a "
                "reunion on the pier. Let me know if you'd like any changes!"
            )
        if kind == "oversized":
            return _oversized_story()
        # malformed: a JSON answer cut off part-way. Any proper prefix of a JSON
        # object's text is invalid JSON, so this can never parse by accident.
        full = self._canned_content(name, body, messages, count=False)
        if not full.startswith("{"):
            return '{"reply": "Half'
        return full[: max(1, min(len(full) // 2, 200))]

    def _canned_content(
        self, name: str | None, body: dict[str, Any], messages: list[Any], *, count: bool
    ) -> str:
        """The deterministic answer for schema ``name``."""
        if name == "story":
            draft = self.story_requests_served + 1
            if count:
                self.story_requests_served = draft
            return _story_json(messages, draft)
        if name == "feedback_reply":
            return _feedback_reply_json(messages, self.feedback_reply)
        if name in {"image_plan", "image_redo", "storyboard"}:
            return self._image_stage_content(name, messages, count=count)
        response_format = body.get("response_format")
        wants_json = isinstance(response_format, dict) and response_format.get("type") in {
            "json_schema",
            "json_object",
        }
        return json.dumps({"reply": "ok"}) if wants_json else "ok"

    def _image_stage_content(self, name: str, messages: list[Any], *, count: bool) -> str:
        """Answers for the image and storyboard stages (built in ``openai_images``)."""
        texts = [_message_text(m) for m in reversed(messages)]
        brief, changes = _brief_excerpt(messages), _requested_changes(messages)
        if name == "image_plan":
            plan = self.image_plans_served + 1
            if count:
                self.image_plans_served = plan
            return image_plan_json(texts, brief, changes, plan)
        if name == "image_redo":
            return image_redo_json(texts, brief, changes)
        match = _TARGET_RE.search(_all_text(messages))
        target = int(match.group(1)) if match else _DEFAULT_TARGET_S
        return storyboard_json(texts, brief, changes, _scene_durations(target))


# ---------------------------------------------------------------------- helpers


def _common_headers() -> dict[str, str]:
    """Headers OpenAI puts on every response; the SDK surfaces x-request-id."""
    return {"x-request-id": f"req_{uuid.uuid4().hex}"}


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _tokens(chars: int) -> int:
    return math.ceil(chars / _CHARS_PER_TOKEN)


def _message_text(message: Any) -> str:
    """Text of one message; handles string content and lists of content parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _all_text(messages: list[Any]) -> str:
    return "\n".join(_message_text(m) for m in messages)


def _prompt_tokens(messages: list[Any]) -> int:
    return _tokens(sum(len(_message_text(m)) for m in messages))


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _message_text(message)
    return ""


def _schema_name(body: dict[str, Any], messages: list[Any]) -> str | None:
    """Schema name from ``response_format.json_schema.name``, else from the prompt text."""
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema")
        if isinstance(schema, dict) and isinstance(schema.get("name"), str):
            return str(schema["name"])
    match = _SCHEMA_NAME_RE.search(_all_text(messages))
    return match.group(1) if match else None


def _brief_excerpt(messages: list[Any]) -> str:
    """First 40 characters of the brief: the text after ``Brief:`` or the line below it.

    Wrapper tags are skipped (the app fences user text as ``<brief>`` ... ``</brief>``),
    so the excerpt is the creator's words, not markup. The last user message is
    searched first (it carries the current brief), then earlier messages, newest first.
    """
    user_first = [_last_user_text(messages), *(_message_text(m) for m in reversed(messages))]
    for text in user_first:
        match = _BRIEF_RE.search(text)
        if match is None:
            continue
        candidates = [match.group(1), *text[match.end() :].splitlines()]
        line = next((c for c in map(_strip_tags, candidates) if c), "")
        if line:
            return line[:40].strip()
    return "an untitled idea"


def _strip_tags(line: str) -> str:
    """Drop ``<tag>``/``</tag>`` markers (not Slack ``<@U…>`` mentions) and trim."""
    return _TAG_RE.sub("", line).strip()


def _requested_changes(messages: list[Any]) -> list[str]:
    """The ``- `` lines under the most recent ``Requested changes:`` section."""
    for message in reversed(messages):
        lines = _message_text(message).splitlines()
        starts = [i for i, ln in enumerate(lines) if ln.strip().startswith("Requested changes:")]
        if not starts:
            continue
        changes: list[str] = []
        for line in lines[starts[-1] + 1 :]:
            stripped = line.strip()
            if stripped.startswith("- "):
                changes.append(stripped[2:].strip())
            elif stripped or changes:
                break
        if changes:
            return changes
    return []


def _scene_durations(target: int) -> list[int]:
    """ceil(target/8) scenes (at least 2) of whole seconds summing exactly to target.

    A target below the scene count cannot be met with 1-second minimum scenes; the
    total is then the scene count.
    """
    count = max(2, math.ceil(target / _SECONDS_PER_SCENE))
    total = max(target, count)
    base, extra = divmod(total, count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def _story_json(messages: list[Any], draft: int) -> str:
    last_user = _last_user_text(messages)
    match = _TARGET_RE.search(last_user)
    target = int(match.group(1)) if match else _DEFAULT_TARGET_S
    brief = _brief_excerpt(messages)
    durations = _scene_durations(target)
    narrative = (
        f'A {target}-second short built from the brief "{brief}". It opens on a quiet '
        f"establishing image, builds through {len(durations)} scenes of rising tension, "
        "and closes on a single lingering shot that answers the opening."
    )
    changes = _requested_changes(messages)
    if changes:
        narrative += f" Changes applied: {'; '.join(changes)}."
    scenes = [
        {
            "number": i,
            "duration_s": duration,
            "visuals": f"Shot {i} of {len(durations)}: {brief}, framed "
            + ("wide at dawn" if i == 1 else "close, in warm light"),
            "voiceover": f"Scene {i}: the story of {brief} moves forward.",
        }
        for i, duration in enumerate(durations, start=1)
    ]
    return json.dumps(
        {
            "title": f"Storyloop: {brief}",
            "logline": f"A {target}-second story about {brief}. (draft {draft})",
            "narrative": narrative,
            "scenes": scenes,
        },
        ensure_ascii=False,
    )


def _feedback_reply_json(messages: list[Any], reply: str | None = None) -> str:
    text = _last_user_text(messages)
    mention_lines = [ln.strip() for ln in text.splitlines() if ln.lstrip().startswith("<@")]
    feedback = mention_lines[-1] if mention_lines else text.strip()
    lowered = feedback.lower()
    return json.dumps(
        {
            "reply": reply if reply is not None else f"Got it — I'll work in: {feedback[:120]}",
            "planned_changes": [feedback[:100]],
            "wants_regenerate": any(phrase in lowered for phrase in _REGENERATE_PHRASES),
            "targets": sorted({int(a or b) for a, b in _TARGETS_RE.findall(feedback)}),
        },
        ensure_ascii=reply is not None,
    )


def _oversized_story() -> str:
    sentence = "The camera drifts over an endless field of sunflowers as the wind rises. "
    narrative = (sentence * (_OVERSIZED_NARRATIVE_CHARS // len(sentence) + 1))[
        :_OVERSIZED_NARRATIVE_CHARS
    ]
    scenes = [
        {
            "number": i,
            "duration_s": 3,
            "visuals": f"Sunflower field, angle {i}",
            "voiceover": f"Part {i} of a very long story.",
        }
        for i in range(1, _OVERSIZED_SCENES + 1)
    ]
    return json.dumps(
        {
            "title": "An Extremely Long Story",
            "logline": "A story that does not know when to stop.",
            "narrative": narrative,
            "scenes": scenes,
        }
    )


def _error_response(
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-shaped error body, which the SDK turns into ``APIStatusError.body``."""
    return web.json_response(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}},
        status=status,
        headers={**_common_headers(), **(headers or {})},
    )


def _status_fault_response(fault: Fault) -> web.Response:
    status = int(fault.params["status"])
    message, error_type, code = _STATUS_ERRORS.get(
        status,
        (
            f"Injected error {status}.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    message = str(fault.params.get("message", message))
    headers = {}
    if fault.params.get("retry_after") is not None:
        headers["Retry-After"] = str(fault.params["retry_after"])
    return _error_response(status, message, error_type, code=code, headers=headers)


def _drop_connection(request: web.Request) -> None:
    """End the TCP connection under a request, flushing anything already written."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()
