"""Streamable HTTP details of the pass-through: routing headers on the way in and out, list
caching hints, the Host guard, concurrent streams in one session, and the gateway's own
`input_required` state. Raw HTTP where the SDK client hides the wire, the SDK where it can show.

  rich      the rich fixture backend (2026-07-28 capable) over Streamable HTTP, default prefix
  oldrich   the same, refusing 2026-07-28 (handshake era), prefix "old"
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest

import support

pytestmark = pytest.mark.anyio

ROUTED_ARGS = {"region": "eu west/Zürich", "count": 3}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("details")
    starters = [
        lambda: support.start_rich(workdir, name="rich"),
        lambda: support.start_rich(workdir, name="oldrich", handshake_only=True, prefix="old"),
    ]
    with support.running_gateway(workdir, starters) as gateway:
        yield gateway


def modern_call(name: str, arguments: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name, "arguments": arguments, "_meta": support.modern_meta()}
    params.update(extra or {})
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


def test_the_backend_itself_refuses_a_call_without_its_param_headers(gw: support.Gateway) -> None:
    """The premise of the next test: the SDK backend checks Mcp-Param-* on 2026-07-28 calls."""
    url = gw.backends[0].url
    headers = support.modern_headers(None, "tools/call", "routed")
    r = httpx2.post(url, headers=headers, json=modern_call("routed", ROUTED_ARGS), timeout=30)
    assert r.status_code == 400, r.text
    assert support.final_message(r)["error"]["code"] == -32020


def test_param_headers_are_checked_on_the_way_in_and_set_on_the_way_out(gw: support.Gateway) -> None:
    headers = support.modern_headers(gw.token, "tools/call", "rich__routed")
    good = {**headers, "Mcp-Param-Region": b64(ROUTED_ARGS["region"]), "Mcp-Param-Count": "3"}
    r = httpx2.post(gw.url, headers=good, json=modern_call("rich__routed", ROUTED_ARGS), timeout=30)
    assert r.status_code == 200, r.text
    result = support.final_message(r)["result"]
    # The backend checked the headers the gateway set with its own name for the tool.
    assert result["content"][0]["text"] == "3 x eu west/Zürich", result
    wrong = {**good, "Mcp-Param-Region": "us-east"}
    r = httpx2.post(gw.url, headers=wrong, json=modern_call("rich__routed", ROUTED_ARGS), timeout=30)
    assert r.status_code == 400, r.text
    error = support.final_message(r)["error"]
    assert error["code"] == -32020 and "Mcp-Param-Region" in error["message"], error
    missing = {k: v for k, v in good.items() if k != "Mcp-Param-Count"}
    r = httpx2.post(gw.url, headers=missing, json=modern_call("rich__routed", ROUTED_ARGS), timeout=30)
    assert r.status_code == 400 and "Mcp-Param-Count" in support.final_message(r)["error"]["message"]


async def test_the_sdk_client_calls_a_tool_with_param_headers_through_the_gateway(gw: support.Gateway) -> None:
    async with support.mcp_client(gw.url, gw.token, mode="auto") as client:
        result = await client.call_tool("rich__routed", ROUTED_ARGS)
    assert not result.is_error, result
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == "3 x eu west/Zürich"


def list_result(url: str, token: str | None, method: str) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"_meta": support.modern_meta()}}
    r = httpx2.post(url, headers=support.modern_headers(token, method), json=body, timeout=30)
    assert r.status_code == 200, r.text
    return support.final_message(r)["result"]


def test_list_caching_hints_follow_the_backends(gw: support.Gateway, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The gateway's ttlMs is the shortest any contributing backend allows (a handshake-era
    backend says nothing: 0), and the scope is public only when every backend says so."""
    direct_tools = list_result(gw.backends[0].url, None, "tools/list")
    direct_prompts = list_result(gw.backends[0].url, None, "prompts/list")
    assert (direct_tools["ttlMs"], direct_tools["cacheScope"]) == (60_000, "public")
    assert (direct_prompts["ttlMs"], direct_prompts["cacheScope"]) == (30_000, "private")
    mixed = list_result(gw.url, gw.token, "tools/list")
    assert mixed["resultType"] == "complete"
    assert (mixed["ttlMs"], mixed["cacheScope"]) == (0, "private"), "the handshake-era backend said nothing"
    workdir = tmp_path_factory.mktemp("details-ttl")
    with support.running_gateway(workdir, [lambda: support.start_rich(workdir, name="rich")]) as alone:
        tools = list_result(alone.url, alone.token, "tools/list")
        prompts = list_result(alone.url, alone.token, "prompts/list")
    assert (tools["ttlMs"], tools["cacheScope"]) == (60_000, "public")
    assert (prompts["ttlMs"], prompts["cacheScope"]) == (30_000, "private")


@pytest.mark.parametrize(
    ("host", "allowed"),
    [("localhost:1234", True), ("127.0.0.1:9", True), ("[::1]", True), ("evil.example:8080", False), ("nas.local", False)],
)
def test_the_host_guard(gw: support.Gateway, host: str, allowed: bool) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}
    headers = {"Authorization": f"Bearer {gw.token}", "Host": host, "Accept": "application/json, text/event-stream"}
    r = httpx2.post(gw.url, headers=headers, json=body, timeout=30)
    if allowed:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 403, r.text
        assert "allowed_origins" in r.json()["error"]["message"]


def test_two_calls_stream_at_once_in_one_session(gw: support.Gateway) -> None:
    """Several POST streams in one handshake-era session: each gets its own progress, under its own
    event ids, and its own result."""
    with httpx2.Client(timeout=30) as http:
        session = support.open_session(http, gw)
        outcomes: dict[str, tuple[list[Any], list[str], Any]] = {}

        def call(token: str, request_id: int) -> None:
            body = {
                "jsonrpc": "2.0",
                "id": request_id,
                "method": "tools/call",
                "params": {"name": "rich__progress", "arguments": {"steps": 4, "delay_ms": 150}, "_meta": {"progressToken": token}},
            }
            with httpx2.Client(timeout=30) as own, own.stream("POST", gw.url, headers=session, json=body) as r:
                events = list(support.sse_events(r.iter_lines(), deadline=time.monotonic() + 30))
            messages = [e.message() for e in events if e.message() is not None]
            progress = [m["params"]["progressToken"] for m in messages if m.get("method") == "notifications/progress"]
            outcomes[token] = (progress, [e.id or "" for e in events], messages[-1])

        threads = [threading.Thread(target=call, args=(f"t{i}", i + 1)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=40)
        assert set(outcomes) == {"t0", "t1"}
        streams = set()
        for i, token in enumerate(["t0", "t1"]):
            progress, ids, last = outcomes[token]
            assert progress == [token] * 4, outcomes
            assert last["id"] == i + 1 and last["result"]["content"][0]["text"] == "done 4 steps"
            streams |= {event_id.split("-")[0] for event_id in ids if event_id}
        assert len(streams) == 2, f"each call has its own stream of event ids: {outcomes}"


def test_a_retry_with_an_unknown_gateway_request_state_is_refused(gw: support.Gateway) -> None:
    extra = {"inputResponses": {"input": {"action": "cancel"}}, "requestState": "mcp-gateway/parked/nothing"}
    headers = support.modern_headers(gw.token, "tools/call", "old__ask_user")
    r = httpx2.post(gw.url, headers=headers, json=modern_call("old__ask_user", {}, extra), timeout=30)
    assert r.status_code == 400, r.text
    error = support.final_message(r)["error"]
    assert error["code"] == -32602 and "requestState" in error["message"], error


def test_a_2026_client_answers_a_handshake_backend_through_input_required(gw: support.Gateway) -> None:
    """The wire of the translation: the gateway answers input_required with the backend's
    elicitation inside and a requestState of its own; the retry gets the tool's result."""
    capabilities = {"elicitation": {"form": {}}}
    headers = support.modern_headers(gw.token, "tools/call", "old__ask_user")
    first = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "old__ask_user", "arguments": {}, "_meta": support.modern_meta(capabilities)}}
    r = httpx2.post(gw.url, headers=headers, json=first, timeout=30)
    assert r.status_code == 200, r.text
    interim = support.final_message(r)["result"]
    assert interim["resultType"] == "input_required", interim
    ((key, request),) = interim["inputRequests"].items()
    assert request["method"] == "elicitation/create" and request["params"]["message"] == "Who are you?"
    retry = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {
            "name": "old__ask_user",
            "arguments": {},
            "inputResponses": {key: {"action": "accept", "content": {"name": "Ada", "age": 36}}},
            "requestState": interim["requestState"],
            "_meta": support.modern_meta(capabilities),
        },
    }
    r = httpx2.post(gw.url, headers=headers, json=retry, timeout=30)
    assert r.status_code == 200, r.text
    final = support.final_message(r)
    assert final["id"] == 2
    assert final["result"]["resultType"] == "complete"
    assert final["result"]["content"][0]["text"] == "hello Ada, age 36"
    # The state is single-use.
    r = httpx2.post(gw.url, headers=headers, json=retry, timeout=30)
    assert r.status_code == 400 and support.final_message(r)["error"]["code"] == -32602


def test_an_update_before_the_get_stream_opens_is_held_for_it(gw: support.Gateway) -> None:
    """A handshake-era session that subscribed but has no GET stream open yet gets the update
    when it opens one, without the id of the gateway's own listen request at the backend.
    (`rich` keeps the URI; `oldrich`'s copy of it is not offered.)"""
    uri = "rich://counter"
    with httpx2.Client(timeout=30) as http:
        session = support.open_session(http, gw)
        subscribe = http.post(gw.url, headers=session, json={"jsonrpc": "2.0", "id": 1, "method": "resources/subscribe", "params": {"uri": uri}})
        assert support.final_message(subscribe) == {"jsonrpc": "2.0", "id": 1, "result": {}}
        touch = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "rich__touch", "arguments": {"uri": uri}}}
        assert "result" in support.final_message(http.post(gw.url, headers=session, json=touch))
        # Only the gateway's own copy can be on its way now; give it a moment to arrive.
        time.sleep(0.5)
        get = {**session, "Accept": "text/event-stream"}
        with http.stream("GET", gw.url, headers=get) as stream:
            events = support.sse_events(stream.iter_lines(), deadline=time.monotonic() + 10)
            first = next(m for m in (e.message() for e in events) if m is not None)
        assert first == {"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}}
        http.delete(gw.url, headers=session)


def test_a_result_reaches_the_client_as_the_backend_wrote_it(tmp_path: Path) -> None:
    """A Streamable HTTP backend's result is passed on as its text: numbers keep their spelling
    (`2e3`, `-0.0`), escapes stay escapes, members keep their order. Only top-level members of
    the other revision are added (for a 2026-07-28 client, `resultType`) or taken away; a value
    built and written again would say `2000.0` and `café`."""
    sys.path.insert(0, str(support.FIXTURES))
    from fault_http import VERBATIM_RESULT

    members = list(json.loads(VERBATIM_RESULT))
    with support.running_gateway(tmp_path, [lambda: support.start_fault_http(tmp_path, "verbatim", "verbatim")]) as gw, httpx2.Client(timeout=30) as http:
        session = support.open_session(http, gw)
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "verbatim__verbatim", "arguments": {}}}
        old = http.post(gw.url, headers=session, json=call)
        assert old.status_code == 200, old.text
        assert old.text == '{"jsonrpc":"2.0","id":7,"result":' + VERBATIM_RESULT + "}"

        modern = {**call, "params": {**call["params"], "_meta": support.modern_meta()}}
        new = http.post(gw.url, headers=support.modern_headers(gw.token, "tools/call", "verbatim__verbatim"), json=modern)
        assert new.status_code == 200, new.text
        assert '"n":[1.0, 2e3, -0.0]' in new.text, new.text
        assert '"text": "caf\\u00e9"' in new.text, new.text
        assert list(new.json()["result"]) == [*members, "resultType"]
        assert new.json()["result"]["resultType"] == "complete"

