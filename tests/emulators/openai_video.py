"""The OpenAI-style video-jobs API and the speech endpoint for ``FakeLLM``.

OpenAI's own Sora API was shut down in September 2026, but its HTTP contract lives on in
gateways (LiteLLM and others map it to Veo, Runway, ...), so it is what Storyloop speaks:
``POST /v1/videos`` creates a paid job, ``GET /v1/videos/{id}`` polls it (the
``openai-poll-after-ms`` header says when to ask again), ``GET /v1/videos/{id}/content``
downloads the MP4 (or a thumbnail), ``GET /v1/videos`` lists jobs and ``DELETE
/v1/videos/{id}`` removes one. The openai SDK's ``client.videos`` methods are deprecated
(they warn before any HTTP), so clients talk plain HTTP to these routes.

Jobs move by wall-clock time, computed whenever a job is looked at: ``queued`` for
``video_queue_s``, then ``in_progress`` with ``progress`` rising to 100 over
``video_render_s``, then ``completed`` (``expires_at`` = ``completed_at`` +
``video_expiry_s``; after that the job reads ``expired``). Pacing is snapshotted per job at
creation, so changing it mid-test only affects later jobs. Content is a real H.264/AAC MP4
of the job's ``seconds`` and ``size`` from ``media_files.make_mp4`` (cached per arguments);
thumbnails and spritesheets are PNGs from ``openai_images.render_png``.

Faults are queued with ``enqueue_video_fault`` and consumed first-in first-out, one per
create request that passes authentication and validation. Every request is recorded
exactly once, faulted or not: ``video_creates`` (the moment the job exists, so paid calls
are countable even if the app is killed before the answer), ``video_polls``,
``video_downloads``, ``video_deletes`` and ``video_lists``.

``POST /v1/audio/speech`` (``SpeechMixin``) answers a real MP3 or WAV tone whose length
follows the text (about 2.5 words per second), with its own fault queue and log.

The host class calls ``_init_video_state`` and ``_init_speech_state`` from ``__init__``,
routes the handlers and provides ``_closing``, an event set when the server stops so that
hanging handlers give up at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import secrets
import struct
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, get_args

from aiohttp import web

from tests.emulators.media_files import AUDIO_CONTENT_TYPES, make_audio_async, make_mp4_async
from tests.emulators.openai_images import prompt_colour, render_png

__all__ = [
    "DEFAULT_VIDEO_SECONDS",
    "DEFAULT_VIDEO_SIZES",
    "SHUT_DOWN_VIDEO_MODELS",
    "SpeechFault",
    "SpeechFaultKind",
    "SpeechMixin",
    "SpeechRequest",
    "VideoContentRequest",
    "VideoCreate",
    "VideoFault",
    "VideoFaultKind",
    "VideoJobsMixin",
    "image_size",
]

SHUT_DOWN_VIDEO_MODELS: Final = frozenset(
    {"sora-2", "sora-2-pro", "sora-2-2025-10-06", "sora-2-pro-2025-10-06", "sora-2-2025-12-08"}
)
"""OpenAI's Sora models, shut down on 24 Sept 2026: creates answer 404 ``model_not_found``."""

DEFAULT_VIDEO_SECONDS: Final = frozenset({"4", "8", "12"})
DEFAULT_VIDEO_SIZES: Final = frozenset({"1280x720", "720x1280", "640x360", "320x180"})

VideoFaultKind = Literal[
    "policy", "failed", "expire", "status", "slow", "download_fail", "hang_create"
]
SpeechFaultKind = Literal["status", "hang"]

_VIDEO_FAULT_KWARGS: Final[dict[str, frozenset[str]]] = {
    "policy": frozenset({"message"}),
    "failed": frozenset({"message"}),
    "expire": frozenset({"after"}),
    "status": frozenset({"status", "retry_after", "message"}),
    "slow": frozenset({"seconds"}),
    "download_fail": frozenset({"count"}),
    "hang_create": frozenset({"seconds"}),
}
_SPEECH_FAULT_KWARGS: Final[dict[str, frozenset[str]]] = {
    "status": frozenset({"status", "retry_after", "message"}),
    "hang": frozenset({"seconds"}),
}

_DEFAULT_SECONDS: Final = "4"
_DEFAULT_SIZE: Final = "1280x720"
_DEFAULT_LIST_LIMIT: Final = 20
_MAX_LIST_LIMIT: Final = 100
_MAX_VIDEO_PROMPT_CHARS: Final = 32_000
_THUMBNAIL_EDGE: Final = 320
_SPRITESHEET_FRAMES: Final = 4
_VARIANTS: Final = ("video", "thumbnail", "spritesheet")

_MAX_SPEECH_CHARS: Final = 4096
_SPEECH_FORMATS: Final = ("mp3", "opus", "aac", "flac", "wav", "pcm")
_WORDS_PER_SECOND: Final = 2.5
_MIN_SPEECH_S: Final = 0.5
_SPEED_RANGE: Final = (0.25, 4.0)

_POLICY_MESSAGE: Final = (
    "Your request was blocked by our moderation system because it may violate our content policy."
)
_FAILED_MESSAGE: Final = "Video generation failed due to an internal error. Please try again."
_AUTH_MESSAGE: Final = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)
# (message, type, code) per injected status, worded like OpenAI's.
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
class VideoFault:
    """One queued misbehaviour, applied to exactly one video create request (and its job)."""

    kind: VideoFaultKind
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoCreate:
    """One ``POST /v1/videos`` as the server saw it.

    ``video_id`` is set when a job was created (a paid call), None when the request was
    refused (401, 400, 404, an injected status). ``seconds`` and ``size`` are the resolved
    values for created jobs, else what was sent (defaults where missing). ``status`` is
    the HTTP status answered, or None while in flight and for requests never answered
    (``hang_create`` cut short by the client or by ``stop()``).
    """

    video_id: str | None
    model: str
    prompt: str
    seconds: str
    size: str
    has_input_reference: bool
    status: int | None = None
    fault: VideoFaultKind | None = None


@dataclass(frozen=True)
class VideoContentRequest:
    """One ``GET /v1/videos/{id}/content``: which job, which variant, the status answered."""

    video_id: str
    variant: str
    status: int


@dataclass(frozen=True)
class SpeechFault:
    """One queued misbehaviour, applied to exactly one speech request."""

    kind: SpeechFaultKind
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpeechRequest:
    """One ``POST /v1/audio/speech``; ``status`` None while in flight or never answered."""

    model: str
    voice: str
    input: str
    format: str
    speed: float | None = None
    status: int | None = None
    fault: SpeechFaultKind | None = None


@dataclass
class _Video:
    """A job as the server keeps it; its status is derived from the clock when viewed."""

    id: str
    seq: int
    model: str
    prompt: str
    seconds: str
    size: str
    has_input_reference: bool
    created_wall: float  # time.time() at creation
    created_mono: float  # time.monotonic() at creation
    queue_s: float
    render_s: float
    expiry_s: float
    outcome: Literal["completed", "failed", "policy"] = "completed"
    error_message: str | None = None
    expire_fault: bool = False  # expires at its first content download ...
    expire_after: float | None = None  # ... or this long after completing
    expired_mono: float | None = None
    download_failures: int = 0

    def offset_wall(self, offset: float) -> int:
        return int(self.created_wall + offset)

    def view(self, now: float) -> dict[str, Any]:
        """The API object at monotonic time ``now``."""
        elapsed = now - self.created_mono
        job: dict[str, Any] = {
            "id": self.id,
            "object": "video",
            "status": "queued",
            "progress": 0,
            "model": self.model,
            "seconds": self.seconds,
            "size": self.size,
            "created_at": self.offset_wall(0.0),
            "completed_at": None,
            "expires_at": None,
            "error": None,
            "prompt": self.prompt,
            "remixed_from_video_id": None,
        }
        if elapsed < self.queue_s:
            return job
        if self.outcome == "policy":
            message = self.error_message or _POLICY_MESSAGE
            return {**job, "status": "failed", "error": _job_error("moderation_blocked", message)}
        done = self.queue_s + self.render_s
        if self.outcome == "failed":
            fail_at = self.queue_s + self.render_s / 2
            if elapsed >= fail_at:
                message = self.error_message or _FAILED_MESSAGE
                return {
                    **job,
                    "status": "failed",
                    "progress": _progress(fail_at - self.queue_s, self.render_s),
                    "error": _job_error("internal_error", message),
                }
        if elapsed < done:
            progress = _progress(elapsed - self.queue_s, self.render_s)
            return {**job, "status": "in_progress", "progress": progress}
        completed_at = self.offset_wall(done)
        expiry = self.expiry_moment()
        if expiry is not None and now >= expiry:
            return {
                **job,
                "status": "expired",
                "progress": 100,
                "completed_at": completed_at,
                "expires_at": self.offset_wall(expiry - self.created_mono),
            }
        return {
            **job,
            "status": "completed",
            "progress": 100,
            "completed_at": completed_at,
            "expires_at": self.offset_wall(done + self.expiry_s),
        }

    def expiry_moment(self) -> float | None:
        """Monotonic time the job expires (or expired), None if it never completes."""
        if self.outcome != "completed":
            return None
        done = self.created_mono + self.queue_s + self.render_s
        moments = [done + self.expiry_s]
        if self.expired_mono is not None:
            moments.append(self.expired_mono)
        if self.expire_after is not None:
            moments.append(done + self.expire_after)
        return min(moments)


@dataclass(frozen=True)
class _VideoSpec:
    model: str
    prompt: str
    seconds: str
    size: str
    reference: bytes | None


class _BadRequest(Exception):
    """A request the real API would refuse; carries the OpenAI-shaped error."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None,
        code: str | None,
        status: int = 400,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.error_type = error_type

    def response(self) -> web.Response:
        return _error_response(
            self.status, self.message, self.error_type, param=self.param, code=self.code
        )


# ---------------------------------------------------------------------- video jobs


class VideoJobsMixin:
    """``/v1/videos`` routes with wall-clock job lifecycles, recording and fault injection."""

    _closing: asyncio.Event
    video_queue_s: float
    video_render_s: float
    video_poll_after_ms: int
    video_expiry_s: float
    video_seconds_allowed: frozenset[str]
    video_sizes_allowed: frozenset[str]
    video_creates: list[VideoCreate]
    video_polls: int
    video_downloads: list[str]
    video_content_requests: list[VideoContentRequest]
    video_deletes: list[str]
    video_lists: int
    _video_jobs: dict[str, _Video]
    _video_faults: deque[VideoFault]
    _video_seq: int

    def _init_video_state(self, queue_s: float = 0.2, render_s: float = 0.5) -> None:
        self.video_queue_s = queue_s
        self.video_render_s = render_s
        self.video_poll_after_ms = 200
        self.video_expiry_s = 3600.0
        self.video_seconds_allowed = DEFAULT_VIDEO_SECONDS
        self.video_sizes_allowed = DEFAULT_VIDEO_SIZES
        self.video_creates = []
        self.video_polls = 0
        self.video_downloads = []
        self.video_content_requests = []
        self.video_deletes = []
        self.video_lists = 0
        self._video_jobs = {}
        self._video_faults = deque()
        self._video_seq = 0

    # ------------------------------------------------------------------ controls

    @property
    def videos(self) -> dict[str, dict[str, Any]]:
        """The server's jobs (deleted ones left out) as the API shows them right now.

        A fresh dict on each access, oldest job first; mutating it changes nothing.
        """
        now = time.monotonic()
        return {job_id: job.view(now) for job_id, job in self._video_jobs.items()}

    @property
    def videos_created(self) -> int:
        """Creates that made a job, answered or not: the paid video calls."""
        return sum(1 for c in self.video_creates if c.video_id is not None)

    def enqueue_video_fault(self, kind: VideoFaultKind, **kw: Any) -> None:
        """Queue a fault for the next video create that passes auth and validation.

        First-in first-out, one per create; refused creates (401/400/404) consume none.
        All but ``status`` create the job and shape its life:

        - ``policy``: optional ``message``; the job is ``queued``, then ``failed`` with
          ``error.code`` ``moderation_blocked`` (refusals come after queueing).
        - ``failed``: optional ``message``; ``in_progress`` until half-way, then
          ``failed`` with ``error.code`` ``internal_error``.
        - ``expire``: optional ``after`` (seconds after completing). The job completes;
          it expires at its first content download (which answers 404 ``video_expired``)
          or ``after`` seconds after completing, whichever is first; from then on GET
          shows ``status: "expired"`` and all content answers 404 ``video_expired``.
        - ``status``: ``status`` (required, 400..599), ``retry_after`` (``retry-after``
          header), ``message``; the POST answers that error and no job is created.
        - ``slow``: ``seconds`` (required, > 0): this job's render takes that long.
        - ``download_fail``: ``count`` (default 1): this job's next ``count`` video
          downloads after it completed answer 500.
        - ``hang_create``: ``seconds`` (default 60): the job is created (and recorded),
          then the POST waits that long before answering, as when a provider accepted
          the job but the app never saw the answer.
        """
        if kind not in _VIDEO_FAULT_KWARGS:
            raise ValueError(
                f"unknown video fault kind {kind!r}; expected one of {get_args(VideoFaultKind)}"
            )
        unknown = set(kw) - _VIDEO_FAULT_KWARGS[kind]
        if unknown:
            raise ValueError(f"video fault {kind!r} does not take {sorted(unknown)}")
        if kind == "status":
            _check_status_kw("video", kw)
        if kind == "slow" and not float(kw.get("seconds", 0)) > 0:
            raise ValueError("video fault 'slow' needs seconds > 0")
        if kind == "download_fail" and int(kw.get("count", 1)) < 1:
            raise ValueError("video fault 'download_fail' needs count >= 1")
        if kind == "hang_create" and float(kw.get("seconds", 60.0)) < 0:
            raise ValueError("video fault 'hang_create' needs seconds >= 0")
        if kind == "expire" and kw.get("after") is not None and float(kw["after"]) < 0:
            raise ValueError("video fault 'expire' needs after >= 0")
        self._video_faults.append(VideoFault(kind, dict(kw)))

    def video_faults_pending(self) -> int:
        """How many queued video faults have not been consumed yet."""
        return len(self._video_faults)

    # ------------------------------------------------------------------ handlers

    async def _handle_video_create(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1/videos``: authenticate, validate, record, create, answer."""
        try:
            fields, reference = await _read_create_body(request)
        except _BadRequest as bad:
            self.video_creates.append(_raw_create({}, None, bad.status))
            return bad.response()
        if not _authorized(request):
            self.video_creates.append(_raw_create(fields, reference, 401))
            return _unauthorized()
        try:
            spec = _parse_video_spec(
                fields, reference, self.video_seconds_allowed, self.video_sizes_allowed
            )
        except _BadRequest as bad:
            self.video_creates.append(_raw_create(fields, reference, bad.status))
            return bad.response()

        fault = self._video_faults.popleft() if self._video_faults else None
        fault_kind = fault.kind if fault is not None else None
        if fault is not None and fault.kind == "status":
            response = _status_fault_response(fault.params)
            self.video_creates.append(
                replace(_spec_create(spec, None, fault_kind), status=response.status)
            )
            return response

        job = self._new_video_job(spec, fault)
        index = len(self.video_creates)
        self.video_creates.append(_spec_create(spec, job.id, fault_kind))
        # hang_create: a client that gives up cancels this handler (handler_cancellation);
        # the record then keeps status None while the job lives on, as at a provider.
        hang = 0.0
        if fault is not None and fault.kind == "hang_create":
            hang = float(fault.params.get("seconds", 60.0))
        if not await _wait(self._closing, hang):
            return _dropped(request)
        self.video_creates[index] = replace(self.video_creates[index], status=200)
        return web.json_response(job.view(time.monotonic()), headers=self._poll_headers())

    async def _handle_video_get(self, request: web.Request) -> web.Response:
        """``GET /v1/videos/{video_id}``: the job now, plus ``openai-poll-after-ms``."""
        self.video_polls += 1
        if not _authorized(request):
            return _unauthorized()
        job = self._video_jobs.get(request.match_info["video_id"])
        if job is None:
            return _not_found(request.match_info["video_id"])
        return web.json_response(job.view(time.monotonic()), headers=self._poll_headers())

    async def _handle_video_content(self, request: web.Request) -> web.Response:
        """``GET /v1/videos/{video_id}/content?variant=video|thumbnail|spritesheet``."""
        video_id = request.match_info["video_id"]
        variant = request.query.get("variant", "video")
        if variant == "video":
            self.video_downloads.append(video_id)
        response = await self._content_response(request, video_id, variant)
        self.video_content_requests.append(VideoContentRequest(video_id, variant, response.status))
        return response

    async def _content_response(
        self, request: web.Request, video_id: str, variant: str
    ) -> web.Response:
        if not _authorized(request):
            return _unauthorized()
        if variant not in _VARIANTS:
            return _BadRequest(
                f"Invalid value: {variant!r}. Supported values are: 'video', 'thumbnail' "
                "and 'spritesheet'.",
                param="variant",
                code="invalid_value",
            ).response()
        job = self._video_jobs.get(video_id)
        if job is None:
            return _not_found(video_id)
        now = time.monotonic()
        status = job.view(now)["status"]
        if status == "completed" and job.expire_fault:
            job.expired_mono = now  # the provider lost it: this and later downloads 404
            status = "expired"
        if status == "expired":
            return _error_response(
                404,
                f"The content of video {video_id} has expired and is no longer available.",
                "invalid_request_error",
                code="video_expired",
            )
        if status != "completed":
            code = "video_failed" if status == "failed" else "video_not_ready"
            return _error_response(
                404,
                f"Video {video_id} has no content: its status is {status!r}.",
                "invalid_request_error",
                code=code,
            )
        if variant != "video":
            return web.Response(
                body=_still_png(job, variant),
                content_type="image/png",
                headers=_common_headers(),
            )
        if job.download_failures > 0:
            job.download_failures -= 1
            message, error_type, _ = _STATUS_ERRORS[500]
            return _error_response(500, message, error_type)
        try:
            data = await make_mp4_async(float(job.seconds), job.size)
        except RuntimeError as exc:  # ffmpeg missing or broken: say so in the failing test
            return _error_response(
                500, f"FakeLLM could not render the video: {exc}", "server_error"
            )
        return web.Response(body=data, content_type="video/mp4", headers=_common_headers())

    async def _handle_video_list(self, request: web.Request) -> web.Response:
        """``GET /v1/videos?after=&limit=&order=``: newest first unless ``order=asc``."""
        self.video_lists += 1
        if not _authorized(request):
            return _unauthorized()
        query = request.query
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            return _BadRequest(
                f"Invalid value: {order!r}. Supported values are: 'asc' and 'desc'.",
                param="order",
                code="invalid_value",
            ).response()
        raw_limit = query.get("limit", str(_DEFAULT_LIST_LIMIT))
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_LIST_LIMIT:
            return _BadRequest(
                f"Invalid 'limit': expected an integer between 1 and {_MAX_LIST_LIMIT}, "
                f"but got {raw_limit!r} instead.",
                param="limit",
                code="invalid_value",
            ).response()
        jobs = sorted(self._video_jobs.values(), key=lambda j: j.seq, reverse=order == "desc")
        after = query.get("after")
        if after:
            position = next((i for i, j in enumerate(jobs) if j.id == after), None)
            if position is None:
                return _BadRequest(
                    f"Invalid 'after': no video with id {after!r}.",
                    param="after",
                    code="invalid_value",
                ).response()
            jobs = jobs[position + 1 :]
        now = time.monotonic()
        data = [job.view(now) for job in jobs[:limit]]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "has_more": len(jobs) > limit,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            },
            headers=_common_headers(),
        )

    async def _handle_video_delete(self, request: web.Request) -> web.Response:
        """``DELETE /v1/videos/{video_id}``: cancel and forget the job."""
        video_id = request.match_info["video_id"]
        self.video_deletes.append(video_id)
        if not _authorized(request):
            return _unauthorized()
        if self._video_jobs.pop(video_id, None) is None:
            return _not_found(video_id)
        return web.json_response(
            {"id": video_id, "object": "video.deleted", "deleted": True},
            headers=_common_headers(),
        )

    # ------------------------------------------------------------------ internals

    def _new_video_job(self, spec: _VideoSpec, fault: VideoFault | None) -> _Video:
        self._video_seq += 1
        job = _Video(
            id=f"video_{secrets.token_hex(24)}",
            seq=self._video_seq,
            model=spec.model,
            prompt=spec.prompt,
            seconds=spec.seconds,
            size=spec.size,
            has_input_reference=spec.reference is not None,
            created_wall=time.time(),
            created_mono=time.monotonic(),
            queue_s=max(0.0, float(self.video_queue_s)),
            render_s=max(0.0, float(self.video_render_s)),
            expiry_s=float(self.video_expiry_s),
        )
        if fault is not None:
            params = fault.params
            if fault.kind in ("policy", "failed"):
                job.outcome = fault.kind
                job.error_message = params.get("message")
            elif fault.kind == "expire":
                job.expire_fault = True
                after = params.get("after")
                job.expire_after = None if after is None else float(after)
            elif fault.kind == "slow":
                job.render_s = float(params["seconds"])
            elif fault.kind == "download_fail":
                job.download_failures = int(params.get("count", 1))
        self._video_jobs[job.id] = job
        return job

    def _poll_headers(self) -> dict[str, str]:
        return {**_common_headers(), "openai-poll-after-ms": str(int(self.video_poll_after_ms))}


# ---------------------------------------------------------------------- speech


class SpeechMixin:
    """``POST /v1/audio/speech`` with recording, latency and fault injection."""

    _closing: asyncio.Event
    speech_latency: float
    speech_requests: list[SpeechRequest]
    _speech_faults: deque[SpeechFault]

    def _init_speech_state(self, latency: float = 0.0) -> None:
        self.speech_latency = latency
        self.speech_requests = []
        self._speech_faults = deque()

    def enqueue_speech_fault(self, kind: SpeechFaultKind, **kw: Any) -> None:
        """Queue a fault for the next speech request that passes auth and validation.

        - ``status``: ``status`` (required, 400..599), ``retry_after``, ``message``.
        - ``hang``: ``seconds`` (default 60) before answering normally.
        """
        if kind not in _SPEECH_FAULT_KWARGS:
            raise ValueError(
                f"unknown speech fault kind {kind!r}; expected one of {get_args(SpeechFaultKind)}"
            )
        unknown = set(kw) - _SPEECH_FAULT_KWARGS[kind]
        if unknown:
            raise ValueError(f"speech fault {kind!r} does not take {sorted(unknown)}")
        if kind == "status":
            _check_status_kw("speech", kw)
        if kind == "hang" and float(kw.get("seconds", 60.0)) < 0:
            raise ValueError("speech fault 'hang' needs seconds >= 0")
        self._speech_faults.append(SpeechFault(kind, dict(kw)))

    def speech_faults_pending(self) -> int:
        """How many queued speech faults have not been consumed yet."""
        return len(self._speech_faults)

    async def _handle_speech(self, request: web.Request) -> web.StreamResponse:
        """Record on arrival, validate, apply any fault, then answer with real audio."""
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        record = _raw_speech(body)
        index = len(self.speech_requests)
        self.speech_requests.append(record)
        status, response = await self._answer_speech(request, body)
        self.speech_requests[index] = replace(self.speech_requests[index], status=status)
        return response

    async def _answer_speech(
        self, request: web.Request, body: Any
    ) -> tuple[int | None, web.StreamResponse]:
        if not _authorized(request):
            return 401, _unauthorized()
        try:
            text, fmt, speed = _parse_speech(body)
        except _BadRequest as bad:
            return bad.status, bad.response()
        fault = self._speech_faults.popleft() if self._speech_faults else None
        if fault is not None:
            index = len(self.speech_requests) - 1
            self.speech_requests[index] = replace(self.speech_requests[index], fault=fault.kind)
            if fault.kind == "status":
                response = _status_fault_response(fault.params)
                return response.status, response
            if not await _wait(self._closing, float(fault.params.get("seconds", 60.0))):
                return None, _dropped(request)
        if not await _wait(self._closing, self.speech_latency):
            return None, _dropped(request)
        words = len(text.split())
        duration = max(_MIN_SPEECH_S, round(words / _WORDS_PER_SECOND / (speed or 1.0), 1))
        try:
            audio = await make_audio_async(duration, fmt)  # type: ignore[arg-type]
        except RuntimeError as exc:
            response = _error_response(
                500, f"FakeLLM could not render the audio: {exc}", "server_error"
            )
            return 500, response
        if self._closing.is_set():
            return None, _dropped(request)
        return 200, web.Response(
            body=audio,
            headers={**_common_headers(), "Content-Type": AUDIO_CONTENT_TYPES[fmt]},
        )


# ---------------------------------------------------------------------- request parsing


async def _read_create_body(request: web.Request) -> tuple[dict[str, Any], Any]:
    """The create fields and the raw ``input_reference`` (file bytes, or what JSON held)."""
    if request.content_type == "multipart/form-data":
        form = await request.post()
        fields: dict[str, Any] = {}
        reference: Any = None
        for name, value in form.items():
            if name == "input_reference":
                reference = value if isinstance(value, str) else value.file.read()
            elif isinstance(value, str):
                fields[name] = value
        return fields, reference
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise _BadRequest(
            "We could not parse the JSON body of your request.", param=None, code=None
        )
    return body, body.pop("input_reference", None)


def _reference_bytes(value: Any) -> bytes:
    """An uploaded file's bytes, or ``{"image_url": "data:image/...;base64,..."}`` from JSON."""
    if isinstance(value, bytes):
        return value
    url = value.get("image_url") if isinstance(value, dict) else None
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        try:
            return base64.b64decode(url.split(";base64,", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            pass
    raise _BadRequest(
        "input_reference must be a file upload (multipart/form-data) or, in JSON, "
        '{"image_url": "data:image/...;base64,..."}; this emulator cannot fetch URLs.',
        param="input_reference",
        code="invalid_value",
    )


def _parse_video_spec(
    fields: dict[str, Any],
    raw_reference: Any,
    allowed_seconds: frozenset[str],
    allowed_sizes: frozenset[str],
) -> _VideoSpec:
    model = _required_str(fields, "model")
    if model in SHUT_DOWN_VIDEO_MODELS:
        raise _BadRequest(
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
            status=404,
        )
    prompt = _required_str(fields, "prompt")
    if not prompt.strip():
        raise _BadRequest(
            "Invalid 'prompt': empty string. Expected a string with minimum length 1.",
            param="prompt",
            code="empty_string",
        )
    if len(prompt) > _MAX_VIDEO_PROMPT_CHARS:
        raise _BadRequest(
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{_MAX_VIDEO_PROMPT_CHARS}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    seconds_value = fields.get("seconds", _DEFAULT_SECONDS)
    if isinstance(seconds_value, bool) or not isinstance(seconds_value, str | int):
        raise _invalid_type("seconds", "a string", seconds_value)
    seconds = str(seconds_value).strip()
    allowed = sorted({str(s) for s in allowed_seconds}, key=_numeric_key)
    if seconds not in allowed:
        raise _BadRequest(
            f"Invalid value: {seconds_value!r}. Supported values are: "
            + ", ".join(repr(a) for a in allowed)
            + ".",
            param="seconds",
            code="invalid_value",
        )
    size = fields.get("size", _DEFAULT_SIZE)
    if not isinstance(size, str):
        raise _invalid_type("size", "a string", size)
    sizes = sorted(str(s) for s in allowed_sizes)
    if size not in sizes:
        raise _BadRequest(
            f"Invalid value: {size!r}. Supported values are: "
            + ", ".join(repr(s) for s in sizes)
            + ".",
            param="size",
            code="invalid_value",
        )
    reference = None if raw_reference is None else _reference_bytes(raw_reference)
    if reference is not None:
        dimensions = image_size(reference)
        if dimensions is None:
            raise _BadRequest(
                "input_reference must be a PNG, JPEG or WebP image.",
                param="input_reference",
                code="invalid_value",
            )
        got = f"{dimensions[0]}x{dimensions[1]}"
        if got != size:
            raise _BadRequest(
                f"input_reference must match the requested size: the image is {got}, "
                f"the requested size is {size}.",
                param="input_reference",
                code="invalid_value",
            )
    return _VideoSpec(model=model, prompt=prompt, seconds=seconds, size=size, reference=reference)


def _parse_speech(body: Any) -> tuple[str, str, float | None]:
    """(input, response_format, speed) of a valid speech request; raise ``_BadRequest``."""
    if not isinstance(body, dict):
        raise _BadRequest(
            "We could not parse the JSON body of your request.", param=None, code=None
        )
    _required_str(body, "model")
    voice = body.get("voice")
    if voice is None:
        raise _BadRequest(
            "Missing required parameter: 'voice'.",
            param="voice",
            code="missing_required_parameter",
        )
    if not (
        isinstance(voice, str) or (isinstance(voice, dict) and isinstance(voice.get("id"), str))
    ):
        raise _invalid_type("voice", 'a string or {"id": ...}', voice)
    text = _required_str(body, "input")
    if not text:
        raise _BadRequest(
            "Invalid 'input': empty string. Expected a string with minimum length 1.",
            param="input",
            code="empty_string",
        )
    if len(text) > _MAX_SPEECH_CHARS:
        raise _BadRequest(
            f"Invalid 'input': string too long. Expected a string with maximum length "
            f"{_MAX_SPEECH_CHARS}, but got a string with length {len(text)} instead.",
            param="input",
            code="string_above_max_length",
        )
    fmt = body.get("response_format", "mp3")
    if fmt not in _SPEECH_FORMATS:
        raise _BadRequest(
            f"Invalid value: {fmt!r}. Supported values are: "
            + ", ".join(repr(f) for f in _SPEECH_FORMATS)
            + ".",
            param="response_format",
            code="invalid_value",
        )
    if fmt not in AUDIO_CONTENT_TYPES:
        raise _BadRequest(
            f"Invalid value: {fmt!r}. This emulator only renders 'mp3' and 'wav' "
            "(the API also accepts 'opus', 'aac', 'flac' and 'pcm').",
            param="response_format",
            code="invalid_value",
        )
    stream_format = body.get("stream_format")
    if stream_format not in (None, "audio"):
        raise _BadRequest(
            "This emulator only answers stream_format 'audio' (whole audio bytes).",
            param="stream_format",
            code="invalid_value",
        )
    speed = body.get("speed")
    if speed is not None:
        if isinstance(speed, bool) or not isinstance(speed, int | float):
            raise _invalid_type("speed", "a number", speed)
        low, high = _SPEED_RANGE
        if not low <= speed <= high:
            raise _BadRequest(
                f"Invalid 'speed': expected a value between {low} and {high}, "
                f"but got {speed} instead.",
                param="speed",
                code="invalid_value",
            )
        speed = float(speed)
    return text, str(fmt), speed


def _required_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise _BadRequest(
            f"Missing required parameter: '{name}'.",
            param=name,
            code="missing_required_parameter",
        )
    if not isinstance(value, str):
        raise _invalid_type(name, "a string", value)
    return value


def _invalid_type(name: str, expected: str, value: Any) -> _BadRequest:
    return _BadRequest(
        f"Invalid type for '{name}': expected {expected}, but got {type(value).__name__} instead.",
        param=name,
        code="invalid_type",
    )


def _numeric_key(value: str) -> tuple[float, str]:
    try:
        return float(value), value
    except ValueError:
        return math.inf, value


def _text(fields: Mapping[str, Any], name: str, default: str) -> str:
    value = fields.get(name)
    return default if value is None else value if isinstance(value, str) else str(value)


def _raw_create(fields: Mapping[str, Any], reference: Any, status: int) -> VideoCreate:
    """A record of a refused create: what was sent, defaults where missing."""
    return VideoCreate(
        video_id=None,
        model=_text(fields, "model", ""),
        prompt=_text(fields, "prompt", ""),
        seconds=_text(fields, "seconds", _DEFAULT_SECONDS),
        size=_text(fields, "size", _DEFAULT_SIZE),
        has_input_reference=reference is not None,
        status=status,
    )


def _spec_create(
    spec: _VideoSpec, video_id: str | None, fault: VideoFaultKind | None
) -> VideoCreate:
    return VideoCreate(
        video_id=video_id,
        model=spec.model,
        prompt=spec.prompt,
        seconds=spec.seconds,
        size=spec.size,
        has_input_reference=spec.reference is not None,
        fault=fault,
    )


def _raw_speech(body: Any) -> SpeechRequest:
    fields = body if isinstance(body, dict) else {}
    voice = fields.get("voice")
    if isinstance(voice, dict):
        voice = voice.get("id")
    speed = fields.get("speed")
    return SpeechRequest(
        model=_text(fields, "model", ""),
        voice="" if voice is None else str(voice),
        input=_text(fields, "input", ""),
        format=_text(fields, "response_format", "mp3"),
        speed=float(speed)
        if isinstance(speed, int | float) and not isinstance(speed, bool)
        else None,
    )


# ---------------------------------------------------------------------- image sizes


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, JPEG or WebP from its header, or None if it is none of them."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame marker."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


# ---------------------------------------------------------------------- responses


def _progress(rendered: float, render_s: float) -> int:
    if render_s <= 0:
        return 99
    return max(0, min(99, math.floor(100 * rendered / render_s)))


def _job_error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _still_png(job: _Video, variant: str) -> bytes:
    """A thumbnail (long edge 320 px, the video's aspect) or a 4-frame spritesheet."""
    width, height = (int(edge) for edge in job.size.split("x"))
    scale = _THUMBNAIL_EDGE / max(width, height)
    thumb_w, thumb_h = max(1, round(width * scale)), max(1, round(height * scale))
    if variant == "spritesheet":
        thumb_w *= _SPRITESHEET_FRAMES
    return render_png(
        thumb_w,
        thumb_h,
        prompt_colour(job.prompt),
        {"Comment": f"storyloop video={job.id} variant={variant}"},
    )


def _authorized(request: web.Request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


def _unauthorized() -> web.Response:
    return _error_response(401, _AUTH_MESSAGE, "invalid_request_error")


def _not_found(video_id: str) -> web.Response:
    return _error_response(
        404,
        f"Video with id '{video_id}' not found.",
        "invalid_request_error",
        param="video_id",
        code="video_not_found",
    )


def _check_status_kw(what: str, kw: Mapping[str, Any]) -> None:
    status = kw.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"{what} fault 'status' needs status=<int 400..599>")


def _common_headers() -> dict[str, str]:
    return {"x-request-id": f"req_{uuid.uuid4().hex}"}


def _error_response(
    status: int,
    message: str,
    error_type: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An OpenAI-shaped error body, which the SDK maps to its exception classes."""
    return web.json_response(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}},
        status=status,
        headers={**_common_headers(), **(headers or {})},
    )


def _status_fault_response(params: Mapping[str, Any]) -> web.Response:
    status = int(params["status"])
    message, error_type, code = _STATUS_ERRORS.get(
        status,
        (
            f"Injected error {status}.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    headers = {}
    if params.get("retry_after") is not None:
        headers["retry-after"] = str(params["retry_after"])
    return _error_response(
        status, str(params.get("message", message)), error_type, code=code, headers=headers
    )


async def _wait(closing: asyncio.Event, seconds: float) -> bool:
    """Sleep; False (at once) if the server is stopping, so the caller drops the request."""
    if closing.is_set():
        return False
    if seconds <= 0:
        return True
    try:
        await asyncio.wait_for(closing.wait(), seconds)
    except TimeoutError:
        return True
    return False


def _dropped(request: web.Request) -> web.Response:
    """Close the connection without answering; the returned response is never sent."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()
    return web.Response(status=503)
