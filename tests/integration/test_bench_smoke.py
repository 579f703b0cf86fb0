"""The benchmark's CI smoke: ``python -m bench.run --quick`` runs and prints its figures.

Benchmarks are not timed tests: nothing here judges a latency or a target. It checks that the
whole suite still runs against the real app (every phase, Storyloop and the baseline), that
both apps completed every session, and that the report and the JSON carry the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_quick_bench_runs_and_prints_figures(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "OPENAI_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    printed = proc.stdout
    for heading in (
        "### Ack latency",
        "| burst | Socket Mode | 5 |",
        "### Trigger → first visible Slack change",
        "### Slack Web API per session",
        "### Redis",
        "### App memory",
        "### LLM prompt tokens per regeneration",
        "### Scale-out",
        "### Stages: story → reference images → storyboard → video",
        "### Targets",
    ):
        assert heading in printed, f"missing {heading!r} in:\n{printed[-3000:]}"

    results = json.loads(out.read_text())
    for phase in ("latency", "latency_burst", "redis", "tokens", "rss", "scaleout", "stages"):
        assert "error" not in results[phase], results[phase]
    # Both start shapes: spread over the ramp, and every session in one instant.
    for shape in ("latency", "latency_burst"):
        run = results[shape]["socket"]["5"]
        for app in ("storyloop", "baseline"):
            assert run[app]["completed"] == 5, (shape, app, run[app]["lost"])
            assert run[app]["acks"]["all"]["n"] > 0
            assert run[app]["acks"]["all"]["failed"] == 0
            assert run[app]["api"]["per_session"], (shape, app)
        assert run["storyloop"]["duplicates"]["count"] == 0
    redis = results["redis"]
    assert redis["completed"] == redis["sessions"] >= 1
    assert redis["bytes"]["bytes_per_session"] > 0
    assert all(x["round_trips"] >= 0 for x in redis["intake"].values())
    assert len(results["tokens"]["model"]) == 100
    assert results["tokens"]["measured_completed"]
    assert results["rss"]["active_sessions"] == results["rss"]["sessions"]
    scale = results["scaleout"][0]
    assert scale["completed_total"] > 0 and scale["duplicates"]["count"] == 0
    assert {t["status"] for t in results["targets"]} <= {"PASS", "MISS", "n/a"}
    stages = results["stages"]
    assert stages["completed"] == stages["sessions"] == 1, stages["errors"]
    # One paid call per image the user asked for: 4 (v1) + 1 (Redo) + 4 (Regenerate).
    assert stages["image_calls_per_session"] == stages["images_requested_per_session"] == 9
    assert stages["cost_usd_per_session"] > 0
    assert 0 < stages["redis_bytes_per_session"] <= stages["redis_bytes_bound"]
    assert stages["video_calls_per_session"] >= 2 and stages["speech_calls_per_session"] == 1
    assert stages["cost_usd_per_video"] > 0
