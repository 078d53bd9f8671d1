"""Faults around the gateway (issue #21, items 1 and 2): clients that stall or stop reading, and
backends that hang, die, restart, lie or flood. Everyone else must not notice.

Part 1, stalled and slow clients: 500 connections that send half a request and stop, and 50 MCP
clients whose listen/GET streams never read (a tiny receive buffer and a large flood of resource
updates, so their streams really fill up) leave `/health` under 100 ms, other clients' calls at
their normal latency, and the healthy streams fed; threads and memory stay under stated bounds,
and everything is let go after `io_timeout` / `request_timeout`. A subscribed client that
vanishes never blocks its backend.

Part 2, hanging, dying and lying backends: one that never answers, one that answers invalid
JSON, an endless SSE answer, an answer over the 64 MiB response cap, 5,000 tools, a stdio
backend killed mid-call, and one that restarts every few seconds. Calls to a healthy backend keep
their latency, each bad call ends with a clear JSON-RPC error within its timeout, the killed
backend is back after its backoff without any client action, and RSS stays bounded.

Everything listens on 127.0.0.1, every wait is bounded, and the fixture backends are stdlib-only
(fixtures/fault_stdio.py, fixtures/fault_http.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

import support

FAULT_STDIO = support.FIXTURES / "fault_stdio.py"

MIB = 1024 * 1024


# --- the gateway process, seen from /proc -----------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """Threads, VmRSS and VmHWM (peak RSS, KiB) of process `pid`."""
    text = Path(f"/proc/{pid}/status").read_text()
    out = {}
    for key in ("Threads", "VmRSS", "VmHWM"):
        found = re.search(rf"^{key}:\s+(\d+)", text, re.M)
        assert found, text
        out[key] = int(found.group(1))
    return out


def thread_names(pid: int) -> Counter[str]:
    """How many threads of `pid` carry each name (`mcp-stream` is one open event stream's writer)."""
    names: Counter[str] = Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names[(task / "comm").read_text().strip()] += 1
        except OSError:
            pass  # the thread ended meanwhile
    return names


class Sampler:
    """Samples the gateway's thread count every 50 ms in the background; `peak` is the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="sampler", daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, proc_status(self.pid)["Threads"])
            time.sleep(0.05)

    def __enter__(self) -> "Sampler":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def wait_until(what: str, timeout: float, probe: Callable[[], Any], ok: Callable[[Any], bool] = bool, every: float = 0.1) -> Any:
    """Polls `probe` until `ok` accepts what it returns (that value is returned); fails naming
    `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if ok(last):
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.1f}s (last: {last!r})")


# --- clients -----------------------------------------------------------------------------------------


def call_body(name: str, arguments: dict, request_id: int | str = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": support.modern_meta()}}


def call_tool(http: httpx2.Client, gw: support.Gateway, name: str, arguments: dict, timeout: float = 30) -> tuple[float, dict]:
    """One 2026-07-28 `tools/call`: seconds it took, and the JSON-RPC response."""
    start = time.monotonic()
    r = http.post(gw.url, json=call_body(name, arguments), headers=support.modern_headers(gw.token, "tools/call", name), timeout=timeout)
    elapsed = time.monotonic() - start
    return elapsed, support.final_message(r, 1)


def text_of(message: dict) -> str:
    assert "result" in message, message
    return message["result"]["content"][0]["text"]


def health_latency(port: int) -> float:
    """Seconds for one `GET /health` on a new connection, to its complete answer (inf on failure)."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return float("inf")
    return time.monotonic() - start if data.startswith(b"HTTP/1.1 200") and b'"ok"' in data else float("inf")


def bound_for(baseline: float) -> float:
    """The median latency allowed under load: 3x the quiet median, or 20 ms more, whichever is
    larger (a shared 2-core machine is noisy; a blocked path costs seconds, not milliseconds)."""
    return max(3 * baseline, baseline + 0.020)


def ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.0f}" for v in values)


class LatencyProbe:
    """Calls `tool` on the gateway every `every` seconds in the background, keeping each latency
    and any failure: the 'other client' whose calls must keep their normal latency."""

    def __init__(self, gw: support.Gateway, tool: str, every: float = 0.05) -> None:
        self.gw, self.tool, self.every = gw, tool, every
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"probe-{tool}", daemon=True)

    def run(self) -> None:
        with httpx2.Client(timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                try:
                    elapsed, message = call_tool(http, self.gw, self.tool, {"text": f"probe {n}"})
                    if message.get("result", {}).get("content", [{}])[0].get("text") == f"probe {n}":
                        self.latencies.append(elapsed)
                    else:
                        self.failures.append(json.dumps(message)[:300])
                except (httpx2.HTTPError, AssertionError, ValueError) as e:
                    self.failures.append(repr(e)[:300])
                self.stop.wait(self.every)

    def __enter__(self) -> "LatencyProbe":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=35)

    def median(self) -> float:
        assert self.latencies, f"no successful probe call; failures: {self.failures[:3]}"
        return statistics.median(self.latencies)


def quiet_median(gw: support.Gateway, tool: str, n: int = 30) -> float:
    """The median latency of `tool` with nothing else going on: the lowest median of three rounds
    of `n` // 3 calls (a round may still meet the gateway's start-up work, e.g. a big catalog)."""
    with httpx2.Client(timeout=30) as http:
        for _ in range(5):  # warm up connections on both sides
            call_tool(http, gw, tool, {"text": "warm"})
        medians = []
        for _round in range(3):
            latencies = []
            for i in range(max(1, n // 3)):
                elapsed, message = call_tool(http, gw, tool, {"text": f"quiet {i}"})
                assert text_of(message) == f"quiet {i}", message
                latencies.append(elapsed)
            medians.append(statistics.median(latencies))
            time.sleep(0.2)
    return min(medians)


# --- backends ----------------------------------------------------------------------------------------


def fault_stdio(name: str, pid_file: Path, timeout_ms: int = 5000) -> support.Backend:
    """fixtures/fault_stdio.py, spawned by the gateway; it writes its pid to `pid_file`."""
    return support.Backend(name, None, {
        "command": sys.executable,
        "args": [str(FAULT_STDIO)],
        "cwd": str(support.FIXTURES),
        "env": {"FAULT_PID_FILE": str(pid_file)},
        "timeout_ms": timeout_ms,
    })


fault_http = support.start_fault_http


# =====================================================================================================
# Part 1: stalled and slow clients
# =====================================================================================================

STALLED_REQUESTS = 500
STALLED_STREAMS = 50  # half 2026-07-28 `subscriptions/listen`, half handshake-era GET
HEALTHY_STREAMS = 3
IO_TIMEOUT = 4.0  # limits.io_timeout_ms and limits.request_timeout_ms below
MAX_CONNECTIONS = 640  # limits.max_connections (and per address: every client here is 127.0.0.1)
FLOOD_COUNT = 500  # resource updates the backend sends...
FLOOD_SIZE = 2048  # ...of about this many bytes each: 1 MiB per stream
HOT = "fault://topic/hot"

# The bounds, from the design (src/http_util.rs, vendor/tiny_http):
# - threads: one per open connection (tiny_http's pool, capped by limits.max_connections) plus
#   one writer per open event stream (QueuedStream), on top of what the idle gateway runs;
#   32 more for short-lived ones (the unsubscribe threads, a probe's connection).
THREAD_SLACK = 32
# - memory: a stream that stops reading holds at most QUEUED_EVENTS (256) events until it is
#   dropped, each a parsed update of FLOOD_SIZE bytes (counted twice: the JSON value with the
#   allocator's overhead, and the text being written), and each connection thread costs at most
#   96 KiB (its stack is 2 MiB virtual, only the touched part counts, plus the connection's
#   buffers and its share of malloc's arenas); 16 MiB of slack. Measured: about half of it.
QUEUED_EVENTS = 256
RSS_BOUND_KIB = (
    (STALLED_STREAMS + HEALTHY_STREAMS) * QUEUED_EVENTS * 2 * FLOOD_SIZE // 1024
    + MAX_CONNECTIONS * 96
    + 16 * 1024
)


def stall_config(pid_file: Path) -> tuple[list[Callable[[], support.Backend]], dict[str, Any]]:
    limits = {
        "io_timeout_ms": int(IO_TIMEOUT * 1000),
        "request_timeout_ms": int(IO_TIMEOUT * 1000),
        "max_connections": MAX_CONNECTIONS,
        "max_connections_per_address": MAX_CONNECTIONS,
        "call_timeout_ms": 5000,
    }
    return [lambda: fault_stdio("fault", pid_file)], limits


def listen_bytes(gw: support.Gateway, request_id: str, uris: list[str]) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "subscriptions/listen", "params": {
        "notifications": {"resourceSubscriptions": uris}, "_meta": support.modern_meta()}}).encode()
    headers = {**support.modern_headers(gw.token, "subscriptions/listen"), "Host": f"127.0.0.1:{gw.port}",
               "Content-Length": str(len(body))}
    head = "POST /mcp HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


def handshake_session(http: httpx2.Client, gw: support.Gateway, subscribe: list[str]) -> str:
    """A handshake-era session subscribed to `subscribe`; its id."""
    accept = {**gw.auth(), "Accept": "application/json, text/event-stream"}
    init = http.post(gw.url, headers=accept, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "faults", "version": "1"}}})
    assert init.status_code == 200, init.text
    session = init.headers["mcp-session-id"]
    headers = {**accept, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    http.post(gw.url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    for n, uri in enumerate(subscribe):
        r = http.post(gw.url, headers=headers, json={"jsonrpc": "2.0", "id": 10 + n, "method": "resources/subscribe", "params": {"uri": uri}})
        assert "result" in support.final_message(r), r.text
    return session


def get_stream_bytes(gw: support.Gateway, session: str) -> bytes:
    return (f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nAuthorization: Bearer {gw.token}\r\n"
            f"Accept: text/event-stream\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n").encode()


def non_reading_socket(gw: support.Gateway, request: bytes) -> socket.socket:
    """A connection that sends `request` and never reads: its receive buffer is as small as Linux
    allows and its MSS tiny (so the gateway's send buffer stays small too), and the answer's
    head is only peeked at, never consumed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", gw.port))
    sock.sendall(request)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        head = sock.recv(64, socket.MSG_PEEK)
        if head.startswith(b"HTTP/1.1 200"):
            return sock
        if head and not b"HTTP/1.1 200".startswith(head):
            raise AssertionError(f"the stream was refused: {head!r}")
        time.sleep(0.02)
    raise AssertionError("no answer head within 10 s")


def half_request(gw: support.Gateway, n: int) -> bytes:
    """The first half of a request, in four kinds: a head cut short, a token-less /mcp POST with
    half its body, an authenticated /mcp POST with half its body, an OAuth-sized form half sent."""
    body = json.dumps(call_body("fault__echo", {"text": "never finished"})).encode()
    kind = n % 4
    if kind == 0:
        return f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nContent-Ty".encode()
    auth = f"Authorization: Bearer {gw.token}\r\n" if kind == 2 else ""
    path = "/oauth/token" if kind == 3 else "/mcp"
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n{auth}Content-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body[: len(body) // 2]


@dataclass
class Listener:
    """A healthy client reading its stream: the `seq` of each update of HOT and how late it came."""

    kind: str
    seqs: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    error: str | None = None
    opened: threading.Event = field(default_factory=threading.Event)


def read_stream(gw: support.Gateway, listener: Listener, session: str | None, stop: threading.Event) -> None:
    try:
        with httpx2.Client(timeout=30) as http:
            if session is None:
                body = json.loads(listen_bytes(gw, "healthy", [HOT]).split(b"\r\n\r\n", 1)[1])
                request = http.build_request("POST", gw.url, json=body, headers=support.modern_headers(gw.token, "subscriptions/listen"))
            else:
                request = http.build_request("GET", gw.url, headers={**gw.auth(), "Accept": "text/event-stream",
                                                                    "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
            r = http.send(request, stream=True)
            try:
                assert r.status_code == 200, r.status_code
                listener.opened.set()
                for line in r.iter_lines():
                    if stop.is_set():
                        return
                    if not line.startswith("data:") or not line[5:].strip():
                        continue
                    message = json.loads(line[5:])
                    params = message.get("params", {})
                    if message.get("method") == "notifications/resources/updated" and params.get("uri") == HOT:
                        listener.seqs.append(params["seq"])
                        listener.delays.append(time.time() - params["sent_at"])
                        if params["seq"] == FLOOD_COUNT - 1:
                            return
            finally:
                r.close()
    except Exception as e:  # reported by the test
        listener.error = repr(e)
    finally:
        listener.opened.set()


def subscriptions_at_backend(http: httpx2.Client, gw: support.Gateway) -> set[str]:
    _, message = call_tool(http, gw, "fault__subscriptions", {})
    return set(json.loads(text_of(message)))


def still_open(socks: list[socket.socket]) -> list[socket.socket]:
    """The sockets on which the gateway has neither answered nor closed yet."""
    left = []
    for sock in socks:
        sock.setblocking(False)
        try:
            sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            left.append(sock)
        except OSError:
            pass  # reset: closed
    return left


def test_stalled_requests_and_non_reading_streams_cost_nobody_else_anything(tmp_path: Path) -> None:
    starters, limits = stall_config(tmp_path / "fault.pid")
    with support.running_gateway(tmp_path, starters, limits=limits) as gw, httpx2.Client(timeout=30) as http:
        assert gw.proc is not None
        pid = gw.proc.pid
        base_call = quiet_median(gw, "fault__echo")
        base_health = statistics.median(health_latency(gw.port) for _ in range(10))
        quiet = proc_status(pid)
        socks: list[socket.socket] = []
        stop = threading.Event()
        listeners: list[Listener] = []
        readers: list[threading.Thread] = []
        try:
            with Sampler(pid) as sampler:
                # The healthy streams: two listen streams and one handshake-era GET stream.
                for n in range(HEALTHY_STREAMS):
                    listener = Listener("listen" if n < 2 else "get")
                    session = None if n < 2 else handshake_session(http, gw, [HOT])
                    t = threading.Thread(target=read_stream, args=(gw, listener, session, stop), name=f"reader-{n}", daemon=True)
                    t.start()
                    listeners.append(listener)
                    readers.append(t)
                for listener in listeners:
                    assert listener.opened.wait(10) and listener.error is None, listener.error
                # The streams that never read: each listen stream also subscribes to a topic of
                # its own, so the backend hears when that stream's subscriptions are given up.
                stalled_streams = []
                for n in range(STALLED_STREAMS):
                    if n % 2 == 0:
                        request = listen_bytes(gw, f"stalled-{n}", [HOT, f"fault://topic/stalled-{n}"])
                    else:
                        request = get_stream_bytes(gw, handshake_session(http, gw, [HOT]))
                    stalled_streams.append(non_reading_socket(gw, request))
                socks += stalled_streams
                own_topics = {f"fault://topic/stalled-{n}" for n in range(0, STALLED_STREAMS, 2)}
                assert subscriptions_at_backend(http, gw) == own_topics | {HOT}
                streams_open = thread_names(pid)["mcp-stream"]
                assert streams_open == STALLED_STREAMS + HEALTHY_STREAMS, thread_names(pid)

                # 500 connections send half a request and stop (in batches: the listen backlog).
                stalled_requests = []
                for n in range(STALLED_REQUESTS):
                    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
                    sock.sendall(half_request(gw, n))
                    stalled_requests.append(sock)
                    if n % 50 == 49:
                        time.sleep(0.05)
                opened_at = time.monotonic()
                socks += stalled_requests

                # The flood: 500 updates of 2 KiB, 25 every 100 ms, while /health and calls are timed.
                flood = {"uri": HOT, "count": FLOOD_COUNT, "size": FLOOD_SIZE, "burst": 25, "pause_ms": 100}
                _, started = call_tool(http, gw, "fault__flood", flood)
                assert text_of(started) == "flooding"
                health: list[float] = []
                calls: list[float] = []
                flood_end = time.monotonic() + FLOOD_COUNT / 25 * 0.1 + 0.5
                while time.monotonic() < flood_end:
                    health.append(health_latency(gw.port))
                    elapsed, message = call_tool(http, gw, "fault__echo", {"text": f"during {len(calls)}"})
                    assert text_of(message) == f"during {len(calls)}", message
                    calls.append(elapsed)
                    time.sleep(0.05)
                for t in readers:
                    t.join(timeout=10)
                peak_during = sampler.peak

                # Everything held by the stalled clients is let go: the writers of the streams
                # that never read end (io_timeout), their own topics are unsubscribed at the
                # backend, and every half request gets its 408 or a close (request_timeout).
                released_in = time.monotonic()
                wait_until("the non-reading streams' writer threads end", IO_TIMEOUT + 2,
                           lambda: thread_names(pid)["mcp-stream"], lambda n: n == HEALTHY_STREAMS)
                streams_released = time.monotonic() - released_in
                wait_until("the non-reading streams' own topics are unsubscribed at the backend", 5,
                           lambda: subscriptions_at_backend(http, gw), lambda subs: subs == {HOT})
                wait_until("every half request is answered or closed", max(0.0, opened_at + IO_TIMEOUT + 3 - time.monotonic()) + 0.5,
                           lambda: len(still_open(stalled_requests)), lambda n: n == 0)
                requests_released = time.monotonic() - opened_at
                # tiny_http's idle connection threads end 5 s after their last connection.
                settled = wait_until("the gateway's threads come back down", 5 + 5,
                                     lambda: proc_status(pid)["Threads"], lambda n: n <= quiet["Threads"] + 2 * HEALTHY_STREAMS + 8,
                                     every=0.25)
            after = proc_status(pid)
            answers = Counter()
            for sock in stalled_requests:
                sock.setblocking(False)
                try:
                    head = sock.recv(16)
                    answers[head[9:12].decode() if head else "closed"] += 1
                except OSError:
                    answers["reset"] += 1
        finally:
            stop.set()
            for sock in socks:
                sock.close()

        thread_bound = quiet["Threads"] + MAX_CONNECTIONS + STALLED_STREAMS + HEALTHY_STREAMS + THREAD_SLACK
        growth = after["VmHWM"] - quiet["VmRSS"]
        print(
            f"\n/health: quiet {base_health * 1000:.1f} ms, under stall max {max(health) * 1000:.1f} ms over {len(health)} probes"
            f"\ncalls to the flooding backend: quiet median {base_call * 1000:.1f} ms, during median {statistics.median(calls) * 1000:.1f} ms,"
            f" max {max(calls) * 1000:.0f} ms over {len(calls)} (bound {bound_for(base_call) * 1000:.1f} ms)"
            f"\nhealthy streams: {[len(x.seqs) for x in listeners]} updates, worst delay {max(max(x.delays, default=0) for x in listeners) * 1000:.0f} ms"
            f"\nthreads: quiet {quiet['Threads']}, peak {max(sampler.peak, peak_during)} (bound {thread_bound}), settled {settled}"
            f"\nVmRSS quiet {quiet['VmRSS'] / 1024:.1f} MiB, peak {after['VmHWM'] / 1024:.1f} MiB (growth {growth / 1024:.1f}, bound {RSS_BOUND_KIB / 1024:.0f} MiB),"
            f" after {after['VmRSS'] / 1024:.1f} MiB"
            f"\nreleased: non-reading streams {streams_released:.1f} s after the flood, half requests {requests_released:.1f} s after they were sent: {dict(answers)}"
        )
        assert max(health) < 0.1, f"/health took (ms): {ms(health)}"
        assert statistics.median(calls) < bound_for(base_call), f"calls took (ms): {ms(calls)}; quiet median {base_call * 1000:.1f}"
        # A backend reader thread that waited for a stalled client would hold a call for io_timeout.
        assert max(calls) < IO_TIMEOUT / 4, f"calls took (ms): {ms(calls)}"
        for listener in listeners:
            assert listener.error is None, listener.error
            assert listener.seqs == list(range(FLOOD_COUNT)), f"{listener.kind}: got {len(listener.seqs)} updates"
            assert max(listener.delays) < IO_TIMEOUT / 4, f"{listener.kind}: an update came {max(listener.delays):.1f}s late"
        assert max(sampler.peak, peak_during) <= thread_bound
        assert growth <= RSS_BOUND_KIB, f"VmRSS grew by {growth / 1024:.1f} MiB"
        assert answers["closed"] + answers["reset"] + answers["408"] == STALLED_REQUESTS, dict(answers)
        assert requests_released < IO_TIMEOUT + 3
        assert gw.proc.alive()


def test_a_subscribed_client_that_vanishes_never_blocks_its_backend(tmp_path: Path) -> None:
    starters, limits = stall_config(tmp_path / "fault.pid")
    topic = "fault://topic/vanishing"
    with support.running_gateway(tmp_path, starters, limits=limits) as gw, httpx2.Client(timeout=30) as http:
        base_call = quiet_median(gw, "fault__echo", n=10)
        gone = non_reading_socket(gw, listen_bytes(gw, "vanishing", [topic]))
        assert subscriptions_at_backend(http, gw) == {topic}
        # It vanishes without a word (RST), while subscribed.
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        gone.close()
        # Updates of its topic keep coming: the first write after the reset fails, and the
        # subscription is given up on another thread while the backend's reader reads on.
        calls: list[float] = []
        released = None
        start = time.monotonic()
        while time.monotonic() - start < 10:
            elapsed, message = call_tool(http, gw, "fault__flood", {"uri": topic, "count": 5, "size": 512})
            assert text_of(message) == "flooding", message
            calls.append(elapsed)
            elapsed, message = call_tool(http, gw, "fault__echo", {"text": "still here"})
            assert text_of(message) == "still here", message
            calls.append(elapsed)
            t0 = time.monotonic()
            subs = subscriptions_at_backend(http, gw)
            calls.append(time.monotonic() - t0)
            if not subs:
                released = time.monotonic() - start
                break
            time.sleep(0.1)
        print(f"\nvanished subscriber released after {released}s; calls meanwhile (ms): {ms(calls)}; quiet median {base_call * 1000:.1f} ms")
        assert released is not None, "the vanished client's subscription was never given up at the backend"
        # An unsubscribe sent from the backend's own reader thread would wait for an answer only
        # that thread can read: the calls around it would take the full call timeout (5 s).
        assert max(calls) < 1.0, f"calls took (ms): {ms(calls)}"
        assert statistics.median(calls) < bound_for(base_call)


# =====================================================================================================
# Part 2: hanging, dying and lying backends
# =====================================================================================================

HANG_TIMEOUT = 2.0  # timeout_ms of the backends that never finish an answer
SLACK = 1.5  # a bad call may end this much after its timeout (a loaded 2-core machine)
HUGE_RESPONSE_CAP = 64 * MIB  # MAX_JSON_BODY in src/backend/http.rs
# A response over the cap is read up to the cap and dropped: its buffer may double once while
# growing (Vec), and 32 MiB for the allocator's arenas and the rest.
HUGE_RSS_BOUND_KIB = (2 * HUGE_RESPONSE_CAP + 32 * MIB) // 1024
MANY_TOOLS = 5000


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[support.Gateway, float]]:
    """A gateway fronting a healthy backend and the misbehaving ones; with the healthy backend's
    median call latency measured while the others are quiet."""
    workdir = tmp_path_factory.mktemp("bad")
    starters = [
        lambda: fault_http(workdir, "healthy", "healthy"),
        lambda: fault_http(workdir, "hang", "hang", timeout_ms=int(HANG_TIMEOUT * 1000)),
        lambda: fault_http(workdir, "invalid", "invalid"),
        lambda: fault_http(workdir, "endless", "endless", timeout_ms=int(HANG_TIMEOUT * 1000)),
        lambda: fault_http(workdir, "huge", "huge", timeout_ms=15000),
        lambda: fault_http(workdir, "many", "many"),
        lambda: fault_http(workdir, "flapping", "flapping"),
        lambda: fault_stdio("crashy", workdir / "crashy.pid", timeout_ms=10000),
    ]
    with support.running_gateway(workdir, starters, limits={"call_timeout_ms": 5000}) as gw:
        yield gw, quiet_median(gw, "healthy__echo")


def assert_clean_error(message: dict, backend: str, took: float, limit: float, *needles: str) -> None:
    """A JSON-RPC error naming `backend` and one of `needles`, within `limit` seconds."""
    assert "error" in message, f"{backend}: not an error: {json.dumps(message)[:300]}"
    text = message["error"]["message"]
    assert f"'{backend}'" in text, f"the error does not name the backend: {text}"
    assert any(n in text for n in needles), f"{backend}: unclear error {text!r} (wanted one of {needles})"
    assert message["error"].get("data", {}).get("backend") == backend, message
    assert took < limit, f"{backend}: the error came after {took:.1f}s (limit {limit:.1f}s): {text}"


def run_bad_calls(gw: support.Gateway, tool: str, arguments: dict, n: int) -> list[tuple[float, dict]]:
    def one(_: int) -> tuple[float, dict]:
        with httpx2.Client(timeout=60) as http:
            return call_tool(http, gw, tool, arguments, timeout=60)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def assert_healthy_kept_its_latency(probe: LatencyProbe, baseline: float, what: str) -> None:
    print(f"\nhealthy calls during {what}: median {probe.median() * 1000:.1f} ms over {len(probe.latencies)}"
          f" (quiet {baseline * 1000:.1f} ms, bound {bound_for(baseline) * 1000:.1f} ms), max {max(probe.latencies) * 1000:.0f} ms")
    assert not probe.failures, probe.failures[:3]
    assert probe.median() < bound_for(baseline), f"healthy calls (ms): {ms(probe.latencies)}"


def test_a_backend_that_never_answers_times_out_and_excess_calls_are_refused_as_busy(bad) -> None:
    gw, baseline = bad
    with LatencyProbe(gw, "healthy__echo") as probe:
        results = run_bad_calls(gw, "hang__hang", {}, 6)  # limits.max_calls_per_backend is 4
    kinds = Counter("busy" if "busy" in m["error"]["message"] else "timeout" for _, m in results if "error" in m)
    print(f"\nhang: calls ended after (s): {', '.join(f'{t:.2f}' for t, _ in results)}; {dict(kinds)}")
    for took, message in results:
        assert_clean_error(message, "hang", took, HANG_TIMEOUT + SLACK, "did not answer within 2000 ms", "is busy")
    # Four run (the slots), two wait for a slot: they end as busy, or as timed out if a slot came
    # free a moment before their time was up; none outlasts its timeout.
    assert kinds["timeout"] >= 4 and sum(kinds.values()) == 6, dict(kinds)
    assert_healthy_kept_its_latency(probe, baseline, "six calls to a backend that never answers")


def test_a_backend_answering_invalid_json_gets_a_clear_error_at_once(bad) -> None:
    gw, baseline = bad
    with LatencyProbe(gw, "healthy__echo") as probe, httpx2.Client(timeout=30) as http:
        results = [call_tool(http, gw, "invalid__invalid", {}) for _ in range(5)]
        time.sleep(0.5)
    for took, message in results:
        assert_clean_error(message, "invalid", took, 1.0, "not JSON")
    assert_healthy_kept_its_latency(probe, baseline, "calls answered with invalid JSON")


def test_an_endless_sse_answer_ends_at_the_call_timeout(bad) -> None:
    gw, baseline = bad
    with LatencyProbe(gw, "healthy__echo") as probe:
        results = run_bad_calls(gw, "endless__endless", {}, 2)
    for took, message in results:
        assert_clean_error(message, "endless", took, HANG_TIMEOUT + SLACK, "did not answer within 2000 ms")
        assert took >= HANG_TIMEOUT - 0.1, f"the endless stream ended early ({took:.2f}s): {message}"
    assert_healthy_kept_its_latency(probe, baseline, "two endless SSE answers")


def test_an_answer_over_the_response_cap_is_refused_with_bounded_memory(bad) -> None:
    gw, baseline = bad
    assert gw.proc is not None
    before = proc_status(gw.proc.pid)
    with LatencyProbe(gw, "healthy__echo") as probe, httpx2.Client(timeout=60) as http:
        results = [call_tool(http, gw, "huge__huge", {}, timeout=60) for _ in range(3)]
    after = proc_status(gw.proc.pid)
    growth = after["VmHWM"] - before["VmRSS"]
    print(f"\nhuge: errors after (s) {', '.join(f'{t:.2f}' for t, _ in results)}: {results[0][1].get('error', {}).get('message')}"
          f"\nVmRSS before {before['VmRSS'] / 1024:.1f} MiB, peak {after['VmHWM'] / 1024:.1f} MiB (growth {growth / 1024:.1f}, "
          f"bound {HUGE_RSS_BOUND_KIB / 1024:.0f} MiB), after {after['VmRSS'] / 1024:.1f} MiB")
    for took, message in results:
        assert_clean_error(message, "huge", took, 15 + SLACK, "larger than")
    # Three answers over the cap in a row cost what one does: nothing is kept.
    assert growth <= HUGE_RSS_BOUND_KIB, f"VmRSS grew by {growth / 1024:.1f} MiB"
    assert_healthy_kept_its_latency(probe, baseline, "three 65 MiB answers")


def list_all_tools(http: httpx2.Client, gw: support.Gateway) -> list[str]:
    """Every tool name, page after page (`nextCursor`), bounded to 100 pages."""
    names: list[str] = []
    cursor = None
    for _page in range(100):
        params: dict[str, Any] = {"_meta": support.modern_meta()}
        if cursor:
            params["cursor"] = cursor
        r = http.post(gw.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params},
                      headers=support.modern_headers(gw.token, "tools/list"))
        result = support.final_message(r, 1)["result"]
        names += [t["name"] for t in result["tools"]]
        cursor = result.get("nextCursor")
        if not cursor:
            return names
    raise AssertionError("tools/list did not end within 100 pages")


# Each page of tools/list copies the caller's whole visible catalog (serde_json values, about
# 7 MiB for 5,000 tools) and pages it; malloc keeps each worker thread's arena at its high-water
# mark. So the first listings grow RSS by up to workers (8) x 16 MiB, and later ones by nothing.
MANY_RSS_BOUND_KIB = 8 * 16 * 1024 + 32 * 1024
MANY_RSS_PLATEAU_KIB = 8 * 1024


def test_five_thousand_tools_are_listed_in_pages_and_callable_with_bounded_memory(bad) -> None:
    gw, baseline = bad
    assert gw.proc is not None
    before = proc_status(gw.proc.pid)
    with LatencyProbe(gw, "healthy__echo") as probe, httpx2.Client(timeout=30) as http:
        started = time.monotonic()
        listings = [list_all_tools(http, gw) for _ in range(4)]
        listed_in = time.monotonic() - started
        warm = proc_status(gw.proc.pid)
        for _ in range(4):
            again = list_all_tools(http, gw)
        took, message = call_tool(http, gw, "many__t4999", {})
        assert text_of(message) == "t4999"
    after = proc_status(gw.proc.pid)
    status = {b["name"]: b for b in gw.status()["backends"]}
    print(f"\nmany: {len(again)} tools listed 8 times ({listed_in:.1f}s for the first 4); VmRSS before"
          f" {before['VmRSS'] / 1024:.1f} MiB, after the first listings {warm['VmRSS'] / 1024:.1f} MiB, after 4 more"
          f" {after['VmRSS'] / 1024:.1f} MiB (bound +{MANY_RSS_BOUND_KIB / 1024:.0f} MiB, plateau +{MANY_RSS_PLATEAU_KIB / 1024:.0f} MiB)")
    for names in [*listings, again]:
        many = [n for n in names if n.startswith("many__")]
        assert len(many) == MANY_TOOLS and len(set(many)) == MANY_TOOLS, len(many)
    assert status["many"]["tools"] == MANY_TOOLS, status["many"]
    assert after["VmHWM"] - before["VmRSS"] <= MANY_RSS_BOUND_KIB
    assert after["VmRSS"] - warm["VmRSS"] <= MANY_RSS_PLATEAU_KIB, "listing the same tools again keeps growing RSS"
    assert_healthy_kept_its_latency(probe, baseline, "eight listings of 5,000 tools")


def test_a_stdio_backend_killed_mid_call_fails_the_call_and_comes_back_by_itself(bad) -> None:
    gw, baseline = bad
    pid_file = Path(gw.workdir) / "crashy.pid"
    old_pid = int(pid_file.read_text())
    with LatencyProbe(gw, "healthy__echo") as probe, ThreadPoolExecutor(1) as pool, httpx2.Client(timeout=30) as http:
        pending = pool.submit(call_tool, http, gw, "crashy__sleep", {"seconds": 8})
        time.sleep(0.5)  # the call is in flight
        killed_at = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        took, message = pending.result(timeout=20)
        failed_after = time.monotonic() - killed_at
        # No client action: the supervisor starts it again; /status says so, with a new process.
        wait_until("the killed backend is up again", 10,
                   lambda: ({b["name"]: b["state"] for b in gw.status()["backends"]}.get("crashy"), pid_file.read_text().strip()),
                   lambda seen: seen[0] == "up" and seen[1] not in ("", str(old_pid)))
        recovered_after = time.monotonic() - killed_at
        _, again = call_tool(http, gw, "crashy__echo", {"text": "back"})
        time.sleep(0.3)
    print(f"\nkilled mid-call: the call failed {failed_after:.2f}s after the kill: {message.get('error', {}).get('message')};"
          f" up again after {recovered_after:.2f}s (pid {old_pid} -> {pid_file.read_text()})")
    assert_clean_error(message, "crashy", failed_after, 2.0, "process exited", "unavailable")
    assert text_of(again) == "back"
    # BACKOFF_START is 1 s and a lost connection is retried at once; Python starts in well under 2 s.
    assert recovered_after < 1 + 2 + 3
    assert_healthy_kept_its_latency(probe, baseline, "a kill and restart")


def test_a_backend_that_restarts_every_few_seconds_is_followed_without_client_action(bad) -> None:
    gw, baseline = bad
    flapper = next(b for b in gw.backends if b.name == "flapping")
    assert flapper.proc is not None
    restarts_before = flapper.proc.stderr().count("restarting")
    outcomes: list[tuple[float, dict]] = []
    with LatencyProbe(gw, "healthy__echo") as probe, httpx2.Client(timeout=30) as http:
        end = time.monotonic() + 8
        while time.monotonic() < end:
            outcomes.append(call_tool(http, gw, "flapping__echo", {"text": "hello"}))
            time.sleep(0.1)
    restarts = flapper.proc.stderr().count("restarting") - restarts_before
    ok = [t for t, m in outcomes if m.get("result", {}).get("content", [{}])[0].get("text") == "hello"]
    errors = [(t, m) for t, m in outcomes if "error" in m]
    print(f"\nflapping: {restarts} restarts in 8 s; {len(ok)} of {len(outcomes)} calls answered, max {max(ok) * 1000:.0f} ms;"
          f" errors: {Counter(m['error']['message'] for _, m in errors)}")
    assert restarts >= 2, "the backend did not restart during the test"
    for took, message in errors:
        assert_clean_error(message, "flapping", took, 5 + SLACK, "unavailable", "failed", "did not answer")
    assert len(ok) + len(errors) == len(outcomes), [m for _, m in outcomes if m not in [e for _, e in errors]][:3]
    assert len(ok) >= 0.8 * len(outcomes), f"only {len(ok)} of {len(outcomes)} calls succeeded"
    assert_healthy_kept_its_latency(probe, baseline, "a backend restarting every 3 s")


def test_all_the_bad_backends_at_once_leave_the_healthy_one_alone(bad) -> None:
    gw, baseline = bad
    assert gw.proc is not None
    before = proc_status(gw.proc.pid)
    bad_calls = [("hang__hang", {}), ("hang__hang", {}), ("invalid__invalid", {}), ("endless__endless", {}),
                 ("huge__huge", {}), ("flapping__echo", {"text": "x"}), ("many__t0001", {})]

    def one(call: tuple[str, dict]) -> tuple[str, float, dict]:
        with httpx2.Client(timeout=60) as http:
            took, message = call_tool(http, gw, *call, timeout=60)
            return call[0], took, message

    with LatencyProbe(gw, "healthy__echo") as probe, ThreadPoolExecutor(len(bad_calls)) as pool:
        results = list(pool.map(one, bad_calls))
    after = proc_status(gw.proc.pid)
    for tool, took, message in results:
        backend = tool.split("__")[0]
        if backend in ("hang", "endless", "invalid", "huge"):
            assert_clean_error(message, backend, took, (15 if backend == "huge" else HANG_TIMEOUT) + SLACK,
                               "did not answer", "not JSON", "larger than")
        else:
            assert "result" in message or "error" in message, message
    assert after["VmHWM"] - before["VmRSS"] <= HUGE_RSS_BOUND_KIB
    assert_healthy_kept_its_latency(probe, baseline, "every bad backend at once")
