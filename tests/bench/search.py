"""Figures for tool search (issue 22) on the seed's real catalog (231 tools). Run by hand (not part
of the test suite):

    cargo build            # or --release, and set MCP_GATEWAY_BIN to it
    .venv/bin/python tests/bench/search.py

It prints:
1. the bytes of `tools/list` for a token with the full view and one with the search view, through
   a gateway in front of the ten seed servers (tests/interop/fixtures/seed_backend.py);
2. recall@5 and MRR@10 of tests/interop/fixtures/seed_tools/queries.json, asked through
   `gateway__search_tools` (the product path: the gateway's index and the principal's filter);
3. for `openai.tool_view: "auto"` with the default budget (4000 tokens), how many tools and bytes
   the first model call is offered for each example query, and whether an expected tool is among
   them (a scripted upstream records what it gets);
4. the search's own latency, measured in Rust without HTTP or JSON-RPC around it
   (`cargo test --release --lib search::bench -- --ignored --nocapture`, which also builds an index
   of 5,000 synthetic tools), and, separately, the median round trip of a search over HTTP.
No figure here is asserted; timings depend on the machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
os.environ.setdefault("MCP_GATEWAY_BIN", str(REPO / "target" / "debug" / "mcp-gateway"))

import httpx2  # noqa: E402
import support  # noqa: E402
from test_openai_loop import ScriptedLLM, openai_section, text  # noqa: E402

SEED = support.FIXTURES / "seed_tools"
SERVERS = ["homeassistant", "ha_blade", "ha_fastmcp", "ha_rest", "ha_clr",
           "truenas_ws", "truenas", "erpnext", "frappe", "erpnext_agent"]
ROUND_TRIPS = 200


HTTP = httpx2.Client(timeout=30)  # one kept-alive connection, as a real client has


def rpc(gw: support.Gateway, token: str, method: str, params: dict, name: str | None = None) -> dict:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": support.modern_meta()}}
    r = HTTP.post(gw.url, headers=support.modern_headers(token, method, name), content=json.dumps(body))
    r.raise_for_status()
    return support.final_message(r, 1)["result"]


def size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mcpgw-search-bench-") as tmp:
        workdir = Path(tmp)
        calls = workdir / "calls.jsonl"
        backends = [support.Backend(s, None, {
            "command": sys.executable, "args": [str(support.FIXTURES / "seed_backend.py"), s, str(calls)],
            "cwd": str(support.FIXTURES), "timeout_ms": 20000}) for s in SERVERS]
        gw = support.Gateway(workdir, backends)
        llm = ScriptedLLM().start()
        config = json.loads(gw.config_path.read_text())
        config["openai"] = openai_section(llm, tools=[], tool_view="auto")
        config["openai"]["upstream"]["api_key"] = "bench"
        gw.config_path.write_text(json.dumps(config))
        try:
            small = gw.cli("token", "create", "small", "--tool-view", "search").stdout.strip().splitlines()[-1]
            gw.start()
            full = rpc(gw, gw.token, "tools/list", {})["tools"]
            search = rpc(gw, small, "tools/list", {})["tools"]
            print(f"tools/list, full view:   {len(full)} tools, {size(full)} bytes (~{size(full) // 4} tokens)")
            print(f"tools/list, search view: {len(search)} tools, {size(search)} bytes (~{size(search) // 4} tokens)")

            queries = json.loads((SEED / "queries.json").read_text())
            hits, reciprocal = 0, 0.0
            for q in queries:
                found = rpc(gw, small, "tools/call", {"name": "gateway__search_tools",
                            "arguments": {"query": q["query"], "limit": 10}}, "gateway__search_tools")
                names = [t["name"] for t in found["structuredContent"]["tools"]]
                rank = next((i for i, n in enumerate(names) if n in q["expected"]), None)
                hits += rank is not None and rank < 5
                reciprocal += 0 if rank is None else 1 / (rank + 1)
                print(f"  {q['query']!r}: first expected tool at {'-' if rank is None else rank + 1}")
            print(f"recall@5: {hits / len(queries):.2f} ({hits}/{len(queries)}); MRR@10: {reciprocal / len(queries):.3f}")

            offered_hits = 0
            for q in queries:
                llm.script([text("ok")])
                HTTP.post(f"{gw.base}/v1/chat/completions", headers=gw.auth(),
                          json={"model": "tiny", "messages": [{"role": "user", "content": q["query"]}]}).raise_for_status()
                tools = llm.chats[0]["body"].get("tools") or []
                names = {t["function"]["name"] for t in tools}
                offered_hits += bool(names & set(q["expected"]))
                print(f"  auto, {q['query']!r}: {len(tools)} tools, {size(tools)} bytes offered; "
                      f"expected tool offered: {bool(names & set(q['expected']))}")
            print(f"auto (4000-token budget): an expected tool offered up front for {offered_hits}/{len(queries)} queries")

            timings = []
            for i in range(ROUND_TRIPS):
                q = queries[i % len(queries)]["query"]
                started = time.perf_counter()
                rpc(gw, small, "tools/call", {"name": "gateway__search_tools", "arguments": {"query": q}},
                    "gateway__search_tools")
                timings.append((time.perf_counter() - started) * 1000)
            print(f"search round trip over HTTP (kept-alive connection, 5 results), median of {ROUND_TRIPS}: "
                  f"{statistics.median(timings):.2f} ms")
        finally:
            gw.close()
            llm.stop()

    if os.environ.get("SEARCH_BENCH_SKIP_RUST"):
        return
    print("the search itself (Rust, release build):")
    done = subprocess.run(["cargo", "test", "--release", "--lib", "search::bench", "--", "--ignored", "--nocapture"],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    for line in done.stdout.splitlines():
        if line.startswith(("recall", "MRR", "index build")):
            print(f"  {line}")
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])


if __name__ == "__main__":
    main()
