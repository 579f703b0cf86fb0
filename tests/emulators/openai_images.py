"""The OpenAI Images API for ``FakeLLM``, plus canned chat answers for the image stages.

Storyloop pays for images through ``client.images.generate`` (``POST
/v1/images/generations``), so tests need a server that speaks that contract the way a GPT
image model does: base64 PNGs only (``response_format`` is refused), token ``usage`` to cost
the call, ``moderation_blocked`` refusals, rate limits and slow answers. Paid calls must be
countable even when the app is killed mid-call, so every request is recorded the moment it
arrives, before any delay, and its status is filled in when (if ever) it is answered.

The PNGs are real (signature, IHDR, IDAT, IEND, correct CRCs) and built with the standard
library only, so upload code and Slack emulators handle the same bytes a real image would
give. Each is a solid colour derived from the prompt: different prompts give different
bytes, the same prompt gives the same bytes, and ``read_png`` maps bytes back to the
prompt's digest so a test can tell which prompt an uploaded file came from.

``ImageGenerationMixin`` holds the endpoint; ``FakeLLM`` inherits it and wires the route.
The ``*_json`` builders at the end are the deterministic answers to the ``image_plan``,
``image_redo`` and ``storyboard`` chat schemas; they take already-extracted text so this
module does not depend on the chat server's helpers.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import math
import re
import struct
import time
import uuid
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, get_args

from aiohttp import web

__all__ = [
    "SHUT_DOWN_IMAGE_MODELS",
    "ImageFault",
    "ImageFaultKind",
    "ImageGenerationMixin",
    "ImageRequest",
    "PngInfo",
    "image_plan_json",
    "image_redo_json",
    "prompt_colour",
    "read_png",
    "render_png",
    "storyboard_json",
]

SHUT_DOWN_IMAGE_MODELS: Final = frozenset(
    {"dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"}
)
"""Models OpenAI has shut down: the endpoint answers 404 ``model_not_found`` for them."""

ImageFaultKind = Literal["status", "moderation_blocked", "hang", "disconnect"]

_FAULT_KWARGS: Final[dict[str, frozenset[str]]] = {
    "status": frozenset({"status", "retry_after", "message"}),
    "moderation_blocked": frozenset({"message"}),
    "hang": frozenset({"seconds"}),
    "disconnect": frozenset(),
}

_MAX_PROMPT_CHARS: Final = 32_000
_MAX_N: Final = 10
_DEFAULT_SIZE: Final = "1024x1024"
_MAX_EDGE: Final = 3840
_MAX_PIXELS: Final = 3840 * 2160
_MAX_RATIO: Final = 3
_QUALITIES: Final = ("low", "medium", "high", "auto")
# Output tokens per 1024x1024 image for gpt-image-2; other sizes scale by area.
_OUTPUT_TOKENS_1024: Final = {"low": 272, "medium": 1056, "high": 4160}
_CHARS_PER_TOKEN: Final = 4
_REJECTED_PARAMS: Final = ("response_format", "input_fidelity")
_ENUM_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "moderation": ("low", "auto"),
    "background": ("transparent", "opaque", "auto"),
}
_SIZE_RE: Final = re.compile(r"(\d{1,5})x(\d{1,5})")

_MODERATION_MESSAGE: Final = (
    "Your request was rejected as a result of our safety system. Your request may contain "
    "content that is not allowed by our safety system."
)
# (message, type, code) per injected status, worded like OpenAI's.
_STATUS_ERRORS: Final[dict[int, tuple[str, str, str | None]]] = {
    429: (
        "Rate limit reached for images per minute. Please try again later.",
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
class ImageFault:
    """One queued misbehaviour, applied to exactly one image-generation request."""

    kind: ImageFaultKind
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRequest:
    """One ``POST /v1/images/generations`` as the server saw it.

    ``size`` and ``quality`` are the resolved values (``auto`` becomes ``1024x1024`` and
    ``medium``) when the request was valid, else what was sent. ``status`` is the HTTP
    status answered, or None while in flight and for requests never answered (dropped
    connection, client gave up, server stopped, process killed).
    """

    prompt: str
    model: str
    size: str
    quality: str
    n: int
    status: int | None = None
    fault: ImageFaultKind | None = None


@dataclass(frozen=True)
class PngInfo:
    """What ``read_png`` found: dimensions, the solid colour and the text chunks."""

    width: int
    height: int
    rgb: tuple[int, int, int]
    text: dict[str, str]


@dataclass(frozen=True)
class _ImageJob:
    """A validated request: everything needed to answer it."""

    prompt: str
    model: str
    n: int
    width: int
    height: int
    quality: str  # resolved: low, medium or high


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


class ImageGenerationMixin:
    """``POST /v1/images/generations`` with recording, latency and fault injection.

    The host class (``FakeLLM``) calls ``_init_image_state`` from ``__init__``, routes the
    endpoint to ``_handle_image_generations`` and provides ``_closing``, an event set when
    the server stops so that sleeping handlers give up at once.
    """

    _closing: asyncio.Event
    image_latency: float
    image_requests: list[ImageRequest]
    image_plans_served: int
    _image_faults: deque[ImageFault]

    def _init_image_state(self, image_latency: float) -> None:
        self.image_latency = image_latency
        self.image_requests = []
        self.image_plans_served = 0
        self._image_faults = deque()

    # ------------------------------------------------------------------ controls

    @property
    def images_generated(self) -> int:
        """Images actually returned (sum of ``n`` over requests answered 200): what was paid for."""
        return sum(r.n for r in self.image_requests if r.status == 200)

    def enqueue_image_fault(self, kind: ImageFaultKind, **kw: Any) -> None:
        """Queue a fault for the next image request that passes validation.

        A separate queue from the chat faults, so an image fault is never eaten by a story
        call and vice versa. First-in first-out, one per request; requests refused by
        validation (400/404) do not consume one.

        - ``status``: ``status`` (required, 400..599), ``retry_after`` (``retry-after``
          header), ``message`` (overrides the error message).
        - ``moderation_blocked``: optional ``message``; HTTP 400 ``moderation_blocked``.
        - ``hang``: ``seconds`` (default 60) before answering normally.
        - ``disconnect``: drop the connection without any response.
        """
        if kind not in _FAULT_KWARGS:
            raise ValueError(
                f"unknown image fault kind {kind!r}; expected one of {get_args(ImageFaultKind)}"
            )
        unknown = set(kw) - _FAULT_KWARGS[kind]
        if unknown:
            raise ValueError(f"image fault {kind!r} does not take {sorted(unknown)}")
        if kind == "status":
            status = kw.get("status")
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise ValueError("image fault 'status' needs status=<int 400..599>")
        if kind == "hang" and float(kw.get("seconds", 60.0)) < 0:
            raise ValueError("image fault 'hang' needs seconds >= 0")
        self._image_faults.append(ImageFault(kind, dict(kw)))

    def image_faults_pending(self) -> int:
        """How many queued image faults have not been consumed yet."""
        return len(self._image_faults)

    # ------------------------------------------------------------------ handler

    async def _handle_image_generations(self, request: web.Request) -> web.StreamResponse:
        """Validate and record on arrival, apply any fault, then answer with real PNGs."""
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        try:
            job = _parse_job(body)
        except _BadRequest as bad:
            self.image_requests.append(replace(_raw_record(body), status=bad.status))
            return bad.response()

        fault = self._image_faults.popleft() if self._image_faults else None
        index = len(self.image_requests)
        self.image_requests.append(
            ImageRequest(
                prompt=job.prompt,
                model=job.model,
                size=f"{job.width}x{job.height}",
                quality=job.quality,
                n=job.n,
                fault=fault.kind if fault is not None else None,
            )
        )
        # A client that gives up cancels this handler (handler_cancellation): the record
        # then keeps status None, i.e. received but never answered.
        status, response = await self._answer_image(request, job, fault)
        self.image_requests[index] = replace(self.image_requests[index], status=status)
        return response

    async def _answer_image(
        self, request: web.Request, job: _ImageJob, fault: ImageFault | None
    ) -> tuple[int | None, web.StreamResponse]:
        """The (status, response) for a validated request; status None when none was sent."""
        if fault is not None and fault.kind == "status":
            fault_response = _status_fault_response(fault)
            return fault_response.status, fault_response
        if fault is not None and fault.kind == "moderation_blocked":
            message = str(fault.params.get("message", _MODERATION_MESSAGE))
            blocked = _error_response(
                400, message, "image_generation_user_error", code="moderation_blocked"
            )
            return blocked.status, blocked
        if fault is not None and fault.kind == "disconnect":
            return None, _dropped(request)
        hang = float(fault.params.get("seconds", 60.0)) if fault and fault.kind == "hang" else 0.0
        if not await self._image_wait(hang):
            return None, _dropped(request)
        if not await self._image_wait(self.image_latency):
            return None, _dropped(request)

        # Off the event loop: a 10-image 4K request takes a second to compress, and other
        # requests (chat, Slack) must keep flowing meanwhile, as against a real provider.
        pngs = await asyncio.to_thread(_render_job, job)
        if self._closing.is_set():
            return None, _dropped(request)
        input_tokens = math.ceil(len(job.prompt) / _CHARS_PER_TOKEN)
        per_image = round(_OUTPUT_TOKENS_1024[job.quality] * job.width * job.height / 1024**2)
        output_tokens = per_image * job.n
        body = {
            "created": int(time.time()),
            "data": [{"b64_json": base64.b64encode(png).decode("ascii")} for png in pngs],
            "background": "opaque",
            "output_format": "png",
            "quality": job.quality,
            "size": f"{job.width}x{job.height}",
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
                "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
            },
        }
        return 200, web.json_response(body, headers=_common_headers())

    async def _image_wait(self, seconds: float) -> bool:
        """Sleep; False (at once) if the server is stopping, so the caller drops the request."""
        if self._closing.is_set():
            return False
        if seconds <= 0:
            return True
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return True
        return False


# ---------------------------------------------------------------------- validation


def _parse_job(body: Any) -> _ImageJob:
    """Check a request body the way the API does for GPT image models; raise ``_BadRequest``."""
    if not isinstance(body, dict):
        raise _BadRequest(
            "We could not parse the JSON body of your request.", param=None, code=None
        )
    for name in _REJECTED_PARAMS:
        if name in body:
            raise _BadRequest(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
    model = _required_str(body, "model")
    if model in SHUT_DOWN_IMAGE_MODELS:
        raise _BadRequest(
            f"The model `{model}` does not exist or you do not have access to it.",
            param=None,
            code="model_not_found",
            status=404,
        )
    prompt = _required_str(body, "prompt")
    if not prompt:
        raise _BadRequest(
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, "
            "but got an empty string instead.",
            param="prompt",
            code="empty_string",
        )
    if len(prompt) > _MAX_PROMPT_CHARS:
        raise _BadRequest(
            f"Invalid 'prompt': string too long. Expected a string with maximum length "
            f"{_MAX_PROMPT_CHARS}, but got a string with length {len(prompt)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    n = _n(body.get("n"))
    width, height = _size(body.get("size"))
    quality = _choice(body, "quality", _QUALITIES) or "auto"
    output_format = body.get("output_format")
    if output_format is not None and output_format != "png":
        raise _BadRequest(
            f"Invalid value: {output_format!r}. This emulator only renders 'png' "
            "(the API also accepts 'jpeg' and 'webp').",
            param="output_format",
            code="invalid_value",
        )
    for name, allowed in _ENUM_PARAMS.items():
        _choice(body, name, allowed)
    safety_identifier = body.get("safety_identifier")
    if safety_identifier is not None and not isinstance(safety_identifier, str):
        raise _invalid_type("safety_identifier", "a string", safety_identifier)
    if body.get("stream") is True:
        raise _BadRequest(
            "This emulator does not stream images; omit 'stream'.",
            param="stream",
            code="invalid_value",
        )
    return _ImageJob(
        prompt=prompt,
        model=model,
        n=n,
        width=width,
        height=height,
        quality="medium" if quality == "auto" else quality,
    )


def _required_str(body: dict[str, Any], name: str) -> str:
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


def _n(value: Any) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid_type("n", "an integer", value)
    if value < 1:
        raise _BadRequest(
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead.",
            param="n",
            code="integer_below_min_value",
        )
    if value > _MAX_N:
        raise _BadRequest(
            f"Invalid 'n': integer above maximum value. Expected a value <= {_MAX_N}, "
            f"but got {value} instead.",
            param="n",
            code="integer_above_max_value",
        )
    return value


def _size(value: Any) -> tuple[int, int]:
    """Resolve ``size``: the standard sizes, ``auto`` (1024x1024) or free ``WxH``."""
    if value is None or value == "auto":
        value = _DEFAULT_SIZE
    if not isinstance(value, str):
        raise _invalid_type("size", "a string", value)
    match = _SIZE_RE.fullmatch(value)
    if match is not None:
        width, height = int(match.group(1)), int(match.group(2))
        if (
            width > 0
            and height > 0
            and width % 16 == 0
            and height % 16 == 0
            and max(width, height) <= _MAX_RATIO * min(width, height)
            and max(width, height) <= _MAX_EDGE
            and width * height <= _MAX_PIXELS
        ):
            return width, height
    raise _BadRequest(
        f"Invalid value: {value!r}. Supported values are: '1024x1024', '1536x1024', "
        "'1024x1536', 'auto', or 'WIDTHxHEIGHT' with both edges multiples of 16, an aspect "
        "ratio between 1:3 and 3:1, and at most 3840x2160 pixels.",
        param="size",
        code="invalid_value",
    )


def _choice(body: dict[str, Any], name: str, allowed: Sequence[str]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if value not in allowed:
        supported = ", ".join(repr(a) for a in allowed)
        raise _BadRequest(
            f"Invalid value: {value!r}. Supported values are: {supported}.",
            param=name,
            code="invalid_value",
        )
    return str(value)


def _invalid_type(name: str, expected: str, value: Any) -> _BadRequest:
    return _BadRequest(
        f"Invalid type for '{name}': expected {expected}, but got {type(value).__name__} instead.",
        param=name,
        code="invalid_type",
    )


def _raw_record(body: Any) -> ImageRequest:
    """A best-effort record of a refused request: what was sent, defaults where missing."""
    fields = body if isinstance(body, dict) else {}

    def text(name: str, default: str) -> str:
        value = fields.get(name)
        return default if value is None else value if isinstance(value, str) else str(value)

    n = fields.get("n")
    n = 1 if n is None else n
    return ImageRequest(
        prompt=text("prompt", ""),
        model=text("model", ""),
        size=text("size", _DEFAULT_SIZE),
        quality=text("quality", "auto"),
        n=n if isinstance(n, int) and not isinstance(n, bool) else 0,
    )


# ---------------------------------------------------------------------- responses


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


def _status_fault_response(fault: ImageFault) -> web.Response:
    status = int(fault.params["status"])
    message, error_type, code = _STATUS_ERRORS.get(
        status,
        (
            f"Injected error {status}.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    headers = {}
    if fault.params.get("retry_after") is not None:
        headers["retry-after"] = str(fault.params["retry_after"])
    return _error_response(
        status,
        str(fault.params.get("message", message)),
        error_type,
        code=code,
        headers=headers,
    )


def _dropped(request: web.Request) -> web.Response:
    """Close the connection without answering; the returned response is never sent."""
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()
    return web.Response(status=503)


# ---------------------------------------------------------------------- PNG

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_TEXT_KEY: Final = "Comment"
_ROWS_PER_BLOCK: Final = 256


def prompt_colour(prompt: str, index: int = 0) -> tuple[int, int, int]:
    """The solid colour of image ``index`` for ``prompt``: the first bytes of a SHA-256.

    Image 0 uses the prompt's own digest; the others mix in their index, so the ``n``
    images of one request differ like real ones would.
    """
    seed = prompt if index == 0 else f"{prompt}\n#{index}"
    digest = hashlib.sha256(seed.encode()).digest()
    return digest[0], digest[1], digest[2]


def render_png(
    width: int, height: int, rgb: tuple[int, int, int], text: Mapping[str, str] | None = None
) -> bytes:
    """A valid 8-bit RGB PNG of one colour, with optional ``tEXt`` chunks (Latin-1)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    texts = [
        _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
        for key, value in (text or {}).items()
    ]
    return b"".join(
        [
            _PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            *texts,
            _chunk(b"IDAT", _solid_idat(width, height, rgb)),
            _chunk(b"IEND", b""),
        ]
    )


def read_png(data: bytes) -> PngInfo:
    """Parse and check a PNG from ``render_png``: chunk CRCs, layout, one solid colour.

    Downstream tests use it on bytes that reached Slack to tell which prompt they came
    from (``info.text["Comment"]`` holds the prompt's SHA-256). Raises ``ValueError``.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG: bad signature")
    chunks: list[tuple[bytes, bytes]] = []
    pos = len(_PNG_SIGNATURE)
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        crc_bytes = data[pos + 8 + length : pos + 12 + length]
        if len(payload) != length or len(crc_bytes) != 4:
            raise ValueError(f"truncated {kind!r} chunk")
        if struct.unpack(">I", crc_bytes)[0] != zlib.crc32(kind + payload):
            raise ValueError(f"bad CRC in {kind!r} chunk")
        chunks.append((kind, payload))
        pos += 12 + length
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError("PNG must start with IHDR and end with IEND")
    width, height, depth, colour_type, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    if (depth, colour_type) != (8, 2):
        raise ValueError("only 8-bit RGB PNGs are supported")
    pixels = zlib.decompress(b"".join(p for k, p in chunks if k == b"IDAT"))
    row = pixels[: 1 + 3 * width]
    if len(pixels) != height * len(row) or pixels != row * height or row[0] != 0:
        raise ValueError("not a solid-colour PNG")
    text = {}
    for kind, payload in chunks:
        if kind == b"tEXt":
            key, _, value = payload.partition(b"\0")
            text[key.decode("latin-1")] = value.decode("latin-1")
    return PngInfo(width, height, (row[1], row[2], row[3]), text)


def _render_job(job: _ImageJob) -> list[bytes]:
    digest = hashlib.sha256(job.prompt.encode()).hexdigest()
    return [
        render_png(
            job.width,
            job.height,
            prompt_colour(job.prompt, i),
            {_TEXT_KEY: f"storyloop prompt-sha256={digest} image={i}"},
        )
        for i in range(job.n)
    ]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


@functools.lru_cache(maxsize=128)
def _solid_idat(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """Compressed scanlines (filter 0) of one colour; cached, since only this is costly.

    A cached entry is a few KB even for 4K images, so the cache stays small while
    repeated 1024x1024 renders become free. Rows are fed in blocks to avoid building
    the whole raw image (25 MB at 4K) in memory.
    """
    row = b"\0" + bytes(rgb) * width
    compressor = zlib.compressobj(6)
    parts = []
    for start in range(0, height, _ROWS_PER_BLOCK):
        parts.append(compressor.compress(row * min(_ROWS_PER_BLOCK, height - start)))
    parts.append(compressor.flush())
    return b"".join(parts)


# ---------------------------------------------------------------------- canned chat answers

_IMAGES_WANTED_RE: Final = re.compile(r"Images wanted: at most (\d+)")
_REDO_RE: Final = re.compile(r"^[ \t]*Image to redo: (\d+): (.+) \((\w+)\)[ \t]*$", re.MULTILINE)
_SCENE_RE: Final = re.compile(r"^[ \t]*Scene (\d+) \((\d+) ?s\):", re.MULTILINE)
_IMAGE_LINE_RE: Final = re.compile(
    r"^[ \t]*Image (\d+): (.+?) \((\w+)\)[ \t]*(?:—|-|$)", re.MULTILINE
)
_DEFAULT_IMAGES_WANTED: Final = 4
# (name, kind, role, prompt lead) in plan order.
_PLAN_SLOTS: Final = (
    ("Hero", "character", "Main character; appears in most shots", "Character sheet of the hero"),
    (
        "Main location",
        "location",
        "Where most of the story takes place",
        "Establishing view of the main location",
    ),
    ("Key prop", "prop", "The object the story turns on", "Detailed still of the key prop"),
    (
        "Style frame",
        "style",
        "Sets palette, lighting and texture for every shot",
        "Style frame setting the look",
    ),
)


def image_plan_json(texts: Sequence[str], brief: str, changes: Sequence[str], plan: int) -> str:
    """Answer for schema ``image_plan``: up to 4 reference images, in slot order.

    ``texts`` are the message texts, newest first; ``plan`` numbers the plans served so
    far and shows in the last image's role, so successive versions differ.
    """
    match = _first_match(_IMAGES_WANTED_RE, texts)
    wanted = int(match.group(1)) if match else _DEFAULT_IMAGES_WANTED
    images = [
        {
            "name": name,
            "kind": kind,
            "role": role,
            "prompt": f'{lead} of "{brief}", clean composition, no text.' + _changes(changes),
        }
        for name, kind, role, lead in _PLAN_SLOTS[: max(0, min(wanted, len(_PLAN_SLOTS)))]
    ]
    if images:
        images[-1]["role"] += f" (plan {plan})"
    return json.dumps(
        {"images": images, "summary_of_changes": _summary(changes)}, ensure_ascii=False
    )


def image_redo_json(texts: Sequence[str], brief: str, changes: Sequence[str]) -> str:
    """Answer for schema ``image_redo``: the image named in ``Image to redo: K: NAME (KIND)``."""
    match = _first_match(_REDO_RE, texts)
    number, name, kind = (
        (match.group(1), match.group(2).strip(), match.group(3))
        if match
        else ("1", "Image", "style")
    )
    return json.dumps(
        {
            "name": name,
            "kind": kind,
            "role": f"Redone version of image {number}",
            "prompt": f"Redo of {name} for {brief}." + _changes(changes),
            "summary_of_changes": _summary(changes),
        },
        ensure_ascii=False,
    )


def storyboard_json(
    texts: Sequence[str],
    brief: str,
    changes: Sequence[str],
    fallback_durations: Sequence[int],
) -> str:
    """Answer for schema ``storyboard``: shots whose durations add up to each scene's.

    Scenes come from ``Scene K (D s):`` lines and references from ``Image K: NAME (KIND)``
    lines, each from the newest message that has any; without scene lines the scenes are
    ``fallback_durations`` (what the story answer would have produced for the target).
    """
    scene_text = next((t for t in texts if _SCENE_RE.search(t)), "")
    scenes = [(int(m.group(1)), int(m.group(2))) for m in _SCENE_RE.finditer(scene_text)]
    if not scenes:
        scenes = list(enumerate(fallback_durations, start=1))
    image_text = next((t for t in texts if _IMAGE_LINE_RE.search(t)), "")
    images = [(m.group(2).strip(), m.group(3)) for m in _IMAGE_LINE_RE.finditer(image_text)]
    references: list[str] = [images[0][0]] if images else []
    location = next((name for name, kind in images if kind == "location"), None)
    if location is not None and location not in references:
        references.append(location)

    shots: list[dict[str, Any]] = []
    for scene, duration in scenes:
        parts = [duration // 2, duration - duration // 2] if duration >= 6 else [duration]
        for part, seconds in enumerate(parts, start=1):
            alternate = len(shots) % 2
            shots.append(
                {
                    "scene": scene,
                    "duration_s": seconds,
                    "shot_type": ("wide", "close-up")[alternate],
                    "camera": ("static", "slow push-in")[alternate],
                    "action": f"Scene {scene}, shot {part} of {len(parts)}: {brief}",
                    "audio": f"VO: scene {scene} line",
                    "references": list(references),
                }
            )
    return json.dumps({"shots": shots, "summary_of_changes": _summary(changes)}, ensure_ascii=False)


def _first_match(pattern: re.Pattern[str], texts: Sequence[str]) -> re.Match[str] | None:
    """The pattern's first match in the newest text that has one."""
    for text in texts:
        match = pattern.search(text)
        if match is not None:
            return match
    return None


def _changes(changes: Sequence[str]) -> str:
    return f" Changes: {'; '.join(changes)}" if changes else ""


def _summary(changes: Sequence[str]) -> str:
    return f"Applied: {'; '.join(changes)}" if changes else ""
