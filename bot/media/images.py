"""The image port: one POST to an OpenAI-compatible Images API, never retried by itself.

A generation is paid: an automatic retry could bill twice, so there is none; every failure is
classified for the user instead (a retry is their explicit choice). The timeout applies per
connect and per read, and to the whole call.

One aiohttp POST to ``/images/generations``, not the openai SDK: the SDK's request building,
four transport layers and response models were ~6 % of the worker's CPU under load for four
images a session (bench/README.md, the profiles), and all this needs is a status, an error
code and one base64 field. Its errors are classified as the SDK's status classes were (400
``moderation_blocked``, 401/403, 404, 429, 5xx); ``ping`` (``storyloop check``) lists models with
the SDK, for its plain error messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson

from bot.llm.client import listed_models
from bot.metrics import Metrics
from bot.pipeline.pricing import ImageUsage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    usage: ImageUsage


class ImageError(Exception):
    """A generation that produced no image. ``code`` names the cause; ``user_message`` is safe
    to show in Slack (plain words, no exception text)."""

    def __init__(self, code: str, user_message: str) -> None:
        super().__init__(code)
        self.code = code
        self.user_message = user_message


class ImageMaker(Protocol):
    async def generate(self, prompt: str) -> GeneratedImage: ...


class ImageHTTPError(Exception):
    """The Images API answered with an error status; ``code`` is its ``error.code``, if any."""

    def __init__(self, status: int, code: str | None) -> None:
        super().__init__(f"status {status} ({code})")
        self.status = status
        self.code = code


def _error_code(raw: bytes) -> str | None:
    try:
        body = orjson.loads(raw)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def _usage(body: dict[str, Any]) -> ImageUsage:
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return ImageUsage()
    details = usage.get("input_tokens_details")
    details = details if isinstance(details, dict) else {}
    text = int(details.get("text_tokens") or 0)
    image = int(details.get("image_tokens") or 0)
    total_in = int(usage.get("input_tokens") or 0)
    return ImageUsage(
        text_input_tokens=text or max(total_in - image, 0),
        image_input_tokens=image,
        output_tokens=int(usage.get("output_tokens") or 0),
    )


def _image(body: Any) -> bytes:
    """The first image's bytes, or b"" when the answer has none (or not base64)."""
    data = body.get("data") if isinstance(body, dict) else None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    encoded = first.get("b64_json")
    try:
        return base64.b64decode(encoded if isinstance(encoded, str) else "", validate=True)
    except (binascii.Error, ValueError):
        return b""


def classify(exc: BaseException, model: str) -> ImageError:
    """Plain words for why an image wasn't made."""
    if isinstance(exc, ImageError):
        return exc
    status = exc.status if isinstance(exc, ImageHTTPError) else None
    if status == 400 and isinstance(exc, ImageHTTPError) and exc.code == "moderation_blocked":
        return ImageError(
            "moderation_blocked",
            "The image service's safety system refused this image's prompt. Say in the thread "
            "how to reword it (for example, less violent or without a real person's name), "
            "then Redo it.",
        )
    if status == 429:
        return ImageError(
            "rate_limited", "The image service is busy (rate limited). Use Retry in a minute."
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):  # incl. aiohttp's read timeout
        return ImageError(
            "timeout",
            "The image service took too long. It may still have made (and billed) the image; "
            "Retry asks for it again.",
        )
    if isinstance(exc, aiohttp.ClientError):
        return ImageError(
            "connection",
            "I lost the connection to the image service. It may still have made (and billed) "
            "the image; Retry asks for it again.",
        )
    if status in (401, 403):
        return ImageError(
            "auth",
            "The image service refused our credentials; an admin needs to check the image "
            "settings (STORYLOOP_IMAGE_API_KEY).",
        )
    if status == 404:
        return ImageError(
            "model",
            f"The image model “{model}” isn't available (it may have been shut down); an admin "
            "needs to set STORYLOOP_IMAGE_MODEL.",
        )
    if status == 400:
        return ImageError(
            "rejected", "The image service rejected the request. Reword it, then Redo."
        )
    return ImageError("provider", "The image service had a problem. Use Retry in a minute.")


class ImageClient:
    """``ImageMaker`` over the OpenAI Images API (``/v1/images/generations``)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        size: str,
        quality: str,
        timeout_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.base_url = base_url
        self._url = base_url.rstrip("/") + "/images/generations"
        self._api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
        self._http: aiohttp.ClientSession | None = None
        self.model = model
        self.size = size
        self.quality = quality
        self.timeout_s = timeout_s

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:  # opened inside the running loop
            self._http = aiohttp.ClientSession()
        return self._http

    async def _post(self, body: dict[str, Any]) -> Any:
        async with self._session().post(
            self._url, data=orjson.dumps(body), headers=self._headers, timeout=self._timeout
        ) as response:
            raw = await response.read()
            if response.status != 200:
                raise ImageHTTPError(response.status, _error_code(raw))
        try:
            return orjson.loads(raw)
        except ValueError:
            return None

    async def generate(self, prompt: str) -> GeneratedImage:
        """One image for ``prompt``. Raises ``ImageError``; never retries."""
        body = {
            "model": self.model,
            "prompt": prompt,
            "n": 1,
            "size": self.size,
            "quality": self.quality,
            "output_format": "png",
        }
        try:
            with self.metrics.provider_call("image", "generate"):
                answer = await asyncio.wait_for(self._post(body), self.timeout_s)
        except Exception as exc:
            error = classify(exc, self.model)
            log.warning("image generation failed: %s (%s)", error.code, type(exc).__name__)
            raise error from None
        image = _image(answer)
        if not image:
            raise ImageError("provider", "The image service answered without an image. Retry.")
        return GeneratedImage(image, _usage(answer))

    async def ping(self) -> str:
        """Is the endpoint reachable, and does it list the image model? (No paid call.)"""
        if self.model in await listed_models(self.base_url, self._api_key):
            return f"{self.model} is listed"
        return f"reachable; {self.model} is not listed (gateways often don't list image models)"
