"""``OpenAIVideoJobs`` and ``SpeechClient`` against FakeLLM's video-jobs and speech emulator.

What matters most is money: a create is never repeated by the adapter (every refused or
lost create shows up exactly once in ``llm.video_creates``), a create whose answer was lost
leaves a job the caller can find again with ``recent``, while free reads recover from
transient failures by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from bot.media import ffmpeg
from bot.media.speech import MAX_INPUT_CHARS, SpeechClient, SpeechError, clip_text
from bot.media.video import OpenAIVideoJobs, VideoError, VideoJob, job_failure
from tests.emulators.media_files import probe
from tests.emulators.openai_images import render_png
from tests.emulators.openai_server import FakeLLM

MODEL = "veo-3.1-fast"
SIZE = "640x360"
PROMPT = "A lighthouse keeper feeds a seagull at dawn, slow push-in"


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    server = FakeLLM(video_queue_s=0.1, video_render_s=0.3)
    server.video_poll_after_ms = 50
    await server.start()
    yield server
    await server.stop()


def make_videos(llm: FakeLLM, **kw: Any) -> OpenAIVideoJobs:
    options: dict[str, Any] = {
        "base_url": llm.base_url,
        "api_key": "test",
        "model": MODEL,
        "size": SIZE,
        "backoff_s": 0.02,
        **kw,
    }
    return OpenAIVideoJobs(**options)


@pytest.fixture
async def videos(llm: FakeLLM) -> AsyncIterator[OpenAIVideoJobs]:
    client = make_videos(llm)
    yield client
    await client.close()


async def finish(videos: OpenAIVideoJobs, job: VideoJob, limit_s: float = 10.0) -> VideoJob:
    """Poll as the app would, sleeping what the provider asks for, until the job is done."""
    deadline = time.monotonic() + limit_s
    while not job.done:
        assert time.monotonic() < deadline, f"job still {job.status}"
        await asyncio.sleep(job.poll_after_s if job.poll_after_s is not None else 0.1)
        job = await videos.get(job.id)
    return job


async def create(videos: OpenAIVideoJobs, **kw: Any) -> VideoJob:
    fields: dict[str, Any] = {"prompt": PROMPT, "seconds": 4, "size": SIZE, "input_reference": None}
    return await videos.create(**{**fields, **kw})


# ---------------------------------------------------------------------- the happy path


async def test_create_poll_download_list_delete(llm: FakeLLM, videos: OpenAIVideoJobs) -> None:
    llm.video_poll_after_ms = 100
    job = await create(videos)
    assert job.status in {"queued", "in_progress"}
    assert (job.prompt, job.seconds, job.size) == (PROMPT, "4", SIZE)
    assert job.poll_after_s == pytest.approx(0.1)
    assert job.created_at is not None and job.created_at == pytest.approx(time.time(), abs=5)
    assert (job.error_code, job.error_message) == (None, None)

    polls_before = llm.video_polls
    done = await finish(videos, job)
    assert (done.status, done.progress) == ("completed", 100)
    assert 2 <= llm.video_polls - polls_before <= 8  # paced by poll_after_s, not a busy loop

    data = await videos.download(job.id)
    info = probe(data)
    assert info["duration"] == pytest.approx(4.0, abs=0.15)
    assert (info["width"], info["height"], info["video_codec"]) == (640, 360, "h264")

    (listed,) = await videos.recent()
    assert (listed.id, listed.prompt, listed.status) == (job.id, PROMPT, "completed")
    assert listed.poll_after_s is None

    assert await videos.delete(job.id) is True
    assert await videos.delete(job.id) is False  # already gone
    assert await videos.recent() == []
    with pytest.raises(VideoError) as gone:
        await videos.get(job.id)
    assert gone.value.code == "not_found"
    assert not gone.value.retryable
    assert len(llm.video_creates) == 1


async def test_create_with_a_fitted_input_reference(llm: FakeLLM, videos: OpenAIVideoJobs) -> None:
    square = render_png(512, 512, (90, 140, 200), {})
    reference = await ffmpeg.fit_image(square, SIZE)
    job = await create(videos, input_reference=reference, seconds=8)
    (sent,) = llm.video_creates
    assert sent.has_input_reference
    assert (sent.status, sent.seconds, sent.model) == (200, "8", MODEL)
    assert (await finish(videos, job)).status == "completed"


async def test_recent_lists_newest_first(videos: OpenAIVideoJobs) -> None:
    first = await create(videos, prompt="first")
    second = await create(videos, prompt="second")
    assert [(j.id, j.prompt) for j in await videos.recent(limit=5)] == [
        (second.id, "second"),
        (first.id, "first"),
    ]
    assert [j.id for j in await videos.recent(limit=1)] == [second.id]


async def test_unsupported_seconds_are_refused_before_any_call(
    llm: FakeLLM, videos: OpenAIVideoJobs
) -> None:
    assert videos.supported_seconds == (4, 8, 12)
    with pytest.raises(VideoError) as caught:
        await create(videos, seconds=5)
    assert caught.value.code == "rejected"
    assert "4, 8 or 12" in caught.value.user_message
    assert llm.video_creates == []


# ---------------------------------------------------------------------- paid-call failures


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limited"), (500, "provider")])
async def test_create_errors_raise_at_once_with_one_call(
    llm: FakeLLM, videos: OpenAIVideoJobs, status: int, code: str
) -> None:
    llm.enqueue_video_fault("status", status=status, retry_after=1)
    started = time.monotonic()
    with pytest.raises(VideoError) as caught:
        await create(videos)
    assert time.monotonic() - started < 0.5  # no backoff, no Retry-After wait
    assert caught.value.code == code
    assert len(llm.video_creates) == 1
    assert llm.videos_created == 0
    assert "Retry" in caught.value.user_message


async def test_policy_refusal_arrives_as_a_failed_job(
    llm: FakeLLM, videos: OpenAIVideoJobs
) -> None:
    llm.enqueue_video_fault("policy")
    job = await create(videos)
    assert job.status == "queued"  # accepted first, refused later
    done = await finish(videos, job)
    assert done.status == "failed"
    assert done.error_code == "moderation_blocked"
    assert done.error_message
    error = job_failure(done)
    assert (error.code, error.retryable) == ("policy", False)
    assert "safety" in error.user_message
    assert done.error_message not in error.user_message
    with pytest.raises(VideoError) as download:
        await videos.download(job.id)
    assert download.value.code == "failed"
    assert len(llm.video_creates) == 1


async def test_failed_job_is_classified(llm: FakeLLM, videos: OpenAIVideoJobs) -> None:
    llm.enqueue_video_fault("failed")
    done = await finish(videos, await create(videos))
    assert (done.status, done.error_code) == ("failed", "internal_error")
    assert job_failure(done).code == "failed"


async def test_download_failures_are_retried(llm: FakeLLM, videos: OpenAIVideoJobs) -> None:
    llm.enqueue_video_fault("download_fail", count=2)
    job = await finish(videos, await create(videos))
    data = await videos.download(job.id)
    assert probe(data)["has_video"]
    assert llm.video_downloads == [job.id] * 3
    assert [r.status for r in llm.video_content_requests] == [500, 500, 200]


async def test_download_gives_up_after_four_attempts(llm: FakeLLM, videos: OpenAIVideoJobs) -> None:
    llm.enqueue_video_fault("download_fail", count=5)
    job = await finish(videos, await create(videos))
    with pytest.raises(VideoError) as caught:
        await videos.download(job.id)
    assert (caught.value.code, caught.value.retryable) == ("provider", True)
    assert len(llm.video_downloads) == 4


async def test_expired_content(llm: FakeLLM, videos: OpenAIVideoJobs) -> None:
    llm.enqueue_video_fault("expire")
    job = await finish(videos, await create(videos))
    assert job.status == "completed"
    with pytest.raises(VideoError) as caught:
        await videos.download(job.id)
    assert (caught.value.code, caught.value.retryable) == ("expired", False)
    assert len(llm.video_downloads) == 1  # not retried
    later = await videos.get(job.id)
    assert later.status == "expired"
    assert job_failure(later).code == "expired"


async def test_lost_create_answer_times_out_but_the_job_exists(llm: FakeLLM) -> None:
    llm.enqueue_video_fault("hang_create", seconds=30)
    videos = make_videos(llm, create_timeout_s=0.3)
    try:
        with pytest.raises(VideoError) as caught:
            await create(videos)
        assert caught.value.code == "timeout"
        assert "billed" in caught.value.user_message
        assert llm.videos_created == 1  # paid, though the app never saw the id
        assert len(llm.video_creates) == 1  # and not asked again
        (create_record,) = llm.video_creates
        # The caller's adoption: find the job by its prompt and carry on with it.
        adopted = next(j for j in await videos.recent() if j.prompt == PROMPT)
        assert adopted.id == create_record.video_id
        assert (await finish(videos, adopted)).status == "completed"
    finally:
        await videos.close()


async def test_bad_credentials(llm: FakeLLM) -> None:
    videos = make_videos(llm, api_key="")
    try:
        with pytest.raises(VideoError) as create_error:
            await create(videos)
        with pytest.raises(VideoError) as read_error:
            await videos.recent()
    finally:
        await videos.close()
    for error in (create_error.value, read_error.value):
        assert (error.code, error.retryable) == ("auth", False)
        assert "credentials" in error.user_message
    assert llm.video_lists == 1  # a 401 is not retried
    assert llm.videos_created == 0


async def test_shut_down_model(llm: FakeLLM) -> None:
    videos = make_videos(llm, model="sora-2")
    try:
        with pytest.raises(VideoError) as caught:
            await create(videos)
    finally:
        await videos.close()
    assert caught.value.code == "model"
    assert "sora-2" in caught.value.user_message
    assert len(llm.video_creates) == 1


async def test_reads_retry_connection_errors_then_give_up() -> None:
    server = FakeLLM()
    await server.start()
    base_url = server.base_url
    await server.stop()  # nothing listens there now
    videos = OpenAIVideoJobs(
        base_url=base_url, api_key="test", model=MODEL, size=SIZE, backoff_s=0.01
    )
    try:
        started = time.monotonic()
        with pytest.raises(VideoError) as read_error:
            await videos.get("video_123")
        assert time.monotonic() - started >= 0.01 + 0.02 + 0.04  # three backoffs
        with pytest.raises(VideoError) as create_error:
            await create(videos)
    finally:
        await videos.close()
    assert (read_error.value.code, read_error.value.retryable) == ("connection", True)
    assert create_error.value.code == "connection"
    assert "billed" in create_error.value.user_message


async def test_reads_honour_retry_after() -> None:
    """The emulator only injects statuses on creates, so a tiny server answers 429 then 200."""
    answers = [
        web.json_response(
            {"error": {"message": "slow down", "type": "requests", "code": None}},
            status=429,
            headers={"retry-after": "0.3"},
        ),
        web.json_response({"id": "video_1", "status": "in_progress", "progress": 40}),
    ]
    seen: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        return answers[len(seen) - 1]

    app = web.Application()
    app.router.add_get("/v1/videos/{video_id}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    videos = OpenAIVideoJobs(
        base_url=f"http://127.0.0.1:{port}/v1/", api_key="k", model=MODEL, size=SIZE, backoff_s=0.01
    )
    try:
        job = await videos.get("video_1")
    finally:
        await videos.close()
        await runner.cleanup()
    assert (job.status, job.progress, job.poll_after_s) == ("in_progress", 40, None)
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 0.28


# ---------------------------------------------------------------------- speech


@pytest.fixture
async def speech(llm: FakeLLM) -> AsyncIterator[SpeechClient]:
    client = SpeechClient(
        base_url=llm.base_url, api_key="test", model="gpt-4o-mini-tts", voice="alloy", timeout_s=5
    )
    yield client
    await client.close()


async def test_speech_makes_an_mp3(llm: FakeLLM, speech: SpeechClient) -> None:
    text = " ".join(["word"] * 10)
    info = probe(await speech.speak(text))
    assert (info["format"], info["has_video"]) == ("mp3", False)
    assert info["duration"] == pytest.approx(4.0, abs=0.2)
    (request,) = llm.speech_requests
    assert (request.model, request.voice, request.input, request.format) == (
        "gpt-4o-mini-tts",
        "alloy",
        text,
        "mp3",
    )


async def test_speech_clips_long_narration_at_a_sentence(
    llm: FakeLLM, speech: SpeechClient
) -> None:
    sentence = "The lighthouse-keeper-" + "x" * 180 + " climbs again. "  # few words: short audio
    text = sentence * 30
    await speech.speak(text)
    sent = llm.speech_requests[0].input
    assert len(sent) <= MAX_INPUT_CHARS
    assert sent.endswith("again.")
    assert len(sent) > MAX_INPUT_CHARS - len(sentence)
    assert clip_text("word " * 2000).endswith("word")
    assert len(clip_text("x" * 5000)) == MAX_INPUT_CHARS


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limited"), (503, "provider")])
async def test_speech_errors_are_classified_and_not_retried(
    llm: FakeLLM, speech: SpeechClient, status: int, code: str
) -> None:
    llm.enqueue_speech_fault("status", status=status)
    with pytest.raises(SpeechError) as caught:
        await speech.speak("Hello there.")
    assert caught.value.code == code
    assert len(llm.speech_requests) == 1


async def test_speech_timeout(llm: FakeLLM) -> None:
    llm.enqueue_speech_fault("hang", seconds=30)
    client = SpeechClient(
        base_url=llm.base_url, api_key="test", model="tts", voice="alloy", timeout_s=0.3
    )
    try:
        with pytest.raises(SpeechError) as caught:
            await client.speak("Hello there.")
    finally:
        await client.close()
    assert caught.value.code == "timeout"
    assert len(llm.speech_requests) == 1
