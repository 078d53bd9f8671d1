"""Harness for the interop tests: start the real peers and the real mcp-gateway binary.

Everything here listens on 127.0.0.1 only, and every wait is bounded in time.
The binary is never built here: CI builds it first (`cargo build`); the tests find
it through `MCP_GATEWAY_BIN` or at `target/debug/mcp-gateway` under the repo root.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EVERYTHING_JS = TESTS_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"

MODERN_VERSION = "2026-07-28"

# The tools server-everything 2026.8.31 always registers (dist/tools/index.js registerTools);
# others appear only for some client capabilities.
EVERYTHING_CORE_TOOLS: frozenset[str] = frozenset(
    {
    "echo",
    "get-annotated-message",
    "get-env",
    "get-resource-links",
    "get-resource-reference",
    "get-structured-content",
    "get-sum",
    "get-tiny-image",
    "gzip-file-as-resource",
    "toggle-simulated-logging",
    "toggle-subscriber-updates",
    "trigger-long-running-operation",
    }
)

BACKEND_START_TIMEOUT = 30.0
GATEWAY_HEALTH_TIMEOUT = 30.0
BACKENDS_UP_TIMEOUT = 60.0

# Every process started here, so a failing test can show what the gateway said.
RUNNING: list["Proc"] = []


class HarnessError(AssertionError):
    """A peer or the gateway did not come up as the test needs."""


def gateway_bin() -> Path:
    raw = os.environ.get("MCP_GATEWAY_BIN", "target/debug/mcp-gateway")
    path = Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_file():
        raise HarnessError(f"mcp-gateway binary not found at {path}: run `cargo build` first or set MCP_GATEWAY_BIN")
    return path


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, limit: int = 20000) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    text = data[-limit:].decode("utf-8", "replace")
    return ("...\n" if len(data) > limit else "") + text


class Proc:
    """A subprocess in its own process group, with stdout/stderr kept in files."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = workdir / f"{name}.stdout.log"
        self.stderr_path = workdir / f"{name}.stderr.log"
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=self._err,
            cwd=str(workdir),
            env=env if env is not None else dict(os.environ),
            start_new_session=True,
        )
        RUNNING.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr(self) -> str:
        return tail(self.stderr_path)

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited with {self.popen.returncode}"
        return f"{self.name} (pid {self.pid}, {state}): {' '.join(self.argv)}\n--- stderr ---\n{self.stderr()}"

    def kill(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        """Stop the whole process group: `sig` first, SIGKILL after `grace` seconds."""
        if self.alive():
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # leftovers in the group (children of a dead leader)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self.kill()
        self._out.close()
        self._err.close()
        if self in RUNNING:
            RUNNING.remove(self)


def wait_for_port(proc: Proc, port: int, timeout: float = BACKEND_START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise HarnessError(f"{proc.name} exited before listening on {port}\n{proc.describe()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise HarnessError(f"{proc.name} did not listen on {port} within {timeout}s\n{proc.describe()}")


# --- backends -------------------------------------------------------------------------------------


class Backend:
    """A fixture MCP server we run ourselves (HTTP ones); `config` is its mcpServers entry."""

    def __init__(self, name: str, proc: Proc | None, config: dict[str, Any], url: str | None = None) -> None:
        self.name = name
        self.proc = proc
        self.config = config
        self.url = url

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()


def start_weather(workdir: Path, name: str = "weather", handshake_only: bool = False, port: int | None = None) -> Backend:
    """The Streamable HTTP backend (tests/interop/fixtures/weather_server.py); `handshake_only`
    makes it refuse the 2026-07-28 revision like an older server."""
    port = port or free_port()
    extra = ["--handshake-only"] if handshake_only else []
    proc = Proc(name, [sys.executable, str(FIXTURES / "weather_server.py"), str(port), *extra], workdir)
    wait_for_port(proc, port)
    url = f"http://127.0.0.1:{port}/mcp"
    config = {
        "type": "streamable-http",
        "url": url,
        # ${VAR} substitution from the gateway's environment; the fixture ignores the header.
        "headers": {"X-Interop-Fixture": "${INTEROP_FIXTURE_SECRET}"},
        "timeout_ms": 10000,
    }
    return Backend(name, proc, config, url)


def start_fault_http(workdir: Path, name: str, mode: str, timeout_ms: int = 5000) -> Backend:
    """fixtures/fault_http.py in `mode`, as a Streamable HTTP backend (stdlib only, handshake era)."""
    port = free_port()
    proc = Proc(name, [sys.executable, str(FIXTURES / "fault_http.py"), str(port), mode], workdir)
    wait_for_port(proc, port)
    url = f"http://127.0.0.1:{port}/mcp"
    return Backend(name, proc, {"type": "streamable-http", "url": url, "timeout_ms": timeout_ms}, url)


def start_notes(workdir: Path, name: str = "notes") -> Backend:
    """The legacy HTTP+SSE backend (tests/interop/fixtures/notes_server.py)."""
    port = free_port()
    proc = Proc(name, [sys.executable, str(FIXTURES / "notes_server.py"), str(port)], workdir)
    wait_for_port(proc, port)
    url = f"http://127.0.0.1:{port}/sse"
    return Backend(name, proc, {"type": "sse", "url": url}, url)


RICH_SERVER = FIXTURES / "rich_server.py"


def rich_argv(transport: str, port: int | None = None, handshake_only: bool = False, resumable: bool = False) -> list[str]:
    """The command line of the rich fixture backend (tests/interop/fixtures/rich_server.py)."""
    argv = [sys.executable, str(RICH_SERVER), "--transport", transport]
    if port is not None:
        argv += ["--port", str(port)]
    if handshake_only:
        argv.append("--handshake-only")
    if resumable:
        argv.append("--resumable")
    return argv


def start_rich(
    workdir: Path,
    name: str = "rich",
    transport: str = "streamable-http",
    handshake_only: bool = False,
    prefix: str | None = None,
    resumable: bool = True,
    port: int | None = None,
) -> Backend:
    """The rich backend (every content type, progress, logging, sampling, elicitation, roots,
    subscriptions) over `streamable-http` or `sse`. `prefix` sets the mcpServers entry's `prefix`
    key (None: left out, so the gateway's default `<name>__`); `resumable` gives it an event store,
    so its SSE streams carry event ids and can be resumed with Last-Event-ID."""
    port = port or free_port()
    argv = rich_argv(transport, port, handshake_only, resumable and transport == "streamable-http")
    proc = Proc(name, argv, workdir)
    wait_for_port(proc, port)
    path = "/sse" if transport == "sse" else "/mcp"
    url = f"http://127.0.0.1:{port}{path}"
    config: dict[str, Any] = {"type": transport, "url": url, "timeout_ms": 20000}
    if prefix is not None:
        config["prefix"] = prefix
    return Backend(name, proc, config, url)


def rich_stdio(name: str = "rich", handshake_only: bool = False, prefix: str | None = None) -> Backend:
    """The rich backend over stdio: the gateway spawns it itself (see `start_rich`)."""
    config: dict[str, Any] = {
        "command": sys.executable,
        "args": rich_argv("stdio", handshake_only=handshake_only)[1:],
        "cwd": str(FIXTURES),
        "timeout_ms": 20000,
    }
    if prefix is not None:
        config["prefix"] = prefix
    return Backend(name, None, config)


def everything_stdio(name: str = "everything") -> Backend:
    """@modelcontextprotocol/server-everything over stdio: the gateway spawns it itself."""
    if not EVERYTHING_JS.is_file():
        raise HarnessError(f"{EVERYTHING_JS} missing: run `npm ci --prefix tests`")
    node = shutil.which("node")
    if node is None:
        raise HarnessError("node not found on PATH")
    config = {
        "command": node,
        "args": [str(EVERYTHING_JS), "stdio"],
        "env": {"NODE_ENV": "production"},
        "cwd": str(TESTS_DIR),
    }
    return Backend(name, None, config)


# --- the gateway ----------------------------------------------------------------------------------


def run_cli(args: list[str], timeout: float = 30.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mcp-gateway ARGS...` to completion (bounded), capturing its output."""
    return subprocess.run(
        [str(gateway_bin()), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else gateway_env(),
    )


def gateway_env() -> dict[str, str]:
    env = dict(os.environ)
    env["INTEROP_FIXTURE_SECRET"] = "fixture-secret"
    env.setdefault("RUST_BACKTRACE", "1")
    return env


class Gateway:
    """A running `mcp-gateway serve` with its own config, state folder and first token."""

    def __init__(self, workdir: Path, backends: list[Backend], limits: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.backends = backends
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/mcp"
        self.config_path = workdir / "gateway.json"
        config: dict[str, Any] = {
            "listen": f"127.0.0.1:{self.port}",
            "state_dir": str(workdir / "state"),
            "workers": 8,
            "limits": {"max_body_bytes": 4194304, "call_timeout_ms": 30000, **(limits or {})},
            "mcpServers": {b.name: b.config for b in backends},
        }
        self.config_path.write_text(json.dumps(config, indent=2))
        self.proc: Proc | None = None
        self.token = self.create_token("interop")

    # CLI
    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli([*args, "--config", str(self.config_path)])

    def create_token(self, name: str) -> str:
        done = self.cli("token", "create", name)
        if done.returncode != 0:
            raise HarnessError(f"token create {name} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
        lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if not lines:
            raise HarnessError(f"token create {name} printed nothing on stdout\nstderr:\n{done.stderr}")
        return lines[-1]

    def revoke_token(self, name: str) -> None:
        done = self.cli("token", "revoke", name)
        if done.returncode != 0:
            raise HarnessError(f"token revoke {name} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")

    # serve
    def start(self) -> "Gateway":
        argv = [str(gateway_bin()), "serve", "--config", str(self.config_path), "--listen", f"127.0.0.1:{self.port}"]
        self.proc = Proc("mcp-gateway", argv, self.workdir, env=gateway_env())
        self.wait_healthy()
        self.wait_backends_up()
        return self

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def wait_healthy(self, timeout: float = GATEWAY_HEALTH_TIMEOUT) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise HarnessError(f"gateway exited before /health answered\n{self.proc.describe()}")
            try:
                r = httpx2.get(f"{self.base}/health", timeout=2)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except httpx2.HTTPError as e:
                last = repr(e)
            time.sleep(0.1)
        raise HarnessError(f"gateway /health not 200 within {timeout}s (last: {last})\n{self.proc.describe()}")

    def status(self) -> dict[str, Any]:
        r = httpx2.get(f"{self.base}/status", headers=self.auth(), timeout=5)
        r.raise_for_status()
        return r.json()

    def wait_backends_up(self, timeout: float = BACKENDS_UP_TIMEOUT) -> dict[str, Any]:
        assert self.proc is not None
        want = {b.name for b in self.backends}
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise HarnessError(f"gateway exited while backends were starting\n{self.proc.describe()}")
            try:
                last = self.status()
                states = {b.get("name"): b.get("state") for b in last.get("backends", [])}
                if want <= set(states) and all(states[n] == "up" for n in want):
                    return last
            except (httpx2.HTTPError, ValueError, AttributeError) as e:
                last = repr(e)
            time.sleep(0.25)
        raise HarnessError(
            f"backends {sorted(want)} not all up within {timeout}s; last /status: {json.dumps(last)[:2000]}\n"
            f"{self.proc.describe()}"
        )

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
        for b in self.backends:
            b.close()


# --- clients --------------------------------------------------------------------------------------


@asynccontextmanager
async def mcp_client(url: str, token: str, mode: str = "auto", **kwargs: Any) -> AsyncIterator[Any]:
    """The official SDK client on Streamable HTTP, with our bearer token on every request.

    mode="auto" probes `server/discover` (stateless 2026-07-28) and falls back to the
    handshake; mode="legacy" forces the `initialize` handshake era.
    """
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    kwargs.setdefault("read_timeout_seconds", 30)
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, **kwargs) as client:
            yield client


@contextmanager
def running_gateway(
    workdir: Path,
    starters: list[Callable[[], Backend]],
    limits: dict[str, Any] | None = None,
    prepare: Callable[[Gateway], None] | None = None,
) -> Iterator[Gateway]:
    """Starts the backends (each starter returns one), then a gateway in front of them; stops
    them all afterwards, even when starting one of them failed. `prepare` may change the
    gateway's config before it starts."""
    backends: list[Backend] = []
    gw: Gateway | None = None
    try:
        for start in starters:
            backends.append(start())
        gw = Gateway(workdir, backends, limits=limits)
        if prepare is not None:
            prepare(gw)
        gw.start()
        yield gw
    finally:
        if gw is not None:
            gw.close()  # closes its backends too
        else:
            for b in backends:
                b.close()


def jsonrpc_messages(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages in a Streamable HTTP answer: a JSON body or an SSE stream of them."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "text/event-stream":
        out: list[dict[str, Any]] = []
        data: list[str] = []
        for line in response.text.splitlines() + [""]:
            if line == "":
                if data:
                    out.append(json.loads("\n".join(data)))
                    data = []
            elif line.startswith("data:"):
                data.append(line[6:] if line[5:6] == " " else line[5:])
        return out
    body = response.json()
    return body if isinstance(body, list) else [body]


@dataclass
class SseEvent:
    """One server-sent event. `id` is the event's own `id:` field (None without one, unlike the
    spec's inherited last-event-id); `data` is "" for an event that carries only an id or retry."""

    id: str | None
    event: str | None
    data: str
    retry: int | None

    def message(self) -> dict[str, Any] | None:
        """The JSON-RPC message in `data`, or None for a data-less (priming) event."""
        return json.loads(self.data) if self.data.strip() else None


def sse_events(lines: Iterator[str], deadline: float) -> Iterator[SseEvent]:
    """Parse an SSE stream (https://html.spec.whatwg.org/#event-stream-interpretation) line by
    line, yielding each event at its blank line, until the lines end or `deadline` (monotonic)
    passes. Comment lines are skipped; an event with only `id:` or `retry:` is yielded too."""
    event_id: str | None = None
    kind: str | None = None
    data: list[str] = []
    retry: int | None = None
    seen = False
    for line in lines:
        if time.monotonic() > deadline:
            raise TimeoutError("SSE stream still open at the deadline")
        if line == "":
            if seen:
                yield SseEvent(event_id, kind, "\n".join(data), retry)
            kind, data, retry, seen = None, [], None, False
            event_id = None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        seen = True
        if field == "id":
            event_id = value
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)
        elif field == "retry" and value.isdigit():
            retry = int(value)


def final_message(response: httpx2.Response, request_id: Any = None) -> dict[str, Any]:
    """The response (result or error) in a Streamable HTTP answer, skipping notifications."""
    msgs = [m for m in jsonrpc_messages(response) if "result" in m or "error" in m]
    if request_id is not None:
        msgs = [m for m in msgs if m.get("id") == request_id] or msgs
    assert msgs, f"no JSON-RPC response in HTTP {response.status_code} body: {response.text[:1000]}"
    return msgs[-1]


def open_session(http: httpx2.Client, gw: "Gateway", client_name: str = "interop") -> dict[str, str]:
    """Starts a handshake-era session over raw HTTP (initialize, then notifications/initialized);
    returns the headers its requests carry."""
    base = {"Authorization": f"Bearer {gw.token}", "Accept": "application/json, text/event-stream"}
    init = http.post(gw.url, headers=base, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": client_name, "version": "1"}},
    })
    assert init.status_code == 200, init.text
    session = {**base, "Mcp-Session-Id": init.headers["mcp-session-id"]}
    done = http.post(gw.url, headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert done.status_code == 202, done.text
    return session


def modern_meta(capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "interop-tests", "version": "0.1.0"},
        "io.modelcontextprotocol/clientCapabilities": capabilities or {},
    }


def modern_headers(token: str | None, method: str, name: str | None = None) -> dict[str, str]:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN_VERSION,
        "Mcp-Method": method,
    }
    if name is not None:
        headers["Mcp-Name"] = name
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


# --- OAuth (the gateway as its own authorization server) -------------------------------------------

OWNER_PASSWORD = "correct horse battery staple"


def run_cli_with_input(args: list[str], stdin_text: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run `mcp-gateway ARGS...` to completion (bounded) with `stdin_text` on its stdin."""
    return subprocess.run(
        [str(gateway_bin()), *args],
        input=stdin_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=gateway_env(),
    )


def enable_oauth(gw: Gateway, oauth: dict[str, Any] | None = None, password: str | None = OWNER_PASSWORD) -> None:
    """Give a (not yet started) gateway `public_url` = its own address, an `oauth` section, and an
    owner password (set through `oauth set-password`, the password on stdin)."""
    config = json.loads(gw.config_path.read_text())
    config["public_url"] = gw.base  # same port as `listen`
    config["oauth"] = {"allow_registration": True, **(oauth or {})}
    gw.config_path.write_text(json.dumps(config, indent=2))
    if password is not None:
        done = run_cli_with_input(["oauth", "set-password", "--config", str(gw.config_path)], password + "\n")
        if done.returncode != 0:
            raise HarnessError(
                f"oauth set-password exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            )


@contextmanager
def running_oauth_gateway(
    workdir: Path,
    starters: list[Callable[[], Backend]],
    oauth: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
) -> Iterator[Gateway]:
    """Like `running_gateway`, with OAuth enabled (see `enable_oauth`) before the gateway starts."""
    with running_gateway(workdir, starters, limits=limits, prepare=lambda gw: enable_oauth(gw, oauth)) as gw:
        yield gw


def restart_gateway(gw: Gateway) -> None:
    """Stop the gateway process and start it again: same config, port and state folder."""
    if gw.proc is not None:
        gw.proc.close()
        gw.proc = None
    gw.start()
