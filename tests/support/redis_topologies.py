"""Real Redis Cluster and Sentinel setups started from the machine's redis-server.

- ``RedisClusterProcs``: 3 primaries (``--cluster-enabled yes``) joined with ``redis-cli --cluster
  create``: slots split evenly, so the 12 workspace shards (storage/keys.py) sit 4 on each
  primary. ``replicas=1`` adds one replica per primary (``--cluster-replicas 1``, 6 nodes), with
  a short ``cluster-node-timeout`` so a killed primary is replaced within a few seconds; the
  killed node can be restarted from its folder and rejoins as a replica of its successor.
- ``SentinelSetup``: 1 primary, 1 replica, 3 sentinels (quorum 2) with a short
  ``down-after-milliseconds``, so a killed primary is replaced within a few seconds.

Each process gets a free port and its own folder; ``stop()`` ends only what was started here.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from redis import Redis as SyncRedis
from redis.exceptions import RedisError

from tests.support.redis_server import free_port


def _cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too. Both below Linux's ephemeral
    range (32768 and up): there, any test's outgoing connection can take the bus port between
    this check and redis-server's bind ("Address already in use", seen in CI)."""
    while True:
        port = random.randint(10000, 22000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (the test command installs it)")
    return path


def _ask(port: int, command: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
        conn.sendall(command)
        return conn.recv(4096)


class _Proc:
    def __init__(self, folder: Path, args: list[str], port: int) -> None:
        self.folder = folder
        self.port = port
        self.args = args
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [_binary("redis-server"), *self.args, "--logfile", str(self.folder / "redis.log")],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def restart(self) -> None:
        """Start again from the same folder (AOF, and nodes.conf for a cluster node)."""
        if self.alive:
            raise RuntimeError(f"redis-server on {self.port} is still running")
        self.proc = self._spawn()
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if _ask(self.port, b"PING\r\n").startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.folder / 'redis.log'}")
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on {self.port} did not answer PING")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _server_args(port: int, appendfsync: str = "always") -> list[str]:
    return [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
    ]


class RedisClusterProcs:
    """A real Redis Cluster of ``primaries`` primaries, each with ``replicas`` replicas.

    With replicas the node timeout is short (``node_timeout_ms``) and a replica may always
    fail over (``cluster-replica-validity-factor 0``: on a busy 2-core machine a replica's link
    can look stale for a moment, and a replica that refuses to stand leaves the slots down).
    ``appendfsync="everysec"`` is production's setting (docker-compose.yml), for the bench.
    """

    def __init__(
        self,
        folder: Path,
        primaries: int = 3,
        *,
        replicas: int = 0,
        node_timeout_ms: int = 2000,
        appendfsync: str = "always",
    ) -> None:
        self.folder = folder
        self.replicas = replicas
        extra = ["--cluster-replica-validity-factor", "0"] if replicas else []
        self.nodes = [
            _Proc(
                folder / f"node{i}",
                [
                    *_server_args(port, appendfsync),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    *extra,
                ],
                port,
            )
            for i, port in enumerate(_cluster_port() for _ in range(primaries * (1 + replicas)))
        ]

    @property
    def url(self) -> str:
        """Every node as a startup node: the client finds the cluster whichever node is down."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [n.proc.pid for n in self.nodes if n.alive]

    def start(self) -> None:
        for node in self.nodes:
            node.wait_ready()
        subprocess.run(
            [
                _binary("redis-cli"),
                "--cluster",
                "create",
                *[f"127.0.0.1:{n.port}" for n in self.nodes],
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        self.wait_ok(timeout=30)
        if self.replicas:
            self.wait_synced(timeout=30)

    # --- topology ---------------------------------------------------------------------------

    def _live(self) -> list[_Proc]:
        return [n for n in self.nodes if n.alive]

    def node(self, port: int) -> _Proc:
        return next(n for n in self.nodes if n.port == port)

    def _info(self, node: _Proc, section: str) -> dict[str, object]:
        with SyncRedis(port=node.port, socket_timeout=2) as conn:
            info: dict[str, object] = conn.info(section)
        return info

    def roles(self) -> dict[int, str]:
        """Port → ``master`` or ``slave``, as each live node sees itself."""
        return {n.port: str(self._info(n, "replication")["role"]) for n in self._live()}

    def primaries(self) -> list[_Proc]:
        return [self.node(port) for port, role in self.roles().items() if role == "master"]

    def primary_for(self, key: str) -> _Proc:
        """The live node that owns ``key``'s slot now (asked of any live node)."""
        node = self._live()[0]
        with SyncRedis(port=node.port, socket_timeout=2) as conn:
            slot = int(conn.execute_command("CLUSTER KEYSLOT", key))
            for start, end, owner, *_ in conn.execute_command("CLUSTER SLOTS"):
                if int(start) <= slot <= int(end):
                    return self.node(int(owner[1]))
        raise RuntimeError(f"no node owns slot {slot}")

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says ``cluster_state:ok`` and they agree on the primaries."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                live = self._live()
                if all(b"cluster_state:ok" in _ask(n.port, b"CLUSTER INFO\r\n") for n in live):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok")

    def replication_lag(self, primaries: list[_Proc] | None = None) -> int:
        """Bytes of the replication stream not yet acknowledged by a replica, summed over the
        primaries (all by default) and their replicas (0: every replica has everything its
        primary wrote; -1: a replica is missing)."""
        lag = 0
        for primary in self.primaries() if primaries is None else primaries:
            info = self._info(primary, "replication")
            offset = int(str(info["master_repl_offset"]))
            replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if len(replicas) < self.replicas:
                return -1  # a replica is missing (still joining): not in sync
            lag += sum(offset - int(r["offset"]) for r in replicas)
        return lag

    def wait_synced(self, timeout: float = 30, primaries: list[_Proc] | None = None) -> None:
        """Until every primary has its replicas online and at its replication offset.

        Replication is asynchronous: a write a primary acknowledged is on its replica only once
        the replica's offset has reached it. Killing a primary before that can lose the write.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.replication_lag(primaries) == 0:
                    return
            except (OSError, ConnectionError, RedisError):
                pass
            time.sleep(0.05)
        raise RuntimeError("the replicas did not catch up with their primaries")

    def kill(self, node: _Proc) -> None:
        """SIGKILL: no goodbye to the cluster; the others notice after the node timeout."""
        node.kill()

    def owners(self) -> set[int]:
        """Ports of the nodes that own slots, as a live node sees the cluster now."""
        node = self._live()[0]
        with SyncRedis(port=node.port, socket_timeout=2) as conn:
            return {int(row[2][1]) for row in conn.execute_command("CLUSTER SLOTS")}

    def wait_failover(self, dead: _Proc, key: str | None = None, timeout: float = 30) -> _Proc:
        """Until the dead primary owns no slot (its replica, promoted, owns them) and the
        cluster is ok again; returns the node that owns ``key``'s slot (any primary if None)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if dead.port not in self.owners():
                    self.wait_ok(timeout=max(1.0, deadline - time.monotonic()))
                    return self.primary_for(key) if key else self.primaries()[0]
            except (OSError, ConnectionError, RedisError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"no replica took over from the primary on {dead.port}")

    def pause_writes_and_sync(self, node: _Proc, pause_ms: int = 10_000) -> None:
        """Hold every write on ``node`` (CLIENT PAUSE … WRITE: clients wait, nothing is
        acknowledged) and wait until its replicas have all it acknowledged before.

        This is the precondition under which a failover loses nothing: a primary killed right
        after this had no acknowledged write its replica lacks. The paused clients see their
        connection die with the node and retry on the promoted replica.
        """
        with SyncRedis(port=node.port, socket_timeout=2) as conn:
            conn.execute_command("CLIENT PAUSE", pause_ms, "WRITE")
        self.wait_synced(timeout=pause_ms / 1000, primaries=[node])

    def rejoin(self, node: _Proc, timeout: float = 30) -> None:
        """Restart a killed node from its folder: it finds it was failed over and follows its
        successor as a replica; returns once it is in sync."""
        node.restart()
        self.wait_ok(timeout=timeout)
        self.wait_synced(timeout=timeout)

    def flush(self) -> None:
        for node in self.primaries():
            _ask(node.port, b"FLUSHALL\r\n")
        if self.replicas:
            self.wait_synced()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelSetup:
    SERVICE = "mymaster"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.primary_port, self.replica_port = free_port(), free_port()
        self.primary = _Proc(folder / "primary", _server_args(self.primary_port), self.primary_port)
        self.replica = _Proc(
            folder / "replica",
            [*_server_args(self.replica_port), "--replicaof", "127.0.0.1", str(self.primary_port)],
            self.replica_port,
        )
        self.sentinels: list[_Proc] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def start(self) -> None:
        self.primary.wait_ready()
        self.replica.wait_ready()
        for i in range(3):
            port = free_port()
            folder = self.folder / f"sentinel{i}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary_port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 5000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
            )
            self.sentinels.append(_Proc(folder, [str(conf), "--sentinel"], port))
        for s in self.sentinels:
            s.wait_ready()
        self.wait_replicated()
        self.wait_sentinels_know_everyone()

    def wait_sentinels_know_everyone(self) -> None:
        """Until every sentinel has found the replica and the two other sentinels.

        Sentinels learn of replicas from the primary's INFO and of each other from hello
        messages every two seconds; a primary killed before then has no one to elect and no
        one to promote, so a failover test on a busy machine would wait for nothing.
        """
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = 0
            for s in self.sentinels:
                with SyncRedis(port=s.port, socket_timeout=1) as conn:
                    master = conn.sentinel_master(self.SERVICE)
                if master["num-slaves"] >= 1 and master["num-other-sentinels"] >= 2:
                    ready += 1
            if ready == len(self.sentinels):
                return
            time.sleep(0.2)
        raise RuntimeError("the sentinels never found the replica and each other")

    def wait_replicated(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if b"master_link_status:up" in _ask(self.replica_port, b"INFO replication\r\n"):
                return
            time.sleep(0.1)
        raise RuntimeError("the replica never caught up with the primary")

    def primary_port_now(self) -> int:
        """The port the sentinels name as primary now."""
        reply = _ask(
            self.sentinels[0].port,
            f"SENTINEL get-master-addr-by-name {self.SERVICE}\r\n".encode(),
        )
        return int(reply.split(b"\r\n")[4])

    def flush(self) -> None:
        _ask(self.primary_port_now(), b"FLUSHALL\r\n")

    def stop(self) -> None:
        for proc in [*self.sentinels, self.replica, self.primary]:
            proc.stop()
