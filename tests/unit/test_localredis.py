"""The local redis-server's unix socket must fit sockaddr_un, however deep the data folder."""

from __future__ import annotations

from pathlib import Path

from bot.localredis import MAX_SOCKET_PATH, socket_path


def test_a_short_data_folder_keeps_its_socket_inside(tmp_path: Path) -> None:
    folder = Path("/tmp/sl/redis")
    assert socket_path(folder) == folder / "redis.sock"


def test_a_deep_data_folder_gets_a_socket_path_that_fits() -> None:
    folder = Path("/tmp") / ("deep-" * 30) / "redis"
    sock = socket_path(folder)
    assert len(str(sock).encode()) <= MAX_SOCKET_PATH
    assert sock.parent.is_dir() and sock.name == "redis.sock"
    sock.parent.rmdir()
