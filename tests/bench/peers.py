"""mcp-gateway against its peers: latency, calls per second, memory, CPU, start time and size of
the same `tools/call` through each MCP gateway or proxy, on one machine, in one run. One command:

    cargo build --release            # or pass --build; or point --gateway-bin at another binary
    .venv/bin/python tests/bench/peers.py [--quick] [--gateway-bin target/release/mcp-gateway]

(`.venv` is the tests' venv that `bash .ci/test` makes: the MCP SDK, openai, uvicorn.) It needs
node and npm, python3 with venv, and wrk (Debian's; installed with apt-get when missing and root).

What it does, all on 127.0.0.1, every loop bounded in count and time, every process it starts in
its own process group and killed on exit:
 1. installs the pinned peers into folders of their own (only when their pins changed):
    tests/bench/peers/node_modules (`npm ci` from package-lock.json: supergateway, mcp-proxy) and
    tests/bench/peers/.venv (requirements-peers.txt: mcp-proxy, mcpo, ContextForge);
 2. starts the backend, tests/bench/peers/fast_backend.py (the official MCP Python SDK's MCPServer,
    stateless, JSON answers, one tool `add(a, b)`), over Streamable HTTP; peers that can only front
    a stdio server get the same file over stdio, as their own child;
 3. starts mcp-gateway (one backend, `bench`) and each peer, timing exec to first good answer;
 4. measures, interleaved: concurrency 1 round-robin call by call over every path (each round in a
    new order), then at 16 and 64 connections (wrk, one thread) in short slices taken path after
    path, several rounds;
    memory (RSS, PSS) idle and after load, CPU per call from /proc; the OpenAI face (time to first
    token, one tool round) against the tests' scripted upstream LLM;
 5. prints Markdown tables, with ratios to the backend called directly and to "the ceiling":
    mcp-gateway's own GET /health (no backend, no auth), the fastest answer on this machine.

Options: --quick (tiny counts, well under 2 minutes without installs), --skip KEY (a peer:
supergateway, supergateway-stateless, mcp-proxy-npm, mcp-proxy-py, mcpo, contextforge),
--build (cargo build --release first, and the shape's floor), --gateway-bin PATH, --baseline-bin
PATH (another build of mcp-gateway, measured as a peer of its own in the same run: before and after
a change), --floor-bin PATH (examples/shape_floor.rs built: the gateway's fixed shape alone,
tiny_http workers and its ureq agent passing a call's bytes, to tell what the shape costs from what
the gateway adds; and the same binary with --inline, each connection's thread serving its own
requests, to show what that other shape would cost),
--out FILE (the tables, also).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PEERS = HERE / "peers"
NODE_MODULES = PEERS / "node_modules"
PEERS_VENV = PEERS / ".venv"
BACKEND_PY = PEERS / "fast_backend.py"
LOOPBACK_JS = PEERS / "loopback.cjs"
sys.path.insert(0, str(REPO / "tests" / "interop"))

import support  # noqa: E402  (tests/interop/support.py: Proc, free_port, the 2026-07-28 shapes)

HANDSHAKE_VERSION = "2025-11-25"
ANSWER = "42"  # add(2, 40), what every path must answer


@dataclass(frozen=True)
class Budget:
    c1_calls: int  # calls per path at concurrency 1
    c1_slow_calls: int  # the same, for a path that starts a process per call
    warmup: int  # calls per path before anything is measured
    levels: tuple[int, ...]  # the concurrencies measured with wrk
    rounds: int  # slices per path and concurrency
    slice_s: float  # seconds per slice (whole seconds: wrk takes no fraction)
    openai_runs: int  # chats per OpenAI figure
    c1_deadline_s: float  # the concurrency 1 phase stops here, whatever is left


FULL = Budget(c1_calls=300, c1_slow_calls=10, warmup=20, levels=(16, 64), rounds=3, slice_s=3.0, openai_runs=100, c1_deadline_s=300)
QUICK = Budget(c1_calls=20, c1_slow_calls=2, warmup=3, levels=(16, 64), rounds=1, slice_s=1.0, openai_runs=10, c1_deadline_s=60)

START_TIMEOUT = 120.0  # exec to first good answer, per peer
CALL_TIMEOUT = 30.0  # one call at concurrency 1
WRK_TIMEOUT_S = 10  # wrk's own timeout for one answer


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- /proc: process trees, memory, CPU -------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; [0] is the state


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        if Path(f"/proc/{pid}").exists():
            tree.append(pid)
            todo.extend(children.get(pid, []))
    return tree


def is_backend(pid: int) -> bool:
    """Whether `pid` runs fast_backend.py (as `python fast_backend.py ...`)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return len(argv) > 1 and argv[1] == str(BACKEND_PY).encode()


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of each, and of its children already waited for (cutime + cstime)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += sum(int(x) for x in fields[11:15])
    return total


TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


@dataclass
class Memory:
    rss_kib: int = 0
    pss_kib: int = 0
    processes: int = 0

    def text(self) -> str:
        return f"{self.rss_kib / 1024:.1f} / {self.pss_kib / 1024:.1f}"


def memory(pids: list[int]) -> Memory:
    out = Memory()
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        out.processes += 1
        for line in lines:
            if line.startswith("Rss:"):
                out.rss_kib += int(line.split()[1])
            elif line.startswith("Pss:"):
                out.pss_kib += int(line.split()[1])
    return out


def du_bytes(path: Path, skip_top: str | None = None) -> int:
    """Disk usage (blocks) of a file or folder; `skip_top` leaves out that subfolder of it."""
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for top, dirs, files in os.walk(path):
        if skip_top is not None and Path(top) == path and skip_top in dirs:
            dirs.remove(skip_top)
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
            except OSError:
                pass
    return total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- installing the peers ---------------------------------------------------------------------------


def sha256(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def run(argv: list[str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None and os.geteuid() == 0:
        log("wrk missing: apt-get install wrk")
        run(["apt-get", "update", "-qq"], 600)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], 600,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk not found: `apt-get install wrk` (Debian's package) and run again")
    return wrk


def install_npm() -> None:
    stamp = NODE_MODULES / ".peers.sha256"
    want = sha256(PEERS / "package.json", PEERS / "package-lock.json")
    if stamp.is_file() and stamp.read_text() == want:
        return
    log("npm ci in tests/bench/peers (supergateway, mcp-proxy)")
    # --ignore-scripts: no install script runs (one, of a tunnel library mcp-proxy brings, would
    # download a list from the internet).
    run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(PEERS)], 900)
    stamp.write_text(want)


def install_pypi() -> None:
    stamp = PEERS_VENV / ".requirements.sha256"
    requirements = PEERS / "requirements-peers.txt"
    want = sha256(requirements)
    if stamp.is_file() and stamp.read_text() == want:
        return
    if not (PEERS_VENV / "bin" / "python").is_file():
        base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
        log(f"creating tests/bench/peers/.venv with {base}")
        run([base, "-m", "venv", str(PEERS_VENV)], 300)
    log("pip install -r tests/bench/peers/requirements-peers.txt (mcp-proxy, mcpo, ContextForge)")
    pip = [str(PEERS_VENV / "bin" / "python"), "-m", "pip"]
    run([*pip, "install", "--quiet", "--disable-pip-version-check", "--no-input", "-r", str(requirements)], 1800)
    run([*pip, "check"], 120)
    stamp.write_text(want)


def npm_closure(name: str) -> tuple[str, int]:
    """The version of an npm peer and the disk usage of it and every package it needs, resolved
    as node does (nested node_modules first, then the folders above)."""
    version = json.loads((NODE_MODULES / name / "package.json").read_text())["version"]
    seen: set[Path] = set()
    todo = [NODE_MODULES / name]
    total = 0
    while todo:
        folder = todo.pop()
        if folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        total += du_bytes(folder, skip_top="node_modules")
        manifest = json.loads((folder / "package.json").read_text())
        for dep in {**manifest.get("dependencies", {}), **manifest.get("optionalDependencies", {})}:
            place = folder
            while True:
                candidate = place / "node_modules" / dep
                if candidate.is_dir():
                    todo.append(candidate)
                    break
                if place == PEERS:
                    break
                place = place.parent
    return version, total


PY_CLOSURE = r"""
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
out = {}
for name in sys.argv[1:]:
    seen, todo, size = {}, [(name, set())], 0
    while todo:
        dist_name, extras = todo.pop()
        key = canonicalize_name(dist_name)
        if key in seen and extras <= seen[key]:
            continue
        first = key not in seen
        seen.setdefault(key, set()).update(extras)
        dist = md.distribution(dist_name)
        if first:
            for f in dist.files or []:
                p = f.locate()
                try:
                    size += p.stat().st_blocks * 512
                except OSError:
                    pass
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            todo.append((req.name, set(req.extras)))
    out[name] = [md.version(name), size]
print(json.dumps(out))
"""


def pypi_closures(names: list[str]) -> dict[str, tuple[str, int]]:
    """Version and disk usage (the files each distribution's RECORD lists) of each PyPI peer and
    everything it needs, in tests/bench/peers/.venv."""
    done = run([str(PEERS_VENV / "bin" / "python"), "-c", PY_CLOSURE, *names], 120)
    return {k: (v[0], v[1]) for k, v in json.loads(done.stdout).items()}


# --- what is measured -------------------------------------------------------------------------------


class BadAnswer(AssertionError):
    pass


@dataclass
class Peer:
    """A process (tree) that answers: mcp-gateway, a peer, or the backend itself."""

    key: str
    label: str
    version: str
    configured: str  # how it was started, for the table
    proc: support.Proc | None = None
    size_bytes: int | None = None
    size_note: str = ""
    start_ms: float | None = None
    idle: Memory | None = None
    loaded: Memory | None = None
    backend_itself: bool = False  # the backend called directly

    def pids(self) -> list[int]:
        """Its process tree without the benchmark backend (a stdio peer's child)."""
        assert self.proc is not None
        tree = process_tree(self.proc.pid)
        return tree if self.backend_itself else [p for p in tree if not is_backend(p)]

    def backend_pids(self) -> list[int]:
        """The backend processes in its tree (a stdio peer's child)."""
        assert self.proc is not None
        return [] if self.backend_itself else [p for p in process_tree(self.proc.pid) if is_backend(p)]

    def sample_loaded(self) -> None:
        m = memory(self.pids())
        if self.loaded is None or m.pss_kib > self.loaded.pss_kib:
            self.loaded = m


@dataclass
class LevelResult:
    """What one path did at one concurrency."""

    hist_us: Counter = field(default_factory=Counter)  # latency in microseconds -> count
    good: int = 0
    errors: int = 0
    seconds: float = 0.0

    def add(self, latency_us: int, count: int = 1) -> None:
        self.hist_us[latency_us] += count

    def percentile_ms(self, p: float) -> float | None:
        total = sum(self.hist_us.values())
        if total == 0:
            return None
        rank = max(1, -(-total * p // 100))  # nearest rank
        seen = 0
        for value in sorted(self.hist_us):
            seen += self.hist_us[value]
            if seen >= rank:
                return value / 1000
        return None

    def rate(self) -> float | None:
        return self.good / self.seconds if self.seconds > 0 and self.good else None

    def in_flight(self) -> float | None:
        """Requests in flight on average (Little's law: calls/s times mean latency): how many of
        the connections the load generator kept busy. Only an estimate from wrk's figures: wrk 4
        corrects its latencies for coordinated omission (it adds samples for answers slower than
        the mean interval), so this can come out a little over the connections."""
        total = sum(self.hist_us.values())
        rate = self.rate()
        if not total or rate is None:
            return None
        return rate * sum(v * n for v, n in self.hist_us.items()) / total / 1e6


@dataclass
class BenchPath:
    """One way of getting add(2, 40) answered: an HTTP request, and the process behind it."""

    key: str
    label: str
    peer: Peer
    port: int
    url_path: str
    era: str  # "2026-07-28", "handshake", "OpenAPI", "plain GET"
    backend: str  # how the backend is reached: "HTTP", "stdio child", "stdio child per call", "none"
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body_template: str | None = None  # JSON with "__ID__" where the JSON-RPC id goes
    expect: tuple[str, ...] = ('"result"', ANSWER)
    handshake: bool = False  # send initialize + notifications/initialized first (keep the session)
    slow: bool = False  # a process per call: few calls, concurrency 1 only
    shared_backend: Peer | None = None  # the HTTP backend it reaches (for its CPU per call)
    results: dict[int, LevelResult] = field(default_factory=dict)
    proxy_ticks: int = 0
    backend_ticks: int = 0
    load_calls: int = 0

    def body(self, n: int) -> bytes | None:
        if self.body_template is None:
            return None
        return self.body_template.replace('"__ID__"', str(n)).encode()

    def check(self, status: int, body: bytes) -> None:
        text = body.decode("utf-8", "replace")
        if status != 200 or any(e not in text for e in self.expect) or '"isError":true' in text or '"error":' in text:
            raise BadAnswer(f"{self.label}: HTTP {status}: {text[:500]}")

    def prepare(self) -> None:
        """The handshake era: initialize and notifications/initialized, keeping Mcp-Session-Id."""
        if not self.handshake:
            return
        self.headers.pop("Mcp-Session-Id", None)
        base = {k: v for k, v in self.headers.items() if k != "MCP-Protocol-Version"}
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": {"name": "peers-bench", "version": "1"}}}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CALL_TIMEOUT)
        try:
            conn.request("POST", self.url_path, json.dumps(init), base)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            if response.status != 200 or '"protocolVersion"' not in text:
                raise BadAnswer(f"{self.label}: initialize: HTTP {response.status}: {text[:500]}")
            session = response.getheader("Mcp-Session-Id")
            if session:
                self.headers["Mcp-Session-Id"] = session
            conn.request("POST", self.url_path, json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), self.headers)
            response = conn.getresponse()
            response.read()
            if response.status not in (200, 202, 204):
                raise BadAnswer(f"{self.label}: notifications/initialized: HTTP {response.status}")
        finally:
            conn.close()


class Client:
    """One keep-alive connection to a path, for calls one at a time."""

    def __init__(self, path: BenchPath) -> None:
        self.path = path
        self.conn = http.client.HTTPConnection("127.0.0.1", path.port, timeout=CALL_TIMEOUT)
        self.n = 0

    def call(self) -> float:
        """One call; its latency in seconds. A connection the server closed while idle is opened
        again once (not timed)."""
        for attempt in (1, 2):
            self.n += 1
            body = self.path.body(self.n)
            try:
                started = time.perf_counter()
                self.conn.request(self.path.method, self.path.url_path, body, self.path.headers)
                response = self.conn.getresponse()
                data = response.read()
                elapsed = time.perf_counter() - started
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest, http.client.BadStatusLine):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.path.port, timeout=CALL_TIMEOUT)
                if attempt == 2:
                    raise
                continue
            self.path.check(response.status, data)
            return elapsed
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def first_answer_ms(peer: Peer, path: BenchPath, started: float, before: Callable[[], None] | None = None) -> float:
    """Polls `path` until it answers right; ms since `started` (just before exec)."""
    deadline = started + START_TIMEOUT
    last = "no answer"
    assert peer.proc is not None
    while time.perf_counter() < deadline:
        if not peer.proc.alive():
            raise RuntimeError(f"{peer.label} exited\n{peer.proc.describe()}")
        try:
            if before is not None:
                before()
            path.prepare()
            client = Client(path)
            try:
                client.call()
            finally:
                client.close()
            return (time.perf_counter() - started) * 1000
        except (OSError, BadAnswer, http.client.HTTPException, RuntimeError) as e:
            last = repr(e)[:300]
            time.sleep(0.02)
    raise RuntimeError(f"{peer.label}: no good answer within {START_TIMEOUT:.0f} s (last: {last})\n{peer.proc.describe()}")


# --- the backend, mcp-gateway and the peers ---------------------------------------------------------


def modern_path(key: str, label: str, peer: Peer, port: int, url_path: str, tool: str, backend: str,
                token: str | None = None, **kw: Any) -> BenchPath:
    body = {"jsonrpc": "2.0", "id": "__ID__", "method": "tools/call",
            "params": {"name": tool, "arguments": {"a": 2, "b": 40}, "_meta": support.modern_meta()}}
    return BenchPath(key, label, peer, port, url_path, "2026-07-28", backend,
                     headers=support.modern_headers(token, "tools/call", tool), body_template=json.dumps(body), **kw)


def handshake_path(key: str, label: str, peer: Peer, port: int, url_path: str, tool: str, backend: str,
                   token: str | None = None, **kw: Any) -> BenchPath:
    body = {"jsonrpc": "2.0", "id": "__ID__", "method": "tools/call", "params": {"name": tool, "arguments": {"a": 2, "b": 40}}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": HANDSHAKE_VERSION}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return BenchPath(key, label, peer, port, url_path, "handshake", backend, headers=headers,
                     body_template=json.dumps(body), handshake=True, **kw)


class Bench:
    """Everything started, so that it can all be stopped."""

    def __init__(self, args: argparse.Namespace, budget: Budget) -> None:
        self.args = args
        self.budget = budget
        self.workdir = Path(tempfile.mkdtemp(prefix="mcpgw-peers-"))
        self.python = sys.executable  # the tests' .venv: MCP SDK 2.x for the backend
        self.node = shutil.which("node") or "node"
        self.procs: list[support.Proc] = []
        self.peers: list[Peer] = []
        self.paths: list[BenchPath] = []
        self.notes: list[str] = []
        self.llm: Any = None  # the scripted upstream LLM (tests/interop/fixtures/scripted_llm.py)
        self.backend_peer: Peer | None = None
        self.backend_url = ""
        self.gateway_base = ""
        self.gateway_token = ""
        self.failed = False

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[support.Proc, float]:
        started = time.perf_counter()
        proc = support.Proc(name, argv, cwd or self.workdir, env=env)
        self.procs.append(proc)
        return proc, started

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.close()
            except Exception as e:  # noqa: BLE001  (stop the others all the same)
                log(f"stopping {proc.name}: {e!r}")
        if self.llm is not None:
            self.llm.stop()

    def backend_stdio_command(self) -> list[str]:
        return [self.python, str(BACKEND_PY), "stdio"]

    # -- the backend --

    def start_backend(self) -> Peer:
        port = support.free_port()
        peer = Peer("direct", "backend, direct", "mcp (Python SDK) " + _dist_version("mcp"),
                    "`fast_backend.py streamable-http` (MCPServer, stateless, JSON answers)", backend_itself=True)
        peer.proc, started = self.spawn("backend", [self.python, str(BACKEND_PY), "streamable-http", str(port)])
        path = modern_path("direct", "backend direct", peer, port, "/mcp", "add", "—")
        peer.start_ms = first_answer_ms(peer, path, started)
        self.peers.append(peer)
        self.paths.append(path)
        self.backend_peer, self.backend_url = peer, f"http://127.0.0.1:{port}/mcp"
        return peer

    # -- mcp-gateway --

    def start_gateway(self, binary: Path | None = None, baseline: bool = False) -> None:
        """Starts mcp-gateway (`--gateway-bin`), or with `baseline` the other build that
        `--baseline-bin` names, as a peer of its own: its two paths are measured in the same
        interleaved run, so a change is compared before and after on one machine at one time.
        The ceiling and the OpenAI face stay the main binary's."""
        binary = binary or Path(self.args.gateway_bin)
        port = support.free_port()
        folder = self.workdir / ("gateway-baseline" if baseline else "gateway")
        folder.mkdir()
        config = folder / "gateway.json"
        section: dict[str, Any] = {"listen": f"127.0.0.1:{port}", "state_dir": str(folder / "state"),
                                   "mcpServers": {"bench": {"type": "streamable-http", "url": self.backend_url}}}
        if self.llm is not None and not baseline:
            section["openai"] = {"upstream": {"base_url": self.llm.base_url, "models": ["tiny"], "timeout_ms": 10000},
                                 "tools": ["bench__*"]}
        config.write_text(json.dumps(section, indent=2))
        done = run([str(binary), "token", "create", "bench", "--config", str(config)], 30)
        token = [line.strip() for line in done.stdout.splitlines() if line.strip()][-1]
        version = run([str(binary), "--version"], 30).stdout.strip().split()[-1]
        key, label = ("mcp-gateway-baseline", "mcp-gateway (baseline)") if baseline else ("mcp-gateway", "mcp-gateway")
        peer = Peer(key, label, version,
                    "`serve`, the default config (8 workers, audit log on) and one backend, `bench`"
                    + (f"; the baseline build `{binary}`" if baseline else ""))
        peer.size_bytes, peer.size_note = binary.stat().st_size, "the binary"
        peer.proc, started = self.spawn(key, [str(binary), "serve", "--config", str(config)], env=support.gateway_env())
        prefix = "gwb" if baseline else "gw"
        modern = modern_path(f"{prefix}-modern", f"{label}, 2026-07-28", peer, port, "/mcp", "bench__add", "HTTP",
                             token=token, shared_backend=self.backend_peer)
        peer.start_ms = first_answer_ms(peer, modern, started)
        legacy = handshake_path(f"{prefix}-session", f"{label}, handshake + session", peer, port, "/mcp", "bench__add",
                                "HTTP", token=token, shared_backend=self.backend_peer)
        legacy.prepare()
        self.peers.append(peer)
        self.paths += [modern, legacy]
        if baseline:
            return
        ceiling = BenchPath("ceiling", "ceiling: mcp-gateway GET /health", peer, port, "/health", "plain GET", "none",
                            method="GET", expect=('"ok"',))
        self.paths[:0] = [ceiling]
        self.gateway_base, self.gateway_token = f"http://127.0.0.1:{port}", token

    def start_floor(self) -> None:
        """The shape's floor (`--floor-bin`, examples/shape_floor.rs): tiny_http workers and the
        gateway's ureq agent passing bytes, no gateway work; and beside it the same with
        `--inline`, each connection's thread serving its own requests (no hand-off to a worker),
        to show what the other shape would cost. Neither is a peer anyone would run."""
        binary = Path(self.args.floor_bin)
        for inline in (False, True):
            key = "floor-inline" if inline else "floor"
            port = support.free_port()
            peer = Peer(key, "shape floor, " + ("`--inline`" if inline else "tiny_http workers") + " (examples/shape_floor.rs)", "-",
                        ("another shape: each connection's thread reads its requests, calls the backend (the gateway's "
                         "ureq agent) and writes the answers itself; bytes passed, no gateway work" if inline else
                         "the gateway's fixed shape alone: 8 tiny_http workers calling `recv()`, the gateway's blocking "
                         "ureq agent, a POST's bytes passed to the backend and back; no token, JSON, policy or audit"),
                        size_bytes=binary.stat().st_size, size_note="the binary")
            argv = [str(binary), *(["--inline"] if inline else []), f"127.0.0.1:{port}", self.backend_url]
            peer.proc, started = self.spawn(key, argv)
            label = "shape floor, " + ("--inline" if inline else "tiny_http workers") + ", bytes passed (2026-07-28)"
            path = modern_path(key, label, peer, port, "/mcp", "add", "HTTP", shared_backend=self.backend_peer)
            peer.start_ms = first_answer_ms(peer, path, started)
            self.peers.append(peer)
            self.paths.append(path)

    # -- the peers, each in a function of its own --

    def start_supergateway(self, stateful: bool) -> None:
        key = "supergateway" if stateful else "supergateway-stateless"
        version, size = npm_closure("supergateway")
        port = support.free_port()
        argv = [self.node, "--require", str(LOOPBACK_JS), str(NODE_MODULES / "supergateway" / "dist" / "index.js"),
                "--stdio", shlex.join(self.backend_stdio_command()), "--outputTransport", "streamableHttp",
                "--port", str(port), "--logLevel", "none"] + (["--stateful"] if stateful else [])
        how = ("`--stdio '<backend> stdio' --outputTransport streamableHttp --stateful`: one stdio child per session"
               if stateful else
               "the same without `--stateful` (its default): a new stdio child for every POST")
        peer = Peer(key, "supergateway" + ("" if stateful else " (stateless)"), version, how, size_bytes=size,
                    size_note="node_modules it needs")
        peer.proc, started = self.spawn(key, argv)
        if stateful:
            path = handshake_path(key, "supergateway, handshake + session", peer, port, "/mcp", "add", "stdio child")
        else:
            path = modern_path(key, "supergateway stateless, 2026-07-28", peer, port, "/mcp", "add",
                               "stdio child per call", slow=True)
        peer.start_ms = first_answer_ms(peer, path, started)
        self.peers.append(peer)
        self.paths.append(path)

    def start_mcp_proxy_npm(self) -> None:
        version, size = npm_closure("mcp-proxy")
        port = support.free_port()
        argv = [self.node, "--require", str(LOOPBACK_JS), str(NODE_MODULES / "mcp-proxy" / "dist" / "bin" / "mcp-proxy.mjs"),
                "--host", "127.0.0.1", "--port", str(port), "--server", "stream", "--stateless", "--", *self.backend_stdio_command()]
        peer = Peer("mcp-proxy-npm", "mcp-proxy (npm, punkpeye)", version,
                    "`--server stream --stateless -- <backend> stdio`: fronts stdio servers only; one child, shared",
                    size_bytes=size, size_note="node_modules it needs")
        peer.proc, started = self.spawn("mcp-proxy-npm", argv)
        path = modern_path("mcp-proxy-npm", "mcp-proxy (npm), 2026-07-28", peer, port, "/mcp", "add", "stdio child")
        peer.start_ms = first_answer_ms(peer, path, started)
        self.peers.append(peer)
        self.paths.append(path)

    def start_mcp_proxy_py(self, versions: dict[str, tuple[str, int]]) -> None:
        version, size = versions["mcp-proxy"]
        port = support.free_port()
        argv = [str(PEERS_VENV / "bin" / "mcp-proxy"), "--host", "127.0.0.1", "--port", str(port), "--stateless",
                "--log-level", "WARNING", "--", *self.backend_stdio_command()]
        peer = Peer("mcp-proxy-py", "mcp-proxy (PyPI, sparfenyuk)", version,
                    "`--stateless -- <backend> stdio`: serves HTTP only in front of a stdio server (a URL makes it "
                    "a stdio server itself); one child, shared", size_bytes=size, size_note="its PyPI closure")
        peer.proc, started = self.spawn("mcp-proxy-py", argv)
        path = handshake_path("mcp-proxy-py", "mcp-proxy (PyPI), handshake", peer, port, "/mcp", "add", "stdio child")
        peer.start_ms = first_answer_ms(peer, path, started)
        self.peers.append(peer)
        self.paths.append(path)

    def start_mcpo(self, versions: dict[str, tuple[str, int]]) -> None:
        version, size = versions["mcpo"]
        port = support.free_port()
        argv = [str(PEERS_VENV / "bin" / "mcpo"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING",
                "--server-type", "streamable-http", "--", self.backend_url]
        peer = Peer("mcpo", "mcpo", version,
                    "`--server-type streamable-http -- <backend URL>`; the tool is `POST /add` (OpenAPI, no MCP)",
                    size_bytes=size, size_note="its PyPI closure")
        peer.proc, started = self.spawn("mcpo", argv)
        path = BenchPath("mcpo", "mcpo, OpenAPI POST /add", peer, port, "/add", "OpenAPI", "HTTP",
                         headers={"Content-Type": "application/json"}, body_template=json.dumps({"a": 2, "b": 40}),
                         expect=(ANSWER,), shared_backend=self.backend_peer)
        peer.start_ms = first_answer_ms(peer, path, started)
        self.peers.append(peer)
        self.paths.append(path)

    def start_contextforge(self, versions: dict[str, tuple[str, int]]) -> None:
        version, size = versions["mcp-contextforge-gateway"]
        port = support.free_port()
        folder = self.workdir / "contextforge"
        folder.mkdir()
        secret = "bench-jwt-secret-" + os.urandom(16).hex()
        env = {**os.environ,
               "DATABASE_URL": f"sqlite:///{folder}/mcp.db", "JWT_SECRET_KEY": secret,
               "AUTH_ENCRYPTION_SECRET": "bench-enc-" + os.urandom(16).hex(),
               "BASIC_AUTH_USER": "admin", "BASIC_AUTH_PASSWORD": "bench-" + os.urandom(8).hex(),
               "PLATFORM_ADMIN_EMAIL": "admin@example.com", "PLATFORM_ADMIN_PASSWORD": "bench-" + os.urandom(8).hex(),
               "MCPGATEWAY_UI_ENABLED": "false", "MCPGATEWAY_ADMIN_API_ENABLED": "true", "CACHE_TYPE": "memory",
               "LOG_LEVEL": "WARNING",
               # Off for a benchmark: its default rate limit (100 MCP calls a minute) and its refusal
               # of loopback backend URLs.
               "RATE_LIMITING_ENABLED": "false", "SSRF_ALLOW_LOCALHOST": "true"}
        token = run([str(PEERS_VENV / "bin" / "python"), "-m", "mcpgateway.utils.create_jwt_token", "-u", "admin@example.com",
                     "--admin", "-e", "120", "--secret", secret], 120, env=env, cwd=str(folder)).stdout.strip().splitlines()[-1]
        argv = [str(PEERS_VENV / "bin" / "mcpgateway"), "--host", "127.0.0.1", "--port", str(port)]
        peer = Peer("contextforge", "ContextForge (mcp-contextforge-gateway)", version,
                    "`mcpgateway` (1 uvicorn worker, SQLite, in-memory cache, rate limit off, loopback allowed); "
                    "backend registered with `POST /gateways`; calls on `/mcp/`", size_bytes=size, size_note="its PyPI closure")
        peer.proc, started = self.spawn("contextforge", argv, env=env, cwd=folder)
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        tool = {"name": ""}

        def register() -> None:
            if tool["name"]:
                return
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CALL_TIMEOUT)
            try:
                conn.request("GET", "/health")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise BadAnswer(f"ContextForge /health: HTTP {response.status}")
                gateway = {"name": "bench", "url": self.backend_url, "transport": "STREAMABLEHTTP"}
                conn.request("POST", "/gateways", json.dumps(gateway), auth)
                response = conn.getresponse()
                text = response.read().decode()
                if response.status not in (200, 201):
                    raise RuntimeError(f"ContextForge POST /gateways: HTTP {response.status}: {text[:500]}")
                conn.request("GET", "/tools", headers=auth)
                response = conn.getresponse()
                tools = json.loads(response.read())
                names = [t["name"] for t in tools if t.get("originalName") == "add"]
                if not names:
                    raise RuntimeError(f"ContextForge lists no `add` tool: {json.dumps(tools)[:500]}")
                tool["name"] = names[0]
                path.body_template = path.body_template.replace('"name": "add"', json.dumps({"name": tool["name"]})[1:-1])
            finally:
                conn.close()

        path = handshake_path("contextforge", "ContextForge, handshake", peer, port, "/mcp/", "add", "HTTP",
                              token=token, shared_backend=self.backend_peer)
        peer.start_ms = first_answer_ms(peer, path, started, before=register)
        self.peers.append(peer)
        self.paths.append(path)

    def try_peer(self, key: str, label: str, start: Callable[[], None]) -> None:
        if key in self.args.skip:
            self.notes.append(f"{label}: skipped (--skip {key}).")
            return
        log(f"starting {label}")
        try:
            start()
        except Exception as e:  # noqa: BLE001  (one peer that fails is reported, the others go on)
            self.failed = True
            first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            self.notes.append(f"{label}: FAILED, not measured: {first[:300]}")
            log(f"{label} failed: {e}")


def _dist_version(name: str) -> str:
    from importlib import metadata

    return metadata.version(name)


# --- the measurements -------------------------------------------------------------------------------


def warm_up(paths: list[BenchPath], calls: int) -> None:
    for path in paths:
        client = Client(path)
        try:
            for _ in range(1 if path.slow else calls):
                client.call()
        finally:
            client.close()


def concurrency_one(paths: list[BenchPath], budget: Budget) -> None:
    """Call by call, round-robin over the paths, each round in a new order (seeded, so a run can be
    repeated): a fixed order favoured or penalised a path by its place, e.g. the one after the
    backend's own call found the backend still finishing that answer's work. A slow path takes
    its turn every so many rounds. Stops at the count or the deadline."""
    clients = {p.key: Client(p) for p in paths}
    shuffler = random.Random(20)
    order = list(paths)
    for p in paths:
        p.results[1] = LevelResult()
    every = max(1, budget.c1_calls // max(1, budget.c1_slow_calls))
    deadline = time.monotonic() + budget.c1_deadline_s
    try:
        for i in range(budget.c1_calls):
            if time.monotonic() > deadline:
                log(f"concurrency 1: deadline reached after {i} rounds")
                break
            shuffler.shuffle(order)
            for p in order:
                if p.slow and (i % every != 0 or p.results[1].good >= budget.c1_slow_calls):
                    continue
                seconds = clients[p.key].call()
                result = p.results[1]
                result.add(round(seconds * 1e6))
                result.good += 1
                result.seconds += seconds
    finally:
        for c in clients.values():
            c.close()


WRK_SCRIPT = r"""
local prefix, suffix, method = %(prefix)s, %(suffix)s, %(method)s
local expect = { %(expect)s }
local n = 0
bad = 0
function request()
  n = n + 1
  if prefix == nil then return wrk.format(method, nil, nil, nil) end
  if suffix == nil then return wrk.format(method, nil, nil, prefix) end
  return wrk.format(method, nil, nil, prefix .. n .. suffix)
end
function response(status, headers, body)
  local ok = status == 200
  for _, e in ipairs(expect) do
    if ok and not string.find(body, e, 1, true) then ok = false end
  end
  if ok and (string.find(body, '"isError":true', 1, true) or string.find(body, '"error":', 1, true)) then ok = false end
  if not ok then bad = bad + 1 end
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  local e = summary.errors
  io.write(string.format("WRK %%d %%d %%d %%d %%d %%d %%d %%d\n", summary.duration, summary.requests, b,
    e.connect, e.read, e.write, e.status, e.timeout))
  io.write("HIST")
  for i = 1, #latency do
    local v, c = latency(i)
    io.write(string.format(" %%d:%%d", v, c))
  end
  io.write("\n")
end
"""


def lua_string(text: str | None) -> str:
    """`text` as a Lua string literal (every byte but letters and digits escaped), or nil."""
    if text is None:
        return "nil"
    return '"' + "".join(ch if ch.isascii() and ch.isalnum() else "".join(f"\\{b:03d}" for b in ch.encode()) for ch in text) + '"'


def wrk_script(path: BenchPath, folder: Path) -> Path:
    prefix = suffix = None
    if path.body_template is not None:
        if '"__ID__"' in path.body_template:
            prefix, suffix = path.body_template.split('"__ID__"', 1)
        else:
            prefix = path.body_template
    script = folder / f"{path.key}.lua"
    script.write_text(WRK_SCRIPT % {"prefix": lua_string(prefix), "suffix": lua_string(suffix),
                                    "method": lua_string(path.method), "expect": ", ".join(lua_string(e) for e in path.expect)})
    return script


def wrk_slice(wrk: str, path: BenchPath, script: Path, connections: int, seconds: float) -> LevelResult:
    # wrk takes whole seconds only
    argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={WRK_TIMEOUT_S}s", "-s", str(script)]
    for name, value in path.headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{path.port}{path.url_path}")
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=seconds + WRK_TIMEOUT_S + 30)
    out = LevelResult()
    summary = [line for line in done.stdout.splitlines() if line.startswith("WRK ")]
    hist = [line for line in done.stdout.splitlines() if line.startswith("HIST")]
    if done.returncode != 0 or not summary or done.stderr.strip():
        raise RuntimeError(f"wrk on {path.label} exited {done.returncode}: {done.stdout[-1000:]} {done.stderr[-1000:]}")
    duration_us, requests, bad, *socket_errors = (int(x) for x in summary[0].split()[1:])
    # wrk counts a non-2xx answer both as a status error and in our `bad`; timeouts are answers
    # that never came.
    connect, read, write, _status, timeouts = socket_errors
    out.good = max(0, requests - bad)
    out.errors = bad + connect + read + write + timeouts
    out.seconds = duration_us / 1e6
    for pair in hist[0].split()[1:] if hist else []:
        value, count = pair.split(":")
        out.add(int(value), int(count))
    return out


def slice_seconds(path: BenchPath, level: int, budget: Budget) -> float:
    """`slice_s`, or longer for a path too slow to answer each connection about twice in it (at
    its speed at concurrency 1), up to 4 × `slice_s`."""
    rate = path.results[1].rate() if 1 in path.results else None
    if not rate:
        return budget.slice_s
    return min(4 * budget.slice_s, max(budget.slice_s, 2 * level / rate))


def settle(peers: list[Peer], most_s: float = 15.0) -> None:
    """Waits until every process measured is idle again (at most one clock tick, 10 ms of CPU, in
    200 ms), or `most_s`: a slow peer still working through requests that wrk left behind would
    otherwise take CPU from the next slice, and a server that has not yet closed the connections
    of the last slice may refuse new ones."""
    def busy() -> int:
        return cpu_ticks([pid for peer in peers for pid in peer.pids()])

    deadline = time.monotonic() + most_s
    last = busy()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = busy()
        if now - last <= 1:
            return
        last = now
    log(f"still busy after {most_s:.0f} s; going on")


def under_load(wrk: str, paths: list[BenchPath], peers: list[Peer], budget: Budget, folder: Path) -> None:
    """For each concurrency: `rounds` rounds, each a slice of `slice_s` seconds per path, path after
    path, every process idle before each slice. CPU of each path's process tree (and of its
    backend) is read just before and just after its slices."""
    scripts = {p.key: wrk_script(p, folder) for p in paths}
    for level in budget.levels:
        for p in paths:
            p.results[level] = LevelResult()
        for r in range(budget.rounds):
            log(f"concurrency {level}, round {r + 1} of {budget.rounds}")
            for p in paths:
                settle(peers)
                proxy_before = cpu_ticks(p.peer.pids())
                backend_pids = p.shared_backend.pids() if p.shared_backend is not None else p.peer.backend_pids()
                backend_before = cpu_ticks(backend_pids)
                part = wrk_slice(wrk, p, scripts[p.key], level, slice_seconds(p, level, budget))
                p.proxy_ticks += cpu_ticks(p.peer.pids()) - proxy_before
                p.backend_ticks += cpu_ticks(backend_pids) - backend_before
                p.load_calls += part.good
                p.peer.sample_loaded()
                log(f"  {p.label}: {part.good} good, {part.errors} errors, {fmt(part.rate(), 0)} calls/s, "
                    f"p50 {fmt(part.percentile_ms(50))} ms, in flight {fmt(part.in_flight(), 1)}")
                total = p.results[level]
                total.hist_us.update(part.hist_us)
                total.good += part.good
                total.errors += part.errors
                total.seconds += part.seconds


# --- the OpenAI face (issue 20 item 4) --------------------------------------------------------------


@dataclass
class Series:
    label: str
    samples_ms: list[float] = field(default_factory=list)

    def pct(self, p: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[max(0, -(-len(ordered) * p // 100) - 1)] if ordered else float("nan")


OPENAI_ANSWER = "The sum of two and forty is forty-two."


def load_scripted_llm() -> Any:
    spec = importlib_util.spec_from_file_location("scripted_llm", support.FIXTURES / "scripted_llm.py")
    assert spec is not None and spec.loader is not None
    module = importlib_util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def openai_face(bench: Bench, runs: int) -> list[Series]:
    """Time to first token and whole answers, the upstream directly against through mcp-gateway,
    and an answer with one round of tool calls (`bench__add` on the backend), interleaved."""
    import openai

    scripted = load_scripted_llm()

    def turn(body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages", [])
        if any(m.get("role") == "tool" for m in messages):
            return scripted.text(OPENAI_ANSWER)
        if messages and messages[-1].get("content") == "add 2 and 40 with the tool":
            return scripted.call("bench__add", a=2, b=40)
        return scripted.text(OPENAI_ANSWER)

    bench.llm.script([turn], repeat_last=True)
    direct = openai.OpenAI(base_url=bench.llm.base_url, api_key="unused", max_retries=0, timeout=30)
    through = openai.OpenAI(base_url=f"{bench.gateway_base}/v1", api_key=bench.gateway_token, max_retries=0, timeout=30)
    plain = [{"role": "user", "content": "what is 2+40?"}]
    tooled = [{"role": "user", "content": "add 2 and 40 with the tool"}]

    def first_token(client: Any) -> float:
        started = time.perf_counter()
        first = None
        for chunk in client.chat.completions.create(model="tiny", messages=plain, stream=True):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
        if first is None:
            raise BadAnswer("no content streamed")
        return (first - started) * 1000

    def answer(client: Any, messages: list[dict[str, str]]) -> float:
        started = time.perf_counter()
        reply = client.chat.completions.create(model="tiny", messages=messages)
        if reply.choices[0].message.content != OPENAI_ANSWER:
            raise BadAnswer(f"unexpected answer: {reply}")
        return (time.perf_counter() - started) * 1000

    series = [
        (Series("time to first token, upstream direct"), lambda: first_token(direct)),
        (Series("time to first token, through mcp-gateway"), lambda: first_token(through)),
        (Series("whole answer, upstream direct"), lambda: answer(direct, plain)),
        (Series("whole answer through mcp-gateway, no tool call"), lambda: answer(through, plain)),
        (Series("whole answer through mcp-gateway, one tool round (bench__add)"), lambda: answer(through, tooled)),
    ]
    for _, measure in series:  # warm up
        measure()
    deadline = time.monotonic() + 120
    for _ in range(runs):
        if time.monotonic() > deadline:
            break
        for s, measure in series:
            s.samples_ms.append(measure())
    return [s for s, _ in series]


# --- the report -------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "—"
    r = value / base
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 1048576:.1f} MiB"


def latency_table(paths: list[BenchPath], levels: list[int]) -> str:
    direct = next((p for p in paths if p.key == "direct"), None)
    ceiling = next((p for p in paths if p.key == "ceiling"), None)
    rows = ["| path | era | backend via | c | calls | p50 ms | p90 ms | p99 ms | calls/s | errors | p50 vs direct | calls/s vs direct | calls/s vs ceiling |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in levels:
        base = direct.results.get(level) if direct else None
        top = ceiling.results.get(level) if ceiling else None
        for p in paths:
            r = p.results.get(level)
            if r is None:
                continue
            rows.append(
                f"| {p.label} | {p.era} | {p.backend} | {level} | {r.good} | {fmt(r.percentile_ms(50))} | {fmt(r.percentile_ms(90))} | "
                f"{fmt(r.percentile_ms(99))} | {fmt(r.rate(), 0)} | {r.errors} | "
                f"{ratio(r.percentile_ms(50), base.percentile_ms(50) if base else None)} | "
                f"{ratio(r.rate(), base.rate() if base else None)} | {ratio(r.rate(), top.rate() if top else None)} |")
    return "\n".join(rows)


def resource_table(bench: Bench) -> str:
    rows = ["| process | version | configured as | install size | start → first answer | idle RSS / PSS MiB | loaded RSS / PSS MiB | CPU ms per call (c=16+64) | backend CPU ms per call |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for peer in bench.peers:
        paths = [p for p in bench.paths if p.peer is peer and p.load_calls]
        cpu = "; ".join(f"{p.era if p.key != 'ceiling' else '/health'} {p.proxy_ticks * TICK_MS / p.load_calls:.3f}" for p in paths) or "—"
        backend = "; ".join(f"{p.backend_ticks * TICK_MS / p.load_calls:.3f}" for p in paths if p.key not in ("ceiling", "direct")) or "—"
        if peer.key == "direct":
            backend = "(it is the backend)"
        size = f"{mib(peer.size_bytes)} ({peer.size_note})" if peer.size_bytes is not None else "—"
        idle = f"{peer.idle.text()} ({peer.idle.processes} proc.)" if peer.idle else "—"
        loaded = f"{peer.loaded.text()}" if peer.loaded else "—"
        rows.append(f"| {peer.label} | {peer.version} | {peer.configured} | {size} | "
                    f"{fmt(peer.start_ms, 0)} ms | {idle} | {loaded} | {cpu} | {backend} |")
    return "\n".join(rows)


def openai_table(series: list[Series]) -> str:
    rows = ["| OpenAI face (scripted upstream LLM on loopback) | p50 ms | p90 ms | p99 ms | n | p50 vs upstream direct |",
            "|---|---:|---:|---:|---:|---:|"]
    by_label = {s.label: s for s in series}
    for s in series:
        base = by_label["time to first token, upstream direct"] if "first token" in s.label else by_label["whole answer, upstream direct"]
        rows.append(f"| {s.label} | {fmt(s.pct(50))} | {fmt(s.pct(90))} | {fmt(s.pct(99))} | {len(s.samples_ms)} | "
                    f"{ratio(s.pct(50), base.pct(50))} |")
    return "\n".join(rows)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=30)
    wrk_version = (wrk.stdout + wrk.stderr).split()[1] if (wrk.stdout + wrk.stderr).split() else "?"
    return (f"{os.cpu_count()} cores ({cpu}), Linux {os.uname().release}; Python {sys.version.split()[0]}, "
            f"node {node}, wrk {wrk_version}")


# --- main -------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny counts (CI keeps it working with this)")
    parser.add_argument("--gateway-bin", default=None, help="the mcp-gateway binary (default: target/release/mcp-gateway)")
    parser.add_argument("--build", action="store_true", help="cargo build --release first")
    parser.add_argument("--baseline-bin", default=None, metavar="PATH",
                        help="another mcp-gateway build, measured beside --gateway-bin in the same run (before/after)")
    parser.add_argument("--floor-bin", default=None, metavar="PATH",
                        help="examples/shape_floor.rs built (`cargo build --release --example shape_floor`): "
                             "the gateway's shape alone, passing bytes, measured as a path of its own")
    parser.add_argument("--skip", action="append", default=[], metavar="PEER", help="leave a peer out (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this file")
    args = parser.parse_args()
    budget = QUICK if args.quick else FULL
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    if args.build:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True, timeout=3600)
        args.gateway_bin = args.gateway_bin or str(target / "release" / "mcp-gateway")
        if args.floor_bin is None:
            subprocess.run(["cargo", "build", "--release", "--example", "shape_floor"], cwd=REPO, check=True, timeout=3600)
            args.floor_bin = str(target / "release" / "examples" / "shape_floor")
    args.gateway_bin = str(Path(args.gateway_bin or REPO / "target" / "release" / "mcp-gateway").resolve())
    if not Path(args.gateway_bin).is_file():
        sys.exit(f"{args.gateway_bin} not found: build it (`cargo build --release`, or --build) or pass --gateway-bin")
    if args.baseline_bin and not Path(args.baseline_bin).is_file():
        sys.exit(f"--baseline-bin {args.baseline_bin} not found")
    if args.floor_bin and not Path(args.floor_bin).is_file():
        sys.exit(f"--floor-bin {args.floor_bin} not found")

    # SIGTERM and SIGHUP end the run like Ctrl-C: through the finally below, which stops everything.
    def interrupted(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    wrk = ensure_wrk()
    install_started = time.monotonic()
    install_npm()
    install_pypi()
    install_s = time.monotonic() - install_started
    started = time.monotonic()
    load_start = loadavg()
    bench = Bench(args, budget)
    log(f"work folder {bench.workdir}")
    try:
        bench.llm = load_scripted_llm().ScriptedLLM(models=["tiny"]).start()
        log("starting the backend")
        bench.start_backend()
        log("starting mcp-gateway")
        bench.start_gateway()
        if args.baseline_bin:
            log(f"starting the baseline mcp-gateway, {args.baseline_bin}")
            bench.start_gateway(Path(args.baseline_bin), baseline=True)
        if args.floor_bin:
            log(f"starting the shape's floor, {args.floor_bin}")
            bench.start_floor()
        pypi = pypi_closures(["mcp-proxy", "mcpo", "mcp-contextforge-gateway"])
        bench.try_peer("supergateway", "supergateway (stateful)", lambda: bench.start_supergateway(stateful=True))
        bench.try_peer("supergateway-stateless", "supergateway (stateless)", lambda: bench.start_supergateway(stateful=False))
        bench.try_peer("mcp-proxy-npm", "mcp-proxy (npm)", bench.start_mcp_proxy_npm)
        bench.try_peer("mcp-proxy-py", "mcp-proxy (PyPI)", lambda: bench.start_mcp_proxy_py(pypi))
        bench.try_peer("mcpo", "mcpo", lambda: bench.start_mcpo(pypi))
        bench.try_peer("contextforge", "ContextForge", lambda: bench.start_contextforge(pypi))

        log("warming up")
        warm_up(bench.paths, budget.warmup)
        time.sleep(1.0)
        for peer in bench.peers:
            peer.idle = memory(peer.pids())
        log(f"concurrency 1: {budget.c1_calls} calls per path ({budget.c1_slow_calls} for a process per call), round-robin")
        concurrency_one(bench.paths, budget)
        with tempfile.TemporaryDirectory(prefix="wrk-", dir=bench.workdir) as folder:
            under_load(wrk, [p for p in bench.paths if not p.slow], bench.peers, budget, Path(folder))
        log(f"OpenAI face: {budget.openai_runs} chats per figure, interleaved")
        series = openai_face(bench, budget.openai_runs)
    finally:
        bench.stop_all()
    if not bench.failed:  # the logs of every process stay for a run where something failed
        shutil.rmtree(bench.workdir, ignore_errors=True)
    took = time.monotonic() - started
    load_end = loadavg()

    levels = [1, *budget.levels]
    report = "\n".join([
        f"## mcp-gateway and its peers ({'--quick' if args.quick else 'full run'})",
        "",
        f"{machine()}. Load average (1, 5, 15 min) at start {load_start}, at end {load_end}. "
        f"Run: {took:.0f} s (installs before it: {install_s:.0f} s).",
        "",
        "Every path answers `add(2, 40)` from the same backend, tests/bench/peers/fast_backend.py (the official "
        "MCP Python SDK's MCPServer, stateless, JSON answers). Concurrency 1: round-robin call by call over all "
        f"paths, each round in a new (seeded) order, keep-alive (Python http.client), {budget.c1_calls} calls per path. Concurrency "
        f"{' and '.join(map(str, budget.levels))}: wrk, one thread, that many keep-alive connections, "
        f"{budget.rounds} round(s) of {budget.slice_s:g} s slices (up to {4 * budget.slice_s:g} s for a path too slow to "
        "answer each connection twice in that) taken path after path, every process idle "
        "before each slice; every answer checked; wrk's percentiles include its correction for coordinated "
        "omission. A handshake-era path shares one session among its connections, each request with its "
        "own id. The ceiling is mcp-gateway's own `GET /health` (no backend, no auth): the fastest answer "
        "this machine gives through the same HTTP stack; at c=16 and 64 it is bound by the one wrk thread "
        "(calls/s × mean latency, the requests it kept in flight, stays well under c; the other paths keep "
        "about c; see the log on stderr).",
        "",
        latency_table(bench.paths, levels),
        "",
        "Memory is the process tree (RSS summed, PSS from /proc/PID/smaps_rollup) without the backend; "
        "loaded is the highest PSS seen after a load slice. CPU per call is utime+stime of that tree "
        "(its waited-for children too) over the c=16 and c=64 slices, divided by the good answers; "
        "backend CPU the same for the backend process that path reached. Install size: du of the files "
        "(npm: the packages it needs in node_modules; PyPI: the distributions it needs, by their RECORD; "
        "neither counts node or the Python interpreter).",
        "",
        resource_table(bench),
        "",
        openai_table(series),
        "",
        *[f"- {note}" for note in bench.notes],
        *([f"- The logs of every process: {bench.workdir}"] if bench.failed else []),
    ])
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")
    return 1 if bench.failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); everything it started was stopped")
        sys.exit(130)
