"""The audit log (issue 18, item 7): one JSON line per tool call, prompt get, resource read,
refusal and failed authentication, with the values of sensitive argument keys redacted; written
by a thread of its own into `state_dir/audit.log`, rotated by size.

Uses the house backend and the gateways of test_validation.py (a backend that records its calls).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2

import support
from test_validation import gw, house, llm, mcp_call  # noqa: F401  (fixtures used by name)
from test_openai_loop import call, text


def audit_lines(gw: support.Gateway, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The log's lines once there are at least `count` (the writer is a thread of its own)."""
    path = gw.workdir / "state" / "audit.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_calls_refusals_and_auth_failures_each_get_a_line(gw, house, llm) -> None:
    before = len(audit_lines(gw, 0))
    ok = mcp_call(gw, "house__lights", {"room": "hall", "on": True, "pin_code": "1234"})
    assert "result" in ok or "error" in ok
    refused = mcp_call(gw, "house__unlock", {"door": "window", "password": "hunter2"})
    assert refused["error"]["code"] == -32602
    unknown = mcp_call(gw, "house__nope", {})
    assert unknown["error"]["code"] == -32602
    anonymous = httpx2.post(f"{gw.base}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    assert anonymous.status_code == 401
    llm.script([call("house__unlock", door="back"), text("Done.")])
    r = httpx2.post(f"{gw.base}/v1/chat/completions", headers=gw.auth(), timeout=30,
                    json={"model": "tiny", "messages": [{"role": "user", "content": "open up"}]})
    assert r.status_code == 200, r.text

    lines = audit_lines(gw, before + 5)[before:]
    text_of_log = json.dumps(lines)
    assert "hunter2" not in text_of_log and gw.token not in text_of_log, "secrets never reach the log"
    by = {(l.get("action"), l.get("name"), l.get("outcome")): l for l in lines}
    lights = by[("tools/call", "house__lights", "error" if "error" in ok or ok["result"].get("isError") else "ok")]
    assert lights["face"] == "mcp" and lights["principal"] == "interop" and lights["server"] == "house"
    assert lights["duration_ms"] >= 0 and lights["arguments"]["room"] == "hall"
    unlock = by[("tools/call", "house__unlock", "refused")]
    assert unlock["arguments"] == {"door": "window", "password": "[redacted]"}
    assert "/door" in unlock["detail"]
    assert ("tools/call", "house__nope", "refused") in by
    auth = by[("auth", "/mcp", "refused")]
    assert auth["principal"] == "127.0.0.1" and auth["detail"] == "no bearer token"
    openai_call = by[("tools/call", "house__unlock", "ok")]
    assert openai_call["face"] == "openai" and openai_call["arguments"] == {"door": "back"}
    assert openai_call["result_bytes"] > 0


def test_the_log_rotates_by_size_and_keeps_its_old_files(tmp_path: Path) -> None:
    gateway = support.Gateway(tmp_path, [])
    try:
        config = json.loads(gateway.config_path.read_text())
        config["audit"] = {"max_bytes": 4096, "keep": 2}
        gateway.config_path.write_text(json.dumps(config))
        gateway.start()
        for i in range(120):
            r = httpx2.post(f"{gateway.base}/mcp", json={"jsonrpc": "2.0", "id": i, "method": "tools/list"},
                            headers={"Authorization": f"Bearer wrong-{i}"}, timeout=10)
            assert r.status_code == 401
        state = tmp_path / "state"
        deadline = time.monotonic() + 5
        while not (state / "audit.log.2").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sizes = {name: (state / name).stat().st_size for name in ("audit.log", "audit.log.1", "audit.log.2")}
        assert all(0 < size <= 4096 for size in sizes.values()), sizes
        assert not (state / "audit.log.3").exists()
        for name in sizes:
            for line in (state / name).read_text().splitlines():
                assert json.loads(line)["action"] == "auth"
    finally:
        gateway.close()
