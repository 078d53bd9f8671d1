"""The gateway talks to each backend in the revision that backend knows, and recovers when a
backend goes away and comes back.

  oldweather  Streamable HTTP that refuses 2026-07-28 (handshake era, Mcp-Session-Id)
  guessed     a bare `url` entry (as Cursor writes them) pointing at an HTTP+SSE server:
              the gateway tries Streamable HTTP first, then falls back to SSE
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

import support

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def eras_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("eras")

    def guessed() -> support.Backend:
        notes = support.start_notes(workdir, name="guessed")
        notes.config = {"url": notes.url}  # no "type": let the gateway find out
        return notes

    starters = [lambda: support.start_weather(workdir, name="oldweather", handshake_only=True), guessed]
    with support.running_gateway(workdir, starters) as gw:
        yield gw


def backend_status(gw: support.Gateway, name: str) -> dict:
    return next(b for b in gw.status()["backends"] if b["name"] == name)


def test_each_backend_is_spoken_to_in_the_revision_it_knows(eras_gateway):
    old = backend_status(eras_gateway, "oldweather")
    assert old["state"] == "up"
    assert old["protocol_version"] in HANDSHAKE_PROTOCOL_VERSIONS, old
    guessed = backend_status(eras_gateway, "guessed")
    assert guessed["state"] == "up"
    assert guessed["transport"] == "http"
    assert guessed["protocol_version"] in HANDSHAKE_PROTOCOL_VERSIONS, guessed


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_clients_of_either_era_use_backends_of_either_era(eras_gateway, mode):
    async with support.mcp_client(eras_gateway.url, eras_gateway.token, mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"oldweather__add", "oldweather__slow_count", "guessed__upper"} <= names
        added = await client.call_tool("oldweather__add", {"a": 19, "b": 23})
        assert [c.text for c in added.content] == ["42"]
        upper = await client.call_tool("guessed__upper", {"text": "sse"})
        assert [c.text for c in upper.content] == ["SSE"]
        steps: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            steps.append(progress)

        counted = await client.call_tool("oldweather__slow_count", {"n": 3}, progress_callback=on_progress)
        assert [c.text for c in counted.content] == ["counted 3"]
        assert steps == [1, 2, 3]


async def test_a_backend_that_restarts_is_used_again_without_restarting_the_gateway(tmp_path):
    """The backend's process dies and a new one starts on the same port: while it is down, calls
    fail fast with an error naming it; then its old session is gone, and the gateway connects
    again by itself."""
    weather = support.start_weather(tmp_path, name="flaky", handshake_only=True)
    port = int(weather.url.rsplit(":", 1)[1].split("/")[0])
    gw = support.Gateway(tmp_path, [weather])
    replacement: support.Backend | None = None
    try:
        gw.start()
        async with support.mcp_client(gw.url, gw.token, "auto") as client:
            first = await client.call_tool("flaky__add", {"a": 1, "b": 1})
            assert [c.text for c in first.content] == ["2"]

            weather.proc.kill()
            started = time.monotonic()
            with anyio.fail_after(10):
                with pytest.raises(MCPError) as failure:
                    await client.call_tool("flaky__add", {"a": 1, "b": 2})
            assert "flaky" in failure.value.error.message
            assert time.monotonic() - started < 10

            replacement = support.start_weather(tmp_path, name="flaky-again", handshake_only=True, port=port)
            deadline = time.monotonic() + 40
            last: object = None
            while True:
                try:
                    again = await client.call_tool("flaky__add", {"a": 2, "b": 2})
                    if [c.text for c in again.content] == ["4"]:
                        break
                    last = again
                except MCPError as error:
                    last = error
                assert time.monotonic() < deadline, f"backend never came back: {last!r}"
                await anyio.sleep(0.3)

            # A quick restart between two calls: the gateway's next request carries a session id
            # the new process never issued, gets 404, initialises again and retries, so the
            # caller sees no error at all.
            replacement.proc.kill()
            replacement.close()
            replacement = support.start_weather(tmp_path, name="flaky-third", handshake_only=True, port=port)
            third = await client.call_tool("flaky__add", {"a": 3, "b": 3})
            assert [c.text for c in third.content] == ["6"]
        assert backend_status(gw, "flaky")["state"] == "up"
    finally:
        gw.close()
        weather.close()
        if replacement is not None:
            replacement.close()
