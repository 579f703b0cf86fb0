"""Creating the Redis client with a retry policy that survives a Redis restart.

redis-py re-sends a command after a connection error; every write that matters is idempotent
(NX keys, scripts keyed by an operation id), so the re-send is safe.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def connect(url: str, *, retries: int = 2, max_connections: int = 256) -> Redis:
    """A pooled client that reconnects by itself and fails fast enough for a 3 s ack."""
    tcp = {} if url.startswith("unix://") else {"socket_keepalive": True}
    # A blocking pool: when every connection is busy a command waits for one (up to 5 s)
    # instead of failing at once with MaxConnectionsError.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=5,
        socket_connect_timeout=0.5,  # with 2 retries an unreachable Redis fails in ~1.6 s
        socket_timeout=5.0,
        **tcp,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
