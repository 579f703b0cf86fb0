"""Creating the Redis client with a retry policy that survives a Redis restart or failover.

redis-py re-sends a command after a connection error; every write that matters is idempotent
(NX keys, scripts keyed by an operation id), so the re-send is safe.

Three shapes of Redis, chosen by the URL (``REDIS_URL``):

- ``redis://host:6379/0`` (or ``rediss://``, ``unix://``): one Redis, as before.
- ``redis+sentinel://[:password@]host:26379[,host2:26379…]/mymaster[/db]``: the primary that
  Sentinel names for ``mymaster``. redis-py asks the sentinels again on every new connection,
  and a connection to a primary that was demoted is dropped, so after a failover the retries
  land on the new primary. The password is the primary's (sentinels without auth).
- ``redis+cluster://[:password@]host:7000[,host2:7001…]`` (or any ``redis://`` URL with
  ``REDIS_CLUSTER=true``): a Redis Cluster, through redis-py's cluster client, which routes each
  command — and each script, by its first key — to the primary owning the slot and follows
  MOVED/ASK redirects and failovers. Every key group a script touches shares a hash tag
  (storage/keys.py), so no script is refused for CROSSSLOT.
"""

from __future__ import annotations

from typing import Any, TypeAlias
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Client: TypeAlias = Redis | RedisCluster
SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"


def _retry(retries: int) -> Retry:
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), retries)


class QuickPool(BlockingConnectionPool):
    """A blocking pool whose common case — a connection free and nobody waiting — is direct.

    Every command takes a connection from the pool and gives it back. redis-py's blocking pool
    does that under an ``asyncio.Condition``, a timeout scope, a deprecation wrapper and metrics
    hooks: 2.7 % of the app's CPU in the bench's profile (~100 round trips a session, 2 processes).
    Here a free connection is popped and pushed back directly; only when none is free, or
    someone waits for one, is the parent's path taken, so its blocking, its 5 s limit and its
    fairness are kept (a release with waiters notifies them). Between two awaits nothing else
    runs, so the direct path needs no lock.
    """

    def _quiet(self) -> bool:
        waiters = self._condition._waiters
        return not getattr(self, "_in_maintenance", False) and not waiters

    async def get_connection(
        self, command_name: object = None, *keys: object, **options: object
    ) -> AbstractConnection:
        if not (self._available_connections and self._quiet()):
            return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)  # connected, and nothing left unread
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        if (
            not self._quiet()
            or connection not in self._in_use_connections
            or connection.should_reconnect()  # type: ignore[no-untyped-call]
        ):
            await super().release(connection)  # notifies waiters; disconnects if it should
            return
        self._in_use_connections.remove(connection)  # no await from the check to here
        self._available_connections.append(connection)


def _hosts(netloc: str) -> list[tuple[str, int]]:
    """``host:port,host2:port`` (any credentials before ``@`` removed)."""
    hosts = []
    for part in netloc.rsplit("@", 1)[-1].split(","):
        host, _, port = part.rpartition(":")
        hosts.append((host.strip("[]") or "127.0.0.1", int(port)))
    return hosts


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    if "@" not in netloc:
        return None, None
    user, _, password = netloc.rsplit("@", 1)[0].partition(":")
    return unquote(user) or None, unquote(password) or None


def _common(retries: int) -> dict[str, object]:
    return {
        "decode_responses": True,
        "retry": _retry(retries),
        "health_check_interval": 5,
        "socket_connect_timeout": 0.5,  # with 2 retries an unreachable Redis fails in ~1.6 s
        "socket_timeout": 5.0,
        "socket_keepalive": True,
    }


def describe(url: str) -> str:
    """The URL without its credentials, for logs."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}" if rest else url


def connect(
    url: str, *, retries: int = 2, max_connections: int = 256, cluster: bool = False
) -> Client:
    """A pooled client that reconnects by itself and fails fast enough for a 3 s ack."""
    parts = urlsplit(url)
    if parts.scheme == SENTINEL_SCHEME:
        return _sentinel(url, retries, max_connections)
    if cluster or parts.scheme == CLUSTER_SCHEME:
        return _cluster(url, retries, max_connections)
    tcp = {} if url.startswith("unix://") else {"socket_keepalive": True}
    # A blocking pool: when every connection is busy a command waits for one (up to 5 s)
    # instead of failing at once with MaxConnectionsError.
    pool = QuickPool.from_url(
        url,
        max_connections=max_connections,
        timeout=5,
        decode_responses=True,
        retry=_retry(retries),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=5,
        socket_connect_timeout=0.5,  # with 2 retries an unreachable Redis fails in ~1.6 s
        socket_timeout=5.0,
        **tcp,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def _sentinel(url: str, retries: int, max_connections: int) -> Redis:
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a redis+sentinel:// URL names the primary: …/mymaster[/db]")
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    user, password = _credentials(parts.netloc)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        _hosts(parts.netloc),
        sentinel_kwargs={"socket_connect_timeout": 0.5, "socket_timeout": 1.0},
        **_common(retries),
    )
    client: Redis = sentinel.master_for(
        service,
        db=db,
        username=user,
        password=password,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=max_connections,
    )
    return client


class _Cluster(RedisCluster):
    """redis-py's cluster client, connected before its first command is routed.

    redis-py 8.1 works out a command's routing (asking a startup node) before it discovers the
    cluster, and the discovery closes the startup nodes' connections: commands sent at once by
    a fresh client fail with ``AttributeError: 'NoneType' object has no attribute
    'writelines'`` (tests/cluster/test_storage_on_cluster.py, 20 concurrent intakes). Discovering
    first (once; redis-py holds a lock) avoids it.
    """

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._initialize:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


def _cluster(url: str, retries: int, max_connections: int) -> RedisCluster:
    parts = urlsplit(url)
    user, password = _credentials(parts.netloc)
    return _Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in _hosts(parts.netloc)],
        username=user,
        password=password,
        max_connections=max_connections,  # per node
        retry=_retry(max(retries, 3)),
        decode_responses=True,
        health_check_interval=5,
        socket_connect_timeout=0.5,
        socket_timeout=5.0,
        socket_keepalive=True,
    )
