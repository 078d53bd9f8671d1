"""A user renames what their backends offer: per-server "prefix", "rename", "description", "hide".

One gateway fronts three copies of the weather backend (tools `add`, `forecast`, `slow_count`,
prompt `greet`), in this config order:
  first   "prefix": ""  (its own names), `slow_*` hidden, a new description for `forecast`
  second  "prefix": "w2", `add` shown as `sum` and `greet` as `hello` (with a new description)
  third   "prefix": ""  as well, `add` renamed to `forecast` (clashing with first's `forecast`),
          its own `forecast` shown as `third_forecast`, `greet` as `third_greet`, `slow_*` hidden
Every story runs through the official SDK client in both eras, plus raw HTTP for the
2026-07-28 `Mcp-Name` header and the CLI's `check-config`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.shared.exceptions import MCPError

import support

pytestmark = pytest.mark.anyio

ERAS = ["auto", "legacy"]

FIRST_FORECAST_DESCRIPTION = "Tomorrow's weather from the first backend."
HELLO_DESCRIPTION = "Say hello, from the second backend."

NAMING: dict[str, dict[str, Any]] = {
    "first": {"prefix": "", "hide": ["slow_*"], "description": {"forecast": FIRST_FORECAST_DESCRIPTION}},
    "second": {
        "prefix": "w2",
        "rename": {"add": "sum", "greet": "hello"},
        "description": {"greet": HELLO_DESCRIPTION},
    },
    "third": {
        "prefix": "",
        "rename": {"add": "forecast", "forecast": "third_forecast", "greet": "third_greet"},
        "hide": ["slow_*"],
    },
}

EXPOSED_TOOLS = {"gateway__status", "add", "forecast", "w2__sum", "w2__forecast", "w2__slow_count", "third_forecast"}
EXPOSED_PROMPTS = {"greet", "w2__hello", "third_greet"}
OSLO = "Oslo: -3C, snow, wind 20 km/h"


def weather_with_naming(workdir: Path, name: str) -> Callable[[], support.Backend]:
    def start() -> support.Backend:
        backend = support.start_weather(workdir, name=name)
        backend.config.update(NAMING[name])
        return backend

    return start


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("naming")
    starters = [weather_with_naming(workdir, name) for name in NAMING]
    with support.running_gateway(workdir, starters) as gateway:
        yield gateway


def text_of(result) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def calls_per_backend(gw: support.Gateway) -> dict[str, int]:
    return {b["name"]: b["calls"] for b in gw.status()["backends"]}


def tool_clashes(gw: support.Gateway) -> list[str]:
    return [c for c in gw.status()["clashes"] if c.startswith(("tool ", "prompt "))]


# --- through the official SDK client ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_names_follow_prefix_rename_and_hide(gw, mode):
    async with support.mcp_client(gw.url, gw.token, mode) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
    assert tools == EXPOSED_TOOLS
    assert prompts == EXPOSED_PROMPTS
    assert uris == ["weather://cities"], "resource URIs are never rewritten"


@pytest.mark.parametrize("mode", ERAS)
async def test_only_the_name_and_an_overridden_description_change(gw, mode):
    async with support.mcp_client(gw.url, gw.token, mode) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert tools["forecast"].description == FIRST_FORECAST_DESCRIPTION
    assert tools["w2__forecast"].description == "Tomorrow's forecast for a city."
    assert tools["third_forecast"].description == "Tomorrow's forecast for a city."
    assert tools["forecast"].input_schema == tools["w2__forecast"].input_schema
    assert tools["forecast"].output_schema == tools["w2__forecast"].output_schema
    assert tools["w2__sum"].description == "Add two integers."
    assert tools["w2__sum"].input_schema["properties"].keys() == {"a", "b"}
    assert prompts["w2__hello"].description == HELLO_DESCRIPTION
    assert prompts["greet"].description == "Greet someone by name."
    assert [a.name for a in prompts["w2__hello"].arguments] == ["name"]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_hidden_tool_cannot_be_called(gw, mode):
    async with support.mcp_client(gw.url, gw.token, mode) as client:
        for name in ("slow_count", "w2__add"):
            with pytest.raises(MCPError) as failure:
                await client.call_tool(name, {"n": 1})
            assert "unknown tool" in failure.value.error.message, failure.value.error
            assert name in failure.value.error.message
        still = await client.call_tool("w2__slow_count", {"n": 1})
    assert text_of(still) == "counted 1", "hide is per backend"


@pytest.mark.parametrize("mode", ERAS)
async def test_renamed_and_unprefixed_tools_reach_the_right_backend_under_its_own_name(gw, mode):
    cases = [
        ("add", {"a": 2, "b": 40}, "42", "first"),
        ("w2__sum", {"a": 2, "b": 40}, "42", "second"),
        ("third_forecast", {"city": "Oslo"}, OSLO, "third"),
        # third's `add` is renamed to `forecast` too; first comes first in the config and keeps it
        ("forecast", {"city": "Oslo"}, OSLO, "first"),
    ]
    async with support.mcp_client(gw.url, gw.token, mode) as client:
        for name, arguments, expected, backend in cases:
            before = calls_per_backend(gw)
            result = await client.call_tool(name, arguments)
            after = calls_per_backend(gw)
            assert not result.is_error, (name, text_of(result))
            assert text_of(result) == expected, name
            changed = {b for b in after if after[b] != before[b]}
            assert changed == {backend}, (name, before, after)


@pytest.mark.parametrize("mode", ERAS)
async def test_a_renamed_prompt_is_rendered_by_its_backend(gw, mode):
    async with support.mcp_client(gw.url, gw.token, mode) as client:
        before = calls_per_backend(gw)
        hello = await client.get_prompt("w2__hello", {"name": "Ada"})
        after = calls_per_backend(gw)
        assert hello.messages[0].content.text == "Hello, Ada! Here is your weather briefing."
        assert {b for b in after if after[b] != before[b]} == {"second"}
        third = await client.get_prompt("third_greet", {"name": "Bo"})
        assert third.messages[0].content.text == "Hello, Bo! Here is your weather briefing."
        with pytest.raises(MCPError) as failure:
            await client.get_prompt("w2__greet", {"name": "Ada"})
        assert "unknown prompt" in failure.value.error.message, failure.value.error


# --- clashes ----------------------------------------------------------------------------------------


def test_the_clash_is_in_status_and_the_first_backend_keeps_the_name(gw):
    clashes = tool_clashes(gw)
    assert len(clashes) == 1, clashes
    clash = clashes[0]
    assert clash.startswith('tool "forecast" clashes: \'first\' keeps this name for its tool "forecast"'), clash
    assert "tool \"add\" of 'third' is not offered" in clash, clash
    assert '"prefix"' in clash and '"rename"' in clash, clash
    resources = [c for c in gw.status()["clashes"] if c.startswith("resource ")]
    assert len(resources) == 2 and all("'first' keeps this URI" in c for c in resources), resources


def test_the_clash_is_logged_once(gw):
    assert gw.proc is not None
    log = gw.proc.stderr()
    assert log.count('tool "forecast" clashes') == 1, log[-4000:]


def test_check_config_warns_of_the_shared_empty_prefix(gw):
    done = support.run_cli(["check-config", "--config", str(gw.config_path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": OK" in done.stdout, done.stdout
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, done.stderr
    assert "$.mcpServers.third.prefix" in warnings[0]
    assert "'first' and 'third' both show their tools and prompts without a prefix" in warnings[0], warnings[0]
    assert "give 'third' another \"prefix\"" in warnings[0], warnings[0]


def test_check_config_warns_of_renames_to_one_name_and_the_gateway_prefix(tmp_path):
    config = {
        "mcpServers": {
            "a": {"url": "http://127.0.0.1:9/mcp", "rename": {"list": "items"}},
            "b": {"url": "http://127.0.0.1:9/mcp", "prefix": "a", "rename": {"all": "items"}},
            "c": {"url": "http://127.0.0.1:9/mcp", "prefix": "gateway"},
        }
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = support.run_cli(["check-config", "--config", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    stderr = done.stderr
    assert "$.mcpServers.b.prefix" in stderr and "'a' and 'b' both show their tools and prompts as \"a__<name>\"" in stderr
    assert '$.mcpServers.b.rename.all: "a__items" is the name shown for both "list" of \'a\' and "all" of \'b\'' in stderr
    assert "$.mcpServers.c.prefix" in stderr and "gateway__status always wins" in stderr


def test_check_config_names_the_path_of_a_bad_prefix_or_rename(tmp_path):
    config = {
        "mcpServers": {
            "a": {"url": "http://127.0.0.1:9/mcp", "prefix": "a__b", "rename": {"forecast": "two words"}, "hide": "x"},
        }
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = support.run_cli(["check-config", "--config", str(path)])
    assert done.returncode == 1, done.stdout + done.stderr
    for needle in ("$.mcpServers.a.prefix", "$.mcpServers.a.rename.forecast", "$.mcpServers.a.hide"):
        assert needle in done.stderr, done.stderr


# --- the 2026-07-28 Mcp-Name header -----------------------------------------------------------------


def call_modern(gw: support.Gateway, name: str, header_name: str, arguments: dict[str, Any]) -> httpx2.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": support.modern_meta()},
    }
    headers = support.modern_headers(gw.token, "tools/call", header_name)
    return httpx2.post(gw.url, content=json.dumps(body).encode(), headers=headers, timeout=30)


def test_mcp_name_carries_the_exposed_name_of_a_renamed_tool(gw):
    ok = call_modern(gw, "w2__sum", "w2__sum", {"a": 2, "b": 40})
    assert ok.status_code == 200, ok.text[:500]
    message = support.final_message(ok, 7)
    assert message["result"]["content"][0]["text"] == "42", message
    assert message["result"]["structuredContent"] == {"result": 42}, message

    unprefixed = call_modern(gw, "third_forecast", "third_forecast", {"city": "Oslo"})
    assert support.final_message(unprefixed, 7)["result"]["content"][0]["text"] == OSLO


@pytest.mark.parametrize("header_name", ["add", "forecast"])
def test_mcp_name_with_the_backends_own_name_is_rejected(gw, header_name):
    body_name = {"add": "w2__sum", "forecast": "third_forecast"}[header_name]
    arguments = {"a": 2, "b": 40} if header_name == "add" else {"city": "Oslo"}
    r = call_modern(gw, body_name, header_name, arguments)
    assert r.status_code == 400, (r.status_code, r.text[:500])
    assert r.json()["error"]["code"] == -32020, r.text[:500]
