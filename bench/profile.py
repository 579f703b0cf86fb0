"""Sampling the app process with py-spy while the load runs (``--profile``), and summarising.

py-spy attaches from outside (``--nonblocking``: it never pauses the app), so the profile is of
the real process under the real load. Install it with ``pip install -r bench/requirements.txt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, out: Path, duration_s: float, rate: int = 100) -> None:
        self.pid = pid
        self.out = out
        self.duration_s = duration_s
        self.rate = rate
        self.proc: asyncio.subprocess.Process | None = None
        self.error: str | None = None

    async def start(self) -> Profiler:
        binary = py_spy()
        if binary is None:
            self.error = "py-spy is not installed (pip install -r bench/requirements.txt)"
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            binary,
            "record",
            "--pid",
            str(self.pid),
            "--duration",
            str(max(1, int(self.duration_s))),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--nonblocking",
            "--threads",
            "--subprocesses",  # the replica's job worker is a child process
            "-o",
            str(self.out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def finish(self, timeout: float = 60) -> dict[str, Any]:
        """Stop sampling now (py-spy writes its file on SIGINT) and summarise."""
        if self.proc is None:
            return {"error": self.error}
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
        try:
            _out, err = await asyncio.wait_for(self.proc.communicate(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            return {"error": "py-spy did not finish"}
        if not self.out.exists():
            return {"error": (err or b"").decode(errors="replace")[-300:]}
        return summarise(self.out)


def _parse(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    return m.group("func"), m.group("file")


def _package(path: str) -> str:
    parts = path.replace("\\", "/").split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    if len(parts) >= 3 and parts[0] == "usr":
        return parts[-1].removesuffix(".py")
    head = parts[0] if parts else path
    if head.endswith(".py"):
        head = head.removesuffix(".py")
    return {"python3.11": parts[1] if len(parts) > 1 else head}.get(head, head)


AREAS = (
    (
        "LLM client (openai SDK, httpx, h11, anyio)",
        {"openai", "httpx", "httpx2", "httpcore", "httpcore2", "h11", "anyio"},
    ),
    ("Slack (slack_bolt, slack_sdk, aiohttp)", {"slack_bolt", "slack_sdk", "aiohttp"}),
    ("Redis (redis-py)", {"redis"}),
    ("logging", {"logging"}),
    ("pydantic", {"pydantic", "pydantic_core"}),
)


def _area(packages: set[str]) -> str:
    """Which part of the app a stack belongs to, by the first library area it touches."""
    for name, members in AREAS:
        if packages & members:
            return name
    if packages & {"bot", "handlers", "storage"}:
        return "Storyloop code (no library below)"
    return "event loop and other"


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """Self time by function and by package, inclusive time by our own functions."""
    self_fn: Counter[str] = Counter()
    self_pkg: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    area: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    thread_area: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        parts = stack.split(";")
        thread = "all"
        if parts[0].startswith("thread ("):
            thread = parts.pop(0).partition(": ")[2] or "thread"
        by_thread[thread] += count
        frames = [_parse(f) for f in parts] or [("?", "")]
        func, file = frames[-1]
        self_fn[f"{func} ({file})"] += count
        self_pkg[_package(file)] += count
        area[_area({_package(f) for _fn, f in frames})] += count
        thread_area[f"{thread}: {_area({_package(f) for _fn, f in frames})}"] += count
        seen = set()
        for func, file in frames:
            key = f"{func} ({file})"
            if key not in seen and file.split("/")[0] in ("bot", "handlers", "storage"):
                inclusive[key] += count
                seen.add(key)
    if not total:
        return {"samples": 0}

    def pct(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(top)]

    return {
        "samples": total,
        "by_area_pct": pct(area),
        "by_thread_pct": pct(by_thread),
        "by_thread_and_area_pct": pct(thread_area),
        "self_by_package_pct": pct(self_pkg),
        "self_by_function_pct": pct(self_fn),
        "inclusive_ours_pct": pct(inclusive),
        "raw": str(raw),
    }
