"""The storage integration tests, run unchanged against a 3-primary Redis Cluster (the ``redis``
fixture of this folder is a cluster client): every script, MULTI and pipeline they exercise —
intake with the eager lane and a Cancel signal, thread replies before and after the thread is
indexed, commits with the App Home indexes, leases, paid items, spending, the queue's reads,
reclaims, touches and acks — keeps its keys in one hash slot, or the cluster refuses it."""

from tests.integration.test_home_index import *  # noqa: F403
from tests.integration.test_storage import *  # noqa: F403
