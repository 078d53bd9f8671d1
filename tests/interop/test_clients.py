"""A user points the official MCP Python SDK client at the gateway and uses all their backends.

Every story runs in both eras the SDK speaks:
  auto    the SDK's default: probes `server/discover` and, since the gateway speaks it,
          stays in the stateless 2026-07-28 era;
  legacy  forces the `initialize` handshake era (Mcp-Session-Id).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

import support
from support import EVERYTHING_CORE_TOOLS

pytestmark = pytest.mark.anyio

ERAS = ["auto", "legacy"]


def text_of(result) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("mode", ERAS)
async def test_the_client_connects_in_the_era_it_asked_for(gateway, mode):
    async with support.mcp_client(gateway.url, gateway.token, mode) as client:
        if mode == "auto":
            assert client.protocol_version == support.MODERN_VERSION
        else:
            assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        assert client.server_capabilities.tools is not None


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_of_all_backends_are_listed_under_namespaced_names(gateway, mode):
    async with support.mcp_client(gateway.url, gateway.token, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert "gateway__status" in names
    assert {n for n in names if n.startswith("weather__")} == {"weather__add", "weather__forecast", "weather__slow_count"}
    assert {n for n in names if n.startswith("notes__")} == {"notes__echo", "notes__upper"}
    assert {f"everything__{t}" for t in EVERYTHING_CORE_TOOLS} <= names
    # nothing leaks through un-namespaced
    assert all(n.split("__", 1)[0] in {"weather", "notes", "everything", "gateway"} for n in names), sorted(names)
    assert all(len(n) <= 64 for n in names), sorted(names)


@pytest.mark.parametrize("mode", ERAS)
async def test_a_tool_of_each_backend_gives_its_real_answer(gateway, mode):
    async with support.mcp_client(gateway.url, gateway.token, mode) as client:
        added = await client.call_tool("weather__add", {"a": 2, "b": 40})
        assert not added.is_error
        assert text_of(added) == "42"
        assert added.structured_content == {"result": 42}

        forecast = await client.call_tool("weather__forecast", {"city": "Oslo"})
        assert text_of(forecast) == "Oslo: -3C, snow, wind 20 km/h"

        upper = await client.call_tool("notes__upper", {"text": "hello gateway"})
        assert not upper.is_error
        assert text_of(upper) == "HELLO GATEWAY"

        total = await client.call_tool("everything__get-sum", {"a": 2, "b": 3})
        assert not total.is_error
        assert text_of(total) == "The sum of 2 and 3 is 5."

        echoed = await client.call_tool("everything__echo", {"message": "through the gateway"})
        assert text_of(echoed) == "Echo: through the gateway"


@pytest.mark.parametrize("mode", ERAS)
async def test_resources_keep_their_uri_and_content(gateway, mode):
    async with support.mcp_client(gateway.url, gateway.token, mode) as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"weather://cities", "notes://today"} <= uris
        cities = await client.read_resource("weather://cities")
        assert [c.text for c in cities.contents] == ["Paris\nOslo\nLisbon"]
        assert str(cities.contents[0].uri) == "weather://cities"
        today = await client.read_resource("notes://today")
        assert today.contents[0].text == "buy milk; call Ada"


@pytest.mark.parametrize("mode", ERAS)
async def test_prompts_are_namespaced_and_rendered_by_their_backend(gateway, mode):
    async with support.mcp_client(gateway.url, gateway.token, mode) as client:
        names = {p.name for p in (await client.list_prompts()).prompts}
        assert {"weather__greet", "notes__summarize"} <= names
        greet = await client.get_prompt("weather__greet", {"name": "Ada"})
        assert greet.messages[0].role == "user"
        assert greet.messages[0].content.text == "Hello, Ada! Here is your weather briefing."
        summary = await client.get_prompt("notes__summarize", {"topic": "groceries"})
        assert summary.messages[0].content.text == "Summarize my notes about groceries."


@pytest.mark.parametrize("mode", ERAS)
async def test_progress_of_a_long_call_reaches_the_client_in_order(gateway, mode):
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with support.mcp_client(gateway.url, gateway.token, mode) as client:
        with anyio.fail_after(30):
            result = await client.call_tool("weather__slow_count", {"n": 5}, progress_callback=on_progress)
    assert text_of(result) == "counted 5"
    assert len(seen) >= 3, seen
    progresses = [p for p, _, _ in seen]
    assert progresses == sorted(progresses) and len(set(progresses)) == len(progresses), seen
    assert seen[-1][0] == 5 and seen[-1][1] == 5, seen
    assert seen[0][2] == "step 1 of 5", seen


@pytest.mark.parametrize("mode", ERAS)
async def test_gateway_status_tool_reports_every_backend(gateway, mode):
    async with support.mcp_client(gateway.url, gateway.token, mode) as client:
        status = await client.call_tool("gateway__status", {})
    assert not status.is_error
    shown = text_of(status) + json.dumps(status.structured_content or {})
    for name in ("weather", "notes", "everything"):
        assert name in shown, shown


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_with_a_wrong_token_cannot_connect(gateway, mode):
    # The SDK has no auth provider here, so a 401 surfaces as a generic MCPError
    # (raised inside the transport's task group, hence the exception group).
    with anyio.fail_after(30):
        with pytest.raises(BaseException) as failure:
            async with support.mcp_client(gateway.url, "wrong-" + gateway.token, mode) as client:
                await client.list_tools()
    assert any(isinstance(leaf, MCPError) for leaf in leaves(failure.value)), repr(failure.value)


# --- a backend dies --------------------------------------------------------------------------------


@pytest.fixture
def doomed_gateway(tmp_path) -> Iterator[support.Gateway]:
    """A gateway of its own (weather + notes), since this story kills the notes backend."""
    with support.running_gateway(tmp_path, [lambda: support.start_weather(tmp_path), lambda: support.start_notes(tmp_path)]) as gw:
        yield gw


@pytest.mark.parametrize("mode", ERAS)
async def test_when_the_sse_backend_dies_its_tools_fail_fast_and_the_others_keep_working(doomed_gateway, mode):
    gw = doomed_gateway
    notes = next(b for b in gw.backends if b.name == "notes")
    async with support.mcp_client(gw.url, gw.token, mode) as client:
        before = await client.call_tool("notes__upper", {"text": "alive"})
        assert text_of(before) == "ALIVE"

        notes.proc.kill(signal.SIGKILL)
        assert not notes.proc.alive()

        started = anyio.current_time()
        with anyio.fail_after(15):
            with pytest.raises(MCPError) as failure:
                await client.call_tool("notes__upper", {"text": "anyone there?"})
        assert anyio.current_time() - started < 15
        assert "notes" in failure.value.error.message, failure.value.error

        with anyio.fail_after(15):
            still = await client.call_tool("weather__add", {"a": 20, "b": 22})
        assert text_of(still) == "42"
