"""The app as a real OS process (`python -m bot run`), for kill -9 and restart tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []


def scratch_dir(prefix: str) -> str:
    """A directory for an app's data (its image spool), removed when this process exits — a
    full test run makes hundreds, which ``mkdtemp`` left behind in /tmp."""
    directory = tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True)
    _SCRATCH.append(directory)
    return directory.name


class AppProcess:
    """A Python module run as its own process (default: the app, ``python -m bot run``)."""

    def __init__(
        self, env: dict[str, str], log_path: Path, *, argv: tuple[str, ...] = ("bot", "run")
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> AppProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            *self.argv,
            cwd=str(ROOT),
            env=env,
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
            # Its own process group: a replica is a listener and a worker process, and kill -9,
            # SIGSTOP and SIGCONT go to both, as when a host or container dies or freezes.
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def signal_group(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the whole replica (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    async def kill(self) -> None:
        """kill -9 of the whole replica: no shutdown code runs."""
        if self.proc and self.proc.returncode is None:
            self.signal_group(signal.SIGKILL)
            await self.proc.wait()
        elif self.proc is not None:
            self.signal_group(signal.SIGKILL)  # a worker process left behind

    async def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM, as a redeploy does; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                await self.kill()
        return self.proc.returncode

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
