"""Capacity figures (issue 20): requests per second of a `tools/list` that involves no backend
against the bare ceiling (`GET /health`), both with wrk; and the gateway's RSS with 200 open
handshake-era sessions and 50 open GET streams. Run by hand:

    cargo build --release
    .venv/bin/python tests/bench/capacity.py [--gateway-bin PATH]

Needs wrk (Debian package). Loopback only; every loop bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
sys.path.insert(0, str(REPO / "tests" / "bench"))

SESSIONS = 200
STREAMS = 50
WRK_SECONDS = 5


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def wrk(url: str, script: Path | None, connections: int) -> float:
    argv = ["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{WRK_SECONDS}s", url]
    if script is not None:
        argv[1:1] = ["-s", str(script)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=WRK_SECONDS + 30).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise SystemExit(f"wrk printed no rate:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk got {non2xx.group(1)} error answers:\n{out}")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway-bin", default=str(REPO / "target" / "release" / "mcp-gateway"))
    args = parser.parse_args()
    os.environ["MCP_GATEWAY_BIN"] = args.gateway_bin
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")
    import httpx2
    import support
    from bench import rss_kib, status_kib

    workdir = Path(tempfile.mkdtemp(prefix="mcpgw-capacity-"))
    gw = support.Gateway(workdir, [])
    config = json.loads(gw.config_path.read_text())
    config["workers"] = 8
    config["limits"] = {"max_connections": 1024, "max_connections_per_address": 1024}
    gw.config_path.write_text(json.dumps(config))
    gw.start()
    assert gw.proc is not None
    pid = gw.proc.pid
    stop = threading.Event()
    try:
        time.sleep(0.5)
        idle = rss_kib(pid)
        # The gateway's own memory, and the pages of its binary the kernel mapped in (64 KiB
        # around each page touched).
        idle_own, idle_file = status_kib(pid, "RssAnon"), status_kib(pid, "RssFile")
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": support.modern_meta()}})
        headers = support.modern_headers(gw.token, "tools/list")
        lua = workdir / "tools_list.lua"
        lua.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(body)}\n"
            + "".join(f'wrk.headers["{k}"] = {json.dumps(v)}\n' for k, v in headers.items())
        )
        rates = {}
        for connections in (1, 16):
            rates[("health", connections)] = wrk(f"{gw.base}/health", None, connections)
            rates[("tools/list", connections)] = wrk(gw.url, lua, connections)

        # 200 handshake-era sessions, 50 of them with an open GET stream.
        sessions = []
        with httpx2.Client(timeout=30) as client:
            for i in range(SESSIONS):
                r = client.post(gw.url, json={"jsonrpc": "2.0", "id": i, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": f"c{i}", "version": "1"}}}, headers={**gw.auth(), "Accept": "application/json, text/event-stream"})
                assert r.status_code == 200, r.text
                sessions.append(r.headers["mcp-session-id"])
        opened = threading.Semaphore(0)

        def hold(session: str) -> None:
            headers = {**gw.auth(), "Accept": "text/event-stream", "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
            try:
                with httpx2.Client(timeout=httpx2.Timeout(5, read=None)) as c, c.stream("GET", gw.url, headers=headers) as r:
                    assert r.status_code == 200, r.status_code
                    opened.release()
                    for _ in r.iter_raw():
                        if stop.is_set():
                            return
            except httpx2.HTTPError:
                if not stop.is_set():  # the gateway going away at the end is expected
                    raise

        holders = [threading.Thread(target=hold, args=(s,), daemon=True) for s in sessions[:STREAMS]]
        for t in holders:
            t.start()
        for _ in holders:
            if not opened.acquire(timeout=30):
                raise SystemExit("a GET stream did not open within 30 s")
        time.sleep(1)
        loaded = rss_kib(pid)
        thread_count = threads(pid)
        print(f"binary: {args.gateway_bin} ({Path(args.gateway_bin).stat().st_size // 1024} KiB)")
        print(f"idle RSS, no backend:                      {idle / 1024:.1f} MiB "
              f"(own memory {idle_own / 1024:.2f} MiB, binary's pages {idle_file / 1024:.2f} MiB)")
        print(f"RSS with {SESSIONS} sessions and {STREAMS} open streams:   {loaded / 1024:.1f} MiB ({thread_count} threads)")
        for connections in (1, 16):
            ceiling = rates[("health", connections)]
            listed = rates[("tools/list", connections)]
            print(f"c={connections:<3} GET /health {ceiling:9.0f} req/s   tools/list (2026-07-28) {listed:9.0f} req/s   = {listed / ceiling:5.0%} of the ceiling")
    finally:
        stop.set()
        gw.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
