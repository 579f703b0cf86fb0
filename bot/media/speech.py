"""The speech port: one voice-over from an OpenAI-compatible ``/v1/audio/speech``, never retried.

Speech is paid (per character), so, as for images, the SDK is built with ``max_retries=0``
and each failure is classified into plain words; asking again is the user's choice. The
SDK's timeout is per read; the whole call is capped too.

The endpoint takes at most 4,096 characters. Longer narration is clipped at the last
sentence boundary before the limit rather than split into several calls and joined: a
story's voice-over is far shorter than that, so clipping only guards against a runaway
draft, and one call keeps the cost and the failure modes simple.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final, Protocol

import openai

from bot.metrics import Metrics

log = logging.getLogger(__name__)

MAX_INPUT_CHARS: Final = 4096
_SENTENCE_END: Final = re.compile("[.!?\u2026][\"'\u201d\u2019)\\]]*(?=\\s|$)")


class SpeechError(Exception):
    """A voice-over that wasn't made. ``code`` names the cause (``rate_limited``,
    ``timeout``, ``connection``, ``auth``, ``model``, ``rejected``, ``provider``);
    ``user_message`` is safe to show in Slack (plain words, no exception text)."""

    def __init__(self, code: str, user_message: str) -> None:
        super().__init__(code)
        self.code = code
        self.user_message = user_message


class SpeechMaker(Protocol):
    async def speak(self, text: str) -> bytes: ...


def clip_text(text: str, limit: int = MAX_INPUT_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, at a sentence end when there is one.

    Falls back to the last whitespace, then to a hard cut, so the result always fits.
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[:limit]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    # A boundary is only a boundary if the next character (maybe just past the head) is space.
    cut = next((end for end in reversed(ends) if end < len(text) and text[end].isspace()), None)
    if cut is None:
        space = head.rfind(" ")
        cut = space if space > 0 else limit
    return text[:cut].rstrip()


def classify(exc: BaseException, model: str) -> SpeechError:
    """Plain words for why the voice-over wasn't made."""
    if isinstance(exc, SpeechError):
        return exc
    if isinstance(exc, openai.RateLimitError):
        return SpeechError(
            "rate_limited", "The voice service is busy (rate limited). Use Retry in a minute."
        )
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError | TimeoutError):
        return SpeechError(
            "timeout",
            "The voice service took too long. It may still have made (and billed) the "
            "voice-over; Retry asks for it again.",
        )
    if isinstance(exc, openai.APIConnectionError):
        return SpeechError(
            "connection",
            "I lost the connection to the voice service. It may still have made (and billed) "
            "the voice-over; Retry asks for it again.",
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return SpeechError(
            "auth",
            "The voice service refused our credentials; an admin needs to check the speech "
            "settings (its API key).",
        )
    if isinstance(exc, openai.NotFoundError):
        return SpeechError(
            "model",
            f"The voice model “{model}” isn't available (it may have been shut down); an admin "
            "needs to change the speech model setting.",
        )
    if isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
        return SpeechError(
            "rejected",
            "The voice service rejected the narration (or the voice setting). Reword the "
            "narration, then Redo.",
        )
    return SpeechError("provider", "The voice service had a problem. Use Retry in a minute.")


class SpeechClient:
    """``SpeechMaker`` over ``POST /v1/audio/speech``, answering MP3 bytes."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        model: str,
        voice: str,
        timeout_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0
        )
        self.model = model
        self.voice = voice
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # never show the key
        return f"SpeechClient(model={self.model!r}, voice={self.voice!r})"

    async def close(self) -> None:
        await self._client.close()

    async def speak(self, text: str) -> bytes:
        """An MP3 of ``text`` (clipped to 4,096 characters). Raises ``SpeechError``; no retries."""
        narration = clip_text(text)
        if not narration:
            raise SpeechError("rejected", "There is no narration to read out.")
        if len(narration) < len(text.strip()):
            log.info("voice-over clipped from %d to %d characters", len(text), len(narration))
        create: Any = self._client.audio.speech.create
        try:
            with self.metrics.provider_call("speech", "speak"):
                response = await asyncio.wait_for(
                    create(
                        model=self.model, voice=self.voice, input=narration, response_format="mp3"
                    ),
                    self.timeout_s,
                )
                audio = await response.aread()
        except Exception as exc:
            error = classify(exc, self.model)
            log.warning("speech failed: %s (%s)", error.code, type(exc).__name__)
            raise error from None
        if not isinstance(audio, bytes) or not audio:
            raise SpeechError("provider", "The voice service answered without audio. Retry.")
        return bytes(audio)
