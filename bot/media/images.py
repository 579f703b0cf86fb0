"""The image port: one call to an OpenAI-compatible Images API, never retried by itself.

A generation is paid: the SDK's two automatic retries could bill twice, so the client is built
with ``max_retries=0`` and every failure is classified for the user instead (a retry is their
explicit choice). The SDK's timeout is per read; the whole call is capped too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import openai

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


def _usage(raw: Any) -> ImageUsage:
    usage = getattr(raw, "usage", None)
    if usage is None:
        return ImageUsage()
    details = getattr(usage, "input_tokens_details", None)
    text = int(getattr(details, "text_tokens", 0) or 0) if details is not None else 0
    image = int(getattr(details, "image_tokens", 0) or 0) if details is not None else 0
    total_in = int(getattr(usage, "input_tokens", 0) or 0)
    return ImageUsage(
        text_input_tokens=text or max(total_in - image, 0),
        image_input_tokens=image,
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
    )


def classify(exc: BaseException, model: str) -> ImageError:
    """Plain words for why an image wasn't made."""
    if isinstance(exc, ImageError):
        return exc
    if isinstance(exc, openai.BadRequestError) and getattr(exc, "code", None) == (
        "moderation_blocked"
    ):
        return ImageError(
            "moderation_blocked",
            "The image service's safety system refused this image's prompt. Say in the thread "
            "how to reword it (for example, less violent or without a real person's name), "
            "then Redo it.",
        )
    if isinstance(exc, openai.RateLimitError):
        return ImageError(
            "rate_limited", "The image service is busy (rate limited). Use Retry in a minute."
        )
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError | TimeoutError):
        return ImageError(
            "timeout",
            "The image service took too long. It may still have made (and billed) the image; "
            "Retry asks for it again.",
        )
    if isinstance(exc, openai.APIConnectionError):
        return ImageError(
            "connection",
            "I lost the connection to the image service. It may still have made (and billed) "
            "the image; Retry asks for it again.",
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ImageError(
            "auth",
            "The image service refused our credentials; an admin needs to check the image "
            "settings (STORYLOOP_IMAGE_API_KEY).",
        )
    if isinstance(exc, openai.NotFoundError):
        return ImageError(
            "model",
            f"The image model “{model}” isn't available (it may have been shut down); an admin "
            "needs to set STORYLOOP_IMAGE_MODEL.",
        )
    if isinstance(exc, openai.BadRequestError):
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
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
        )
        self.model = model
        self.size = size
        self.quality = quality
        self.timeout_s = timeout_s

    async def close(self) -> None:
        await self._client.close()

    async def generate(self, prompt: str) -> GeneratedImage:
        """One image for ``prompt``. Raises ``ImageError``; never retries."""
        create: Any = self._client.images.generate
        try:
            with self.metrics.provider_call("image", "generate"):
                response = await asyncio.wait_for(
                    create(
                        model=self.model,
                        prompt=prompt,
                        n=1,
                        size=self.size,
                        quality=self.quality,
                        output_format="png",
                    ),
                    self.timeout_s,
                )
        except Exception as exc:
            error = classify(exc, self.model)
            log.warning("image generation failed: %s (%s)", error.code, type(exc).__name__)
            raise error from None
        data = response.data or []
        encoded = getattr(data[0], "b64_json", None) if data else None
        try:
            image = base64.b64decode(encoded or "", validate=True)
        except (binascii.Error, ValueError):
            image = b""
        if not image:
            raise ImageError("provider", "The image service answered without an image. Retry.")
        return GeneratedImage(image, _usage(response))

    async def ping(self) -> str:
        """Is the endpoint reachable, and does it list the image model? (No paid call.)"""
        models = await self._client.models.list()
        ids = [m.id for m in models.data]
        if self.model in ids:
            return f"{self.model} is listed"
        return f"reachable; {self.model} is not listed (gateways often don't list image models)"
