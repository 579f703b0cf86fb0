"""The video port: the OpenAI-style video-jobs contract, spoken over plain HTTP with aiohttp.

OpenAI's own Sora API is shut down, but gateways (LiteLLM and others, mapping to Veo, Runway,
...) serve the same contract: ``POST /v1/videos`` creates a paid job, ``GET /v1/videos/{id}``
polls it, ``GET /v1/videos/{id}/content`` downloads the MP4, ``GET /v1/videos`` lists jobs and
``DELETE /v1/videos/{id}`` removes one. The openai SDK's ``client.videos`` methods are
deprecated (they warn before any HTTP, and tests turn warnings into errors), so this module
talks HTTP itself.

Money decides the retry policy. ``create`` is paid and is never retried here: a connection
error or timeout after the request was sent raises ``VideoError`` (``connection`` /
``timeout``) and the caller must treat the job as possibly accepted (find it with ``recent``
and adopt it rather than paying twice). Reads (``get``, ``download``, ``recent``) and the
idempotent ``delete`` cost nothing, so they are retried on connection errors, timeouts, 429 and
5xx with bounded exponential backoff: the only automatic retries in the media providers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import aiohttp

from bot.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SECONDS: Final = (4, 8, 12)
READ_ATTEMPTS: Final = 4
MAX_BACKOFF_S: Final = 20.0
MAX_DOWNLOAD_BYTES: Final = 1024 * 1024 * 1024  # Slack's per-file limit: larger is useless
_POLICY_CODES: Final = frozenset(
    {"moderation_blocked", "content_policy_violation", "content_filter", "policy_violation"}
)
_RETRYABLE_CODES: Final = frozenset({"connection", "timeout", "rate_limited", "provider"})


@dataclass(frozen=True)
class VideoJob:
    """One job as the provider reported it.

    ``status`` is ``queued`` | ``in_progress`` | ``completed`` | ``failed`` | ``expired`` (or
    whatever else a gateway says; treat unknown values as still running). ``seconds`` and
    ``size`` are the contract's strings. ``poll_after_s`` comes from the
    ``openai-poll-after-ms`` header: when the provider wants to be asked again (None if it
    did not say, and always None for jobs from ``recent``).
    """

    id: str
    status: str
    progress: int
    error_code: str | None
    error_message: str | None
    prompt: str | None
    seconds: str | None
    size: str | None
    created_at: float | None
    poll_after_s: float | None

    @property
    def done(self) -> bool:
        """Finished one way or another: polling it again will not change anything."""
        return self.status in ("completed", "failed", "expired")


class VideoError(Exception):
    """A video call that did not give what was asked.

    ``code`` names the cause: ``policy`` (moderation or content refusal), ``rate_limited``,
    ``provider`` (5xx or a malformed answer), ``connection``, ``timeout``, ``auth``,
    ``model``, ``rejected`` (another 4xx), ``not_found``, ``expired``, ``failed`` (the job
    failed for another reason). ``user_message`` is plain words safe to show in Slack (never
    exception text). ``retryable`` says whether asking again may help; it is meaningful for
    reads only, since a create is never repeated without the user's say.
    """

    def __init__(self, code: str, user_message: str, *, retryable: bool | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.user_message = user_message
        self.retryable = code in _RETRYABLE_CODES if retryable is None else retryable


class VideoProvider(Protocol):
    """What the pipeline needs from a video service (see the module docstring for retries)."""

    supported_seconds: tuple[int, ...]
    size: str
    model: str

    async def create(
        self, *, prompt: str, seconds: int, size: str, input_reference: bytes | None
    ) -> VideoJob: ...

    async def get(self, job_id: str) -> VideoJob: ...

    async def download(self, job_id: str) -> bytes: ...

    async def delete(self, job_id: str) -> bool: ...

    async def recent(self, limit: int = 50) -> list[VideoJob]: ...


def job_failure(job: VideoJob) -> VideoError:
    """The ``VideoError`` for a job that ended ``failed`` or ``expired``.

    Content refusals often arrive after queueing, as a failed job rather than an HTTP error,
    so the poller turns the job's ``error.code`` into the same plain words a create refusal
    would get.
    """
    if job.status == "expired":
        return _expired()
    if (job.error_code or "") in _POLICY_CODES:
        return _policy()
    return VideoError(
        "failed",
        "The video service couldn't make this clip. It may work if you Retry; if it keeps "
        "failing, reword the scene.",
        retryable=False,
    )


def _policy() -> VideoError:
    return VideoError(
        "policy",
        "The video service's safety system refused this scene. Say in the thread how to reword "
        "it (for example, less violent or without a real person's name), then Redo it.",
    )


def _expired() -> VideoError:
    return VideoError(
        "expired",
        "The video service no longer has this clip (finished clips are kept only for a while); "
        "it has to be made again.",
    )


def _error_fields(body: Any) -> tuple[str | None, str | None]:
    """(code, message) of an OpenAI-shaped error body, tolerating other shapes."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


def classify_status(status: int, body: Any, *, model: str, creating: bool) -> VideoError:
    """Plain words for an HTTP error answer (``creating``: was it the paid create?)."""
    code, _ = _error_fields(body)
    if status in (401, 403):
        return VideoError(
            "auth",
            "The video service refused our credentials; an admin needs to check the video "
            "settings (its API key).",
        )
    if status == 429:
        return VideoError(
            "rate_limited", "The video service is busy (rate limited). Use Retry in a minute."
        )
    if status >= 500:
        return VideoError("provider", "The video service had a problem. Use Retry in a minute.")
    if code in _POLICY_CODES:
        return _policy()
    if code == "video_expired":
        return _expired()
    if code == "video_failed":
        return VideoError(
            "failed", "The video service couldn't make this clip; it has to be made again."
        )
    if code == "model_not_found" or (creating and status == 404):
        return VideoError(
            "model",
            f"The video model “{model}” isn't available (it may have been shut down); an admin "
            "needs to change the video model setting.",
        )
    if status == 404 and code != "video_not_ready":
        return VideoError(
            "not_found", "The video service no longer knows this clip; it has to be made again."
        )
    if creating:
        return VideoError(
            "rejected", "The video service rejected the request. Reword the scene, then Redo."
        )
    if code == "video_not_ready":
        return VideoError("rejected", "The video service hasn't finished this clip yet.")
    return VideoError(
        "rejected",
        "The video service refused the request; an admin may need to check the video settings.",
    )


def classify_exception(exc: BaseException, *, creating: bool) -> VideoError:
    """Plain words for a transport failure. After a create, the job may exist and be billed."""
    maybe = (
        " It may still have accepted (and billed) the clip; I'll look for it before asking again."
        if creating
        else ""
    )
    if isinstance(exc, VideoError):
        return exc
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return VideoError("timeout", "The video service took too long to answer." + maybe)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return VideoError("connection", "I lost the connection to the video service." + maybe)
    return VideoError("provider", "The video service had a problem. Use Retry in a minute.")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_job(body: Any, headers: Mapping[str, str] | None = None) -> VideoJob:
    """A ``VideoJob`` from the contract's JSON object; ``VideoError("provider")`` if it is none."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
        raise VideoError("provider", "The video service answered with something unexpected.")
    code, message = _error_fields(body)
    progress = _number(body.get("progress"))
    poll_ms = _number(headers.get("openai-poll-after-ms")) if headers is not None else None
    seconds = body.get("seconds")
    return VideoJob(
        id=body["id"],
        status=str(body.get("status") or "queued"),
        progress=max(0, min(100, int(progress))) if progress is not None else 0,
        error_code=code,
        error_message=message,
        prompt=body.get("prompt") if isinstance(body.get("prompt"), str) else None,
        seconds=None if seconds is None else str(seconds),
        size=body.get("size") if isinstance(body.get("size"), str) else None,
        created_at=_number(body.get("created_at")),
        poll_after_s=poll_ms / 1000 if poll_ms is not None and poll_ms >= 0 else None,
    )


class _StatusError(Exception):
    """An HTTP error answer, kept with its Retry-After for the read retry loop."""

    def __init__(self, error: VideoError, retry_after: float | None) -> None:
        super().__init__(error.code)
        self.error = error
        self.retry_after = retry_after


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = _number(headers.get("retry-after"))
    return value if value is not None and value >= 0 else None


class OpenAIVideoJobs:
    """``VideoProvider`` over the OpenAI-style video-jobs HTTP contract.

    One ``aiohttp.ClientSession`` is shared by all calls (created at first use unless one is
    passed in; ``close()`` closes only a session this object created). ``base_url`` ends in
    ``/v1``. The API key is sent as a Bearer token and never logged; an empty key sends no
    ``Authorization`` header (for local gateways without keys).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        size: str,
        supported_seconds: tuple[int, ...] = DEFAULT_SECONDS,
        create_timeout_s: float = 60.0,
        read_timeout_s: float = 30.0,
        download_timeout_s: float = 300.0,
        backoff_s: float = 1.0,
        read_attempts: int = READ_ATTEMPTS,
        session: aiohttp.ClientSession | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        if not supported_seconds:
            raise ValueError("supported_seconds must not be empty")
        self._base = base_url.rstrip("/")
        self._api_key = api_key
        self.model = model
        self.size = size
        self.supported_seconds = tuple(sorted(supported_seconds))
        self.create_timeout_s = create_timeout_s
        self.read_timeout_s = read_timeout_s
        self.download_timeout_s = download_timeout_s
        self.backoff_s = backoff_s
        self.read_attempts = max(1, read_attempts)
        self._session = session
        self._owns_session = session is None

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIVideoJobs(base_url={self._base!r}, model={self.model!r})"

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    def _headers(self) -> dict[str, str]:
        if not self._api_key:
            return {}
        return {"Authorization": f"Bearer {self._api_key}"}

    # ------------------------------------------------------------------ the paid call

    async def create(
        self, *, prompt: str, seconds: int, size: str, input_reference: bytes | None
    ) -> VideoJob:
        """Start one job. Paid: NEVER retried; raises ``VideoError``.

        ``connection`` / ``timeout`` mean the job may exist anyway: look for it with
        ``recent`` (matching the prompt) before creating again. ``input_reference`` is a PNG
        that must already be exactly ``size`` (see ``ffmpeg.fit_image``).
        """
        if seconds not in self.supported_seconds:
            raise VideoError(
                "rejected",
                f"A clip can only be {_choices(self.supported_seconds)} seconds long with this "
                "video service.",
            )
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("model", self.model)
        form.add_field("prompt", prompt)
        form.add_field("seconds", str(seconds))
        form.add_field("size", size)
        if input_reference is not None:
            form.add_field(
                "input_reference",
                input_reference,
                filename="reference.png",
                content_type="image/png",
            )
        timeout = aiohttp.ClientTimeout(total=self.create_timeout_s)
        try:
            with self.metrics.provider_call("video", "create"):
                job = await self._post_create(form, timeout)
        except VideoError:
            raise
        except Exception as exc:
            error = classify_exception(exc, creating=True)
            log.warning(
                "video create failed: %s (%s); the job may exist", error.code, type(exc).__name__
            )
            raise error from None
        log.info("video job %s created (%s s, %s)", job.id, seconds, size)
        return job

    async def _post_create(self, form: aiohttp.FormData, limit: aiohttp.ClientTimeout) -> VideoJob:
        async with self._client().post(
            f"{self._base}/videos", data=form, headers=self._headers(), timeout=limit
        ) as response:
            body = await _json(response)
            if response.status >= 400:
                error = classify_status(response.status, body, model=self.model, creating=True)
                log.warning("video create refused: HTTP %s (%s)", response.status, error.code)
                raise error
            return parse_job(body, response.headers)

    # ------------------------------------------------------------------ reads (retried)

    async def get(self, job_id: str) -> VideoJob:
        """The job now. Retried on transient failures; ``not_found`` if the provider lost it."""

        async def once() -> VideoJob:
            async with self._client().get(
                self._url(job_id), headers=self._headers(), timeout=self._read_timeout()
            ) as response:
                body = await _json(response)
                self._check(response, body)
                return parse_job(body, response.headers)

        return await self._retrying("get", once)

    async def download(self, job_id: str) -> bytes:
        """The finished MP4 (``variant=video``). Retried on transient failures.

        ``expired`` when the provider no longer keeps it; ``failed`` for a failed job.
        Each attempt is bounded per read by the read timeout and overall by
        ``download_timeout_s``, so a large file on a slow link is not cut off.
        """
        timeout = aiohttp.ClientTimeout(
            total=self.download_timeout_s,
            sock_connect=self.read_timeout_s,
            sock_read=self.read_timeout_s,
        )

        async def once() -> bytes:
            async with self._client().get(
                self._url(job_id) + "/content",
                params={"variant": "video"},
                headers=self._headers(),
                timeout=timeout,
            ) as response:
                if response.status >= 400:
                    self._check(response, await _json(response))
                if (response.content_length or 0) > MAX_DOWNLOAD_BYTES:
                    raise _too_big()
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(1 << 20):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise _too_big()
                    chunks.append(chunk)
            data = b"".join(chunks)
            if not data:
                raise VideoError(
                    "provider", "The video service sent an empty clip. Use Retry in a minute."
                )
            return data

        return await self._retrying("download", once)

    async def recent(self, limit: int = 50) -> list[VideoJob]:
        """The newest jobs first (one page of ``GET /v1/videos?limit=&order=desc``).

        Used to adopt a job whose create answer was lost: match on the prompt.
        """
        limit = max(1, min(100, limit))

        async def once() -> list[VideoJob]:
            async with self._client().get(
                f"{self._base}/videos",
                params={"limit": str(limit), "order": "desc"},
                headers=self._headers(),
                timeout=self._read_timeout(),
            ) as response:
                body = await _json(response)
                self._check(response, body)
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise VideoError(
                    "provider", "The video service answered with something unexpected."
                )
            return [parse_job(item) for item in data]

        return await self._retrying("list", once)

    async def delete(self, job_id: str) -> bool:
        """Remove a job (cancel it, or free its storage). False if it was already gone.

        Idempotent, so retried like a read.
        """

        async def once() -> bool:
            async with self._client().delete(
                self._url(job_id), headers=self._headers(), timeout=self._read_timeout()
            ) as response:
                body = await _json(response)
                if response.status == 404:
                    return False
                self._check(response, body)
                return True

        return await self._retrying("delete", once)

    # ------------------------------------------------------------------ internals

    def _url(self, job_id: str) -> str:
        if not job_id or "/" in job_id or "?" in job_id or "#" in job_id:
            raise VideoError("not_found", "That clip id isn't one the video service gave us.")
        return f"{self._base}/videos/{job_id}"

    def _read_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.read_timeout_s)

    def _check(self, response: aiohttp.ClientResponse, body: Any) -> None:
        if response.status >= 400:
            error = classify_status(response.status, body, model=self.model, creating=False)
            raise _StatusError(error, _retry_after(response.headers))

    async def _retrying(self, what: str, once: Callable[[], Awaitable[T]]) -> T:
        """``once()`` up to ``read_attempts`` times while the failure is transient."""
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                with self.metrics.provider_call("video", what):
                    return await once()
            except _StatusError as status:
                error, retry_after = status.error, status.retry_after
            except VideoError as exc:
                error = exc
            except Exception as exc:
                error = classify_exception(exc, creating=False)
            if not error.retryable or attempt >= self.read_attempts:
                log.warning("video %s failed after %d attempt(s): %s", what, attempt, error.code)
                raise error from None
            wait = self.backoff_s * 2 ** (attempt - 1) * (1 + 0.1 * random.random())  # noqa: S311
            if retry_after is not None:
                wait = max(wait, retry_after)
            wait = min(wait, MAX_BACKOFF_S)
            log.info("video %s: %s, retrying in %.1f s", what, error.code, wait)
            await asyncio.sleep(wait)


async def _json(response: aiohttp.ClientResponse) -> Any:
    """The body as JSON, or None (error pages from proxies are often HTML)."""
    try:
        return await response.json(content_type=None)
    except ValueError:
        return None


def _too_big() -> VideoError:
    return VideoError(
        "provider",
        "The video service sent a clip larger than Slack accepts.",
        retryable=False,
    )


def _choices(values: tuple[int, ...]) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
