"""The backends themselves, without the gateway: if these fail, the peers are broken, not mcp-gateway.

A user's backends answer the official SDK client directly; the gateway tests below rely on
exactly these names and values.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters

import support

pytestmark = pytest.mark.anyio
EVERYTHING_CORE_TOOLS = support.EVERYTHING_CORE_TOOLS


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, support.Backend]]:
    workdir: Path = tmp_path_factory.mktemp("peers")
    started: list[support.Backend] = []
    try:
        started.append(support.start_weather(workdir))
        started.append(support.start_notes(workdir))
        yield {b.name: b for b in started}
    finally:
        for b in started:
            b.close()


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_weather_answers_the_sdk_client_in_both_eras(peers, mode):
    async with Client(peers["weather"].url, mode=mode, read_timeout_seconds=30) as client:
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"add", "forecast", "slow_count"}
        added = await client.call_tool("add", {"a": 2, "b": 40})
        assert added.content[0].text == "42"
        assert added.structured_content == {"result": 42}
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        counted = await client.call_tool("slow_count", {"n": 3}, progress_callback=on_progress)
        assert counted.content[0].text == "counted 3"
        assert [p for p, _, _ in seen] == [1, 2, 3]
        cities = await client.read_resource("weather://cities")
        assert cities.contents[0].text == "Paris\nOslo\nLisbon"
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert prompt.messages[0].content.text == "Hello, Ada! Here is your weather briefing."


async def test_notes_answers_over_legacy_sse(peers):
    async with Client(sse_client(peers["notes"].url), read_timeout_seconds=30) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"echo", "upper"}
        upper = await client.call_tool("upper", {"text": "hello"})
        assert upper.content[0].text == "HELLO"
        assert [r.uri for r in (await client.list_resources()).resources] == ["notes://today"]
        assert [p.name for p in (await client.list_prompts()).prompts] == ["summarize"]


async def test_everything_answers_over_stdio():
    conf = support.everything_stdio().config
    params = StdioServerParameters(command=conf["command"], args=conf["args"], cwd=conf["cwd"])
    async with Client(params, read_timeout_seconds=30) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert EVERYTHING_CORE_TOOLS <= names
        total = await client.call_tool("get-sum", {"a": 2, "b": 3})
        assert total.content[0].text == "The sum of 2 and 3 is 5."
        echoed = await client.call_tool("echo", {"message": "hi"})
        assert echoed.content[0].text == "Echo: hi"
