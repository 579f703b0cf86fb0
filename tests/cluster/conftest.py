"""A real 3-primary Redis Cluster (one per test session), a 3+3 cluster with replicas and a
real Sentinel setup (one per test: failover tests change them).

The ``redis`` fixture here is a cluster client, so storage tests imported into this folder run
unchanged against the cluster: a script or MULTI whose keys span hash slots fails them (the
cluster client refuses it before sending, the server answers CROSSSLOT for an undeclared key).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from storage.connection import Client, connect
from tests.support.redis_topologies import RedisClusterProcs, SentinelSetup


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    cluster = RedisClusterProcs(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_with_replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcs]:
    """Per test: 3 primaries, one replica each. A failover test leaves a primary killed and
    its replica promoted, so no other test may share it."""
    cluster = RedisClusterProcs(
        tmp_path_factory.mktemp("cluster-ha"), replicas=1, node_timeout_ms=1500
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def redis(redis_cluster: RedisClusterProcs) -> AsyncIterator[Client]:
    redis_cluster.flush()
    client = connect(redis_cluster.url)
    yield client
    await client.aclose()


@pytest.fixture
def sentinel_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """Per test: a failover test leaves the setup changed (the old primary is dead)."""
    setup = SentinelSetup(tmp_path_factory.mktemp("sentinel"))
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


# The Slack emulator of the end-to-end tests (the fake LLM comes from tests/conftest.py).
from tests.e2e.conftest import emu  # noqa: E402, F401
