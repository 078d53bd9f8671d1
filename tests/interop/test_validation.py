"""Argument validation (issue 18, item 4): a call whose arguments break the tool's `inputSchema`
is refused by the gateway, naming each violation's JSON pointer, and never reaches the backend:
JSON-RPC -32602 on the MCP face, a tool error the model can read on the OpenAI face.

  house   fixtures/llama_house.py: `unlock(door: "front"|"back"|"garage")` and
          `lights(room, on: bool)`, each call recorded in a file before it answers
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

import support
from test_openai_loop import LoopGateway, ScriptedLLM, call, openai_section, text


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[support.Backend, Path]]:
    workdir = tmp_path_factory.mktemp("house")
    calls = workdir / "calls.jsonl"
    port = support.free_port()
    proc = support.Proc("house", [sys.executable, str(support.FIXTURES / "llama_house.py"), str(port), str(calls)], workdir)
    support.wait_for_port(proc, port)
    url = f"http://127.0.0.1:{port}/mcp"
    backend = support.Backend("house", proc, {"type": "streamable-http", "url": url, "timeout_ms": 10000}, url)
    try:
        yield backend, calls
    finally:
        proc.close()


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, house, llm) -> Iterator[LoopGateway]:
    backend, _ = house
    borrowed = support.Backend(backend.name, None, backend.config, backend.url)
    gateway = LoopGateway(tmp_path_factory.mktemp("validating"), [borrowed])
    try:
        config = json.loads(gateway.config_path.read_text())
        section = openai_section(llm)
        section["tools"] = ["house__*"]
        config["openai"] = section
        gateway.config_path.write_text(json.dumps(config, indent=2))
        gateway.start()
        yield gateway
    finally:
        gateway.close()


def recorded(calls: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def mcp_call(gw: support.Gateway, name: str, arguments: Any) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    r = httpx2.post(f"{gw.base}/mcp", headers={**gw.auth(), "Accept": "application/json, text/event-stream"},
                    json=body, timeout=30)
    assert r.status_code == 200, r.text
    return support.final_message(r)


@pytest.mark.parametrize(
    ("arguments", "pointer", "words"),
    [
        ({"door": "window"}, "/door", "expected one of"),
        ({"door": 7}, "/door", "got number"),
        ({}, "/", 'missing required property "door"'),
    ],
    ids=["enum", "type", "required"],
)
def test_an_invalid_call_is_refused_by_the_gateway_naming_the_pointer(gw, house, arguments, pointer, words) -> None:
    _, calls = house
    before = len(recorded(calls))
    message = mcp_call(gw, "house__unlock", arguments)
    error = message.get("error")
    assert error and error["code"] == -32602, message
    assert f"{pointer}: " in error["message"] and words in error["message"], error["message"]
    assert error["data"]["name"] == "house__unlock"
    assert [v["pointer"] for v in error["data"]["violations"]] == [pointer], error["data"]
    assert len(recorded(calls)) == before, "the backend saw a call the schema refuses"


def test_every_violation_is_named_at_once(gw, house) -> None:
    _, calls = house
    before = len(recorded(calls))
    error = mcp_call(gw, "house__lights", {"room": "attic", "on": "yes"})["error"]
    assert sorted(v["pointer"] for v in error["data"]["violations"]) == ["/on", "/room"], error
    assert len(recorded(calls)) == before


def test_a_valid_call_still_reaches_the_backend(gw, house) -> None:
    _, calls = house
    before = len(recorded(calls))
    message = mcp_call(gw, "house__lights", {"room": "hall", "on": True})
    assert "result" in message and not message["result"].get("isError"), message
    assert recorded(calls)[before:] == [{"tool": "lights", "arguments": {"room": "hall", "on": True}}]


def test_the_model_reads_the_violation_and_the_backend_sees_only_the_corrected_call(gw, house, llm) -> None:
    _, calls = house
    before = len(recorded(calls))
    llm.script([call("house__unlock", door="window"), call("house__unlock", door="back"), text("Done.")])
    r = httpx2.post(f"{gw.base}/v1/chat/completions", headers=gw.auth(), timeout=30,
                    json={"model": "tiny", "messages": [{"role": "user", "content": "open up"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Done."
    first_result = [m for m in llm.chats[1]["body"]["messages"] if m.get("role") == "tool"][-1]["content"]
    assert first_result.startswith("Error: invalid arguments for tool \"house__unlock\": /door:"), first_result
    assert recorded(calls)[before:] == [{"tool": "unlock", "arguments": {"door": "back"}}]
