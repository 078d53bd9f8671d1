"""Access rules per token and per OAuth grant: which servers, which tool and prompt names (allow
and deny globs on the names clients see), and read-only. What a rule hides is missing from every
list (tools, prompts, resources, resource templates, the tools offered to the model); a call it
refuses is JSON-RPC -32023 naming the rule (`error.data.rule`), a tool message naming the rule on
the OpenAI face, and an audit line with outcome "refused"; the backend never sees it.

  house    fixtures/guarded_house.py (records every tool call, prompt get and resource read);
           `read_only_tools: ["thermostat"]` makes its unannotated thermostat a read
  weather  fixtures/weather_server.py (tools without annotations, a prompt, a resource)
  profile  kids = servers [house], allow [house__*], deny [*unlock*], read_only

Tokens are made with `mcp-gateway token create NAME --server/--allow/--deny/--read-only/--profile`
while the gateway runs (a new token works at once). The helpers here are shared with
test_confirm.py and test_cache.py.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx2
import pytest

import support
from test_openai_loop import LoopGateway, ScriptedLLM, call, openai_section, text, tool_names

ACCESS_DENIED = -32023
INVALID_PARAMS = -32602

HOUSE_TOOLS = frozenset(
    f"house__{t}"
    for t in ("lights_status", "set_lights", "unlock", "delete_scene", "counter", "thermostat", "broken_reader")
)
WEATHER_TOOLS = frozenset({"weather__add", "weather__forecast", "weather__slow_count"})
# readOnlyHint true, or named in the house's `read_only_tools` (thermostat).
HOUSE_READ_ONLY = frozenset({"house__lights_status", "house__counter", "house__thermostat", "house__broken_reader"})
STATUS_TOOL = "gateway__status"
ROOMS_TEXT = "kitchen\nhall\nattic"  # house://rooms, as the fixture serves it
CITIES_TEXT = "Paris\nOslo\nLisbon"  # weather://cities
KIDS = {"servers": ["house"], "allow": ["house__*"], "deny": ["*unlock*"], "read_only": True}
RULE_WORDS = {"servers": ("servers",), "deny": ("deny",), "allow": ("allow",), "read_only": ("read-only", "read_only")}
LIST_KEYS = {
    "tools/list": ("tools", "name"),
    "prompts/list": ("prompts", "name"),
    "resources/list": ("resources", "uri"),
    "resources/templates/list": ("resourceTemplates", "uriTemplate"),
}
AUDIT_TIMEOUT = 5.0


# --- the house backend (shared with test_confirm.py and test_cache.py) -----------------------------


@dataclass
class House:
    """The guarded house backend and the file it records every request in."""

    backend: support.Backend
    calls: Path

    def recorded(self) -> list[dict[str, Any]]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines() if line.strip()]

    def mark(self) -> int:
        """Where the record ends now: pass it as `since` to see only what came after."""
        return len(self.recorded())

    def since(self, mark: int) -> list[dict[str, Any]]:
        return self.recorded()[mark:]

    def tool_calls(self, tool: str, since: int = 0, **arguments: Any) -> list[dict[str, Any]]:
        """The recorded calls of `tool` (the backend's own name) from line `since` on; with
        `arguments`, only those whose arguments include them."""
        return [
            e for e in self.recorded()[since:]
            if e.get("tool") == tool and all(e["arguments"].get(k) == v for k, v in arguments.items())
        ]

    def borrowed(self, name: str = "house", **extra: Any) -> support.Backend:
        """The backend as another gateway's mcpServers entry `name` (stopping that gateway leaves
        it running), with `extra` keys (confirm, read_only_tools, cache_ttl_secs...) added."""
        return borrowed(self.backend, name, **extra)

    def close(self) -> None:
        self.backend.close()


def start_house(workdir: Path, name: str = "house") -> House:
    calls = workdir / f"{name}-calls.jsonl"
    port = support.free_port()
    argv = [sys.executable, str(support.FIXTURES / "guarded_house.py"), str(port), str(calls)]
    proc = support.Proc(name, argv, workdir)
    support.wait_for_port(proc, port)
    url = f"http://127.0.0.1:{port}/mcp"
    return House(support.Backend(name, proc, {"type": "streamable-http", "url": url, "timeout_ms": 10000}, url), calls)


def borrowed(backend: support.Backend, name: str | None = None, **extra: Any) -> support.Backend:
    """`backend` as an mcpServers entry of another gateway, not stopped with that gateway."""
    return support.Backend(name or backend.name, None, {**backend.config, **extra}, backend.url)


def edit_config(gw: support.Gateway, change: Callable[[dict[str, Any]], None]) -> None:
    config = json.loads(gw.config_path.read_text())
    change(config)
    gw.config_path.write_text(json.dumps(config, indent=2))


def start_loop_gateway(workdir: Path, backends: list[support.Backend], llm: ScriptedLLM,
                       change: Callable[[dict[str, Any]], None] | None = None,
                       openai_tools: list[str] | None = None) -> LoopGateway:
    """A gateway with an `openai` section (the scripted LLM upstream, `openai_tools` globs),
    its config changed by `change`, started. The caller closes it."""
    gateway = LoopGateway(workdir, backends)
    try:
        def configure(config: dict[str, Any]) -> None:
            section = openai_section(llm)
            section["tools"] = openai_tools or [f"{b.name}__*" for b in backends]
            config["openai"] = section
            if change is not None:
                change(config)

        edit_config(gateway, configure)
        gateway.start()
        return gateway
    except BaseException:
        gateway.close()
        raise


# --- the CLI ----------------------------------------------------------------------------------------


def create_token(gw: support.Gateway, name: str, *flags: str) -> str:
    """`token create NAME FLAGS...`: the token (the last line on stdout)."""
    done = gw.cli("token", "create", name, *flags)
    assert done.returncode == 0, (
        f"token create {name} {' '.join(flags)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"token create {name} printed nothing\nstderr:\n{done.stderr}"
    return lines[-1]


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def token_rows(gw: support.Gateway) -> tuple[str, dict[str, str]]:
    """`token list`: its header line and each token's row by name (the row's first word)."""
    done = gw.cli("token", "list")
    assert done.returncode == 0, f"token list exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, done.stdout
    return lines[0], {line.split()[0]: line for line in lines[1:]}


# --- MCP over raw HTTP (2026-07-28, stateless) ------------------------------------------------------


def rpc(gw: support.Gateway, token: str, method: str, params: dict[str, Any] | None = None,
        capabilities: dict[str, Any] | None = None, request_id: Any = 1) -> dict[str, Any]:
    """One stateless 2026-07-28 request; the JSON-RPC response (result or error). The body is
    sent exactly as `params` is ordered. Any HTTP status but 401/403: the token itself is good."""
    params = dict(params or {})
    name = params.get("uri") if method == "resources/read" else params.get("name")
    body = {"jsonrpc": "2.0", "id": request_id, "method": method,
            "params": {**params, "_meta": support.modern_meta(capabilities)}}
    answer = httpx2.post(gw.url, headers=support.modern_headers(token, method, name),
                         content=json.dumps(body).encode(), timeout=30)
    assert answer.status_code not in (401, 403), f"{method}: HTTP {answer.status_code}: {answer.text[:1000]}"
    return support.final_message(answer, request_id)


def listed(gw: support.Gateway, token: str, method: str) -> set[str]:
    """The names (tools, prompts), URIs (resources) or URI templates a list shows, every page."""
    key, field = LIST_KEYS[method]
    names: set[str] = set()
    cursor = None
    for _ in range(100):
        message = rpc(gw, token, method, {"cursor": cursor} if cursor else {})
        assert "result" in message, message
        names |= {item[field] for item in message["result"][key]}
        cursor = message["result"].get("nextCursor")
        if not cursor:
            return names
    raise AssertionError(f"{method} never stopped paginating")


def tool_call(gw: support.Gateway, token: str, name: str, arguments: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return rpc(gw, token, "tools/call", {"name": name, "arguments": arguments}, **kw)


def result_text(message: dict[str, Any]) -> str:
    assert "result" in message, message
    return "\n".join(c.get("text", "") for c in message["result"].get("content", []) if c.get("type") == "text")


def assert_ok(message: dict[str, Any]) -> dict[str, Any]:
    """A result that is not a tool error; the message itself."""
    assert "result" in message and not message["result"].get("isError"), message
    return message


def assert_refused(message: dict[str, Any], rule: str | set[str]) -> dict[str, Any]:
    """A -32023 refusal whose `data.rule` is `rule` (or one of them) and whose message names it."""
    rules = {rule} if isinstance(rule, str) else rule
    error = message.get("error")
    assert error, f"want a -32023 refusal by {rules}, got {message}"
    assert error["code"] == ACCESS_DENIED, error
    assert isinstance(error.get("data"), dict) and error["data"].get("rule") in rules, error
    words = RULE_WORDS[error["data"]["rule"]]
    assert any(w in error["message"].lower() for w in words), f"the message names no rule ({words}): {error}"
    return error


def assert_unreadable(message: dict[str, Any], secret: str) -> None:
    """A prompt or resource of a server the rule hides: an error, and not a word of its content
    (`secret`, a piece of it on one line, as it would appear inside the JSON)."""
    assert "\n" not in secret and "\"" not in secret, "a secret JSON would escape proves nothing"
    assert "error" in message and "result" not in message, message
    assert message["error"]["code"] in (ACCESS_DENIED, INVALID_PARAMS), message
    assert secret not in json.dumps(message), message


# --- the audit log ----------------------------------------------------------------------------------


def audit_lines(gw: support.Gateway) -> list[dict[str, Any]]:
    path = gw.workdir / "state" / "audit.log"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wait_audit(gw: support.Gateway, since: int, match: Callable[[dict[str, Any]], bool],
               timeout: float = AUDIT_TIMEOUT) -> list[dict[str, Any]]:
    """The audit lines after the first `since` that `match` accepts, once there is one (the log
    is written by a thread of its own), or none after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in audit_lines(gw)[since:] if match(line)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# --- the OpenAI face --------------------------------------------------------------------------------


def chat(gw: support.Gateway, token: str, content: str = "please help") -> httpx2.Response:
    return httpx2.post(f"{gw.base}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, timeout=60,
                       json={"model": "tiny", "messages": [{"role": "user", "content": content}]})


def tool_messages(llm: ScriptedLLM, round_index: int) -> list[str]:
    """The contents of the tool messages in the upstream request of round `round_index`."""
    msgs = llm.chats[round_index]["body"]["messages"]
    return [m["content"] if isinstance(m["content"], str) else json.dumps(m["content"]) for m in msgs if m.get("role") == "tool"]


# =====================================================================================================
# Fixtures
# =====================================================================================================


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Iterator[House]:
    h = start_house(tmp_path_factory.mktemp("access-house"))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def weather(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Backend]:
    w = support.start_weather(tmp_path_factory.mktemp("access-weather"))
    try:
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, house: House, weather: support.Backend, llm: ScriptedLLM) -> Iterator[LoopGateway]:
    def change(config: dict[str, Any]) -> None:
        config["profiles"] = {"kids": KIDS}

    backends = [house.borrowed(read_only_tools=["thermostat"]), borrowed(weather)]
    gateway = start_loop_gateway(tmp_path_factory.mktemp("access"), backends, llm, change)
    try:
        yield gateway
    finally:
        gateway.close()


# =====================================================================================================
# The CLI
# =====================================================================================================


def test_token_list_shows_each_tokens_access(gw: LoopGateway) -> None:
    open_name, narrow_name, kid_name = unique("open"), unique("narrow"), unique("kid")
    create_token(gw, open_name)
    create_token(gw, narrow_name, "--server", "house", "--allow", "house__*", "--deny", "*unlock*", "--read-only")
    create_token(gw, kid_name, "--profile", "kids")
    header, rows = token_rows(gw)
    assert "ACCESS" in header.split(), header
    assert "everything" in rows[open_name], rows[open_name]
    narrow = rows[narrow_name]
    for part in ("servers=house", "allow=house__*", "deny=*unlock*", "read-only"):
        assert part in narrow.split(), (part, narrow)
    assert "everything" not in narrow, narrow
    assert "profile=kids" in rows[kid_name].split() and "everything" not in rows[kid_name], rows[kid_name]


@pytest.mark.parametrize("flags", [["--server", "house"], ["--allow", "house__*"], ["--deny", "*unlock*"], ["--read-only"]],
                         ids=["server", "allow", "deny", "read-only"])
def test_a_profile_cannot_be_combined_with_other_access_flags(gw: LoopGateway, flags: list[str]) -> None:
    name = unique("mixed")
    done = gw.cli("token", "create", name, "--profile", "kids", *flags)
    assert done.returncode != 0, f"accepted --profile with {flags}\nstdout:\n{done.stdout}"
    assert "profile" in (done.stderr + done.stdout).lower(), done.stderr
    assert name not in token_rows(gw)[1], "a refused token was stored anyway"
    # Each half alone is fine: it was the combination that was refused.
    create_token(gw, name, "--profile", "kids")
    create_token(gw, unique("unmixed"), *flags)
    assert "profile=kids" in token_rows(gw)[1][name].split()


def test_an_unknown_profile_is_refused_at_create_time(gw: LoopGateway) -> None:
    name = unique("grown")
    done = gw.cli("token", "create", name, "--profile", "grownups")
    assert done.returncode != 0, f"accepted an unknown profile\nstdout:\n{done.stdout}"
    assert "grownups" in done.stderr + done.stdout, done.stderr
    assert name not in token_rows(gw)[1], "a refused token was stored anyway"


def test_a_token_created_while_serving_works_at_once_with_its_rule(gw: LoopGateway) -> None:
    token = create_token(gw, unique("fresh"), "--server", "weather")
    # No retry, no wait: the first request with the new token is already served under its rule.
    assert listed(gw, token, "tools/list") - {STATUS_TOOL} == WEATHER_TOOLS


def test_token_access_changes_a_running_tokens_rule_at_its_next_request(gw: LoopGateway, house: House) -> None:
    name = unique("changing")
    token = create_token(gw, name)
    assert "house__set_lights" in listed(gw, token, "tools/list")
    done = gw.cli("token", "access", name, "--read-only")
    assert done.returncode == 0 and "read-only" in done.stdout, (done.stdout, done.stderr)
    # The same token, no restart: its next request is under the new rule.
    assert "house__set_lights" not in listed(gw, token, "tools/list")
    mark = house.mark()
    assert_refused(tool_call(gw, token, "house__set_lights", {"room": "hall", "on": True}), "read_only")
    assert house.tool_calls("set_lights", mark) == []
    listing = gw.cli("token", "list")
    row = next(line for line in listing.stdout.splitlines() if line.startswith(name))
    assert row.rstrip().endswith("read-only"), row
    # And back to everything.
    assert gw.cli("token", "access", name).returncode == 0
    assert "house__set_lights" in listed(gw, token, "tools/list")
    # A server the config does not have is refused, and the rule stays as it was.
    typo = gw.cli("token", "access", name, "--server", "hosue")
    assert typo.returncode != 0 and "hosue" in typo.stderr, (typo.stdout, typo.stderr)
    assert "house__set_lights" in listed(gw, token, "tools/list")


# =====================================================================================================
# Lists and calls on /mcp
# =====================================================================================================


def test_an_unrestricted_token_sees_both_servers(gw: LoopGateway) -> None:
    token = create_token(gw, unique("all"))
    assert listed(gw, token, "tools/list") == HOUSE_TOOLS | WEATHER_TOOLS | {STATUS_TOOL}
    assert listed(gw, token, "prompts/list") == {"house__house_summary", "weather__greet"}
    assert {"house://rooms", "weather://cities"} <= listed(gw, token, "resources/list")
    assert "house://room/{name}" in listed(gw, token, "resources/templates/list")


def test_the_servers_rule_hides_another_servers_tools_prompts_and_resources(gw: LoopGateway, house: House) -> None:
    token = create_token(gw, unique("weather-only"), "--server", "weather")
    assert listed(gw, token, "tools/list") - {STATUS_TOOL} == WEATHER_TOOLS
    assert listed(gw, token, "prompts/list") == {"weather__greet"}
    resources = listed(gw, token, "resources/list")
    assert "weather://cities" in resources and not any(u.startswith("house://") for u in resources), resources
    templates = listed(gw, token, "resources/templates/list")
    assert not any(u.startswith("house://") for u in templates), templates

    mark = house.mark()
    assert_refused(tool_call(gw, token, "house__lights_status", {"room": "hall"}), "servers")
    assert_unreadable(rpc(gw, token, "prompts/get", {"name": "house__house_summary", "arguments": {}}), "Summarize the state")
    assert_unreadable(rpc(gw, token, "resources/read", {"uri": "house://rooms"}), "kitchen")
    assert_unreadable(rpc(gw, token, "resources/read", {"uri": "house://room/attic"}), "room attic")
    assert house.since(mark) == [], "the house saw a request its server rule forbids"
    # What the rule allows still works.
    assert result_text(assert_ok(tool_call(gw, token, "weather__add", {"a": 2, "b": 40}))) == "42"
    cities = rpc(gw, token, "resources/read", {"uri": "weather://cities"})
    assert cities.get("result", {}).get("contents", [{}])[0].get("text") == CITIES_TEXT, cities


def test_the_servers_rule_also_keeps_the_other_servers_prompts_and_resources(gw: LoopGateway) -> None:
    token = create_token(gw, unique("house-only"), "--server", "house")
    assert listed(gw, token, "tools/list") - {STATUS_TOOL} == HOUSE_TOOLS
    assert listed(gw, token, "prompts/list") == {"house__house_summary"}
    assert "weather://cities" not in listed(gw, token, "resources/list")
    assert_refused(tool_call(gw, token, "weather__add", {"a": 1, "b": 2}), "servers")
    assert_unreadable(rpc(gw, token, "prompts/get", {"name": "weather__greet", "arguments": {"name": "Ada"}}), "Hello, Ada")
    assert_unreadable(rpc(gw, token, "resources/read", {"uri": "weather://cities"}), "Lisbon")


def test_a_deny_glob_hides_the_tool_and_refuses_its_call(gw: LoopGateway, house: House) -> None:
    token = create_token(gw, unique("no-unlock"), "--deny", "*unlock*")
    assert listed(gw, token, "tools/list") == (HOUSE_TOOLS | WEATHER_TOOLS | {STATUS_TOOL}) - {"house__unlock"}
    mark = house.mark()
    assert_refused(tool_call(gw, token, "house__unlock", {"door": "front"}), "deny")
    assert house.tool_calls("unlock", mark) == []
    assert_ok(tool_call(gw, token, "house__set_lights", {"room": "hall", "on": True}))
    assert house.tool_calls("set_lights", mark, room="hall", on=True) != []


def test_a_deny_glob_hides_a_prompt_too(gw: LoopGateway, house: House) -> None:
    token = create_token(gw, unique("no-summary"), "--deny", "house__house_*")
    assert listed(gw, token, "prompts/list") == {"weather__greet"}
    assert "house__counter" in listed(gw, token, "tools/list")
    mark = house.mark()
    assert_unreadable(rpc(gw, token, "prompts/get", {"name": "house__house_summary", "arguments": {}}), "Summarize the state")
    assert house.since(mark) == []


def test_allow_globs_show_only_what_they_match_and_refuse_the_rest(gw: LoopGateway, house: House) -> None:
    token = create_token(gw, unique("lights"), "--allow", "house__lights_*", "--allow", "house__count?r")
    assert listed(gw, token, "tools/list") == {"house__lights_status", "house__counter"}
    assert listed(gw, token, "prompts/list") == set()
    mark = house.mark()
    assert_refused(tool_call(gw, token, "house__set_lights", {"room": "hall", "on": False}), "allow")
    assert_refused(tool_call(gw, token, "weather__add", {"a": 1, "b": 2}), "allow")
    assert house.tool_calls("set_lights", mark) == []
    assert result_text(assert_ok(tool_call(gw, token, "house__lights_status", {"room": "attic"}))) == "The attic lights are off."


def test_deny_wins_over_allow(gw: LoopGateway, house: House) -> None:
    token = create_token(gw, unique("both"), "--allow", "house__*", "--deny", "house__set_*")
    assert listed(gw, token, "tools/list") == HOUSE_TOOLS - {"house__set_lights"}
    mark = house.mark()
    assert_refused(tool_call(gw, token, "house__set_lights", {"room": "hall", "on": True}), "deny")
    assert house.tool_calls("set_lights", mark) == []


def test_read_only_shows_only_reads_and_refuses_writes(gw: LoopGateway, house: House) -> None:
    token = create_token(gw, unique("reader"), "--read-only")
    # readOnlyHint true, the config's read_only_tools (thermostat), and the gateway's own status tool;
    # not weather's unannotated tools, not readOnlyHint false, not destructive ones.
    assert listed(gw, token, "tools/list") == HOUSE_READ_ONLY | {STATUS_TOOL}
    mark = house.mark()
    assert_refused(tool_call(gw, token, "house__set_lights", {"room": "hall", "on": True}), "read_only")
    assert_refused(tool_call(gw, token, "house__delete_scene", {"name": "party"}), "read_only")
    assert_refused(tool_call(gw, token, "weather__add", {"a": 1, "b": 2}), "read_only")
    assert house.tool_calls("set_lights", mark) == [] and house.tool_calls("delete_scene", mark) == []
    assert result_text(assert_ok(tool_call(gw, token, "house__thermostat", {}))) == "21.5C"
    assert len(house.tool_calls("thermostat", mark)) == 1
    assert_ok(tool_call(gw, token, STATUS_TOOL, {}))


def test_read_only_still_reads_prompts_and_resources(gw: LoopGateway, house: House) -> None:
    token = create_token(gw, unique("reader-p"), "--read-only")
    assert listed(gw, token, "prompts/list") == {"house__house_summary", "weather__greet"}
    assert {"house://rooms", "weather://cities"} <= listed(gw, token, "resources/list")
    mark = house.mark()
    prompt = rpc(gw, token, "prompts/get", {"name": "house__house_summary", "arguments": {"room": "hall"}})
    assert "Summarize the state of the house (rooms: hall)." in json.dumps(prompt.get("result")), prompt
    rooms = rpc(gw, token, "resources/read", {"uri": "house://rooms"})
    assert rooms.get("result", {}).get("contents", [{}])[0].get("text") == ROOMS_TEXT, rooms
    assert house.since(mark) == [{"prompt": "house_summary", "arguments": {"room": "hall"}}, {"resource": "house://rooms"}]


def test_the_kids_profile(gw: LoopGateway, house: House) -> None:
    token = create_token(gw, unique("kid"), "--profile", "kids")
    assert listed(gw, token, "tools/list") == HOUSE_READ_ONLY
    assert listed(gw, token, "prompts/list") == {"house__house_summary"}
    resources = listed(gw, token, "resources/list")
    assert "house://rooms" in resources and "weather://cities" not in resources, resources
    mark = house.mark()
    # unlock breaks two of the profile's rules (deny and read_only): either may be the one named.
    assert_refused(tool_call(gw, token, "house__unlock", {"door": "back"}), {"deny", "read_only"})
    assert_refused(tool_call(gw, token, "house__set_lights", {"room": "hall", "on": True}), "read_only")
    # weather__forecast breaks servers, allow and read_only.
    assert_refused(tool_call(gw, token, "weather__forecast", {"city": "Oslo"}), {"servers", "allow", "read_only"})
    assert house.tool_calls("unlock", mark) == [] and house.tool_calls("set_lights", mark) == []
    assert result_text(assert_ok(tool_call(gw, token, "house__counter", {"label": "kid"}))).startswith("kid#")


def test_a_tool_that_does_not_exist_is_still_an_unknown_tool(gw: LoopGateway) -> None:
    token = create_token(gw, unique("kid-nope"), "--profile", "kids")
    for name in ("house__nope", "weather__nope"):
        message = tool_call(gw, token, name, {})
        error = message.get("error")
        assert error and error["code"] == INVALID_PARAMS and "unknown tool" in error["message"], message


def test_a_refusal_is_audited(gw: LoopGateway, house: House) -> None:
    name = unique("audited")
    token = create_token(gw, name, "--deny", "*unlock*")
    since = len(audit_lines(gw))
    assert_refused(tool_call(gw, token, "house__unlock", {"door": "garage"}), "deny")
    lines = wait_audit(gw, since, lambda l: l.get("name") == "house__unlock" and l.get("outcome") == "refused")
    assert len(lines) == 1, audit_lines(gw)[since:]
    assert lines[0].get("action") == "tools/call" and lines[0].get("principal") == name, lines[0]
    assert lines[0].get("arguments") == {"door": "garage"}, lines[0]


# =====================================================================================================
# The OpenAI face
# =====================================================================================================


@pytest.mark.parametrize(
    ("flags", "offered"),
    [
        ([], HOUSE_TOOLS | WEATHER_TOOLS),
        (["--read-only"], HOUSE_READ_ONLY),
        (["--server", "house", "--deny", "*unlock*"], HOUSE_TOOLS - {"house__unlock"}),
        (["--profile", "kids"], HOUSE_READ_ONLY),
    ],
    ids=["everything", "read-only", "house-no-unlock", "kids"],
)
def test_the_model_is_offered_only_the_tools_the_rule_allows(gw: LoopGateway, llm: ScriptedLLM, flags: list[str], offered) -> None:
    token = create_token(gw, unique("model"), *flags)
    llm.script([text("Nothing to do.")])
    answer = chat(gw, token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Nothing to do."
    assert tool_names(llm.chats[0]["body"]) == offered


@pytest.mark.parametrize(
    ("flags", "tool", "arguments", "rule"),
    [
        (["--read-only"], "set_lights", {"room": "hall", "on": True}, "read_only"),
        (["--deny", "*unlock*"], "unlock", {"door": "front"}, "deny"),
        (["--server", "weather"], "lights_status", {"room": "hall"}, "servers"),
        (["--allow", "weather__*"], "counter", {"label": "model"}, "allow"),
    ],
    ids=["read-only", "deny", "servers", "allow"],
)
def test_a_call_the_rule_refuses_is_a_tool_message_the_model_reads(gw: LoopGateway, llm: ScriptedLLM, house: House,
                                                                     flags, tool, arguments, rule) -> None:
    token = create_token(gw, unique("model-call"), *flags)
    mark = house.mark()
    llm.script([call(f"house__{tool}", arguments), text("Done.")])
    answer = chat(gw, token)
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Done."
    assert len(llm.chats) == 2, [c["body"]["messages"] for c in llm.chats]
    (result,) = tool_messages(llm, 1)
    assert any(w in result.lower() for w in RULE_WORDS[rule]), f"the tool message names no {rule} rule: {result}"
    assert house.tool_calls(tool, mark) == [], "the backend ran a call the rule refuses"


# =====================================================================================================
# OAuth: the consent page's read-only box
# =====================================================================================================


@pytest.fixture(scope="module")
def oauth_gw(tmp_path_factory: pytest.TempPathFactory, house: House, weather: support.Backend) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("access-oauth")

    def prepare(gateway: support.Gateway) -> None:
        edit_config(gateway, lambda c: c["mcpServers"]["house"].update(read_only_tools=["thermostat"]))
        support.enable_oauth(gateway)

    starters = [lambda: house.borrowed(), lambda: borrowed(weather)]
    with support.running_gateway(workdir, starters, prepare=prepare) as gateway:
        yield gateway


def consented_token(gw: support.Gateway, read_only: bool) -> str:
    """Register a client, approve it on the consent page with every server checked (and the
    read_only box when `read_only`), exchange the code: the access token."""
    from test_oauth import Pkce, authorize_url, consent_form, exchange, query_of, register, tokens_of

    client = register(gw, name=unique("access-app"))
    pkce = Pkce.new()
    state = secrets.token_urlsafe(16)
    with httpx2.Client(follow_redirects=False, timeout=15) as browser:
        page = browser.get(authorize_url(gw, client.client_id, client.redirect_uri, pkce, state))
        assert page.status_code == 200, page.text[:2000]
        form = consent_form(page.text)
        boxes = form.of_type("checkbox", "read_only")
        assert [b.value for b in boxes] == ["1"], f"no read_only checkbox with value 1: {form.fields}"
        servers = [f.value for f in form.of_type("checkbox", "server")]
        assert set(servers) == {"house", "weather"}, servers
        pairs = list(form.hidden().items()) + [("password", support.OWNER_PASSWORD)] + [("server", s) for s in servers]
        if read_only:
            pairs.append(("read_only", "1"))
        pairs.append(("decision", "approve"))
        answer = browser.post(urljoin(str(page.url), form.action), content=urlencode(pairs),
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 302, f"approval: HTTP {answer.status_code}\n{answer.text[:2000]}"
    params = query_of(answer.headers["location"])
    assert params.get("state") == state and params.get("code"), answer.headers["location"]
    return tokens_of(exchange(gw, client.client_id, params["code"], pkce.verifier, client.redirect_uri))["access_token"]


def test_a_grant_approved_read_only_sees_and_calls_only_reads(oauth_gw: support.Gateway, house: House) -> None:
    reader = consented_token(oauth_gw, read_only=True)
    assert listed(oauth_gw, reader, "tools/list") == HOUSE_READ_ONLY | {STATUS_TOOL}
    mark = house.mark()
    assert_refused(tool_call(oauth_gw, reader, "house__set_lights", {"room": "hall", "on": True}), "read_only")
    assert house.tool_calls("set_lights", mark) == []
    assert result_text(assert_ok(tool_call(oauth_gw, reader, "house__lights_status", {"room": "hall"}))) == (
        "The hall lights are off."
    )
    # The same consent without the box: every tool.
    writer = consented_token(oauth_gw, read_only=False)
    assert listed(oauth_gw, writer, "tools/list") == HOUSE_TOOLS | WEATHER_TOOLS | {STATUS_TOOL}
