"""The app's Redis pool (``storage/connection.py: QuickPool``) on a real redis-server.

Its direct path (a free connection, nobody waiting) skips redis-py's Condition; these prove it
still reuses one connection for sequential work, blocks instead of failing when every
connection is busy, and hands a released connection to whoever waits.
"""

from __future__ import annotations

import asyncio

from storage.connection import QuickPool, connect
from tests.support.redis_server import RedisServer


async def test_sequential_commands_share_one_connection(redis_server: RedisServer) -> None:
    client = connect(redis_server.url, max_connections=8)
    try:
        pool = client.connection_pool
        assert isinstance(pool, QuickPool)
        for i in range(50):
            await client.set(f"pool:{i}", i)
            assert await client.get(f"pool:{i}") == str(i)
        assert len(pool._available_connections) == 1
        assert not pool._in_use_connections
    finally:
        await client.aclose()


async def test_more_commands_than_connections_wait_their_turn(redis_server: RedisServer) -> None:
    """Two connections, twelve blocking commands at once: each waits for a released
    connection (the parent's Condition) — none fails with "No connection available"."""
    client = connect(redis_server.url, max_connections=2)
    try:
        pool = client.connection_pool
        assert isinstance(pool, QuickPool)
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(client.blpop([f"pool:empty:{i}"], timeout=0.2) for i in range(12))
        )
        took = asyncio.get_running_loop().time() - started
        assert results == [None] * 12
        assert took >= 1.1  # 12 commands of 0.2 s, two at a time: six turns
        assert len(pool._available_connections) + len(pool._in_use_connections) == 2
        assert await client.ping()
    finally:
        await client.aclose()
