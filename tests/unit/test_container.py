"""The container files keep their promises (no Docker engine here, so these are static checks)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [(row.split(None, 1)[0].upper(), row.split(None, 1)[1]) for row in rows]


def test_dockerfile_runs_unprivileged_with_exec_form_cmd() -> None:
    rows = instructions()
    cmd = [arg for op, arg in rows if op == "CMD"][-1]
    assert json.loads(cmd) == ["storyloop", "run"]  # exec form: SIGTERM reaches Python
    user = [arg for op, arg in rows if op == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    env = " ".join(arg for op, arg in rows if op == "ENV")
    assert "PYTHONUNBUFFERED=1" in env
    ops = [op for op, _ in rows]
    # Dependencies are installed before the source is copied (layer caching).
    first_source_copy = next(
        i for i, (op, arg) in enumerate(rows) if op == "COPY" and "bot/" in arg
    )
    first_install = next(
        i for i, (op, arg) in enumerate(rows) if op == "RUN" and "pip install" in arg
    )
    assert first_install < first_source_copy and "ENTRYPOINT" not in ops


def test_compose_redis_persists_and_never_evicts() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    app = compose["services"]["app"]
    assert app["environment"]["REDIS_URL"].startswith("redis://redis:")
    assert "redis-data" in compose["volumes"]


def test_the_image_has_ffmpeg_for_the_video_stage() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "apt-get install -y --no-install-recommends ffmpeg" in text
    assert "rm -rf /var/lib/apt/lists/*" in text
    assert "ffmpeg" in (ROOT / ".ci" / "bootstrap").read_text()


def test_compose_prometheus_scrapes_the_default_metrics_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    config = yaml.safe_load((ROOT / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    port = Settings.model_fields["metrics_port"].default  # STORYLOOP_METRICS_PORT's default
    assert job["static_configs"][0]["targets"] == [f"app:{port}"]
