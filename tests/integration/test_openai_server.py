"""FakeLLM driven through the real ``openai`` SDK.

The emulator is only worth having if the SDK cannot tell it from a real endpoint, so
every check here goes through ``openai.AsyncOpenAI``: its request encoding, SSE
decoding and error mapping are what the app will meet in its own tests.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from tests.emulators.openai_server import MODEL_ID, FakeLLM

STORY_FORMAT: Any = {  # Any: the SDK's TypedDict params are not the point here
    "type": "json_schema",
    "json_schema": {
        "name": "story",
        "schema": {"type": "object", "additionalProperties": True},
        "strict": True,
    },
}
FEEDBACK_FORMAT: Any = {
    "type": "json_schema",
    "json_schema": {
        "name": "feedback_reply",
        "schema": {"type": "object", "additionalProperties": True},
        "strict": True,
    },
}
BRIEF = "A lighthouse keeper adopts a stray seagull who steals sandwiches"


def story_messages(target: int = 30, extra: str = "") -> Any:
    """A prompt shaped like the app's: system instructions, then brief and duration."""
    return [
        {"role": "system", "content": "You write short video scripts."},
        {
            "role": "user",
            "content": f"Brief:\n{BRIEF}\nTarget duration: {target} seconds\n{extra}",
        },
    ]


@pytest.fixture
async def client(llm: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=5)
    yield sdk
    await sdk.close()


async def collect_stream(stream: openai.AsyncStream[Any]) -> tuple[str, list[Any]]:
    """Join content deltas; also return every chunk for shape assertions."""
    chunks = [chunk async for chunk in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return content, chunks


# ---------------------------------------------------------------------- basics


async def test_models_lists_the_test_model(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]
    assert models == [MODEL_ID]
    assert llm.requests == []  # only chat completions are recorded


@pytest.mark.parametrize("target", [15, 30, 90])
async def test_story_json_schema_durations_sum_to_target(
    llm: FakeLLM, client: openai.AsyncOpenAI, target: int
) -> None:
    messages = story_messages(target)
    response = await client.chat.completions.create(
        model=MODEL_ID, messages=messages, response_format=STORY_FORMAT
    )
    content = response.choices[0].message.content
    assert content is not None
    story = json.loads(content)

    assert set(story) == {"title", "logline", "narrative", "scenes"}
    assert BRIEF[:40].strip() in story["title"]
    assert story["logline"].endswith("(draft 1)")
    assert len(story["scenes"]) == max(2, math.ceil(target / 8))
    assert sum(s["duration_s"] for s in story["scenes"]) == target
    assert all(isinstance(s["duration_s"], int) and s["duration_s"] >= 1 for s in story["scenes"])
    assert [s["number"] for s in story["scenes"]] == list(range(1, len(story["scenes"]) + 1))
    assert "Changes applied" not in story["narrative"]

    prompt_chars = sum(len(m["content"]) for m in messages)
    assert response.usage is not None
    assert response.usage.prompt_tokens == math.ceil(prompt_chars / 4)
    assert response.usage.completion_tokens == math.ceil(len(content) / 4)
    assert response.usage.total_tokens == (
        response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert response.choices[0].finish_reason == "stop"

    assert llm.prompt_tokens_log == [response.usage.prompt_tokens]
    recorded = llm.requests[0]
    assert recorded["json"]["response_format"] == STORY_FORMAT
    assert recorded["headers"]["authorization"] == "Bearer test"
    assert recorded["fault"] is None


async def test_story_drafts_differ_and_requested_changes_are_applied(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    first = await client.chat.completions.create(
        model=MODEL_ID, messages=story_messages(), response_format=STORY_FORMAT
    )
    changes = "Requested changes:\n- make the seagull funnier\n- shorter intro\n"
    second = await client.chat.completions.create(
        model=MODEL_ID, messages=story_messages(extra=changes), response_format=STORY_FORMAT
    )
    one = json.loads(first.choices[0].message.content or "")
    two = json.loads(second.choices[0].message.content or "")
    assert one["logline"].endswith("(draft 1)")
    assert two["logline"].endswith("(draft 2)")
    assert "Changes applied: make the seagull funnier; shorter intro." in two["narrative"]
    assert llm.story_requests_served == 2


async def test_streaming_with_usage_matches_openai_chunks(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model=MODEL_ID,
        messages=story_messages(),
        response_format=STORY_FORMAT,
        stream=True,
        stream_options={"include_usage": True},
    )
    content, chunks = await collect_stream(stream)

    story = json.loads(content)
    assert sum(s["duration_s"] for s in story["scenes"]) == 30
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == math.ceil(len(content) / 4)
    assert usage.prompt_tokens == llm.prompt_tokens_log[-1]
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


async def test_streaming_without_usage_has_no_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    content, chunks = await collect_stream(stream)
    assert content == "ok"
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_wire_format_is_openai_sse(llm: FakeLLM) -> None:
    """Raw bytes, so a lenient SDK parser cannot hide framing mistakes."""
    body = {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{llm.base_url}/chat/completions", json=body) as response,
    ):
        assert response.headers["Content-Type"].startswith("text/event-stream")
        raw = (await response.read()).decode()
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert payloads[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    assert payloads[-1]["choices"] == []
    assert payloads[-1]["usage"]["completion_tokens"] == 1


async def test_non_json_request_text_defaults(client: openai.AsyncOpenAI) -> None:
    plain = await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hello"}]
    )
    assert plain.choices[0].message.content == "ok"
    as_json = await client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"},
    )
    assert json.loads(as_json.choices[0].message.content or "") == {"reply": "ok"}


async def test_json_object_fallback_when_json_schema_unsupported(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.supports_json_schema = False
    llm.enqueue_fault("empty")  # a rejected probe must not consume it

    with pytest.raises(openai.BadRequestError) as excinfo:
        await client.chat.completions.create(
            model=MODEL_ID, messages=story_messages(), response_format=STORY_FORMAT
        )
    assert excinfo.value.status_code == 400
    assert excinfo.value.param == "response_format"
    assert excinfo.value.type == "invalid_request_error"
    assert excinfo.value.body == {
        "message": "response_format json_schema is not supported",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }
    assert llm.faults_pending() == 1

    messages = story_messages(45)
    messages[0]["content"] += "\nJSON schema name: story\nReply with one JSON object."
    faulted = await client.chat.completions.create(
        model=MODEL_ID, messages=messages, response_format={"type": "json_object"}
    )
    assert faulted.choices[0].message.content == ""  # the fault hit the fallback call
    response = await client.chat.completions.create(
        model=MODEL_ID, messages=messages, response_format={"type": "json_object"}
    )
    story = json.loads(response.choices[0].message.content or "")
    assert sum(s["duration_s"] for s in story["scenes"]) == 45
    assert [r["fault"] for r in llm.requests] == [None, "empty", None]


async def test_json_object_requires_the_word_json(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        await client.chat.completions.create(
            model=MODEL_ID,
            messages=[{"role": "user", "content": "hello"}],
            response_format={"type": "json_object"},
        )
    assert excinfo.value.param == "messages"


@pytest.mark.parametrize(
    ("feedback", "wants_regenerate"),
    [
        ("<@U123ABC> make the ending warmer", False),
        ("<@U123ABC> honestly, scrap this and Start Over", True),
        ("<@U123ABC> let's do it from scratch", True),
    ],
)
async def test_feedback_reply(
    client: openai.AsyncOpenAI, feedback: str, wants_regenerate: bool
) -> None:
    history = "Conversation so far:\n<@U999> earlier note\nSome context line\n"
    response = await client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {"role": "system", "content": "Answer the creator."},
            {"role": "user", "content": history + feedback},
        ],
        response_format=FEEDBACK_FORMAT,
    )
    reply = json.loads(response.choices[0].message.content or "")
    assert reply["reply"] == f"Got it — I'll work in: {feedback}"
    assert reply["planned_changes"] == [feedback[:100]]
    assert reply["wants_regenerate"] is wants_regenerate


async def test_feedback_reply_without_mention_uses_whole_message(
    client: openai.AsyncOpenAI,
) -> None:
    long_text = "please redo it " + "x" * 200
    response = await client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": long_text}],
        response_format=FEEDBACK_FORMAT,
    )
    reply = json.loads(response.choices[0].message.content or "")
    assert reply["reply"] == "Got it — I'll work in: " + long_text[:120]
    assert reply["planned_changes"] == [long_text[:100]]
    assert reply["wants_regenerate"] is True


async def test_responder_overrides_content(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    seen: list[dict[str, Any]] = []

    def responder(body: dict[str, Any]) -> str | None:
        seen.append(body)
        return "custom" if body["messages"][-1]["content"] == "special" else None

    llm.responder = responder
    special = await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "special"}]
    )
    normal = await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "normal"}]
    )
    assert special.choices[0].message.content == "custom"
    assert normal.choices[0].message.content == "ok"
    assert len(seen) == 2


# ---------------------------------------------------------------------- faults


async def test_fault_429_is_rate_limit_error_with_retry_after(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue_fault("status", status=429, retry_after=7)
    assert llm.faults_pending() == 1
    with pytest.raises(openai.RateLimitError) as excinfo:
        await client.chat.completions.create(model=MODEL_ID, messages=story_messages())
    assert excinfo.value.status_code == 429
    assert excinfo.value.response.headers["retry-after"] == "7"
    assert excinfo.value.code == "rate_limit_exceeded"
    assert llm.faults_pending() == 0
    assert llm.requests[-1]["fault"] == "status"


@pytest.mark.parametrize("status", [500, 503])
async def test_fault_5xx_is_internal_server_error(
    llm: FakeLLM, client: openai.AsyncOpenAI, status: int
) -> None:
    llm.enqueue_fault("status", status=status)
    with pytest.raises(openai.InternalServerError) as excinfo:
        await client.chat.completions.create(model=MODEL_ID, messages=story_messages())
    assert excinfo.value.status_code == status
    assert excinfo.value.type == "server_error"


async def test_faults_are_fifo_one_per_request(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue_fault("status", status=503)
    llm.enqueue_fault("status", status=429)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL_ID, messages=story_messages())
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL_ID, messages=story_messages())
    ok = await client.chat.completions.create(
        model=MODEL_ID, messages=story_messages(), response_format=STORY_FORMAT
    )
    assert json.loads(ok.choices[0].message.content or "")["logline"].endswith("(draft 1)")
    assert [r["fault"] for r in llm.requests] == ["status", "status", None]
    assert len(llm.prompt_tokens_log) == 3


async def test_fault_hang_trips_client_timeout(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue_fault("hang", seconds=30)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model=MODEL_ID, messages=story_messages(), timeout=0.3)
    assert time.monotonic() - started < 3
    # the server is still healthy afterwards
    after = await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hi"}]
    )
    assert after.choices[0].message.content == "ok"


async def test_fault_hang_shorter_than_timeout_then_answers(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue_fault("hang", seconds=0.2)
    started = time.monotonic()
    response = await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hi"}]
    )
    assert time.monotonic() - started >= 0.15
    assert response.choices[0].message.content == "ok"


async def test_fault_disconnect_midstream(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    full = json.loads(
        (
            await client.chat.completions.create(
                model=MODEL_ID, messages=story_messages(), response_format=STORY_FORMAT
            )
        )
        .choices[0]
        .message.content
        or ""
    )
    full_len = len(json.dumps(full, ensure_ascii=False))

    llm.enqueue_fault("disconnect_midstream")
    stream = await client.chat.completions.create(
        model=MODEL_ID, messages=story_messages(), response_format=STORY_FORMAT, stream=True
    )
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    partial = "".join(received)
    assert 0.2 * full_len < len(partial) < 0.4 * full_len
    with pytest.raises(json.JSONDecodeError):
        json.loads(partial)


async def test_fault_disconnect_non_streaming(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue_fault("disconnect_midstream")
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model=MODEL_ID, messages=story_messages())
    after = await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hi"}]
    )
    assert after.choices[0].message.content == "ok"


@pytest.mark.parametrize("kind", ["malformed", "non_json"])
@pytest.mark.parametrize("stream", [False, True])
async def test_fault_unparseable_content(
    llm: FakeLLM, client: openai.AsyncOpenAI, kind: str, stream: bool
) -> None:
    llm.enqueue_fault(kind)  # type: ignore[arg-type]
    if stream:
        content, _ = await collect_stream(
            await client.chat.completions.create(
                model=MODEL_ID,
                messages=story_messages(),
                response_format=STORY_FORMAT,
                stream=True,
            )
        )
    else:
        response = await client.chat.completions.create(
            model=MODEL_ID, messages=story_messages(), response_format=STORY_FORMAT
        )
        content = response.choices[0].message.content or ""
    assert content
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    if kind == "malformed":
        assert content.startswith('{"title": "')
    else:
        assert content.startswith("Sure! Here is a story about")
    assert llm.story_requests_served == 0  # a faulted answer is not a served draft


async def test_fault_oversized(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue_fault("oversized")
    response = await client.chat.completions.create(
        model=MODEL_ID, messages=story_messages(), response_format=STORY_FORMAT
    )
    story = json.loads(response.choices[0].message.content or "")
    assert len(story["narrative"]) == 60_000
    assert len(story["scenes"]) == 40
    assert response.usage is not None
    assert response.usage.completion_tokens > 15_000


async def test_fault_empty(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue_fault("empty")
    response = await client.chat.completions.create(
        model=MODEL_ID, messages=story_messages(), response_format=STORY_FORMAT
    )
    assert response.choices[0].message.content == ""
    assert response.usage is not None
    assert response.usage.completion_tokens == 0

    llm.enqueue_fault("empty")
    content, chunks = await collect_stream(
        await client.chat.completions.create(model=MODEL_ID, messages=story_messages(), stream=True)
    )
    assert content == ""
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_enqueue_fault_rejects_typos() -> None:
    llm = FakeLLM()
    with pytest.raises(ValueError, match="unknown fault kind"):
        llm.enqueue_fault("timeout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not take"):
        llm.enqueue_fault("hang", secs=3)
    with pytest.raises(ValueError, match="status"):
        llm.enqueue_fault("status")
    assert llm.faults_pending() == 0


async def test_brief_excerpt_skips_wrapper_tags(client: openai.AsyncOpenAI) -> None:
    """The app fences the brief in <brief> tags; the title must quote the brief itself."""
    messages: Any = [
        {"role": "system", "content": "Return only JSON. JSON schema name: story"},
        {
            "role": "user",
            "content": f"Brief:\n<brief>\n{BRIEF}\n</brief>\n\n"
            "Write the story. Target duration: 20 seconds.",
        },
    ]
    response = await client.chat.completions.create(
        model=MODEL_ID, messages=messages, response_format={"type": "json_object"}
    )
    story = json.loads(response.choices[0].message.content or "")
    assert story["title"] == f"Storyloop: {BRIEF[:40].strip()}"
    assert sum(s["duration_s"] for s in story["scenes"]) == 20


# ---------------------------------------------------------------------- pacing & lifecycle


async def test_pacing_streaming_and_non_streaming(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.set_latency(0.0, 200)
    llm.responder = lambda body: "abcd" * 100  # 400 chars = 100 tokens = 0.5 s at 200 tok/s

    started = time.monotonic()
    content, _ = await collect_stream(
        await client.chat.completions.create(
            model=MODEL_ID, messages=[{"role": "user", "content": "go"}], stream=True
        )
    )
    streamed = time.monotonic() - started
    assert content == "abcd" * 100
    assert 0.4 <= streamed < 3

    started = time.monotonic()
    await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "go"}]
    )
    assert 0.4 <= time.monotonic() - started < 3


async def test_first_token_latency(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.set_latency(0.25, None)
    started = time.monotonic()
    stream = await client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    first_content_at = None
    async for chunk in stream:
        if first_content_at is None and chunk.choices and chunk.choices[0].delta.content:
            first_content_at = time.monotonic() - started
    assert first_content_at is not None
    assert 0.2 <= first_content_at < 2


async def test_stop_ends_inflight_requests_promptly() -> None:
    llm = FakeLLM(tokens_per_second=1)  # would take minutes to finish a story
    await llm.start()
    client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=30)
    try:
        llm.enqueue_fault("hang", seconds=60)
        pending = asyncio.create_task(
            client.chat.completions.create(model=MODEL_ID, messages=story_messages())
        )
        while not llm.requests:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await llm.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(openai.APIConnectionError):
            await pending
    finally:
        await client.close()
        await llm.stop()


async def test_async_context_manager_and_base_url() -> None:
    llm = FakeLLM()
    with pytest.raises(RuntimeError):
        _ = llm.base_url
    async with llm:
        assert llm.base_url.startswith("http://127.0.0.1:")
        assert llm.base_url.endswith("/v1")
    with pytest.raises(RuntimeError):
        _ = llm.base_url
