"""FakeLLM's image endpoint and image-stage chat answers, driven through the real SDK.

Paid image calls are where a bug costs money, so the emulator must be indistinguishable
from the API where the app can tell: the SDK's request encoding and error mapping, real
PNG bytes, token usage, refusals and failures. Everything under test goes through
``openai.AsyncOpenAI``; the PNG checks use a parser written here, not the emulator's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import struct
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.emulators.openai_images import ImageRequest, read_png
from tests.emulators.openai_server import MODEL_ID, FakeLLM

IMAGE_MODEL = "gpt-image-2"
PROMPT = "A lighthouse keeper and a stray seagull at dawn, watercolour"
BRIEF = "A lighthouse keeper adopts a stray seagull who steals sandwiches"


@pytest.fixture
async def client(llm: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=5)
    yield sdk
    await sdk.close()


def parse_png(data: bytes) -> tuple[int, int, list[bytes], bytes]:
    """Independent PNG check: signature, CRCs, chunk order; (width, height, chunk types, pixels)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds, idat = 8, [], b""
    ihdr = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload), f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            ihdr = payload
        elif kind == b"IDAT":
            idat += payload
        pos += 12 + length
    assert pos == len(data)
    assert kinds[0] == b"IHDR"
    assert kinds[-1] == b"IEND"
    assert b"IDAT" in kinds
    width, height, depth, colour_type, compression, filtering, interlace = struct.unpack(
        ">IIBBBBB", ihdr
    )
    assert (depth, colour_type, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    pixels = zlib.decompress(idat)
    stride = 1 + 3 * width
    assert len(pixels) == height * stride
    return width, height, kinds, pixels


def error_message(error: openai.APIStatusError) -> str:
    """The server's own message (``error.message`` is prefixed with the status by the SDK)."""
    assert isinstance(error.body, dict)
    return str(error.body["message"])


async def generate(client: openai.AsyncOpenAI, prompt: str = PROMPT, **kw: Any) -> Any:
    return await client.images.generate(model=IMAGE_MODEL, prompt=prompt, **kw)


# ---------------------------------------------------------------------- images


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("1024x1024", (1024, 1024)),
        ("1536x1024", (1536, 1024)),
        ("1024x1536", (1024, 1536)),
        ("auto", (1024, 1024)),
        (None, (1024, 1024)),
        ("1536x512", (1536, 512)),
    ],
)
async def test_generates_a_valid_png_of_the_requested_size(
    llm: FakeLLM, client: openai.AsyncOpenAI, size: str | None, expected: tuple[int, int]
) -> None:
    kw = {} if size is None else {"size": size}
    result = await generate(client, **kw)

    assert result.data is not None
    assert len(result.data) == 1
    assert result.data[0].url is None
    png = base64.b64decode(result.data[0].b64_json or "")
    width, height, _, pixels = parse_png(png)
    assert (width, height) == expected
    stride = 1 + 3 * width
    first_row = pixels[:stride]
    assert first_row[0] == 0  # filter type None
    assert pixels == first_row * height  # one solid colour

    assert result.size == f"{width}x{height}"
    assert result.output_format == "png"
    assert result.background == "opaque"
    assert result.quality == "medium"  # auto resolves to medium
    assert abs(result.created - time.time()) < 60
    assert llm.image_requests == [
        ImageRequest(
            prompt=PROMPT,
            model=IMAGE_MODEL,
            size=f"{width}x{height}",
            quality="medium",
            n=1,
            status=200,
        )
    ]
    assert llm.images_generated == 1


async def test_different_prompts_give_different_bytes(client: openai.AsyncOpenAI) -> None:
    first = await generate(client, "a red fox", size="1024x1024", quality="low")
    again = await generate(client, "a red fox", size="1024x1024", quality="low")
    other = await generate(client, "a blue whale", size="1024x1024", quality="low")
    one, same, two = (base64.b64decode(r.data[0].b64_json) for r in (first, again, other))
    assert one == same
    assert one != two
    _, _, _, p1 = parse_png(one)
    _, _, _, p2 = parse_png(two)
    assert p1[1:4] != p2[1:4]  # a different colour, not just different metadata


async def test_n_images_differ_and_read_png_names_the_prompt(client: openai.AsyncOpenAI) -> None:
    result = await generate(client, n=3, size="1024x1024", quality="low")
    pngs = [base64.b64decode(d.b64_json or "") for d in result.data or []]
    assert len(pngs) == 3
    assert len(set(pngs)) == 3
    infos = [read_png(p) for p in pngs]
    assert all((i.width, i.height) == (1024, 1024) for i in infos)
    digest = hashlib.sha256(PROMPT.encode()).hexdigest()
    assert all(f"prompt-sha256={digest}" in i.text["Comment"] for i in infos)
    with pytest.raises(ValueError, match="CRC"):
        read_png(pngs[0][:-1] + bytes([pngs[0][-1] ^ 1]))


@pytest.mark.parametrize(
    ("quality", "size", "n", "per_image"),
    [
        ("low", "1024x1024", 1, 272),
        ("medium", "1024x1024", 2, 1056),
        ("high", "1024x1024", 1, 4160),
        ("auto", "1024x1024", 1, 1056),
        ("low", "1536x1024", 3, 408),  # 272 * 1.5
        ("high", "1024x1536", 1, 6240),
    ],
)
async def test_usage_tokens(
    llm: FakeLLM,
    client: openai.AsyncOpenAI,
    quality: Any,
    size: str,
    n: int,
    per_image: int,
) -> None:
    prompt = "x" * 1001
    result = await generate(client, prompt, quality=quality, size=size, n=n)
    assert result.usage is not None
    assert result.usage.input_tokens == math.ceil(1001 / 4)
    assert result.usage.output_tokens == per_image * n
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert result.usage.input_tokens_details.text_tokens == result.usage.input_tokens
    assert result.usage.input_tokens_details.image_tokens == 0
    assert result.quality == ("medium" if quality == "auto" else quality)
    assert len(result.data or []) == n
    assert llm.images_generated == n


async def test_optional_params_accepted(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    result = await client.images.generate(
        model="gpt-image-2.5-flare",
        prompt=PROMPT,
        size="1024x1024",
        quality="low",
        output_format="png",
        moderation="low",
        background="auto",
        safety_identifier="user-hash-123",
        extra_body={"some_future_param": True},
    )
    assert len(result.data or []) == 1
    assert llm.image_requests[0].model == "gpt-image-2.5-flare"


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "model", ["dall-e-2", "dall-e-3", "gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5"]
)
async def test_shut_down_models_are_not_found(
    llm: FakeLLM, client: openai.AsyncOpenAI, model: str
) -> None:
    llm.enqueue_image_fault("status", status=500)
    with pytest.raises(openai.NotFoundError) as excinfo:
        await client.images.generate(model=model, prompt=PROMPT)
    assert excinfo.value.code == "model_not_found"
    assert model in excinfo.value.message
    assert llm.image_faults_pending() == 1  # refused requests do not eat a fault
    assert [r.status for r in llm.image_requests] == [404]
    assert llm.images_generated == 0


@pytest.mark.parametrize(
    "kw",
    [
        {"response_format": "b64_json"},
        {"response_format": "url"},
        {"extra_body": {"input_fidelity": "high"}},
    ],
)
async def test_params_gpt_image_models_reject(
    llm: FakeLLM, client: openai.AsyncOpenAI, kw: dict[str, Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        await generate(client, **kw)
    param = "input_fidelity" if "extra_body" in kw else "response_format"
    assert excinfo.value.code == "unknown_parameter"
    assert excinfo.value.param == param
    assert error_message(excinfo.value) == f"Unknown parameter: '{param}'."
    assert excinfo.value.type == "invalid_request_error"
    assert [r.status for r in llm.image_requests] == [400]


@pytest.mark.parametrize(
    ("kw", "param", "code"),
    [
        ({"size": "1000x1000"}, "size", "invalid_value"),  # not multiples of 16
        ({"size": "3072x1008"}, "size", "invalid_value"),  # ratio above 3:1
        ({"size": "3840x3840"}, "size", "invalid_value"),  # above 3840x2160 pixels
        ({"size": "big"}, "size", "invalid_value"),
        ({"quality": "hd"}, "quality", "invalid_value"),
        ({"n": 0}, "n", "integer_below_min_value"),
        ({"n": 11}, "n", "integer_above_max_value"),
        ({"prompt": "x" * 32_001}, "prompt", "string_above_max_length"),
        ({"prompt": ""}, "prompt", "empty_string"),
        ({"output_format": "jpeg"}, "output_format", "invalid_value"),
        ({"moderation": "strict"}, "moderation", "invalid_value"),
    ],
)
async def test_invalid_params_are_bad_requests(
    llm: FakeLLM, client: openai.AsyncOpenAI, kw: dict[str, Any], param: str, code: str
) -> None:
    args: dict[str, Any] = {"model": IMAGE_MODEL, "prompt": PROMPT, **kw}
    with pytest.raises(openai.BadRequestError) as excinfo:
        await client.images.generate(**args)
    assert (excinfo.value.param, excinfo.value.code) == (param, code)
    assert len(llm.image_requests) == 1
    assert llm.image_requests[0].status == 400
    assert llm.images_generated == 0


async def test_prompt_at_the_limit_is_accepted(client: openai.AsyncOpenAI) -> None:
    result = await generate(client, "y" * 32_000, quality="low")
    assert result.usage is not None
    assert result.usage.input_tokens == 8_000


# ---------------------------------------------------------------------- faults


async def test_fault_429_is_rate_limit_error_with_retry_after(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue_image_fault("status", status=429, retry_after=12)
    assert llm.image_faults_pending() == 1
    with pytest.raises(openai.RateLimitError) as excinfo:
        await generate(client)
    assert excinfo.value.status_code == 429
    assert excinfo.value.response.headers["retry-after"] == "12"
    assert excinfo.value.code == "rate_limit_exceeded"
    assert llm.image_faults_pending() == 0
    assert llm.image_requests[-1].status == 429
    assert llm.image_requests[-1].fault == "status"
    assert llm.images_generated == 0


@pytest.mark.parametrize("status", [500, 503])
async def test_fault_5xx_is_internal_server_error(
    llm: FakeLLM, client: openai.AsyncOpenAI, status: int
) -> None:
    llm.enqueue_image_fault("status", status=status, message="boom")
    with pytest.raises(openai.InternalServerError) as excinfo:
        await generate(client)
    assert excinfo.value.status_code == status
    assert excinfo.value.type == "server_error"
    assert error_message(excinfo.value) == "boom"


async def test_fault_moderation_blocked(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue_image_fault("moderation_blocked")
    with pytest.raises(openai.BadRequestError) as excinfo:
        await generate(client)
    assert excinfo.value.code == "moderation_blocked"
    assert excinfo.value.type == "image_generation_user_error"
    assert excinfo.value.param is None
    assert error_message(excinfo.value).startswith(
        "Your request was rejected as a result of our safety system."
    )
    assert llm.image_requests[-1].status == 400
    assert llm.image_requests[-1].fault == "moderation_blocked"


async def test_fault_hang_trips_client_timeout_and_is_counted_once(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue_image_fault("hang", seconds=30)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await generate(client, timeout=0.3)
    assert time.monotonic() - started < 2
    assert len(llm.image_requests) == 1
    assert llm.image_requests[0].status is None  # received, never answered
    assert llm.image_requests[0].fault == "hang"
    assert llm.images_generated == 0
    after = await generate(client, quality="low")
    assert len(after.data or []) == 1
    assert [r.status for r in llm.image_requests] == [None, 200]


async def test_fault_hang_shorter_than_timeout_then_answers(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue_image_fault("hang", seconds=0.2)
    started = time.monotonic()
    result = await generate(client, quality="low")
    assert time.monotonic() - started >= 0.15
    assert len(result.data or []) == 1
    assert llm.image_requests[0].status == 200


async def test_fault_disconnect_is_connection_error(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue_image_fault("disconnect")
    with pytest.raises(openai.APIConnectionError):
        await generate(client)
    assert [(r.status, r.fault) for r in llm.image_requests] == [(None, "disconnect")]
    after = await generate(client, quality="low")
    assert len(after.data or []) == 1


async def test_recording_and_counting(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    """Each request is recorded once, faulted or not; only 200s count as generated."""
    llm.enqueue_fault("status", status=500)  # a chat fault: must not touch images
    llm.enqueue_image_fault("status", status=503)
    llm.enqueue_image_fault("moderation_blocked")
    with pytest.raises(openai.InternalServerError):
        await generate(client, "one")
    with pytest.raises(openai.BadRequestError):
        await generate(client, "two")
    await generate(client, "three", n=2, quality="low")
    await generate(client, "four", quality="high", size="1536x1024")

    assert [(r.prompt, r.status, r.n) for r in llm.image_requests] == [
        ("one", 503, 1),
        ("two", 400, 1),
        ("three", 200, 2),
        ("four", 200, 1),
    ]
    assert llm.image_requests[3].quality == "high"
    assert llm.image_requests[3].size == "1536x1024"
    assert llm.images_generated == 3
    assert llm.image_faults_pending() == 0
    assert llm.faults_pending() == 1
    assert llm.requests == []  # image calls are not chat calls


async def test_concurrent_requests_are_each_recorded(
    llm: FakeLLM, client: openai.AsyncOpenAI
) -> None:
    llm.image_latency = 3.0
    tasks = [asyncio.create_task(generate(client, f"p{i}", quality="low")) for i in range(5)]
    # Served in parallel, not one after another: all five are in the server at once (recorded
    # on arrival, answered none yet). Observed, not timed, so a busy machine can't fail it.
    in_flight = 0
    while not any(t.done() for t in tasks):
        in_flight = max(in_flight, sum(r.status is None for r in llm.image_requests))
        if in_flight == 5:
            break
        await asyncio.sleep(0.005)
    assert in_flight == 5, [r.status for r in llm.image_requests]
    results = await asyncio.gather(*tasks)
    assert len(results) == 5
    assert sorted(r.prompt for r in llm.image_requests) == [f"p{i}" for i in range(5)]
    assert llm.images_generated == 5


async def test_image_latency(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    llm.image_latency = 0.3
    started = time.monotonic()
    await generate(client, quality="low")
    assert 0.25 <= time.monotonic() - started < 2


async def test_request_recorded_on_arrival_and_stop_ends_hang() -> None:
    llm = FakeLLM(image_latency=60)
    await llm.start()
    client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=30)
    try:
        llm.enqueue_image_fault("hang", seconds=60)
        pending = asyncio.create_task(generate(client))
        while not llm.image_requests:
            await asyncio.sleep(0.01)
        assert llm.image_requests[0].status is None
        started = time.monotonic()
        await llm.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(openai.APIConnectionError):
            await pending
        assert len(llm.image_requests) == 1
        assert llm.image_requests[0].status is None
        assert llm.images_generated == 0
    finally:
        await client.close()
        await llm.stop()


def test_enqueue_image_fault_rejects_typos() -> None:
    llm = FakeLLM()
    with pytest.raises(ValueError, match="unknown image fault kind"):
        llm.enqueue_image_fault("timeout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not take"):
        llm.enqueue_image_fault("hang", secs=3)
    with pytest.raises(ValueError, match="status"):
        llm.enqueue_image_fault("status", status=200)
    with pytest.raises(ValueError, match="does not take"):
        llm.enqueue_image_fault("disconnect", fraction=0.5)
    assert llm.image_faults_pending() == 0


# ---------------------------------------------------------------------- chat schemas


def schema_format(name: str) -> Any:
    return {
        "type": "json_schema",
        "json_schema": {
            "name": name,
            "schema": {"type": "object", "additionalProperties": True},
            "strict": True,
        },
    }


async def ask(client: openai.AsyncOpenAI, name: str, user: str) -> Any:
    response = await client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {"role": "system", "content": "You plan reference images and storyboards."},
            {"role": "user", "content": user},
        ],
        response_format=schema_format(name),
    )
    return json.loads(response.choices[0].message.content or "")


async def test_image_plan(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    first = await ask(client, "image_plan", f"Brief:\n<brief>\n{BRIEF}\n</brief>\n")
    assert [(i["name"], i["kind"]) for i in first["images"]] == [
        ("Hero", "character"),
        ("Main location", "location"),
        ("Key prop", "prop"),
        ("Style frame", "style"),
    ]
    excerpt = BRIEF[:40].strip()
    assert all(excerpt in i["prompt"] for i in first["images"])
    assert all("Changes:" not in i["prompt"] for i in first["images"])
    assert first["images"][-1]["role"].endswith("(plan 1)")
    assert first["summary_of_changes"] == ""

    second = await ask(
        client,
        "image_plan",
        f"Brief: {BRIEF}\nImages wanted: at most 2\n\n"
        "Requested changes:\n- older hero\n- stormy sky\n",
    )
    assert [i["name"] for i in second["images"]] == ["Hero", "Main location"]
    assert all(i["prompt"].endswith("Changes: older hero; stormy sky") for i in second["images"])
    assert second["images"][-1]["role"].endswith("(plan 2)")
    assert "older hero; stormy sky" in second["summary_of_changes"]
    assert llm.image_plans_served == 2

    capped = await ask(client, "image_plan", f"Brief: {BRIEF}\nImages wanted: at most 9\n")
    assert len(capped["images"]) == 4


async def test_image_redo(client: openai.AsyncOpenAI) -> None:
    plain = await ask(
        client, "image_redo", f"Brief: {BRIEF}\nImage to redo: 2: Old pier (location)\n"
    )
    assert (plain["name"], plain["kind"]) == ("Old pier", "location")
    assert plain["prompt"].startswith(f"Redo of Old pier for {BRIEF[:40].strip()}")
    assert plain["summary_of_changes"] == ""
    assert set(plain) == {"name", "kind", "role", "prompt", "summary_of_changes"}

    changed = await ask(
        client,
        "image_redo",
        f"Brief: {BRIEF}\nImage to redo: 1: Hero (young) (character)\n\n"
        "Requested changes:\n- add a yellow raincoat\n",
    )
    assert (changed["name"], changed["kind"]) == ("Hero (young)", "character")
    assert changed["prompt"].endswith("Changes: add a yellow raincoat")
    assert changed["summary_of_changes"] != ""


async def test_storyboard_follows_scenes_and_images(client: openai.AsyncOpenAI) -> None:
    board = await ask(
        client,
        "storyboard",
        f"Brief: {BRIEF}\nTarget duration: 20 seconds\n"
        "Scene 1 (8 s): The keeper climbs the tower.\n"
        "Scene 2 (4 s): The gull lands on the rail.\n"
        "Scene 3 (8 s): Sandwich theft.\n"
        "Image 1: Hero (character) — the keeper in oilskins\n"
        "Image 2: Lighthouse (location) — white tower on a rock\n"
        "Image 3: Sandwich (prop) — cheese and pickle\n",
    )
    shots = board["shots"]
    assert [(s["scene"], s["duration_s"]) for s in shots] == [
        (1, 4),
        (1, 4),
        (2, 4),
        (3, 4),
        (3, 4),
    ]
    assert sum(s["duration_s"] for s in shots) == 20
    assert [s["shot_type"] for s in shots] == ["wide", "close-up", "wide", "close-up", "wide"]
    assert [s["camera"] for s in shots[:2]] == ["static", "slow push-in"]
    assert all(BRIEF[:40].strip() in s["action"] for s in shots)
    assert shots[2]["audio"] == "VO: scene 2 line"
    assert all(s["references"] == ["Hero", "Lighthouse"] for s in shots)
    assert board["summary_of_changes"] == ""


async def test_storyboard_odd_scene_and_fallback(client: openai.AsyncOpenAI) -> None:
    odd = await ask(
        client,
        "storyboard",
        f"Brief: {BRIEF}\nScene 1 (7 s): Dawn.\nImage 1: Tower (location) — tall\n\n"
        "Requested changes:\n- slower\n",
    )
    assert [s["duration_s"] for s in odd["shots"]] == [3, 4]
    assert odd["shots"][0]["references"] == ["Tower"]
    assert "slower" in odd["summary_of_changes"]

    fallback = await ask(client, "storyboard", f"Brief: {BRIEF}\nTarget duration: 30 seconds\n")
    assert sum(s["duration_s"] for s in fallback["shots"]) == 30
    assert {s["scene"] for s in fallback["shots"]} == {1, 2, 3, 4}
    assert all(s["references"] == [] for s in fallback["shots"])


@pytest.mark.parametrize(
    ("feedback", "targets"),
    [
        ("<@U123ABC> make image 3 brighter and Shot 1 shorter", [1, 3]),
        ("<@U123ABC> #2 and #2 again, plus IMAGE #4", [2, 4]),
        ("<@U123ABC> love it, but a screenshot 5 would help", []),
        ("<@U123ABC> make the ending warmer", []),
    ],
)
async def test_feedback_reply_targets(
    client: openai.AsyncOpenAI, feedback: str, targets: list[int]
) -> None:
    reply = await ask(client, "feedback_reply", "Conversation so far:\n" + feedback)
    assert reply["targets"] == targets
    assert reply["reply"] == f"Got it — I'll work in: {feedback}"
    assert set(reply) == {"reply", "planned_changes", "wants_regenerate", "targets"}


@pytest.mark.parametrize("name", ["image_plan", "image_redo", "storyboard"])
async def test_content_faults_cover_new_schemas(
    llm: FakeLLM, client: openai.AsyncOpenAI, name: str
) -> None:
    llm.enqueue_fault("malformed")
    response = await client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": f"Brief: {BRIEF}\nScene 1 (6 s): Dawn.\n"}],
        response_format=schema_format(name),
    )
    content = response.choices[0].message.content or ""
    assert content.startswith("{")
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    assert llm.image_plans_served == 0  # a faulted plan is not a served version
