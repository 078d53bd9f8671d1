"""What a user (or an attacker) sees when something is wrong: raw HTTP against /mcp and the CLI.

These stories use a gateway of their own with a small `limits.max_body_bytes`, fronting the
weather backend only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

import support

MAX_BODY = 4096


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("negative")
    with support.running_gateway(workdir, [lambda: support.start_weather(workdir)], limits={"max_body_bytes": MAX_BODY}) as gateway:
        yield gateway


def post(gw: support.Gateway, body: dict | bytes, headers: dict[str, str]) -> httpx2.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx2.post(gw.url, content=content, headers=headers, timeout=30)


def discover(request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "server/discover", "params": {"_meta": support.modern_meta()}}


def tools_list(request_id: int = 2) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": {"_meta": support.modern_meta()}}


def tools_call(name: str, arguments: dict, request_id: int = 3) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": support.modern_meta()},
    }


def assert_unauthorized(response: httpx2.Response) -> None:
    assert response.status_code == 401, (response.status_code, response.text[:500])
    challenge = response.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), f"WWW-Authenticate: {challenge!r}"


# --- who may call --------------------------------------------------------------------------------


def test_a_request_without_a_token_is_401_with_a_bearer_challenge(gw):
    assert_unauthorized(post(gw, tools_list(), support.modern_headers(None, "tools/list")))


def test_a_request_with_a_wrong_token_is_401_with_a_bearer_challenge(gw):
    wrong = gw.token[:-4] + ("aaaa" if not gw.token.endswith("aaaa") else "bbbb")
    assert_unauthorized(post(gw, tools_list(), support.modern_headers(wrong, "tools/list")))
    assert_unauthorized(post(gw, tools_list(), support.modern_headers("not-a-token-at-all", "tools/list")))


def test_a_revoked_token_stops_working_at_once(gw):
    token = gw.create_token("laptop")
    ok = post(gw, tools_list(), support.modern_headers(token, "tools/list"))
    assert ok.status_code == 200, ok.text[:500]
    assert "result" in support.final_message(ok, 2)

    listed = gw.cli("token", "list")
    assert listed.returncode == 0, listed.stderr
    assert "laptop" in listed.stdout + listed.stderr
    assert token not in listed.stdout + listed.stderr, "token list must never print tokens"

    gw.revoke_token("laptop")
    assert_unauthorized(post(gw, tools_list(), support.modern_headers(token, "tools/list")))
    # the first token is untouched
    still = post(gw, tools_list(), support.modern_headers(gw.token, "tools/list"))
    assert still.status_code == 200, still.text[:500]


def test_status_needs_the_token_but_health_does_not(gw):
    health = httpx2.get(f"{gw.base}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert_unauthorized(httpx2.get(f"{gw.base}/status", timeout=10))
    status = httpx2.get(f"{gw.base}/status", headers=gw.auth(), timeout=10)
    assert status.status_code == 200
    backends = {b["name"]: b for b in status.json()["backends"]}
    assert backends["weather"]["state"] == "up"
    assert backends["weather"]["transport"]


# --- bad requests -----------------------------------------------------------------------------------


def test_malformed_json_is_400_with_a_parse_error(gw):
    r = post(gw, b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {', support.modern_headers(gw.token, "tools/list"))
    assert r.status_code == 400, (r.status_code, r.text[:500])
    msg = support.final_message(r)
    assert msg["error"]["code"] == -32700, msg


def test_an_unknown_method_is_method_not_found(gw):
    body = {"jsonrpc": "2.0", "id": 7, "method": "weather/teleport", "params": {"_meta": support.modern_meta()}}
    r = post(gw, body, support.modern_headers(gw.token, "weather/teleport"))
    msg = support.final_message(r, 7)
    assert msg.get("error", {}).get("code") == -32601, (r.status_code, msg)
    assert msg["id"] == 7


def test_an_unknown_tool_is_invalid_params_naming_the_tool(gw):
    r = post(gw, tools_call("weather__teleport", {"to": "Oslo"}, 8), support.modern_headers(gw.token, "tools/call", "weather__teleport"))
    msg = support.final_message(r, 8)
    assert msg.get("error", {}).get("code") == -32602, (r.status_code, msg)
    assert "weather__teleport" in msg["error"]["message"], msg


def test_a_body_over_the_configured_limit_is_413(gw):
    # a small call works...
    small = post(gw, tools_call("weather__forecast", {"city": "Paris"}, 9), support.modern_headers(gw.token, "tools/call", "weather__forecast"))
    assert small.status_code == 200, small.text[:500]
    assert support.final_message(small, 9)["result"]["content"][0]["text"] == "Paris: 18C, light rain, wind 12 km/h"
    # ...the same call with a city name bigger than max_body_bytes does not
    big = tools_call("weather__forecast", {"city": "x" * (MAX_BODY * 2)}, 10)
    r = post(gw, big, support.modern_headers(gw.token, "tools/call", "weather__forecast"))
    assert r.status_code == 413, (r.status_code, r.text[:500])


# --- check-config -----------------------------------------------------------------------------------

GOOD_CONFIG = {
    "listen": "127.0.0.1:8080",
    "state_dir": "state",
    "workers": 4,
    "limits": {"max_body_bytes": 65536, "call_timeout_ms": 5000},
    "mcpServers": {
        "web": {"type": "streamable-http", "url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer ${INTEROP_FIXTURE_SECRET}"}},
        "old": {"type": "sse", "url": "http://127.0.0.1:9/sse"},
        "local": {"command": "node", "args": ["server.js"], "env": {"K": "V"}, "cwd": "/tmp"},
    },
}


def write_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def check_config(path: Path) -> tuple[int, str]:
    env = support.gateway_env()
    env.pop("MCP_GATEWAY_INTEROP_UNSET_VAR", None)
    done = support.run_cli(["check-config", "--config", str(path)], env=env)
    return done.returncode, done.stdout + done.stderr


def test_check_config_accepts_a_good_config(tmp_path):
    code, out = check_config(write_config(tmp_path, GOOD_CONFIG))
    assert code == 0, out


def bad(**changes) -> dict:
    config = json.loads(json.dumps(GOOD_CONFIG))
    for path, value in changes.items():
        node = config
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return config


@pytest.mark.parametrize(
    ("case", "config", "expected"),
    [
        ("unknown key", bad(**{"mcpServers.web.urll": "http://127.0.0.1:9/mcp"}), ["$.mcpServers.web.urll"]),
        ("unknown top-level key", bad(listenn="127.0.0.1:1"), ["$.listenn"]),
        ("wrong type", bad(workers="eight"), ["$.workers"]),
        ("wrong type in a server", bad(**{"mcpServers.local.args": "server.js"}), ["$.mcpServers.local.args"]),
        (
            "missing env var",
            bad(**{"mcpServers.web.headers": {"Authorization": "Bearer ${MCP_GATEWAY_INTEROP_UNSET_VAR}"}}),
            ["$.mcpServers.web.headers.Authorization", "MCP_GATEWAY_INTEROP_UNSET_VAR"],
        ),
    ],
)
def test_check_config_rejects_a_bad_config_naming_the_json_path(tmp_path, case, config, expected):
    code, out = check_config(write_config(tmp_path, config))
    assert code == 1, f"{case}: exit {code}\n{out}"
    for needle in expected:
        assert needle in out, f"{case}: {needle!r} not in output:\n{out}"


def test_check_config_reports_every_problem_at_once(tmp_path):
    config = bad(**{"mcpServers.web.urll": "x", "workers": "eight", "mcpServers.local.args": "server.js"})
    code, out = check_config(write_config(tmp_path, config))
    assert code == 1, out
    for needle in ("$.mcpServers.web.urll", "$.workers", "$.mcpServers.local.args"):
        assert needle in out, f"{needle!r} not in output:\n{out}"
