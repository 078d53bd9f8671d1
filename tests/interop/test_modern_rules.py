"""The 2026-07-28 rules a conformant server keeps, kept through the gateway (issue 17, item 1):
the same version list in `server/discover` and in a -32022 error, a -32021 error as HTTP 400
with its capabilities as an object, removed and unknown methods as HTTP 404 / -32601 with the
request's own id, list changes on `subscriptions/listen` soon after a tool call changed a list,
and a priming event at the start of every handshake-era SSE answer.

  rich       the rich fixture backend (2026-07-28 capable), Streamable HTTP, default prefix
  changing   fixtures/changing_server.py, whose `toggle_tool` changes its tool list
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import sys

import httpx2
import pytest

import support


def start_changing(workdir) -> support.Backend:
    port = support.free_port()
    proc = support.Proc("changing", [sys.executable, str(support.FIXTURES / "changing_server.py"), str(port)], workdir)
    support.wait_for_port(proc, port)
    url = f"http://127.0.0.1:{port}/mcp"
    return support.Backend("changing", proc, {"type": "streamable-http", "url": url, "timeout_ms": 10000}, url)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("modern-rules")
    starters = [lambda: support.start_rich(workdir, name="rich"), lambda: start_changing(workdir)]
    with support.running_gateway(workdir, starters) as gateway:
        yield gateway


def modern_post(gw: support.Gateway, method: str, params: dict[str, Any] | None = None, request_id: Any = 11,
                name: str | None = None, version: str = support.MODERN_VERSION,
                capabilities: dict[str, Any] | None = None) -> httpx2.Response:
    meta = support.modern_meta(capabilities)
    meta["io.modelcontextprotocol/protocolVersion"] = version
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**(params or {}), "_meta": meta}}
    headers = support.modern_headers(gw.token, method, name)
    headers["MCP-Protocol-Version"] = version
    return httpx2.post(f"{gw.base}/mcp", headers=headers, json=body, timeout=30)


def test_discover_and_an_unsupported_version_error_name_the_same_versions(gw: support.Gateway) -> None:
    discover = modern_post(gw, "server/discover")
    assert discover.status_code == 200, discover.text
    supported = support.final_message(discover)["result"]["supportedVersions"]
    refused = modern_post(gw, "tools/list", version="2099-01-01")
    assert refused.status_code == 400, refused.text
    error = support.final_message(refused)["error"]
    assert error["code"] == -32022, error
    assert error["data"]["supported"] == supported == [support.MODERN_VERSION], (error, supported)
    assert error["data"]["requested"] == "2099-01-01", error


def test_a_missing_client_capability_is_http_400_with_the_capability_as_an_object(gw: support.Gateway) -> None:
    """The backend needs sampling from a client that declared none: -32021 comes back as 400."""
    answer = modern_post(gw, "tools/call", {"name": "rich__ask_model", "arguments": {"question": "2+2?"}},
                         name="rich__ask_model", request_id="ask-1")
    assert answer.status_code == 400, answer.text
    message = support.final_message(answer)
    assert message["id"] == "ask-1", message
    assert message["error"]["code"] == -32021, message
    assert message["error"]["data"]["requiredCapabilities"] == {"sampling": {}}, message


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "resources/subscribe",
                                    "resources/unsubscribe", "no/such/method"])
def test_a_method_the_revision_does_not_have_is_404_method_not_found_with_its_own_id(gw: support.Gateway, method: str) -> None:
    params = {"uri": "rich://counter"} if "subscribe" in method else {"level": "info"} if method == "logging/setLevel" else {}
    if method == "initialize":
        params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}
    answer = modern_post(gw, method, params, request_id=f"id-{method}")
    assert answer.status_code == 404, answer.text
    message = support.final_message(answer)
    assert message["id"] == f"id-{method}", message
    assert message["error"]["code"] == -32601, message


def test_the_handshake_era_keeps_its_methods(gw: support.Gateway) -> None:
    """Without the envelope, ping and initialize are what they always were."""
    ping = httpx2.post(f"{gw.base}/mcp", headers={**gw.auth(), "Accept": "application/json, text/event-stream"},
                       json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=30)
    assert ping.status_code == 200 and support.final_message(ping)["result"] == {}, ping.text


@pytest.mark.parametrize("tool", ["toggle_tool", "flicker_tool"], ids=["changed", "changed-back"])
def test_a_listen_stream_hears_a_tool_list_change_caused_by_another_request(gw: support.Gateway, tool: str) -> None:
    """The conformance suite waits 1.5 s; a list change must reach open listen streams well within,
    also when the list reads back the same (the backend said it changed: it is believed)."""
    heard: list[tuple[float, dict[str, Any]]] = []
    opened = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        headers = support.modern_headers(gw.token, "subscriptions/listen")
        body = {"jsonrpc": "2.0", "id": "listen-1", "method": "subscriptions/listen",
                "params": {"notifications": {"toolsListChanged": True, "promptsListChanged": True},
                           "_meta": support.modern_meta()}}
        with httpx2.stream("POST", f"{gw.base}/mcp", headers=headers, json=body, timeout=20) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data:") and line[5:].strip():
                    message = json.loads(line[5:])
                    if message.get("method") == "notifications/subscriptions/acknowledged" or "result" in message:
                        opened.set()
                    heard.append((time.monotonic(), message))
                    opened.set()
                if stop.is_set() or any(m.get("method") == "notifications/tools/list_changed" for _, m in heard):
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(10), "the listen stream did not open"
    time.sleep(0.2)
    changed_at = time.monotonic()
    answer = modern_post(gw, "tools/call", {"name": f"changing__{tool}", "arguments": {}},
                         name=f"changing__{tool}")
    assert answer.status_code == 200, answer.text
    listener.join(timeout=5)
    stop.set()
    notes = [(t, m) for t, m in heard if m.get("method") == "notifications/tools/list_changed"]
    assert notes, f"no tools/list_changed within 5 s: {[m for _, m in heard]}"
    delay = notes[0][0] - changed_at
    print(f"\ntools/list_changed reached the listen stream {delay * 1000:.0f} ms after the call began")
    assert delay < 1.5, delay


def test_a_handshake_sse_answer_starts_with_a_priming_event(gw: support.Gateway) -> None:
    with httpx2.Client(timeout=30) as http:
        init = http.post(f"{gw.base}/mcp", headers={**gw.auth(), "Accept": "application/json, text/event-stream"},
                         json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                             "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        session = init.headers["mcp-session-id"]
        headers = {**gw.auth(), "Accept": "application/json, text/event-stream", "Mcp-Session-Id": session,
                   "MCP-Protocol-Version": "2025-11-25"}
        http.post(f"{gw.base}/mcp", headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "rich__progress", "arguments": {"steps": 2, "delay_ms": 10}, "_meta": {"progressToken": "p"}}}
        with http.stream("POST", f"{gw.base}/mcp", headers=headers, json=call) as r:
            assert r.headers["content-type"].startswith("text/event-stream"), r.headers
            raw = r.read().decode()
    first = raw.split("\n\n")[0]
    fields = dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "") for line in first.splitlines())
    assert "id" in fields and fields.get("data", "") == "", f"first event is not a priming event: {first!r}"
    assert "retry" in fields, first
