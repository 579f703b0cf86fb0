"""Shared fixtures: a real redis-server per test session, flushed per test; the OpenAI-compatible
emulator; no real network."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.emulators.openai_server import FakeLLM
from tests.support.redis_server import RedisServer

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> None:
    """Tests must never reach the real Slack or OpenAI: refuse non-loopback connections."""
    if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise ConnectionRefusedError(f"tests may not connect to {host}")
    _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    """The OpenAI-compatible emulator (chat, images, videos, speech) on a free local port;
    modules that need other timings define their own."""
    server = FakeLLM()
    await server.start()
    yield server
    await server.stop()
