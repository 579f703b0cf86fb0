"""Run a built Storyloop image against this machine's redis-server and the repository's Slack
and OpenAI emulators: ``/healthz`` and ``/readyz`` from the container, a signed ``/story`` whose
story must appear in the emulated thread, ``/metrics``, the compose file's own healthcheck run
inside the container, and ``docker stop`` (SIGTERM) ending it well within its grace period.

    docker build -t storyloop:local .
    .venv/bin/python -m tests.docker_smoke storyloop:local

A manual check, not a test pytest collects and not part of CI: it needs a docker daemon (CI has
none). The container shares the host's network so it reaches the emulators on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from tests.e2e.harness import action_ids, by_slot, free_port
from tests.emulators.openai_server import FakeLLM
from tests.emulators.slack import SlackEmulator
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
NAME = "storyloop-docker-smoke"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


async def wait_healthy(http: aiohttp.ClientSession, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"{url} never answered 200:\n{docker('logs', NAME, check=False).stdout}")


async def smoke(image: str) -> None:
    redis = RedisServer(Path(tempfile.mkdtemp(prefix="storyloop-docker-redis-")))
    redis.start()
    emu = SlackEmulator()
    await emu.start()
    llm = FakeLLM()
    await llm.start()
    port = free_port()
    env = {
        "SLACK_BOT_TOKEN": emu.bot_token,
        "SLACK_SIGNING_SECRET": emu.signing_secret,
        "SLACK_API_URL": emu.api_url,
        "OPENAI_API_KEY": "sk-test-key-not-real-0000",
        "OPENAI_BASE_URL": llm.base_url,
        "STORYLOOP_MODEL": "storyloop-test",
        "REDIS_URL": redis.url,
        "PORT": str(port),
        "LOG_FORMAT": "json",
    }
    flags = [f"--env={k}={v}" for k, v in env.items()]
    docker("run", "--detach", "--rm", "--network=host", f"--name={NAME}", *flags, image)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            await wait_healthy(http, f"{base}/healthz")
            async with http.get(f"{base}/readyz") as response:
                print("/readyz", response.status, await response.text())
                assert response.status == 200
            emu.mode = "http"
            emu.events_url = f"{base}/slack/events"
            ack = await emu.slash_command("30s eco water bottle launch")
            print(f"/story acked: {ack.ok} in {ack.seconds:.3f} s")
            assert ack.ok
            story = await emu.wait_for(
                lambda: [m for m in by_slot(emu, "story") if "story_approve" in action_ids(m)],
                timeout=30,
            )
            print("story in the thread:", story[0].text[:60])
            await asyncio.sleep(1.0)  # the job is counted once its worker acked it
            async with http.get(f"{base}/metrics") as response:
                text = await response.text()
            wanted = ("storyloop_jobs_total", "storyloop_worker_up", "storyloop_acks_total")
            shown = [line for line in text.splitlines() if line.startswith(wanted)]
            print("/metrics:", *shown, sep="\n  ")
            assert any('outcome="done",proc="worker"' in line for line in shown)
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        test = compose["services"]["app"]["healthcheck"]["test"]
        check = docker("exec", NAME, *test[1:], check=False)
        print("compose healthcheck in the container: exit", check.returncode, check.stderr[-300:])
        assert check.returncode == 0
        started = time.monotonic()
        docker("stop", "--time=30", NAME)
        print(f"docker stop (SIGTERM): {time.monotonic() - started:.1f} s")
    finally:
        docker("rm", "--force", NAME, check=False)
        await emu.stop()
        await llm.stop()
        redis.kill()


if __name__ == "__main__":
    asyncio.run(smoke(sys.argv[1] if len(sys.argv) > 1 else "storyloop:latest"))
