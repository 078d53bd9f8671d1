"""Soak run (issue 21): mixed traffic against one gateway for a number of minutes, with its RSS,
thread count and open file descriptors sampled every minute. Run by hand (not a timed test):

    cargo build --release
    .venv/bin/python tests/bench/soak.py --minutes 30 [--gateway-bin PATH]

The traffic, each kind in its own client thread, paced (not a load test):
- 2026-07-28 stateless `tools/call`s;
- handshake-era sessions: initialize, a few calls, DELETE (so sessions are made and ended);
- GET streams opened and dropped by the client;
- the OpenAI face: a streamed chat whose scripted upstream (fixtures/scripted_llm.py) calls a tool;
- a flapping backend, killed every `--flap-secs` and started again 3 s later, called throughout.

It prints one line per minute and a verdict: RSS, threads and descriptors are "flat" when the peak
of the last quarter of the run is no more than its allowance above the peak of the second quarter
(the first quarter is the warm-up).
Loopback only; every loop ends with the run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
sys.path.insert(0, str(REPO / "tests" / "bench"))

# Growth allowed after warm-up: allocator noise for RSS, a worker or stream thread coming and
# going for threads, a few sockets in flight for descriptors.
RSS_ALLOWANCE_KIB = 1024
THREAD_ALLOWANCE = 4
FD_ALLOWANCE = 8


def proc_figures(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    figures = {"rss_kib": -1, "threads": -1}
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            figures["rss_kib"] = int(line.split()[1])
        elif line.startswith("Threads:"):
            figures["threads"] = int(line.split()[1])
    figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return figures


class Traffic:
    """The client threads; each counts its outcomes in `counts` under its kind."""

    def __init__(self, gw: Any, support: Any, deadline: float) -> None:
        self.gw = gw
        self.support = support
        self.deadline = deadline
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    def tool_calls(self, tool: str, kind: str, pause: float, down_is_ok: bool = False) -> None:
        """2026-07-28 calls of `tool`, counted under `kind`; with `down_is_ok`, an error answer
        (the backend is down) is counted apart from no answer at all."""
        import httpx2

        support = self.support
        headers = support.modern_headers(self.gw.token, "tools/call", tool)
        with httpx2.Client(timeout=30) as client:
            n = 0
            while self.running():
                n += 1
                body = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                        "params": {"name": tool, "arguments": {"a": n, "b": 1},
                                   "_meta": support.modern_meta()}}
                try:
                    r = client.post(self.gw.url, json=body, headers=headers)
                    message = support.final_message(r, n)
                    answered = r.status_code == 200 and "result" in message
                    if answered and not message["result"].get("isError"):
                        outcome = f"{kind} ok"
                    elif down_is_ok:
                        outcome = f"{kind} error (backend down)"
                    else:
                        outcome = f"{kind} FAILED"
                except Exception:
                    outcome = f"{kind} FAILED (no answer)"
                self.count(outcome)
                time.sleep(pause)

    def modern_calls(self) -> None:
        self.tool_calls("weather__add", "modern", 0.02)

    def flapping_calls(self) -> None:
        self.tool_calls("flappy__add", "flappy", 0.1, down_is_ok=True)

    def sessions(self) -> None:
        import httpx2

        base = {"Authorization": f"Bearer {self.gw.token}", "Accept": "application/json, text/event-stream"}
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "soak", "version": "1"}}}
        with httpx2.Client(timeout=30) as client:
            while self.running():
                try:
                    r = client.post(self.gw.url, json=init, headers=base)
                    session = r.headers["mcp-session-id"]
                    headers = {**base, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
                    client.post(self.gw.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                                headers=headers)
                    ok = True
                    for i in range(1, 6):
                        body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                "params": {"name": "legacy__add", "arguments": {"a": i, "b": 2}}}
                        r = client.post(self.gw.url, json=body, headers=headers)
                        ok = ok and "result" in self.support.final_message(r, i)
                    ok = ok and client.delete(self.gw.url, headers=headers).status_code in (200, 202, 204)
                except Exception:
                    ok = False
                self.count("session ok" if ok else "session FAILED")
                time.sleep(0.1)

    def streams(self) -> None:
        import httpx2

        support = self.support
        headers = {**support.modern_headers(self.gw.token, "subscriptions/listen"), "Accept": "text/event-stream"}
        body = {"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
                "params": {"notifications": {"toolsListChanged": True}, "_meta": support.modern_meta()}}
        while self.running():
            try:
                with httpx2.Client(timeout=10) as client:
                    with client.stream("POST", self.gw.url, json=body, headers=headers) as r:
                        outcome = "stream ok" if r.status_code == 200 else f"stream FAILED ({r.status_code})"
                        # read the opening, then drop the stream from the client's side
                        for _ in r.iter_bytes():
                            break
            except Exception as e:
                outcome = f"stream FAILED ({type(e).__name__})"
            self.count(outcome)
            time.sleep(0.5)

    def openai_chats(self) -> None:
        import httpx2

        body = {"model": "tiny", "stream": True, "messages": [{"role": "user", "content": "what is 2+40?"}]}
        headers = {"Authorization": f"Bearer {self.gw.token}"}
        with httpx2.Client(timeout=60) as client:
            while self.running():
                try:
                    r = client.post(f"{self.gw.base}/v1/chat/completions", json=body, headers=headers)
                    ok = r.status_code == 200 and "42" in r.text and "[DONE]" in r.text
                except Exception:
                    ok = False
                self.count("openai ok" if ok else "openai FAILED")
                time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-secs", type=float, default=60.0)
    parser.add_argument("--flap-secs", type=float, default=20.0)
    parser.add_argument("--gateway-bin", default=str(REPO / "target" / "release" / "mcp-gateway"))
    args = parser.parse_args()
    os.environ["MCP_GATEWAY_BIN"] = args.gateway_bin
    import support

    spec = importlib.util.spec_from_file_location("scripted_llm", support.FIXTURES / "scripted_llm.py")
    assert spec and spec.loader
    scripted_llm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scripted_llm)

    def arithmetician(body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        if messages[-1].get("role") == "tool":
            return scripted_llm.text(f"The answer is {messages[-1]['content']}.")
        return scripted_llm.call("weather__add", a=2, b=40)

    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    weather = support.start_weather(workdir)
    legacy = support.start_weather(workdir, name="legacy", handshake_only=True)
    flappy_port = support.free_port()
    flappy = support.start_weather(workdir, name="flappy", port=flappy_port)
    llm = scripted_llm.ScriptedLLM(models=["tiny"])
    llm.start()
    llm.script([arithmetician], repeat_last=True)
    gw = support.Gateway(workdir, [weather, legacy, flappy])
    config = json.loads(gw.config_path.read_text())
    config["openai"] = {"upstream": {"base_url": llm.base_url, "models": ["tiny"], "timeout_ms": 10000},
                        "tools": ["weather__*"], "max_tool_rounds": 2}
    gw.config_path.write_text(json.dumps(config, indent=2))
    gw.start()
    pid = gw.proc.pid
    started = time.monotonic()
    deadline = started + args.minutes * 60
    traffic = Traffic(gw, support, deadline)
    threads = [threading.Thread(target=f, daemon=True) for f in
               (traffic.modern_calls, traffic.sessions, traffic.streams, traffic.openai_chats, traffic.flapping_calls)]
    for t in threads:
        t.start()
    samples: list[dict[str, Any]] = []
    next_flap = started + args.flap_secs
    next_sample = started
    flaps = 0
    print(f"soak: {args.minutes:g} min, gateway pid {pid}, load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"{'min':>5} {'RSS KiB':>8} {'threads':>7} {'fds':>4}  counts", flush=True)
    try:
        while True:
            now = time.monotonic()
            if now >= next_sample:
                figures = proc_figures(pid)
                figures["minute"] = (now - started) / 60
                samples.append(figures)
                with traffic.lock:
                    counts = dict(traffic.counts)
                print(f"{figures['minute']:5.1f} {figures['rss_kib']:8d} {figures['threads']:7d} {figures['fds']:4d}  "
                      f"{json.dumps(counts, sort_keys=True)}", flush=True)
                next_sample += args.sample_secs
                if now >= deadline:
                    break
            if now >= next_flap and now < deadline - 5:
                flappy.proc.kill()
                time.sleep(3)
                flappy = support.start_weather(workdir, name="flappy", port=flappy_port)
                flaps += 1
                next_flap = time.monotonic() + args.flap_secs
            if not gw.proc.alive():
                raise SystemExit(f"the gateway died:\n{gw.proc.describe()}")
            time.sleep(0.5)
        for t in threads:
            t.join(timeout=60)
    finally:
        gw.close()
        flappy.close()
        legacy.close()
        weather.close()
        llm.stop()

    # Figures that swing with the traffic (a stream's thread lives until its client is found
    # gone) are compared peak to peak: the second quarter of the run (after the warm-up) against
    # the last quarter.
    quarter = max(1, len(samples) // 4)
    settled, last = samples[quarter:2 * quarter], samples[-quarter:]
    verdict = []
    for key, allowance in (("rss_kib", RSS_ALLOWANCE_KIB), ("threads", THREAD_ALLOWANCE), ("fds", FD_ALLOWANCE)):
        if len(samples) < 8:
            verdict.append(f"{key}: too short a run to judge (peak {max(s[key] for s in samples)})")
            continue
        before, after = max(s[key] for s in settled), max(s[key] for s in last)
        state = "flat" if after - before <= allowance else "GROWING"
        verdict.append(f"{key}: {state} (peak of the second quarter {before}, of the last quarter {after}, "
                       f"allowance {allowance})")
    print(f"flaps: {flaps}; load average at the end {os.getloadavg()[0]:.2f}")
    for line in verdict:
        print(line)
    failed = [k for k, v in traffic.counts.items() if "FAILED" in k and v]
    if failed or any("GROWING" in line for line in verdict):
        raise SystemExit(f"soak: not clean: {failed or ''} {[v for v in verdict if 'GROWING' in v]}")
    print("soak: clean")


if __name__ == "__main__":
    main()
