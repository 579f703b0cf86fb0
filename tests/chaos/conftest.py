"""Fault-test fixtures: the e2e emulators (imported, not redefined) and replica cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.chaos.checker import Trace
from tests.chaos.support import Replicas
from tests.e2e.conftest import emu
from tests.emulators.slack import SlackEmulator

__all__ = ["emu"]  # the fake LLM comes from tests/conftest.py


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Replicas]:
    made = Replicas(tmp_path)
    yield made
    await made.cleanup()


@pytest.fixture
def trace(emu: SlackEmulator) -> Trace:
    return Trace(emu)
