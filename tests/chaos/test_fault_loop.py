"""The seeded fault loop (``tests/chaos/fault_loop.py``) as tests.

CI runs a short loop with a fixed seed: two replicas, 25 triggers, every kind of fault
(including SIGSTOP during Slack 429 back-offs, which found the stale-worker bugs e2/e3 in
test_guarantees.py, now fixed), then the checker — nothing lost, nothing duplicated.

On a Redis Cluster (3 primaries, one replica each) CI runs a shorter loop, seed 29, 20 triggers:
every fault kind of the cluster loop, ``primary_kill`` twice (a primary's writes held until its
replica has them, SIGKILL, the replica promoted, the node restarted as a replica).

The full loop — 60 triggers — is the documented command
(``python -m tests.chaos.fault_loop --seed N --triggers 60 --replicas 2``) and runs here with
``STORYLOOP_FULL_CHAOS=1`` (seed from ``STORYLOOP_CHAOS_SEED``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.fault_loop import CLUSTER_FAULT_WEIGHTS, FAULT_WEIGHTS, LoopConfig, run_loop

CI_SEED = 101
CLUSTER_SEED = 29
FULL = bool(os.environ.get("STORYLOOP_FULL_CHAOS"))


@pytest.mark.timeout(240)
async def test_fault_loop_with_a_fixed_seed_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    result = await run_loop(
        LoopConfig(
            seed=CI_SEED,
            triggers=25,
            replicas=2,
            workdir=tmp_path,
            quiesce_timeout=90,
            avoid_pinned_bugs=False,
            verbose=False,
        )
    )
    print(result.summary())
    if not result.ok:
        print(result.report.render())
    assert result.quiescent, result.report.render()
    result.report.assert_ok()
    faults = result.report.trace.faults_by_kind()
    assert len(result.report.trace.triggers) >= 20
    assert sum(faults.values()) >= 8, faults
    assert len(faults) >= len(FAULT_WEIGHTS) - 1, faults  # (a late SIGSTOP may be dropped)


@pytest.mark.slow
@pytest.mark.skipif(not FULL, reason="full chaos loop: STORYLOOP_FULL_CHAOS=1")
@pytest.mark.timeout(900)
async def test_full_fault_loop(tmp_path: Path) -> None:
    seed = int(os.environ.get("STORYLOOP_CHAOS_SEED", "7"))
    result = await run_loop(
        LoopConfig(seed=seed, triggers=60, replicas=2, workdir=tmp_path, verbose=False)
    )
    print(result.summary())
    if not result.ok:
        print(result.report.render())
    assert result.quiescent, result.report.render()
    result.report.assert_ok()


@pytest.mark.timeout(240)
async def test_fault_loop_on_a_cluster_with_primaries_killed(tmp_path: Path) -> None:
    result = await run_loop(
        LoopConfig(
            seed=CLUSTER_SEED,
            triggers=20,
            replicas=2,
            topology="cluster",
            workdir=tmp_path,
            quiesce_timeout=90,
            verbose=False,
        )
    )
    print(result.summary())
    if not result.ok:
        print(result.report.render())
    assert result.quiescent, result.report.render()
    result.report.assert_ok()
    faults = result.report.trace.faults_by_kind()
    assert faults.get("primary_kill", 0) >= 2, faults  # the seed plans two
    assert "redis_kill" not in faults and "proxy_reset" not in faults, faults
    assert len(faults) >= len(CLUSTER_FAULT_WEIGHTS) - 1, faults  # (a late SIGSTOP may be dropped)
    recoveries = [r.kind for r in result.report.trace.recoveries]
    assert recoveries.count("failover") == faults["primary_kill"], recoveries  # each promoted
    assert recoveries.count("rejoin") >= faults["primary_kill"], recoveries  # and back in
    assert len(result.report.trace.triggers) >= 16
