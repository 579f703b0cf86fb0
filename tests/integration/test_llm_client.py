"""Our LLM client (``bot/llm/client.py``) against the OpenAI-compatible emulator over HTTP.

The client speaks to ``/chat/completions`` with aiohttp, not the SDK: these tests pin what the
SDK used to give for free — the request's shape, the answer and its usage, the ``json_object``
fallback, which failures are retried (and after how long) and which are not — and that a stream
read in batches still yields the whole answer.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import pytest

from bot.llm.client import LLMClient, LLMError
from bot.pipeline.drafts import FeedbackAnswer, StoryDraft
from bot.pipeline.prompts import ChatMessage
from tests.emulators.openai_server import MODEL_ID, FakeLLM

MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": "You help shape a short video story. Answer in JSON."},
    {"role": "user", "content": "Target duration: 30 seconds\nBrief: a lighthouse keeper"},
]


def client_for(llm: FakeLLM, **kw: float | int) -> LLMClient:
    params: dict[str, float | int] = {"timeout_s": 5, "attempts": 3, "backoff_s": 0.05} | kw
    return LLMClient(
        base_url=llm.base_url,
        api_key="sk-test",
        model=MODEL_ID,
        timeout_s=float(params["timeout_s"]),
        attempts=int(params["attempts"]),
        backoff_s=float(params["backoff_s"]),
        stream_batch_s=float(params.get("stream_batch_s", 0.05)),
    )


def chat_requests(llm: FakeLLM) -> list[dict[str, object]]:
    return [r["json"] for r in llm.requests if r["path"].endswith("/chat/completions")]


async def test_a_structured_answer_comes_back_parsed_with_its_usage(llm: FakeLLM) -> None:
    client = client_for(llm)
    try:
        answer, usage = await client.answer_feedback(MESSAGES)
    finally:
        await client.close()
    assert isinstance(answer, FeedbackAnswer) and answer.reply
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    (body,) = chat_requests(llm)
    assert body["model"] == MODEL_ID and body["messages"] == MESSAGES and "stream" not in body
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "feedback_reply", "schema": FeedbackAnswer.model_json_schema()},
    }
    (request,) = [r for r in llm.requests if r["path"].endswith("/chat/completions")]
    assert request["headers"]["authorization"] == "Bearer sk-test"


async def test_a_server_without_json_schema_is_asked_for_json_object_not_counted_a_failure(
    llm: FakeLLM,
) -> None:
    llm.supports_json_schema = False
    client = client_for(llm, attempts=1)
    try:
        answer, _ = await client.answer_feedback(MESSAGES)
        await client.answer_feedback(MESSAGES)  # remembered: no second probe
    finally:
        await client.close()
    assert answer.reply
    formats = [b["response_format"] for b in chat_requests(llm)]
    assert [f["type"] for f in formats] == ["json_schema", "json_object", "json_object"]  # type: ignore[index]


async def test_a_429_is_retried_after_its_retry_after(llm: FakeLLM) -> None:
    llm.enqueue_fault("status", status=429, retry_after=1)
    client = client_for(llm)
    started = time.monotonic()
    try:
        answer, _ = await client.answer_feedback(MESSAGES)
    finally:
        await client.close()
    assert answer.reply
    assert len(chat_requests(llm)) == 2
    assert time.monotonic() - started >= 1.0  # Retry-After, not the 0.05 s backoff


async def test_a_server_error_is_retried_and_a_refused_key_is_not(llm: FakeLLM) -> None:
    llm.enqueue_fault("status", status=503)
    client = client_for(llm)
    try:
        answer, _ = await client.answer_feedback(MESSAGES)
        assert answer.reply and len(chat_requests(llm)) == 2
        llm.enqueue_fault("status", status=401)
        with pytest.raises(LLMError) as refused:
            await client.answer_feedback(MESSAGES)
    finally:
        await client.close()
    assert not refused.value.retryable
    assert "credentials" in refused.value.user_message
    assert len(chat_requests(llm)) == 3  # the 401 was asked once


async def test_a_hang_times_out_and_a_dropped_connection_is_named(llm: FakeLLM) -> None:
    client = client_for(llm, timeout_s=0.5, attempts=1)
    try:
        llm.enqueue_fault("hang", seconds=5)
        with pytest.raises(LLMError) as slow:
            await client.answer_feedback(MESSAGES)
        llm.enqueue_fault("disconnect_midstream")
        with pytest.raises(LLMError) as dropped:
            await client.answer_feedback(MESSAGES)
        llm.enqueue_fault("non_json")
        with pytest.raises(LLMError) as unreadable:
            await client.answer_feedback(MESSAGES)
    finally:
        await client.close()
    assert "too long" in slow.value.user_message and slow.value.retryable
    assert "couldn't reach" in dropped.value.user_message and dropped.value.retryable
    assert "couldn't read" in unreadable.value.user_message


async def test_a_stream_read_in_batches_is_whole_and_wakes_less_often(llm: FakeLLM) -> None:
    """At 100 tokens/s, reading at most every 0.2 s sees the text grow a few times, not once a
    token; the story is the same either way."""
    llm.set_latency(0.0, 100.0)

    async def run(batch_s: float) -> tuple[StoryDraft, list[int]]:
        seen: list[int] = []

        async def on_progress(parts: Sequence[str]) -> None:
            seen.append(len(parts))

        client = client_for(llm, stream_batch_s=batch_s)
        try:
            story, usage = await client.write_story(MESSAGES, on_progress)
        finally:
            await client.close()
        assert usage.completion_tokens > 0
        return story, seen

    batched, batched_seen = await run(0.2)
    llm.story_requests_served = 0  # the same draft number: the same story
    each, each_seen = await run(0.0)
    assert batched == each
    assert len(each_seen) > 50  # one per token (or nearly)
    assert len(batched_seen) < len(each_seen) / 4
    # Each read after a pause takes all that came in it (~20 tokens), not one held-back token
    # now and the rest a pause later.
    grown = sorted(b - a for a, b in itertools.pairwise(batched_seen))
    assert grown[len(grown) // 2] >= 10, batched_seen


async def test_an_answer_that_arrives_in_one_read_is_still_shown_before_it_ends(
    llm: FakeLLM,
) -> None:
    """An instant server sends every token and ``[DONE]`` at once: the text is still passed to
    the progress callback (a reply's stream starts from it) before the answer returns."""
    seen: list[str] = []

    async def on_reply(text: str) -> None:
        seen.append(text)

    client = client_for(llm)
    try:
        answer, _ = await client.stream_feedback(MESSAGES, on_reply)
    finally:
        await client.close()
    assert seen and seen[-1] == answer.reply
