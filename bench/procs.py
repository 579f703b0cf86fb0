"""The processes a bench run starts: redis-server, the LLM server, Storyloop and the baseline.

Each is a real OS process, so the load generator (with the Slack emulator in its event loop)
doesn't share a loop or the GIL with what it measures. All listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.observe import BenchEmulator
from tests.e2e.processes import ROOT, AppProcess, scratch_dir

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- /proc readers -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def family(pid: int) -> list[int]:
    """``pid`` and its descendants: a Storyloop replica is a listener and a worker process."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB of a process and its descendants, summed; (0, 0) if gone."""
    rss = hwm = 0
    for member in family(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
        except OSError:
            pass
    return rss, hwm


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU time a process (and its living descendants) has used so far."""
    total = 0.0
    for member in family(pid) if descendants else [pid]:
        fields = _stat_fields(member)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class CpuMeter:
    """CPU seconds used by a set of processes between ``start()`` and ``stop()``, and by
    everything else on the machine in that time (``other``: other people's work, which the
    figures of a shared machine should be read against)."""

    def __init__(self, pids: dict[str, int], parts: dict[str, int] | None = None) -> None:
        self.pids = pids
        #: Processes also shown alone (e.g. the app's listener without its worker process);
        #: already counted in ``pids``, so not in the sum that gives ``other``.
        self.parts = parts or {}
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self._busy = 0.0

    def _cpu(self, name: str) -> float:
        if name in self.parts:
            return cpu_seconds(self.parts[name], descendants=False)
        pid = self.pids[name]
        # The bench process's own children (app, baseline, LLM server, Redis) have rows of
        # their own; every other process counts with its descendants (the app's worker).
        return cpu_seconds(pid, descendants=pid != os.getpid())

    def now(self, name: str) -> float:
        """CPU seconds ``name`` has used since ``start()``."""
        return self._cpu(name) - self.before.get(name, 0.0)

    def start(self) -> CpuMeter:
        self.before = {name: self._cpu(name) for name in [*self.pids, *self.parts]}
        self._busy = machine_busy_seconds()
        return self

    async def settle(
        self,
        name: str,
        *,
        busy: Callable[[], Awaitable[bool]] | None = None,
        quiet_s: float = 1.0,
        limit_s: float = 90.0,
    ) -> float:
        """Wait until ``busy()`` says no work is left and ``name`` used under 5 % of a core for
        ``quiet_s``: the work a session set off after its last visible step (e.g. the reference
        images after Approve) is part of its cost. Returns how long that took (≤ ``limit_s``)."""
        began = time.monotonic()
        last = self.now(name)
        while time.monotonic() - began < limit_s:
            await asyncio.sleep(quiet_s)
            used = self.now(name)
            if used - last < 0.05 * quiet_s and not (busy is not None and await busy()):
                break
            last = used
        return round(time.monotonic() - began, 1)

    def stop(self) -> dict[str, float]:
        self.used = {name: round(self.now(name), 2) for name in self.pids}
        busy = machine_busy_seconds() - self._busy
        self.used["other"] = round(max(0.0, busy - sum(self.used.values())), 2)
        self.used.update({name: round(self.now(name), 2) for name in self.parts})
        return self.used


class RssSampler:
    """Samples VmRSS of one process every ``interval`` s while running; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while True:
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid)[0])
            await asyncio.sleep(self.interval)

    async def stop(self) -> int:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.peak_kb = max(self.peak_kb, rss_kb(self.pid)[0])
        return self.peak_kb


# --- redis-server --------------------------------------------------------------------------


class BenchRedis:
    """A redis-server configured like production (docker-compose.yml): AOF with fsync every
    second, no eviction. Free port on 127.0.0.1, data in ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (bash .ci/bootstrap installs it)")
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> BenchRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)),
            *("--appendonly", "yes", "--appendfsync", "everysec", "--save", ""),
            *("--maxmemory-policy", "noeviction", "--logfile", str(self.data_dir / "redis.log")),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start; see {self.data_dir / 'redis.log'}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# --- the LLM server (FakeLLM in its own process) ---------------------------------------------


class LLMProcess:
    """``python -m bench.llm_server``: the tests' FakeLLM, paced, plus a control endpoint."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.control_port = 0
        self._http: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> LLMProcess:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.llm_server",
            cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.close()
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        parts = line.decode().split()
        if len(parts) != 3 or parts[0] != "READY":
            raise RuntimeError(f"bench.llm_server did not start: {line!r}; see {self.log_path}")
        self.port, self.control_port = int(parts[1]), int(parts[2])
        self._http = aiohttp.ClientSession(f"http://127.0.0.1:{self.control_port}")
        return self

    async def configure(self, latency: float, tps: float | None) -> None:
        assert self._http is not None
        async with self._http.post("/config", json={"latency": latency, "tps": tps}) as resp:
            resp.raise_for_status()

    async def reset(self) -> None:
        assert self._http is not None
        async with self._http.post("/reset") as resp:
            resp.raise_for_status()

    async def records(self) -> list[dict[str, Any]]:
        """One record per chat-completions request since the last reset (see llm_server)."""
        assert self._http is not None
        async with self._http.get("/stats") as resp:
            resp.raise_for_status()
            data = await resp.json()
        return list(data["records"])

    async def stats(self) -> dict[str, Any]:
        """Counts since the last reset: ``requests`` (chat), ``image_requests`` (every paid call
        the image endpoint received, faulted ones too) and ``images`` (images returned)."""
        assert self._http is not None
        async with self._http.get("/stats") as resp:
            resp.raise_for_status()
            data = await resp.json()
        return {k: v for k, v in data.items() if k != "records"}

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# --- the apps under test ---------------------------------------------------------------------


def storyloop_env(
    emu: BenchEmulator,
    llm_url: str,
    redis_url: str,
    *,
    mode: str,
    port: int = 0,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """A production environment pointed at the local servers; tunables stay at their defaults
    unless ``extra`` sets them (e.g. STORYLOOP_WORKERS)."""
    env = {
        "SLACK_BOT_TOKEN": emu.bot_token,
        "SLACK_SIGNING_SECRET": emu.signing_secret,
        "SLACK_API_URL": emu.api_url,
        "OPENAI_API_KEY": "sk-bench-key-not-real-0000",
        "OPENAI_BASE_URL": llm_url,
        "STORYLOOP_MODEL": "storyloop-test",
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "INFO",
        "STORYLOOP_DATA_DIR": scratch_dir("storyloop-bench-"),  # the image spool
        # The bench measures the app's own throughput with every session in one emulated
        # workspace; Slack's real limits (the shared rate budget) would pace that to ~50 edits a
        # minute. `--app-env STORYLOOP_SLACK_BUDGET=true` runs it paced (README: rate budget).
        "STORYLOOP_SLACK_BUDGET": "false",
    }
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = emu.app_token
    else:
        env["PORT"] = str(port or free_port())
    env.update(extra or {})
    return env


@dataclass
class Running:
    """Processes of one app under test (one per replica) and how to reach them."""

    procs: list[AppProcess]
    events_url: str | None  # HTTP mode: where the emulator delivers (first replica)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def stop(self) -> None:
        await asyncio.gather(*(p.terminate(timeout=20) for p in self.procs))


def _exited(proc: AppProcess) -> bool:
    return proc.proc is not None and proc.proc.returncode is not None


async def _wait_port(port: int, procs: list[AppProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(_exited(p) for p in procs):
            break
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return
    raise RuntimeError(f"app did not listen on :{port} within {timeout:.0f} s")


async def wait_ready(
    emu: BenchEmulator,
    procs: list[AppProcess],
    *,
    mode: str,
    port: int = 0,
    timeout: float = 60,
) -> None:
    """Socket Mode: every replica has connected; HTTP: the port accepts connections."""
    try:
        if mode == "socket":
            deadline = time.monotonic() + timeout
            while emu.open_sockets < len(procs):
                if any(_exited(p) for p in procs) or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{emu.open_sockets}/{len(procs)} Socket Mode connections after "
                        f"{timeout:.0f} s"
                    )
                await asyncio.sleep(0.05)
        else:
            await _wait_port(port, procs, timeout)
    except RuntimeError as exc:
        logs = "\n".join(p.log()[-2000:] for p in procs)
        raise RuntimeError(f"{exc}\n--- app log tail ---\n{logs}") from None


async def start_storyloop(
    emu: BenchEmulator,
    llm_url: str,
    redis_url: str,
    *,
    mode: str,
    replicas: int,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    tag: str = "storyloop",
) -> Running:
    """``replicas`` real ``python -m bot run`` processes against the emulator."""
    port = free_port() if mode == "http" else 0
    procs: list[AppProcess] = []
    for index in range(replicas):
        env = storyloop_env(emu, llm_url, redis_url, mode=mode, port=port, extra=extra_env)
        if mode == "http" and index > 0:
            env["PORT"] = str(free_port())  # HTTP replicas: the emulator delivers to the first
        procs.append(await AppProcess(env, log_dir / f"{tag}-{index}.log").start())
    await wait_ready(emu, procs, mode=mode, port=port)
    events_url = f"http://127.0.0.1:{port}/slack/events" if mode == "http" else None
    if mode == "http":
        emu.mode, emu.events_url = "http", events_url
    else:
        emu.mode = "socket"
    return Running(procs, events_url)


async def start_baseline(emu: BenchEmulator, *, mode: str, log_dir: Path) -> Running:
    port = free_port() if mode == "http" else 0
    env = {
        "SLACK_BOT_TOKEN": emu.bot_token,
        "SLACK_SIGNING_SECRET": emu.signing_secret,
        "SLACK_API_URL": emu.api_url,
    }
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = emu.app_token
    else:
        env["PORT"] = str(port)
    # The bare Bolt app, as a real process like Storyloop.
    proc = await AppProcess(env, log_dir / "baseline.log", argv=("bench.baseline",)).start()
    await wait_ready(emu, [proc], mode=mode, port=port)
    events_url = f"http://127.0.0.1:{port}/slack/events" if mode == "http" else None
    if mode == "http":
        emu.mode, emu.events_url = "http", events_url
    else:
        emu.mode = "socket"
    return Running([proc], events_url)


def describe_machine() -> dict[str, Any]:
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    redis_version = ""
    binary = shutil.which("redis-server")
    if binary:
        with contextlib.suppress(Exception):
            out = subprocess.run(
                [binary, "--version"], check=False, capture_output=True, text=True, timeout=5
            ).stdout
            redis_version = out.split("v=")[1].split()[0] if "v=" in out else out.strip()
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "app_commit": commit,
        "loadavg_at_start": load,
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "redis": redis_version,
        "platform": sys.platform,
    }


def dump_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
