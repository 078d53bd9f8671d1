"""Benchmark: latency through mcp-gateway against the same backend called directly, throughput,
RSS and binary size. Run by hand (not part of the test suite):

    cargo build --release
    .venv/bin/python tests/bench/bench.py            # after `bash .ci/test` made .venv

It starts the Streamable HTTP fixture backend (official MCP Python SDK) and the release binary on
loopback, sends a bounded number of requests, prints the figures and stops everything.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
os.environ.setdefault("MCP_GATEWAY_BIN", str(REPO / "target" / "release" / "mcp-gateway"))

import httpx2  # noqa: E402
import support  # noqa: E402

SEQUENTIAL_CALLS = 400
LOAD_THREADS = 8
LOAD_SECONDS = 3.0


def status_kib(pid: int, field: str) -> int:
    """A KiB figure of /proc/PID/status (`VmRSS`, `RssAnon`, `RssFile`, ...); -1 when absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    return -1


def rss_kib(pid: int) -> int:
    return status_kib(pid, "VmRSS")


def call_body(request_id: int, name: str, arguments: dict) -> dict:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments, "_meta": support.modern_meta()},
    }


def timed_calls(client: httpx2.Client, url: str, token: str | None, name: str, count: int) -> list[float]:
    headers = support.modern_headers(token, "tools/call", name)
    samples = []
    for i in range(count):
        started = time.perf_counter()
        response = client.post(url, json=call_body(i, name, {"a": i, "b": 1}), headers=headers)
        elapsed = time.perf_counter() - started
        message = support.final_message(response)
        assert "result" in message, message
        samples.append(elapsed * 1000)
    return samples


def describe(samples: list[float]) -> str:
    samples = sorted(samples)
    p95 = samples[int(len(samples) * 0.95) - 1]
    return f"median {statistics.median(samples):6.2f} ms   p95 {p95:6.2f} ms"


def load(url: str, token: str, name: str) -> tuple[int, float]:
    done = [0] * LOAD_THREADS
    stop_at = time.monotonic() + LOAD_SECONDS

    def run(slot: int) -> None:
        with httpx2.Client(timeout=30) as client:
            headers = support.modern_headers(token, "tools/call", name)
            i = 0
            while time.monotonic() < stop_at:
                response = client.post(url, json=call_body(i, name, {"a": i, "b": 2}), headers=headers)
                if response.status_code == 200:
                    done[slot] += 1
                i += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(LOAD_THREADS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=LOAD_SECONDS + 30)
    return sum(done), time.monotonic() - started


def main() -> None:
    binary = Path(os.environ["MCP_GATEWAY_BIN"])
    if not binary.is_file():
        sys.exit(f"{binary} not found: run `cargo build --release` first")
    workdir = Path(tempfile.mkdtemp(prefix="mcpgw-bench-"))
    weather = support.start_weather(workdir)
    gateway = support.Gateway(workdir, [weather])
    if os.environ.get("BENCH_AUDIT") == "off":  # to measure what the audit log costs
        import json

        config = json.loads(gateway.config_path.read_text())
        config["audit"] = {"enabled": False}
        gateway.config_path.write_text(json.dumps(config))
    print(f"audit log: {'off' if os.environ.get('BENCH_AUDIT') == 'off' else 'on'} (BENCH_AUDIT=off switches it off)")
    try:
        gateway.start()
        assert gateway.proc is not None
        time.sleep(1.0)
        idle = rss_kib(gateway.proc.pid)
        with httpx2.Client(timeout=30) as client:
            timed_calls(client, weather.url, None, "add", 20)  # warm up both paths
            timed_calls(client, gateway.url, gateway.token, "weather__add", 20)
            direct = timed_calls(client, weather.url, None, "add", SEQUENTIAL_CALLS)
            through = timed_calls(client, gateway.url, gateway.token, "weather__add", SEQUENTIAL_CALLS)
            # The same calls by a token with an access rule (servers, allow and deny globs).
            ruled_token = gateway.cli("token", "create", "ruled", "--server", "weather", "--allow", "weather__*", "--deny", "*secret*", "--deny", "*delete*").stdout.strip().splitlines()[-1]
            timed_calls(client, gateway.url, ruled_token, "weather__add", 20)
            ruled = timed_calls(client, gateway.url, ruled_token, "weather__add", SEQUENTIAL_CALLS)
            own = timed_calls(client, gateway.url, gateway.token, "gateway__status", SEQUENTIAL_CALLS)
        count, seconds = load(gateway.url, gateway.token, "weather__add")
        own_count, own_seconds = load(gateway.url, gateway.token, "gateway__status")
        loaded = rss_kib(gateway.proc.pid)
        print(f"binary size (release, stripped): {binary.stat().st_size / 1024:.0f} KiB")
        print(f"idle RSS with one backend up:    {idle / 1024:.1f} MiB")
        print(f"RSS after load:                  {loaded / 1024:.1f} MiB")
        print(f"tools/call, backend direct:      {describe(direct)}   ({SEQUENTIAL_CALLS} sequential calls)")
        print(f"tools/call, through gateway:     {describe(through)}")
        print(f"added by the gateway (median):   {statistics.median(through) - statistics.median(direct):6.2f} ms")
        print(f"through gateway, token with rule: {describe(ruled)}   (servers + allow + 2 deny globs)")
        print(f"gateway__status (no backend):    {describe(own)}")
        print(f"throughput through gateway:      {count / seconds:7.0f} calls/s ({LOAD_THREADS} clients, {LOAD_SECONDS:.0f} s, Python backend)")
        print(f"throughput, gateway's own tool:  {own_count / own_seconds:7.0f} calls/s ({LOAD_THREADS} clients)")
    finally:
        gateway.close()
        weather.close()


if __name__ == "__main__":
    main()
