"""`storyloop console` typed into through a pseudo-terminal, as a person would use it.

The console is the real command (`python -m bot console`): it starts its own redis-server, the
terminal's Slack, the app in HTTP mode and its worker process; only the LLM (and its image
endpoint) is the fake one, reached over HTTP. The pexpect calls block, so they run on a thread
while the fake LLM serves on the test's event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest
from redis.asyncio import Redis

from tests.e2e.processes import ROOT
from tests.emulators.openai_server import FakeLLM
from tests.support.redis_server import RedisServer

PNG = b"\x89PNG\r\n\x1a\n"


def console_env(llm: FakeLLM, tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "OPENAI_", "REDIS_", "STORYLOOP_"))
    }
    env.update(
        {
            "OPENAI_BASE_URL": llm.base_url,
            "OPENAI_API_KEY": "sk-test-key-not-real-0000",
            "OPENAI_MODEL": "storyloop-test",
            "STORYLOOP_PROGRESS_INTERVAL": "0.2",
            "STORYLOOP_WORKERS": "8",
            "STORYLOOP_LLM_BACKOFF": "0.05",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": str(tmp_path),  # the console's folder (Redis, files, log) goes here
            "TERM": "dumb",
        }
    )
    return env


def spawn(llm: FakeLLM, tmp_path: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "bot", "console", *args],
        cwd=str(tmp_path),  # no .env here: the environment above is all it gets
        env=console_env(llm, tmp_path),
        encoding="utf-8",
        timeout=20,
        dimensions=(50, 140),
    )
    child.logfile_read = (tmp_path / "terminal.txt").open("w")
    return child


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (the worker, multiprocessing's helper, redis-server)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def typed(session: Callable[[], None]) -> None:
    await asyncio.to_thread(session)


@pytest.mark.timeout(150)
async def test_a_whole_session_typed_in_a_terminal(llm: FakeLLM, tmp_path: Path) -> None:
    leftovers: set[int] = set()
    saved: list[Path] = []

    def session() -> None:
        child = spawn(llm, tmp_path)
        try:
            child.expect("Start with `/story 30s", timeout=60)
            child.expect("you> ")
            child.sendline("/story 30s a launch video for an eco water bottle")
            child.expect("is writing a 30 s story")
            child.expect(r"Story v1 · target 30 s")
            child.expect(re.escape("[Approve] [Regenerate]"))

            child.sendline("make it funnier, focus on the refill")
            child.expect("Got it")  # the LLM's answer to the reply, in the thread
            child.expect("focus on the refill")

            child.sendline("regenerate")
            child.expect("→ Regenerate")
            child.expect(r"Story v2 · target 30 s")
            child.expect(re.escape("[Approve]"))

            # A modal's buttons are typed like a message's: Versions, then Restore v1.
            child.sendline("versions")
            child.expect("┌─ .*[Vv]ersions")
            child.expect(re.escape("[Restore v1]"))
            child.sendline("restore 1")
            child.expect("→ Restore v1")
            child.expect(r"Story v3 · target 30 s")
            child.sendline("close")
            child.expect(re.escape("(closed)"))

            child.sendline("approve")
            child.expect("→ Approve")
            child.expect("Story approved")
            # The images stage, against the fake image endpoint: files saved, then the review.
            child.expect(r"\[file\] 1 · \S+ .*\(\d+(\.\d)? KB\) saved to (\S+\.png)")
            saved.append(Path(child.match.group(2)))
            child.expect("Reference images v1", timeout=30)
            child.expect(re.escape("[Redo 2]"))

            leftovers.update(descendants(child.pid))
            child.sendline("quit")
            child.expect("Stopping Storyloop")
            child.expect("Bye.")
            child.expect(pexpect.EOF, timeout=40)
        finally:
            child.close(force=True)
            child.logfile_read.close()
        assert child.exitstatus == 0, (tmp_path / "terminal.txt").read_text()

    await typed(session)
    assert saved[0].read_bytes().startswith(PNG)
    assert len(llm.image_requests) >= 1
    # The worker process and redis-server it started are gone with it.
    assert len(leftovers) >= 2, leftovers
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in leftovers) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not [pid for pid in leftovers if alive(pid)]
    folder = saved[0].parent.parent
    assert not (folder / "redis").exists()  # its data went with it; files and log stay
    assert "Traceback" not in (folder / "console.log").read_text()


@pytest.mark.timeout(120)
async def test_bad_lines_get_friendly_hints_and_the_form_asks_its_fields(
    llm: FakeLLM, redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    def session() -> None:
        # A Redis named on the command line instead of the console's own.
        child = spawn(llm, tmp_path, "--redis-url", redis_server.url)
        try:
            child.expect("you> ", timeout=60)
            child.sendline("make it funnier")
            child.expect("There's no story yet: start one with `/story 30s")
            child.sendline("/stroy 30s a typo")
            child.expect("`/stroy` isn't a command here: only `/story` is")
            child.sendline("/story 30s")  # no prompt: the app's own answer, only to you
            child.expect(re.escape("storyloop (only you can see this)"))

            child.sendline("/story")  # no text at all: the New story form
            child.expect("┌─ New story")
            child.expect(r"\? What is the story about\?")
            child.sendline("")
            child.expect("This one is required.")
            child.sendline("a heist told by a cat")
            child.expect(r"\? Video length")
            child.sendline("9")
            child.expect("Pick one of: 15 s, 30 s")
            child.sendline("45")
            while child.expect([r"\? ", "→ Start"]) == 0:
                child.sendline("")  # every other field keeps what it was opened with
            child.expect("is writing a 45 s story")
            child.expect(re.escape("[Approve] [Regenerate]"), timeout=30)

            child.sendline("help")
            child.expect("Buttons on screen now: approve, regenerate")

            child.sendline("aprove")
            child.expect(re.escape("Did you mean `approve`?"))
            # Ctrl-D only once the prompt is up: one typed while readline isn't reading is
            # taken by the terminal's own line editing and lost, as it would be for a person.
            child.expect("you> ")
            child.sendeof()  # Ctrl-D leaves like quit
            child.expect("Bye.")
            child.expect(pexpect.EOF, timeout=40)
        finally:
            child.close(force=True)
            child.logfile_read.close()
        assert child.exitstatus == 0, (tmp_path / "terminal.txt").read_text()

    await typed(session)
    assert any("a heist told by a cat" in str(r) for r in llm.requests)
    assert await redis.keys("sl:t:T0CONSOLE:*")  # the session lives in the Redis it was given
