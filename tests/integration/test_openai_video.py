"""FakeLLM's video-jobs and speech endpoints, and the media files behind them.

The video contract is spoken over plain HTTP with aiohttp, as the app must (the openai
SDK's ``client.videos`` methods are deprecated and warn); speech goes through the real
SDK's ``client.audio.speech.create``. Media bytes are checked with ffprobe (``probe``)
and an independent PNG header check, not with the emulator's own renderers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.emulators import media_files
from tests.emulators.media_files import make_audio, make_mp4, probe
from tests.emulators.openai_images import read_png, render_png
from tests.emulators.openai_server import FakeLLM
from tests.emulators.openai_video import VideoContentRequest, VideoCreate, image_size

MODEL = "veo-3.1-fast"
PROMPT = "A lighthouse keeper feeds a seagull at dawn, slow push-in"
AUTH = {"Authorization": "Bearer test"}
JOB_KEYS = {
    "id",
    "object",
    "status",
    "progress",
    "model",
    "seconds",
    "size",
    "created_at",
    "completed_at",
    "expires_at",
    "error",
    "prompt",
    "remixed_from_video_id",
}


class Videos:
    """A thin aiohttp client for the video-jobs contract; answers (status, body, headers)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url

    async def _call(
        self, method: str, path: str, *, auth: bool = True, **kw: Any
    ) -> tuple[int, Any, Any]:
        headers = dict(AUTH) if auth else {}
        async with self.session.request(
            method, self.base + path, headers=headers, **kw
        ) as response:
            raw = await response.read()
            body: Any = raw
            if response.content_type == "application/json":
                body = json.loads(raw)
            return response.status, body, response.headers

    async def create(
        self, *, auth: bool = True, timeout: aiohttp.ClientTimeout | None = None, **fields: Any
    ) -> tuple[int, Any, Any]:
        body = {"model": MODEL, "prompt": PROMPT, "seconds": "4", "size": "640x360", **fields}
        kw: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        return await self._call("POST", "/videos", auth=auth, json=body, **kw)

    async def create_form(self, form: aiohttp.FormData) -> tuple[int, Any, Any]:
        return await self._call("POST", "/videos", data=form)

    async def get(self, video_id: str, *, auth: bool = True) -> tuple[int, Any, Any]:
        return await self._call("GET", f"/videos/{video_id}", auth=auth)

    async def content(self, video_id: str, variant: str | None = None) -> tuple[int, Any, Any]:
        params = {"variant": variant} if variant else {}
        return await self._call("GET", f"/videos/{video_id}/content", params=params)

    async def list(self, **params: Any) -> tuple[int, Any, Any]:
        return await self._call("GET", "/videos", params={k: str(v) for k, v in params.items()})

    async def delete(self, video_id: str) -> tuple[int, Any, Any]:
        return await self._call("DELETE", f"/videos/{video_id}")

    async def wait(self, video_id: str, *statuses: str, timeout: float = 5.0) -> dict[str, Any]:
        """Poll every 20 ms until the job's status is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            status, job, _ = await self.get(video_id)
            assert status == 200, job
            if job["status"] in statuses:
                return job
            assert time.monotonic() < deadline, f"still {job['status']} after {timeout} s"
            await asyncio.sleep(0.02)

    async def created(self, **fields: Any) -> dict[str, Any]:
        status, job, _ = await self.create(**fields)
        assert status == 200, job
        return job


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    server = FakeLLM(video_queue_s=0.1, video_render_s=0.3)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def videos(llm: FakeLLM) -> AsyncIterator[Videos]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield Videos(session, llm.base_url)


@pytest.fixture
async def client(llm: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test", max_retries=0, timeout=10)
    yield sdk
    await sdk.close()


def png_size(data: bytes) -> tuple[int, int]:
    """Independent PNG check: signature, IHDR first with a valid CRC, IEND last."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    (length,) = struct.unpack(">I", data[8:12])
    assert data[12:16] == b"IHDR"
    payload = data[16 : 16 + length]
    (crc,) = struct.unpack(">I", data[16 + length : 20 + length])
    assert crc == zlib.crc32(b"IHDR" + payload)
    assert data[-8:-4] == b"IEND"
    width, height = struct.unpack(">II", payload[:8])
    return width, height


def tiny_jpeg_header(width: int, height: int) -> bytes:
    """SOI, an APP0 segment and a baseline SOF0: enough for a dimensions check."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


def form(png: bytes | None, **fields: str) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in {"model": MODEL, "prompt": PROMPT, "seconds": "4", **fields}.items():
        data.add_field(name, value)
    if png is not None:
        data.add_field("input_reference", png, filename="ref.png", content_type="image/png")
    return data


# ---------------------------------------------------------------------- lifecycle


async def test_create_answers_a_queued_job(llm: FakeLLM, videos: Videos) -> None:
    before = int(time.time())
    status, job, headers = await videos.create()
    assert status == 200
    assert set(job) == JOB_KEYS
    assert job["id"].startswith("video_")
    assert job["object"] == "video"
    assert (job["status"], job["progress"]) == ("queued", 0)
    assert (job["model"], job["prompt"], job["seconds"], job["size"]) == (
        MODEL,
        PROMPT,
        "4",
        "640x360",
    )
    assert before <= job["created_at"] <= time.time()
    assert job["completed_at"] is None
    assert job["expires_at"] is None
    assert job["error"] is None
    assert headers["openai-poll-after-ms"] == "200"
    assert headers["x-request-id"].startswith("req_")
    assert llm.video_creates == [
        VideoCreate(job["id"], MODEL, PROMPT, "4", "640x360", False, status=200)
    ]
    assert llm.videos[job["id"]]["status"] in {"queued", "in_progress"}


async def test_lifecycle_queued_in_progress_completed(llm: FakeLLM, videos: Videos) -> None:
    llm.video_poll_after_ms = 50
    job = await videos.created()
    seen: list[tuple[str, int]] = []
    while not seen or seen[-1][0] != "completed":
        status, polled, headers = await videos.get(job["id"])
        assert status == 200
        assert headers["openai-poll-after-ms"] == "50"
        seen.append((polled["status"], polled["progress"]))
        await asyncio.sleep(0.02)
    statuses = [s for s, _ in seen]
    order = ["queued", "in_progress", "completed"]
    assert statuses == sorted(statuses, key=order.index)  # never goes back
    assert {"queued", "in_progress"} <= set(statuses)
    progress = [p for _, p in seen]
    assert progress == sorted(progress)
    assert all(p == 0 for s, p in seen if s == "queued")
    rising = {p for s, p in seen if s == "in_progress"}
    assert len(rising) >= 3  # progress moves while rendering
    assert all(0 <= p < 100 for p in rising)
    assert polled["progress"] == 100
    assert polled["error"] is None
    assert polled["completed_at"] >= polled["created_at"]
    assert polled["expires_at"] == polled["completed_at"] + 3600
    assert llm.video_polls == len(seen)


@pytest.mark.parametrize(
    ("fields", "seconds", "size"),
    [
        ({"seconds": None, "size": None}, 4, (1280, 720)),
        ({"seconds": 8, "size": "640x360"}, 8, (640, 360)),
    ],
    ids=["defaults-4s-1280x720", "int-seconds-8s-640x360"],
)
async def test_content_is_a_real_mp4(
    llm: FakeLLM,
    videos: Videos,
    fields: dict[str, Any],
    seconds: int,
    size: tuple[int, int],
) -> None:
    body = {k: v for k, v in fields.items() if v is not None}
    status, job, _ = await videos._call(
        "POST",
        "/videos",
        json={"model": MODEL, "prompt": PROMPT, **body},
    )
    assert status == 200, job
    assert job["seconds"] == str(seconds)
    assert job["size"] == f"{size[0]}x{size[1]}"
    await videos.wait(job["id"], "completed")
    status, data, headers = await videos.content(job["id"])
    assert status == 200
    assert headers["Content-Type"] == "video/mp4"
    assert data[4:8] == b"ftyp"
    info = await media_files.probe_async(data)
    assert info["video_codec"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert (info["width"], info["height"]) == size
    assert info["duration"] == pytest.approx(seconds, abs=0.1)
    assert info["has_audio"]
    assert llm.video_downloads == [job["id"]]


async def test_thumbnail_and_spritesheet_are_pngs(llm: FakeLLM, videos: Videos) -> None:
    job = await videos.created(size="720x1280")
    await videos.wait(job["id"], "completed")
    status, thumb, headers = await videos.content(job["id"], "thumbnail")
    assert status == 200
    assert headers["Content-Type"] == "image/png"
    assert png_size(thumb) == (180, 320)  # the video's aspect, long edge 320
    assert job["id"] in read_png(thumb).text["Comment"]
    status, sheet, _ = await videos.content(job["id"], "spritesheet")
    assert status == 200
    assert png_size(sheet) == (720, 320)
    assert llm.video_downloads == []  # only the MP4 counts as a download
    assert [(r.variant, r.status) for r in llm.video_content_requests] == [
        ("thumbnail", 200),
        ("spritesheet", 200),
    ]


async def test_content_before_completion_unknown_id_and_bad_variant(
    llm: FakeLLM, videos: Videos
) -> None:
    job = await videos.created()
    status, body, _ = await videos.content(job["id"])
    assert status == 404
    assert body["error"]["code"] == "video_not_ready"
    status, body, _ = await videos.content(job["id"], "thumbnail")
    assert status == 404
    status, body, _ = await videos.content(job["id"], "gif")
    assert status == 400
    assert body["error"]["param"] == "variant"
    for call in (
        videos.get("video_nope"),
        videos.content("video_nope"),
        videos.delete("video_nope"),
    ):
        status, body, _ = await call
        assert status == 404
        assert body["error"]["code"] == "video_not_found"
    assert llm.video_downloads == [job["id"], "video_nope"]


async def test_natural_expiry(llm: FakeLLM, videos: Videos) -> None:
    llm.video_expiry_s = 0.2
    job = await videos.created()
    done = await videos.wait(job["id"], "completed")
    assert done["expires_at"] == pytest.approx(done["completed_at"], abs=1)
    expired = await videos.wait(job["id"], "expired")
    assert expired["completed_at"] == done["completed_at"]
    status, body, _ = await videos.content(job["id"])
    assert (status, body["error"]["code"]) == (404, "video_expired")


# ---------------------------------------------------------------------- list and delete


async def test_list_orders_newest_first_and_pages(llm: FakeLLM, videos: Videos) -> None:
    ids = [(await videos.created(prompt=f"clip {i}"))["id"] for i in range(3)]
    status, page, _ = await videos.list()
    assert status == 200
    assert page["object"] == "list"
    assert [j["id"] for j in page["data"]] == ids[::-1]
    assert all(set(j) == JOB_KEYS for j in page["data"])
    assert (page["has_more"], page["first_id"], page["last_id"]) == (False, ids[2], ids[0])

    _, first, _ = await videos.list(limit=2)
    assert [j["id"] for j in first["data"]] == [ids[2], ids[1]]
    assert (first["has_more"], first["first_id"], first["last_id"]) == (True, ids[2], ids[1])
    _, second, _ = await videos.list(limit=2, after=first["last_id"])
    assert [j["id"] for j in second["data"]] == [ids[0]]
    assert second["has_more"] is False

    _, ascending, _ = await videos.list(order="asc", limit=2)
    assert [j["id"] for j in ascending["data"]] == ids[:2]
    _, rest, _ = await videos.list(order="asc", after=ids[1])
    assert [j["id"] for j in rest["data"]] == [ids[2]]
    _, empty, _ = await videos.list(after=ids[0])
    assert empty == {
        "object": "list",
        "data": [],
        "has_more": False,
        "first_id": None,
        "last_id": None,
    }
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"order": "up"}, {"after": "v"}):
        status, body, _ = await videos.list(**params)
        assert status == 400, params
        assert body["error"]["code"] == "invalid_value"
    assert llm.video_lists == 11


async def test_delete_cancels_and_forgets_the_job(llm: FakeLLM, videos: Videos) -> None:
    keep = await videos.created(prompt="keep")
    drop = await videos.created(prompt="drop")
    status, body, _ = await videos.delete(drop["id"])
    assert status == 200
    assert body == {"id": drop["id"], "object": "video.deleted", "deleted": True}
    assert (await videos.get(drop["id"]))[0] == 404
    assert (await videos.content(drop["id"]))[0] == 404
    assert (await videos.delete(drop["id"]))[0] == 404
    _, page, _ = await videos.list()
    assert [j["id"] for j in page["data"]] == [keep["id"]]
    assert list(llm.videos) == [keep["id"]]
    assert llm.video_deletes == [drop["id"], drop["id"]]
    assert llm.videos_created == 2  # deleting does not un-pay


# ---------------------------------------------------------------------- validation


async def test_auth_is_required_everywhere(llm: FakeLLM, videos: Videos) -> None:
    job = await videos.created()
    for method, path in (
        ("POST", "/videos"),
        ("GET", "/videos"),
        ("GET", f"/videos/{job['id']}"),
        ("GET", f"/videos/{job['id']}/content"),
        ("DELETE", f"/videos/{job['id']}"),
    ):
        kw: dict[str, Any] = (
            {"json": {"model": MODEL, "prompt": PROMPT}} if method == "POST" else {}
        )
        status, body, _ = await videos._call(method, path, auth=False, **kw)
        assert status == 401, (method, path)
        assert "API key" in body["error"]["message"]
    assert job["id"] in llm.videos  # the unauthenticated DELETE did nothing
    assert [c.status for c in llm.video_creates] == [200, 401]
    assert llm.video_creates[1].video_id is None
    assert (llm.video_polls, llm.video_lists) == (1, 1)
    assert (llm.video_downloads, llm.video_deletes) == ([job["id"]], [job["id"]])


@pytest.mark.parametrize("model", ["sora-2", "sora-2-pro"])
async def test_shut_down_sora_models_are_not_found(
    llm: FakeLLM, videos: Videos, model: str
) -> None:
    llm.enqueue_video_fault("status", status=500)
    status, body, _ = await videos.create(model=model)
    assert status == 404
    assert body["error"]["code"] == "model_not_found"
    assert llm.video_faults_pending() == 1  # refusals do not eat faults
    assert llm.video_creates == [
        VideoCreate(None, model, PROMPT, "4", "640x360", False, status=404)
    ]


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"model": None}, "model", "missing_required_parameter"),
        ({"prompt": None}, "prompt", "missing_required_parameter"),
        ({"prompt": "  "}, "prompt", "empty_string"),
        ({"prompt": 42}, "prompt", "invalid_type"),
        ({"seconds": "5"}, "seconds", "invalid_value"),
        ({"seconds": 4.0}, "seconds", "invalid_type"),
        ({"seconds": True}, "seconds", "invalid_type"),
        ({"size": "1920x1080"}, "size", "invalid_value"),
        ({"size": "auto"}, "size", "invalid_value"),
    ],
)
async def test_invalid_creates_are_bad_requests(
    llm: FakeLLM, videos: Videos, fields: dict[str, Any], param: str, code: str
) -> None:
    body = {"model": MODEL, "prompt": PROMPT, **fields}
    status, answer, _ = await videos._call(
        "POST", "/videos", json={k: v for k, v in body.items() if v is not None}
    )
    assert status == 400
    assert (answer["error"]["param"], answer["error"]["code"]) == (param, code)
    assert [c.status for c in llm.video_creates] == [400]
    assert llm.videos_created == 0
    assert llm.videos == {}


async def test_unknown_models_and_configured_values_are_accepted(
    llm: FakeLLM, videos: Videos
) -> None:
    assert (await videos.create(model="runway-gen4-turbo", seconds=12))[0] == 200
    status, _, _ = await videos.create(seconds="5")
    assert status == 400
    llm.video_seconds_allowed = frozenset({"5", "10"})
    llm.video_sizes_allowed = frozenset({"960x960"})
    status, job, _ = await videos.create(seconds=5, size="960x960")
    assert status == 200
    assert (job["seconds"], job["size"]) == ("5", "960x960")
    status, body, _ = await videos.create(seconds="4", size="960x960")
    assert status == 400
    assert "'10'" in body["error"]["message"]
    assert (await videos._call("POST", "/videos", data=b"{not json"))[0] == 400


async def test_input_reference_must_match_the_size(llm: FakeLLM, videos: Videos) -> None:
    wrong = render_png(512, 512, (10, 20, 30))
    status, body, _ = await videos.create_form(form(wrong, size="640x360"))
    assert status == 400
    assert body["error"]["code"] == "invalid_value"
    assert body["error"]["param"] == "input_reference"
    assert body["error"]["message"].startswith("input_reference must match the requested size")
    assert "512x512" in body["error"]["message"]

    right = render_png(640, 360, (10, 20, 30))
    status, job, _ = await videos.create_form(form(right, size="640x360"))
    assert status == 200, job
    assert (job["status"], job["size"], job["seconds"]) == ("queued", "640x360", "4")

    status, body, _ = await videos.create_form(form(b"GIF89a not supported", size="640x360"))
    assert status == 400
    assert "PNG, JPEG or WebP" in body["error"]["message"]

    jpeg = tiny_jpeg_header(1280, 720)
    assert image_size(jpeg) == (1280, 720)
    status, _, _ = await videos.create_form(form(jpeg))  # size defaults to 1280x720
    assert status == 200

    data_url = "data:image/png;base64," + base64.b64encode(right).decode()
    status, _, _ = await videos.create(input_reference={"image_url": data_url})
    assert status == 200
    status, body, _ = await videos.create(input_reference={"image_url": "https://x/y.png"})
    assert status == 400

    assert [(c.status, c.has_input_reference) for c in llm.video_creates] == [
        (400, True),
        (200, True),
        (400, True),
        (200, True),
        (200, True),
        (400, True),
    ]
    assert llm.videos_created == 3


# ---------------------------------------------------------------------- faults


async def test_fault_policy_fails_after_queueing(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("policy")
    job = await videos.created()
    assert job["status"] == "queued"  # accepted first, refused later, as providers do
    failed = await videos.wait(job["id"], "failed", "completed")
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "moderation_blocked"
    assert "content policy" in failed["error"]["message"]
    assert failed["completed_at"] is None
    status, body, _ = await videos.content(job["id"])
    assert (status, body["error"]["code"]) == (404, "video_failed")
    assert llm.video_creates[0].fault == "policy"
    assert llm.videos_created == 1


async def test_fault_failed_is_internal_error_mid_render(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("failed", message="GPU fell over")
    job = await videos.created()
    await videos.wait(job["id"], "in_progress")
    failed = await videos.wait(job["id"], "failed", "completed")
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "internal_error", "message": "GPU fell over"}
    assert 0 < failed["progress"] < 100


async def test_fault_expire_on_first_download(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("expire")
    job = await videos.created()
    done = await videos.wait(job["id"], "completed")
    assert done["expires_at"] == done["completed_at"] + 3600  # what the provider promised
    for _ in range(2):
        status, body, _ = await videos.content(job["id"])
        assert (status, body["error"]["code"]) == (404, "video_expired")
    status, expired, _ = await videos.get(job["id"])
    assert expired["status"] == "expired"
    assert expired["expires_at"] <= time.time()
    assert llm.video_downloads == [job["id"], job["id"]]


async def test_fault_expire_after_completion(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("expire", after=0)
    job = await videos.created()
    expired = await videos.wait(job["id"], "expired", "completed")
    assert expired["status"] == "expired"
    assert expired["completed_at"] is not None
    assert (await videos.content(job["id"], "thumbnail"))[0] == 404


@pytest.mark.parametrize(
    ("status", "retry_after", "error_type"),
    [(429, "3", "requests"), (500, None, "server_error"), (503, None, "server_error")],
)
async def test_fault_status_refuses_the_create(
    llm: FakeLLM, videos: Videos, status: int, retry_after: str | None, error_type: str
) -> None:
    llm.enqueue_video_fault("status", status=status, retry_after=retry_after)
    answered, body, headers = await videos.create()
    assert answered == status
    assert body["error"]["type"] == error_type
    assert headers.get("retry-after") == retry_after
    assert llm.videos == {}
    assert llm.video_creates == [
        VideoCreate(None, MODEL, PROMPT, "4", "640x360", False, status=status, fault="status")
    ]
    assert (await videos.create())[0] == 200  # one request per fault
    assert llm.videos_created == 1


async def test_fault_slow_render(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("slow", seconds=1.2)
    slow = await videos.created(prompt="slow")
    normal = await videos.created(prompt="normal")
    await videos.wait(normal["id"], "completed")
    _, job, _ = await videos.get(slow["id"])
    assert job["status"] == "in_progress"
    assert job["progress"] < 50
    started = time.monotonic()
    await videos.wait(slow["id"], "completed")
    assert time.monotonic() - started > 0.4


async def test_fault_download_fail(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("download_fail", count=2)
    job = await videos.created()
    assert (await videos.content(job["id"]))[0] == 404  # early tries do not use the fault up
    await videos.wait(job["id"], "completed")
    statuses = [(await videos.content(job["id"]))[0] for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert llm.video_downloads == [job["id"]] * 4
    assert [r.status for r in llm.video_content_requests] == [404, 500, 500, 200]


async def test_fault_hang_create_job_exists_when_the_client_gives_up(
    llm: FakeLLM, videos: Videos
) -> None:
    llm.enqueue_video_fault("hang_create", seconds=30)
    with pytest.raises(TimeoutError):
        await videos.create(timeout=aiohttp.ClientTimeout(total=0.3))
    assert llm.videos_created == 1  # paid although the app never saw the id
    (create,) = llm.video_creates
    assert create.video_id is not None
    assert (create.status, create.fault) == (None, "hang_create")
    # A restarted app can still find and finish the job.
    _, page, _ = await videos.list()
    assert [j["id"] for j in page["data"]] == [create.video_id]
    await videos.wait(create.video_id, "completed")
    assert (await videos.content(create.video_id))[0] == 200


async def test_fault_hang_create_short_then_answers(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("hang_create", seconds=0.3)
    started = time.monotonic()
    job = await videos.created()
    assert time.monotonic() - started >= 0.3
    assert job["status"] in {"queued", "in_progress"}  # its clock started at creation
    assert llm.video_creates[0].status == 200


async def test_stop_ends_hang_create_promptly() -> None:
    llm = FakeLLM()
    await llm.start()
    try:
        async with aiohttp.ClientSession() as session:
            videos = Videos(session, llm.base_url)
            llm.enqueue_video_fault("hang_create", seconds=60)
            pending = asyncio.create_task(videos.create())
            while not llm.video_creates:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            await llm.stop()
            assert time.monotonic() - started < 2
            with pytest.raises(aiohttp.ClientError):
                await pending
        assert llm.video_creates[0].status is None
        assert llm.videos_created == 1
    finally:
        await llm.stop()


async def test_faults_are_fifo_one_per_create(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("status", status=429)
    llm.enqueue_video_fault("policy")
    assert llm.video_faults_pending() == 2
    assert (await videos.create(size="1x1"))[0] == 400  # refused: consumes nothing
    assert llm.video_faults_pending() == 2
    assert (await videos.create())[0] == 429
    job = await videos.created()
    plain = await videos.created()
    assert llm.video_faults_pending() == 0
    assert [c.fault for c in llm.video_creates] == [None, "status", "policy", None]
    assert (await videos.wait(job["id"], "failed", "completed"))["status"] == "failed"
    assert (await videos.wait(plain["id"], "failed", "completed"))["status"] == "completed"


def test_enqueue_video_fault_rejects_typos() -> None:
    llm = FakeLLM()
    with pytest.raises(ValueError, match="unknown video fault kind"):
        llm.enqueue_video_fault("timeout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not take"):
        llm.enqueue_video_fault("policy", seconds=1)
    with pytest.raises(ValueError, match="status"):
        llm.enqueue_video_fault("status", status=200)
    with pytest.raises(ValueError, match="seconds > 0"):
        llm.enqueue_video_fault("slow")
    with pytest.raises(ValueError, match="count"):
        llm.enqueue_video_fault("download_fail", count=0)
    with pytest.raises(ValueError, match="unknown speech fault kind"):
        llm.enqueue_speech_fault("policy")  # type: ignore[arg-type]
    assert llm.video_faults_pending() == 0
    assert llm.speech_faults_pending() == 0


async def test_every_request_is_recorded_once(llm: FakeLLM, videos: Videos) -> None:
    llm.enqueue_video_fault("status", status=503)
    await videos.create()
    job = await videos.created()
    await videos.create(model="sora-2")
    await videos.wait(job["id"], "completed")
    polls = llm.video_polls
    await videos.content(job["id"])
    await videos.content(job["id"], "thumbnail")
    await videos.list()
    await videos.delete(job["id"])
    assert [(c.video_id is not None, c.status) for c in llm.video_creates] == [
        (False, 503),
        (True, 200),
        (False, 404),
    ]
    assert llm.videos_created == 1
    assert polls >= 2
    assert llm.video_polls == polls
    assert llm.video_downloads == [job["id"]]
    assert llm.video_content_requests == [
        VideoContentRequest(job["id"], "video", 200),
        VideoContentRequest(job["id"], "thumbnail", 200),
    ]
    assert (llm.video_lists, llm.video_deletes) == (1, [job["id"]])
    assert llm.requests == [] and llm.image_requests == []  # separate logs


# ---------------------------------------------------------------------- speech


async def test_speech_mp3_through_the_sdk(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    text = " ".join(["word"] * 10)  # 10 words at 2.5 words/s: 4 s
    response = await client.audio.speech.create(model="gpt-4o-mini-tts", voice="alloy", input=text)
    assert response.response.headers["content-type"] == "audio/mpeg"
    info = probe(response.content)
    assert (info["format"], info["audio_codec"], info["has_video"]) == ("mp3", "mp3", False)
    assert info["duration"] == pytest.approx(4.0, abs=0.15)
    assert llm.speech_requests[0].model == "gpt-4o-mini-tts"
    assert llm.speech_requests[0].voice == "alloy"
    assert llm.speech_requests[0].input == text
    assert (llm.speech_requests[0].format, llm.speech_requests[0].status) == ("mp3", 200)


async def test_speech_wav_speed_and_minimum(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    text = " ".join(["word"] * 10)
    wav = await client.audio.speech.create(
        model="tts-x", voice="nova", input=text, response_format="wav", speed=2.0
    )
    assert wav.response.headers["content-type"] == "audio/wav"
    assert wav.content[:4] == b"RIFF"
    assert probe(wav.content)["duration"] == pytest.approx(2.0, abs=0.05)
    short = await client.audio.speech.create(model="tts-x", voice="nova", input="Hi")
    assert probe(short.content)["duration"] == pytest.approx(0.5, abs=0.15)
    assert [r.speed for r in llm.speech_requests] == [2.0, None]


async def test_speech_refusals_and_faults(llm: FakeLLM, client: openai.AsyncOpenAI) -> None:
    speech = client.audio.speech
    with pytest.raises(openai.BadRequestError) as bad:
        await speech.create(model="m", voice="alloy", input="x" * 4097)
    assert bad.value.code == "string_above_max_length"
    assert (await speech.create(model="m", voice="alloy", input="x" * 4096)).content
    with pytest.raises(openai.BadRequestError) as bad:
        await speech.create(model="m", voice="alloy", input="hello", response_format="opus")
    assert bad.value.param == "response_format"
    with pytest.raises(openai.BadRequestError):
        await speech.create(model="m", voice="alloy", input="hello", response_format="ogg")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        await speech.create(model="m", voice="alloy", input="hello", speed=9)

    llm.enqueue_speech_fault("status", status=429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as limited:
        await speech.create(model="m", voice="alloy", input="hello")
    assert limited.value.response.headers["retry-after"] == "2"
    llm.enqueue_speech_fault("status", status=500)
    with pytest.raises(openai.InternalServerError):
        await speech.create(model="m", voice="alloy", input="hello")
    assert (await speech.create(model="m", voice="alloy", input="hello")).content
    assert [(r.status, r.fault) for r in llm.speech_requests] == [
        (400, None),
        (200, None),
        (400, None),
        (400, None),
        (400, None),
        (429, "status"),
        (500, "status"),
        (200, None),
    ]
    assert llm.speech_faults_pending() == 0


async def test_speech_needs_auth(llm: FakeLLM) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            llm.base_url + "/audio/speech",
            json={"model": "m", "voice": "alloy", "input": "hello"},
        ) as response,
    ):
        assert response.status == 401
    assert llm.speech_requests[0].status == 401


# ---------------------------------------------------------------------- media files


def test_make_mp4_is_cached_and_labelled() -> None:
    first = make_mp4(1, "320x180", label="clip one", color="#1e90ff")
    started = time.monotonic()
    again = make_mp4(1, "320x180", label="clip one", color="#1e90ff")
    assert again == first
    assert time.monotonic() - started < 0.05
    other = make_mp4(1, "320x180", label="clip two", color="#1e90ff")
    assert other != first
    info = probe(first)
    assert (info["width"], info["height"], info["tags"]["title"]) == (320, 180, "clip one")
    assert info["duration"] == pytest.approx(1.0, abs=0.05)
    silent = probe(make_mp4(1.5, "320x180", audio=False))
    assert (silent["has_audio"], silent["duration"]) == (False, pytest.approx(1.5, abs=0.05))


def test_make_mp4_without_fonts_and_bad_arguments(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(media_files, "_CACHE_DIR", tmp_path)
    monkeypatch.setattr(media_files, "_memory", {})
    monkeypatch.setattr(media_files, "_font", lambda: None)
    data = make_mp4(0.5, "160x90", label="no font: 100%")
    info = probe(data)
    assert (info["width"], info["height"], info["tags"]["title"]) == (160, 90, "no font: 100%")
    assert len(list(tmp_path.glob("*.mp4"))) == 1  # written to the disk cache
    for args, kw in (
        ((0, "160x90"), {}),
        ((1, "161x90"), {}),
        ((1, "big"), {}),
        ((1, "160x90"), {"color": "red;drawtext"}),
    ):
        with pytest.raises(ValueError):
            make_mp4(*args, **kw)
    with pytest.raises(ValueError):
        make_audio(1, "ogg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ffprobe could not read"):
        probe(b"not media at all")


def test_missing_ffmpeg_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(media_files, "_CACHE_DIR", tmp_path)
    monkeypatch.setattr(media_files, "_memory", {})
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="ffmpeg is required"):
        make_mp4(1)
    with pytest.raises(RuntimeError, match="ffmpeg is required"):
        make_audio(1)
    with pytest.raises(RuntimeError, match="ffmpeg is required"):
        probe(b"x")
