"""Tool search and the small `search` tool view (issue 22), on the seed's real catalog.

The household is the seed's ten real servers (231 tools, ~160 KB of definitions), each served as
listed by fixtures/seed_backend.py over stdio, which records every call it gets. A token created
with `--tool-view search` lists only `gateway__search_tools`, `gateway__call_tool` and the tools
pinned by `tool_search.pinned` (here HassTurnOn/HassTurnOff); a call through `gateway__call_tool`
takes the same policy path as a direct call (access rule, argument validation, confirmation of a
`confirm` tool, audit under the inner tool's name). On the OpenAI face, `openai.tool_view: "auto"` with a small budget offers the
meta-tools, the pinned tools and the best tools for the user's last message; with a big budget it
offers every tool.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import mcp_types as types
from mcp.shared.exceptions import MCPError

import support
from test_openai_loop import LoopGateway, ScriptedLLM, call, openai_section, text, tool_names

SEARCH = "gateway__search_tools"
CALL = "gateway__call_tool"
SEED = support.FIXTURES / "seed_tools"
SERVERS = ["homeassistant", "ha_blade", "ha_fastmcp", "ha_rest", "ha_clr",
           "truenas_ws", "truenas", "erpnext", "frappe", "erpnext_agent"]
PINNED = ["homeassistant__HassTurnO*"]
PINNED_TOOLS = {"homeassistant__HassTurnOn", "homeassistant__HassTurnOff"}
ALL_TOOLS = {t["name"] for t in json.loads((SEED / "tools.json").read_text())}  # with gateway__status
SMALL_BUDGET = 1500  # tokens, as JSON bytes / 4
ACCESS_DENIED = -32023
INVALID_PARAMS = -32602
CONFIRMED = "HassMediaNext"  # homeassistant's `confirm`: the user is asked before it runs
ERAS = ["auto", "legacy"]  # 2026-07-28 (server/discover) and the 2025-11-25 handshake

pytestmark = pytest.mark.anyio


def seed_backend(server: str, calls: Path) -> support.Backend:
    config = {"command": sys.executable, "args": [str(support.FIXTURES / "seed_backend.py"), server, str(calls)],
              "cwd": str(support.FIXTURES), "timeout_ms": 20000}
    if server == "homeassistant":
        config["confirm"] = [CONFIRMED]
    return support.Backend(server, None, config)


class Seed(LoopGateway):
    """The gateway in front of the seed servers, and the file their calls are recorded in."""

    calls: Path

    def recorded(self) -> list[dict[str, Any]]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines() if line.strip()]

    def calls_of(self, server: str, tool: str) -> list[dict[str, Any]]:
        return [c for c in self.recorded() if c["server"] == server and c["tool"] == tool]

    def new_token(self, name: str, *flags: str) -> str:
        done = self.cli("token", "create", name, *flags)
        assert done.returncode == 0, f"token create {name} {flags}: {done.stdout}{done.stderr}"
        return done.stdout.strip().splitlines()[-1]


def start_seed(workdir: Path, servers: list[str], openai: dict[str, Any]) -> Seed:
    calls = workdir / "seed-calls.jsonl"
    gw = Seed(workdir, [seed_backend(s, calls) for s in servers])
    gw.calls = calls
    try:
        config = json.loads(gw.config_path.read_text())
        config["tool_search"] = {"pinned": PINNED}
        config["openai"] = openai
        gw.config_path.write_text(json.dumps(config, indent=2))
        gw.start()
        return gw
    except BaseException:
        gw.close()
        raise


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory, llm: ScriptedLLM) -> Iterator[Seed]:
    section = openai_section(llm, tools=[], tool_view="auto", max_tool_tokens=SMALL_BUDGET)
    gw = start_seed(tmp_path_factory.mktemp("seed"), SERVERS, section)
    try:
        yield gw
    finally:
        gw.close()


@pytest.fixture(scope="module")
def search_token(seed: Seed) -> str:
    return seed.new_token("small", "--tool-view", "search")


def raw_tools(gw: support.Gateway, token: str) -> list[dict[str, Any]]:
    """tools/list over plain HTTP (2026-07-28), as the wire carries it."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": support.modern_meta()}}
    answer = httpx2.post(gw.url, headers=support.modern_headers(token, "tools/list"), content=json.dumps(body), timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    message = support.final_message(answer, 1)
    assert "nextCursor" not in message["result"], "one page"
    return message["result"]["tools"]


def size(tools: list[dict[str, Any]]) -> int:
    return len(json.dumps(tools, separators=(",", ":")).encode())


def found_names(result: Any) -> list[str]:
    structured = result.structured_content
    assert structured is not None, result
    if structured["tools"]:
        assert json.loads(result.content[0].text) == structured, "the text content carries the same JSON"
    else:
        assert "No tool matches" in result.content[0].text, result
    for tool in structured["tools"]:
        assert set(tool) == {"name", "description", "inputSchema"} or set(tool) == {"name", "inputSchema"}, tool
    return [t["name"] for t in structured["tools"]]


# --- the MCP face --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_the_search_view_lists_the_meta_tools_and_the_pinned_ones_only(seed, search_token, mode):
    async with support.mcp_client(seed.url, search_token, mode) as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == {SEARCH, CALL, *PINNED_TOOLS}
    search = next(t for t in tools if t.name == SEARCH)
    assert search.input_schema["required"] == ["query"]
    assert "Example" in (search.description or "") and "truenas_ws" in (search.description or "")
    listed = raw_tools(seed, search_token)
    assert size(listed) < 3 * 1024, size(listed)
    full = raw_tools(seed, seed.token)
    assert {t["name"] for t in full} == ALL_TOOLS, "a full-view token still sees every tool"
    assert size(full) > 100 * 1024


@pytest.mark.parametrize("mode", ERAS)
async def test_search_finds_the_tool_and_the_call_reaches_the_backend(seed, search_token, mode):
    async with support.mcp_client(seed.url, search_token, mode) as client:
        found = found_names(await client.call_tool(SEARCH, {"query": "pause the music"}))
        assert found[0] == "homeassistant__HassMediaPause", found
        assert len(found) <= 5
        truenas = found_names(await client.call_tool(SEARCH, {"query": "storage pools", "server": "truenas", "limit": 3}))
        assert truenas and len(truenas) <= 3 and all(n.startswith("truenas__") for n in truenas), truenas
        before = len(seed.calls_of("homeassistant", "HassMediaPause"))
        done = await client.call_tool(CALL, {"name": "homeassistant__HassMediaPause", "arguments": {"area": f"kitchen-{mode}"}})
        assert not done.is_error and done.content[0].text == "homeassistant/HassMediaPause ran", done
    recorded = seed.calls_of("homeassistant", "HassMediaPause")[before:]
    assert [c["arguments"] for c in recorded] == [{"area": f"kitchen-{mode}"}]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_forbidden_tool_is_neither_found_nor_callable(seed, mode):
    token = seed.new_token(f"nolock-{mode}", "--tool-view", "search", "--deny", "ha_blade__ha_lock")
    async with support.mcp_client(seed.url, token, mode) as client:
        found = found_names(await client.call_tool(SEARCH, {"query": "lock the front door", "limit": 20}))
        assert found and "ha_blade__ha_lock" not in found, found
        blade = found_names(await client.call_tool(SEARCH, {"query": "lock", "server": "ha_blade", "limit": 20}))
        assert "ha_blade__ha_lock" not in blade, blade
        with pytest.raises(MCPError) as refused:
            await client.call_tool(CALL, {"name": "ha_blade__ha_lock", "arguments": {"entity_id": "lock.front", "action": "unlock"}})
        assert refused.value.error.code == ACCESS_DENIED, refused.value.error
    assert seed.calls_of("ha_blade", "ha_lock") == []
    # The owner's token finds it (so it was the rule that hid it).
    async with support.mcp_client(seed.url, seed.token, mode) as client:
        found = found_names(await client.call_tool(SEARCH, {"query": "lock the front door"}))
        assert found[0] == "ha_blade__ha_lock", found
        blade = found_names(await client.call_tool(SEARCH, {"query": "lock", "server": "ha_blade", "limit": 20}))
        assert "ha_blade__ha_lock" in blade, blade


@pytest.mark.parametrize("mode", ERAS)
async def test_validation_still_applies_through_the_call_tool(seed, search_token, mode):
    async with support.mcp_client(seed.url, search_token, mode) as client:
        with pytest.raises(MCPError) as invalid:
            await client.call_tool(CALL, {"name": "homeassistant__HassClimateSetTemperature", "arguments": {"temperature": "warm"}})
        assert invalid.value.error.code == INVALID_PARAMS
        assert "/temperature" in invalid.value.error.message and "HassClimateSetTemperature" in invalid.value.error.message
        with pytest.raises(MCPError) as unknown:
            await client.call_tool(CALL, {"name": "homeassistant__NoSuchTool", "arguments": {}})
        assert unknown.value.error.code == INVALID_PARAMS
        with pytest.raises(MCPError) as bad_query:
            await client.call_tool(SEARCH, {"query": "", "limit": 3})
        assert bad_query.value.error.code == INVALID_PARAMS
    assert seed.calls_of("homeassistant", "HassClimateSetTemperature") == []


@pytest.mark.parametrize("mode", ERAS)
async def test_a_confirm_tool_asks_the_user_first_through_the_call_tool(seed, search_token, mode):
    asked: list[str] = []
    answer = {"action": "decline"}

    async def ask(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        if answer["action"] == "accept":
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action="decline")

    inner = {"name": f"homeassistant__{CONFIRMED}", "arguments": {"area": f"hall-{mode}"}}
    async with support.mcp_client(seed.url, search_token, mode, elicitation_callback=ask) as client:
        declined = await client.call_tool(CALL, inner)
        assert declined.is_error and "declined" in declined.content[0].text, declined
        assert not [c for c in seed.calls_of("homeassistant", CONFIRMED) if c["arguments"]["area"] == f"hall-{mode}"]
        answer["action"] = "accept"
        accepted = await client.call_tool(CALL, inner)
        assert not accepted.is_error, accepted
    assert len(asked) == 2 and all(CONFIRMED in q for q in asked), asked
    ran = [c for c in seed.calls_of("homeassistant", CONFIRMED) if c["arguments"]["area"] == f"hall-{mode}"]
    assert len(ran) == 1, ran
    async with support.mcp_client(seed.url, search_token, mode) as client:  # cannot be asked
        refused = await client.call_tool(CALL, inner)
        assert refused.is_error and "confirm" in refused.content[0].text, refused
    assert len([c for c in seed.calls_of("homeassistant", CONFIRMED) if c["arguments"]["area"] == f"hall-{mode}"]) == 1


def test_the_audit_line_names_the_inner_tool_and_status_shows_the_listing_sizes(seed, search_token):
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": CALL, "arguments": {"name": "truenas_ws__get_disk_temps", "arguments": {}},
                       "_meta": support.modern_meta()}}
    answer = httpx2.post(seed.url, headers=support.modern_headers(search_token, "tools/call", CALL),
                         content=json.dumps(body), timeout=30)
    assert answer.status_code == 200, answer.text[:500]
    assert "result" in support.final_message(answer, 7)
    path = seed.workdir / "state" / "audit.log"
    deadline = time.monotonic() + 5
    line = None
    while line is None and time.monotonic() < deadline:
        lines = [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
        line = next((l for l in lines if l.get("name") == "truenas_ws__get_disk_temps"), None)
        time.sleep(0.05)
    assert line is not None, "no audit line for the inner tool"
    assert line["action"] == "tools/call" and line["server"] == "truenas_ws" and line["principal"] == "small", line
    assert line["outcome"] == "ok", line

    status = httpx2.get(f"{seed.base}/status", headers=seed.auth(search_token), timeout=10).json()
    assert status["tool_view"] == "search"
    assert status["tool_listing"]["search"]["tools"] == 4
    assert 0 < status["tool_listing"]["search"]["bytes"] < 3 * 1024
    assert status["tool_listing"]["full"]["tools"] == len(ALL_TOOLS)
    assert status["tool_listing"]["full"]["bytes"] > 100 * 1024
    assert status["tools"] == len(ALL_TOOLS), "the tools count is what this token may use"
    owner = seed.status()
    assert owner["tool_view"] == "full" and owner["tools"] == len(ALL_TOOLS)


def test_token_list_shows_the_tool_view(seed, search_token):
    done = seed.cli("token", "list")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:] if line.strip()}
    assert "tool-view=search" in rows["small"].split(), rows["small"]
    assert "tool-view" not in rows["interop"], rows["interop"]
    refused = seed.cli("token", "create", "odd", "--tool-view", "tiny")
    assert refused.returncode != 0 and "full or search" in refused.stderr


# --- the OpenAI face ---------------------------------------------------------------------------------


def chat(gw: support.Gateway, message: str, token: str | None = None) -> dict[str, Any]:
    r = httpx2.post(f"{gw.base}/v1/chat/completions", headers=gw.auth(token), timeout=60,
                    json={"model": "tiny", "messages": [{"role": "user", "content": message}]})
    assert r.status_code == 200, r.text[:500]
    return r.json()


def test_openai_auto_offers_a_preselection_and_the_model_searches_then_calls(seed, llm):
    llm.script([
        call(SEARCH, query="start the robot vacuum"),
        call(CALL, {"name": "homeassistant__HassVacuumStart", "arguments": {"name": "robot"}}),
        text("The vacuum is on its way."),
    ])
    before = len(seed.calls_of("homeassistant", "HassVacuumStart"))
    answer = chat(seed, "start the robot vacuum")
    assert answer["choices"][0]["message"]["content"] == "The vacuum is on its way."
    first, second, third = llm.chats[:3]
    offered = first["body"]["tools"]
    names = tool_names(first["body"])
    assert {SEARCH, CALL, *PINNED_TOOLS} <= names, names
    assert "homeassistant__HassVacuumStart" in names, "the best tool for the message is preselected"
    assert len(names) < len(ALL_TOOLS) and size(offered) <= SMALL_BUDGET * 4, (len(names), size(offered))
    found = [m for m in second["body"]["messages"] if m.get("role") == "tool"][-1]["content"]
    assert "homeassistant__HassVacuumStart" in found and "inputSchema" in found
    assert found.count('"tools"') == 1, "the search answer reaches the model once"
    ran = [m for m in third["body"]["messages"] if m.get("role") == "tool"][-1]["content"]
    assert ran == "homeassistant/HassVacuumStart ran"
    assert [c["arguments"] for c in seed.calls_of("homeassistant", "HassVacuumStart")[before:]] == [{"name": "robot"}]


def test_openai_auto_offers_every_tool_within_a_big_budget(tmp_path, llm):
    section = openai_section(llm, tools=[], tool_view="auto", max_tool_tokens=1_000_000)
    gw = start_seed(tmp_path, ["frappe", "ha_fastmcp"], section)
    try:
        llm.script([text("Hello.")])
        chat(gw, "pause the music")
        names = tool_names(llm.chats[0]["body"])
        expected = {n for n in ALL_TOOLS if n.startswith(("frappe__", "ha_fastmcp__"))} | {"gateway__status"}
        assert names == expected, names ^ expected
    finally:
        gw.close()


def test_openai_full_gives_a_search_token_the_meta_tools_and_searches_stay_within_openai_tools(tmp_path, llm):
    offered = ["frappe__frappe_get_doc", "frappe__frappe_search_docs", "frappe__frappe_ping"]
    gw = start_seed(tmp_path, ["frappe"], openai_section(llm, tools=offered))
    try:
        small = gw.new_token("small", "--tool-view", "search")
        llm.script([call(SEARCH, query="get or delete a document", limit=5), text("Done.")])
        chat(gw, "get or delete a document", small)
        first, second = llm.chats[:2]
        assert tool_names(first["body"]) == {SEARCH, CALL}, tool_names(first["body"])
        found = json.loads([m for m in second["body"]["messages"] if m.get("role") == "tool"][-1]["content"])
        names = [t["name"] for t in found["tools"]]
        assert "frappe__frappe_get_doc" in names and set(names) <= set(offered), names
        llm.script([text("Hello.")])
        chat(gw, "get or delete a document")
        assert tool_names(llm.chats[0]["body"]) == set(offered), "the owner's token gets every offered tool"
    finally:
        gw.close()


# --- OAuth grants ------------------------------------------------------------------------------------


def test_oauth_grants_get_the_view_of_oauth_tool_view(tmp_path):
    import test_oauth

    with test_oauth.lone_gateway(tmp_path, oauth={"tool_view": "search"}) as gw:
        access = test_oauth.grant(gw)["access_token"]
        assert test_oauth.tool_names(gw, access) == {SEARCH, CALL}
        found = test_oauth.call_tool(gw, access, SEARCH, {"query": "add two numbers"})
        names = [t["name"] for t in found["result"]["structuredContent"]["tools"]]
        assert "weather__add" in names, names
        added = test_oauth.call_tool(gw, access, CALL, {"name": "weather__add", "arguments": {"a": 2, "b": 40}})
        assert test_oauth.texts(added) == ["42"], added
        assert "weather__add" in test_oauth.tool_names(gw, gw.token), "static tokens keep the full view"


# --- the OpenAPI face ------------------------------------------------------------------------------


def test_the_openapi_document_of_a_search_token_has_the_meta_tools_and_they_run(seed, search_token):
    def operation_ids(token: str) -> dict[str, str]:
        r = httpx2.get(f"{seed.base}/openapi.json", headers=seed.auth(token), timeout=30)
        assert r.status_code == 200, r.text[:500]
        return {op["operationId"]: path for path, methods in r.json()["paths"].items() for op in methods.values()}

    small = operation_ids(search_token)
    assert set(small) == {SEARCH, CALL, *PINNED_TOOLS}, small
    full = operation_ids(seed.token)  # a full-view token of the same rule: not the cached small one
    assert set(full) == ALL_TOOLS, set(full) ^ ALL_TOOLS
    found = httpx2.post(f"{seed.base}{small[SEARCH]}", headers=seed.auth(search_token), timeout=30,
                        json={"query": "check disk temperatures"})
    assert found.status_code == 200, found.text[:500]
    assert "truenas_ws__get_disk_temps" in found.text
    before = len(seed.calls_of("truenas_ws", "get_disk_temps"))
    ran = httpx2.post(f"{seed.base}{small[CALL]}", headers=seed.auth(search_token), timeout=30,
                      json={"name": "truenas_ws__get_disk_temps", "arguments": {}})
    assert ran.status_code == 200, ran.text[:500]
    assert len(seed.calls_of("truenas_ws", "get_disk_temps")) == before + 1
