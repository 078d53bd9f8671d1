"""Fixtures shared by the interop tests: real backends, the real gateway binary, its token.

`gateway` (one per test session) fronts three real backends:
  weather     Streamable HTTP  (fixtures/weather_server.py, official Python SDK)
  notes       legacy HTTP+SSE  (fixtures/notes_server.py, official Python SDK)
  everything  stdio            (@modelcontextprotocol/server-everything from npm)
Tests that break things (kill a backend, tiny body limits) get their own gateway.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import support  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("gateway")
    starters = [lambda: support.start_weather(workdir), lambda: support.start_notes(workdir), support.everything_stdio]
    with support.running_gateway(workdir, starters) as gw:
        yield gw


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """On a failure, show what every process we started said on stderr (the gateway's first)."""
    report = yield
    if report.failed:
        for proc in sorted(support.RUNNING, key=lambda p: p.name != "mcp-gateway"):
            report.sections.append((f"{proc.name} stderr (pid {proc.pid})", proc.describe()))
    return report
