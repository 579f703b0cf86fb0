"""A local redis-server for `storyloop run` when REDIS_URL is unset.

It persists (AOF, fsync every second) under the data folder and listens only on a unix socket,
so it can't clash with another Redis on this machine.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path


class LocalRedisError(Exception):
    pass


# A unix socket's path must fit sockaddr_un (108 bytes on Linux, with its NUL): a longer one
# makes redis-server fail to start. Deep data folders get their socket in a short temp folder.
MAX_SOCKET_PATH = 100


def socket_path(folder: Path) -> Path:
    sock = folder / "redis.sock"
    if len(str(sock).encode()) <= MAX_SOCKET_PATH:
        return sock
    # /tmp itself: TMPDIR may be as deep as the data folder. mkdtemp makes a private (0700)
    # folder there, so the shared directory is safe to use.
    tmp = "/tmp"  # noqa: S108
    short = tmp if Path(tmp).is_dir() else None
    return Path(tempfile.mkdtemp(prefix="storyloop-redis-", dir=short)) / "redis.sock"


def start_local_redis(data_dir: str) -> tuple[str, subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LocalRedisError(
            "REDIS_URL is unset and redis-server is not installed. Install it "
            "(`sudo apt-get install redis-server`) or set REDIS_URL."
        )
    folder = Path(data_dir, "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    sock = socket_path(folder)
    proc = subprocess.Popen(  # noqa: S603 - fixed arguments, binary from PATH
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--save",
            "",
            "--logfile",
            str(folder / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own session: Ctrl-C in the terminal reaches the app, which stops its worker
        # (letting jobs finish) before it stops Redis — not Redis first.
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise LocalRedisError(f"redis-server did not start; see {folder / 'redis.log'}")
        time.sleep(0.05)
    return f"unix://{sock}", proc
