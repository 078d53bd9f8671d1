"""Open WebUI 0.12.4 uses the gateway as an MCP tool server: its real requests, replayed.

fixtures/openwebui-0.12.4-mcp-requests.jsonl holds one chat turn's worth of requests captured
from Open WebUI's MCP client (server/discover, tools/list, tools/call; stateless 2026-07-28).
We send the exact bodies with the headers that matter and our real token; the one tools/call in
the capture names a tool of the capture's server (`add`), so it is pointed at `weather__add`.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest

import support

CAPTURE = Path(__file__).resolve().parent / "fixtures" / "openwebui-0.12.4-mcp-requests.jsonl"
KEPT_HEADERS = {"accept", "content-type", "mcp-protocol-version", "mcp-method", "mcp-name"}


def load_capture() -> list[dict]:
    return [json.loads(line) for line in CAPTURE.read_text().splitlines() if line.strip()]


def replayable(entry: dict, token: str) -> tuple[dict[str, str], dict]:
    headers = {k.lower(): v for k, v in entry["headers"].items() if k.lower() in KEPT_HEADERS}
    headers["authorization"] = f"Bearer {token}"
    body = json.loads(json.dumps(entry["body"]))
    if body["method"] == "tools/call":
        body["params"]["name"] = "weather__add"
        headers["mcp-name"] = "weather__add"
    return headers, body


CAPTURED = load_capture()


def test_the_capture_is_what_we_think_it_is():
    assert [e["body"]["method"] for e in CAPTURED] == [
        "server/discover",
        "tools/list",
        "server/discover",
        "tools/list",
        "server/discover",
        "tools/list",
        "tools/call",
    ]
    assert all(e["path"] == "/mcp" and e["method"] == "POST" for e in CAPTURED)


@pytest.mark.parametrize("index", range(len(CAPTURED)), ids=[f"{i}-{e['body']['method']}" for i, e in enumerate(CAPTURED)])
def test_each_open_webui_request_gets_a_result(gateway, index):
    headers, body = replayable(CAPTURED[index], gateway.token)
    r = httpx2.post(gateway.url, content=json.dumps(body).encode(), headers=headers, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:1000])
    msg = support.final_message(r, body["id"])
    assert msg.get("jsonrpc") == "2.0"
    assert msg.get("id") == body["id"]
    assert "result" in msg, msg
    result = msg["result"]
    assert result.get("resultType") == "complete", result

    method = body["method"]
    if method in ("server/discover", "tools/list"):
        # 2026-07-28 list results say how long a client may cache them
        assert isinstance(result.get("ttlMs"), int), result
        assert result.get("cacheScope") in ("private", "public"), result
    if method == "server/discover":
        assert support.MODERN_VERSION in result["supportedVersions"], result
        assert "tools" in result["capabilities"], result
    elif method == "tools/list":
        names = {t["name"] for t in result["tools"]}
        assert {"weather__add", "notes__upper", "everything__echo", "gateway__status"} <= names, sorted(names)
        assert all(t.get("inputSchema", {}).get("type") == "object" for t in result["tools"])
    elif method == "tools/call":
        assert result.get("isError") in (None, False), result
        assert result["content"][0]["text"] == "42", result
        assert result.get("structuredContent") == {"result": 42}, result
