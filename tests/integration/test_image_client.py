"""Our image client (``bot/media/images.py``) against the Images API emulator over HTTP.

It posts with aiohttp, not the SDK, so these pin what matters for a paid call: the request the
provider sees, the image and usage read back, every failure named in plain words, and each
request sent exactly once — never retried by the client.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import pytest

from bot.media.images import ImageClient, ImageError
from tests.emulators.openai_images import read_png
from tests.emulators.openai_server import FakeLLM

MODEL = "gpt-image-2"


@pytest.fixture
async def images(llm: FakeLLM) -> AsyncIterator[ImageClient]:
    client = ImageClient(
        base_url=llm.base_url,
        api_key="sk-img",
        model=MODEL,
        size="1024x1024",
        quality="low",
        timeout_s=0.5,
    )
    yield client
    await client.close()


async def test_an_image_comes_back_with_its_usage_from_one_request(
    llm: FakeLLM, images: ImageClient
) -> None:
    made = await images.generate("a lighthouse at dawn")
    png = read_png(made.data)
    assert (png.width, png.height) == (1024, 1024)
    digest = hashlib.sha256(b"a lighthouse at dawn").hexdigest()
    assert f"prompt-sha256={digest}" in png.text["Comment"]  # this prompt's image
    assert made.usage.output_tokens > 0 and made.usage.text_input_tokens > 0
    (request,) = llm.image_requests
    assert (request.prompt, request.model, request.size, request.quality, request.n) == (
        "a lighthouse at dawn",
        MODEL,
        "1024x1024",
        "low",
        1,
    )
    assert request.status == 200
    assert llm.images_generated == 1


@pytest.mark.parametrize(
    ("fault", "kw", "code", "words"),
    [
        ("moderation_blocked", {}, "moderation_blocked", "safety system"),
        ("status", {"status": 429, "retry_after": 1}, "rate_limited", "busy"),
        ("status", {"status": 500}, "provider", "had a problem"),
        ("status", {"status": 401}, "auth", "credentials"),
        ("status", {"status": 400}, "rejected", "rejected the request"),
        ("hang", {"seconds": 5}, "timeout", "may still have made (and billed)"),
        ("disconnect", {}, "connection", "may still have made (and billed)"),
    ],
)
async def test_each_failure_is_named_in_plain_words_and_asked_once(
    llm: FakeLLM,
    images: ImageClient,
    fault: str,
    kw: dict[str, int],
    code: str,
    words: str,
) -> None:
    llm.enqueue_image_fault(fault, **kw)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(ImageError) as failed:
        await images.generate("a lighthouse at dawn")
    assert failed.value.code == code
    assert words in failed.value.user_message
    assert "Traceback" not in failed.value.user_message
    assert time.monotonic() - started < 2  # the 0.5 s timeout bounds a hang
    assert len(llm.image_requests) == 1  # no automatic retry of a paid call
    assert llm.images_generated == 0


async def test_a_shut_down_model_names_the_setting(llm: FakeLLM) -> None:
    client = ImageClient(
        base_url=llm.base_url,
        api_key="sk-img",
        model="dall-e-2",  # shut down: the emulator answers 404, as the provider does
        size="1024x1024",
        quality="standard",
        timeout_s=5,
    )
    try:
        with pytest.raises(ImageError) as failed:
            await client.generate("a lighthouse")
    finally:
        await client.close()
    assert failed.value.code == "model"
    assert "dall-e-2" in failed.value.user_message
    assert "STORYLOOP_IMAGE_MODEL" in failed.value.user_message
    assert len(llm.image_requests) == 1
