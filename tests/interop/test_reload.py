"""Config reload: `mcp-gateway serve` re-reads its config on SIGHUP, and `mcp-gateway reload`
sends that SIGHUP (it finds the process in the state folder's `mcp-gateway.pid`).

What a reload must keep and change, seen from outside:
  - backends added are started, removed ones stopped, changed ones restarted; unchanged ones keep
    their connection (a stdio backend keeps its process, an HTTP one its call count in /status);
  - clients keep their sessions (SDK session, same Mcp-Session-Id) and open GET streams, which
    hear `notifications/tools/list_changed`; tokens, OAuth grants and calls in flight survive;
  - a config that fails checking is refused (logged) and the old one keeps serving; the `reload`
    command checks first and signals nothing then;
  - settings only read at start are logged as needing a restart;
  - the PID file exists while the gateway runs and is gone after a clean stop.

Backends: weather (Streamable HTTP) and notes (HTTP+SSE) run once for the module and are lent to
each test's own gateway; `alpha`/`beta` are the rich fixture over stdio, spawned by the gateway
(each tagged with RELOAD_TAG in its environment, so its process can be found under /proc).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest

import support

pytestmark = pytest.mark.anyio

T = TypeVar("T")

SUMMARY = re.compile(
    r"reloaded the config in \d+ ms: added (?P<added>[^;]*); changed \(restarted\) (?P<changed>[^;]*); "
    r"removed (?P<removed>[^;]*); (?P<kept>\d+) unchanged"
)
RESTART_WARNING = re.compile(r'reload: "(?P<name>[^"]+)" changed; it takes effect at the next restart')
REFUSED_END = "has problems; the gateway keeps running with its current config"


# --- harness ---------------------------------------------------------------------------------------


# weather and notes, started once and lent to every gateway of this module.
from test_fixtures import peers  # noqa: E402,F401 - a pytest fixture


def lent(backend: support.Backend) -> support.Backend:
    """The same backend for one gateway's config, without its process (the module owns that)."""
    return support.Backend(backend.name, None, json.loads(json.dumps(backend.config)), backend.url)


def tagged_stdio(name: str, tag: str | None = None) -> support.Backend:
    """The rich fixture over stdio, its process tagged RELOAD_TAG=<tag> (default: its name)."""
    backend = support.rich_stdio(name)
    backend.config["env"] = {"RELOAD_TAG": tag or name}
    return backend


@contextmanager
def gateway(
    workdir: Path,
    backends: list[support.Backend],
    prepare: Callable[[support.Gateway], None] | None = None,
    limits: dict[str, Any] | None = None,
) -> Iterator[support.Gateway]:
    gw = support.Gateway(workdir, backends, limits=limits)
    try:
        if prepare is not None:
            prepare(gw)
        gw.start()
        yield gw
    finally:
        gw.close()  # lent backends have no process of their own here


def wait_until(check: Callable[[], T], what: str, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Polls `check` until it returns something truthy (bounded); that value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what} (last: {last!r})")


async def await_until(check: Callable[[], Any], what: str, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """`wait_until` for async tests: polls an async `check` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await anyio.sleep(interval)
    raise AssertionError(f"not within {timeout}s: {what} (last: {last!r})")


def config_of(gw: support.Gateway) -> dict[str, Any]:
    return json.loads(gw.config_path.read_text())


def write_config(gw: support.Gateway, config: dict[str, Any]) -> None:
    gw.config_path.write_text(json.dumps(config, indent=2))


def sighup(gw: support.Gateway) -> None:
    assert gw.proc is not None and gw.proc.alive(), "the gateway is not running"
    os.kill(gw.proc.pid, signal.SIGHUP)


def log(gw: support.Gateway) -> str:
    assert gw.proc is not None
    return gw.proc.stderr_path.read_text(errors="replace")


def summaries(gw: support.Gateway) -> list[re.Match[str]]:
    return list(SUMMARY.finditer(log(gw)))


def next_summary(gw: support.Gateway, seen: int, timeout: float = 20.0) -> re.Match[str]:
    """Waits for reload summary number `seen`+1 in the gateway's log; it."""
    found = wait_until(lambda: summaries(gw)[seen:], f"reload summary #{seen + 1} in the gateway log", timeout)
    assert len(found) == 1, f"one reload expected, the log has {len(found)} more: {[m.group(0) for m in found]}"
    return found[0]


def names_in(part: str) -> set[str]:
    return set() if part == "none" else {n.strip() for n in part.split(",")}


def mcp_post(gw: support.Gateway, method: str, params: dict[str, Any] | None = None,
             name: str | None = None, token: str | None = None) -> httpx2.Response:
    """A stateless 2026-07-28 request."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**(params or {}), "_meta": support.modern_meta()}}
    return httpx2.post(gw.url, headers=support.modern_headers(token or gw.token, method, name), json=body, timeout=30)


def tool_names(gw: support.Gateway, token: str | None = None) -> set[str]:
    names: set[str] = set()
    cursor: str | None = None
    for _ in range(50):
        r = mcp_post(gw, "tools/list", {"cursor": cursor} if cursor else {}, token=token)
        assert r.status_code == 200, f"tools/list: HTTP {r.status_code}: {r.text[:500]}"
        result = support.final_message(r)["result"]
        names |= {t["name"] for t in result["tools"]}
        cursor = result.get("nextCursor")
        if not cursor:
            return names
    raise AssertionError("tools/list never ended its pages")


def prefixed(names: set[str], prefix: str) -> set[str]:
    return {n for n in names if n.startswith(prefix + "__")}


def call(gw: support.Gateway, name: str, arguments: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """tools/call; the JSON-RPC response (result or error)."""
    return support.final_message(mcp_post(gw, "tools/call", {"name": name, "arguments": arguments}, name=name, token=token))


def text(message: dict[str, Any]) -> str:
    assert "result" in message, f"expected a result: {message}"
    return "\n".join(c.get("text", "") for c in message["result"]["content"])


def status_backends(gw: support.Gateway) -> dict[str, dict[str, Any]]:
    return {b["name"]: b for b in gw.status()["backends"]}


def stdio_processes(gw: support.Gateway) -> dict[str, int]:
    """The gateway's child processes that carry RELOAD_TAG: {tag: pid} (zombies left out)."""
    assert gw.proc is not None
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) != gw.proc.pid or state == "Z":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        for var in environ:
            if var.startswith(b"RELOAD_TAG="):
                tag = var.split(b"=", 1)[1].decode()
                assert tag not in found, f"two processes tagged {tag}: {found[tag]} and {entry.name}"
                found[tag] = int(entry.name)
    return found


def running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class GetStream:
    """A handshake-era session's GET /mcp stream read on a thread of its own, until it carries
    `notifications/tools/list_changed` (then it stops reading) or ends or times out."""

    def __init__(self, gw: support.Gateway) -> None:
        self.gw = gw
        self.http = httpx2.Client(timeout=httpx2.Timeout(10, read=25))
        self.session = support.open_session(self.http, gw)
        self.opened = threading.Event()
        self.changed = threading.Event()
        self.messages: list[dict[str, Any]] = []
        self.failure: BaseException | None = None
        self.ended_without_change = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            headers = {**self.session, "Accept": "text/event-stream"}
            with self.http.stream("GET", self.gw.url, headers=headers) as r:
                assert r.status_code == 200, f"GET /mcp: HTTP {r.status_code}"
                self.opened.set()
                for event in support.sse_events(r.iter_lines(), deadline=time.monotonic() + 25):
                    message = event.message()
                    if message is None:
                        continue
                    self.messages.append(message)
                    if message.get("method") == "notifications/tools/list_changed":
                        self.changed.set()
                        return
                self.ended_without_change = True
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e
        finally:
            self.opened.set()

    def close(self) -> None:
        try:
            self.http.delete(self.gw.url, headers=self.session)
        except httpx2.HTTPError:
            pass
        self.thread.join(timeout=30)
        self.http.close()


# --- adding a backend: sessions and streams stay ------------------------------------------------------


async def test_sighup_adds_a_backend_and_open_sessions_and_get_streams_hear_of_it(
    peers: dict[str, support.Backend], tmp_path: Path
) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    with gateway(tmp_path, [lent(peers["weather"])]) as gw:
        assert prefixed(tool_names(gw), "notes") == set()
        requests: list[tuple[str, str | None, bytes]] = []
        statuses: list[tuple[str, int]] = []
        heard: list[str] = []

        async def on_request(request: httpx2.Request) -> None:
            try:
                body = bytes(request.content)
            except Exception:  # noqa: BLE001 - a streamed body: not one of the SDK's JSON posts
                body = b""
            requests.append((request.method, request.headers.get("mcp-session-id"), body))

        async def on_response(response: httpx2.Response) -> None:
            statuses.append((response.request.method, response.status_code))

        async def on_message(message: Any) -> None:
            method = getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None)
            if method:
                heard.append(method)

        headers = {"Authorization": f"Bearer {gw.token}"}
        hooks = {"request": [on_request], "response": [on_response]}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300), event_hooks=hooks) as http:
            transport = streamable_http_client(gw.url, http_client=http)
            async with Client(transport, mode="legacy", message_handler=on_message, cache=None, read_timeout_seconds=30) as client:
                added = await client.call_tool("weather__add", {"a": 2, "b": 40})
                assert [getattr(c, "text", None) for c in added.content] == ["42"]

                stream = await anyio.to_thread.run_sync(GetStream, gw)
                try:
                    assert await anyio.to_thread.run_sync(stream.opened.wait, 20), "the GET stream did not open"
                    assert stream.failure is None, repr(stream.failure)

                    config = config_of(gw)
                    config["mcpServers"]["notes"] = peers["notes"].config
                    write_config(gw, config)
                    sighup(gw)

                    async def notes_listed() -> set[str]:
                        return prefixed({t.name for t in (await client.list_tools()).tools}, "notes")

                    assert await await_until(notes_listed, "notes' tools in the SDK session's tools/list") == {"notes__echo", "notes__upper"}
                    upper = await client.call_tool("notes__upper", {"text": "added by sighup"})
                    assert not upper.is_error and [getattr(c, "text", None) for c in upper.content] == ["ADDED BY SIGHUP"]
                    still = await client.call_tool("weather__add", {"a": 1, "b": 1})
                    assert [getattr(c, "text", None) for c in still.content] == ["2"]

                    # The raw GET stream opened before the reload carries the list change.
                    assert await anyio.to_thread.run_sync(stream.changed.wait, 20), (
                        f"no tools/list_changed on the GET stream opened before the reload "
                        f"(failure: {stream.failure!r}, ended: {stream.ended_without_change}, heard: {stream.messages})"
                    )
                    # ...and its session still answers.
                    listed = await anyio.to_thread.run_sync(lambda: stream.http.post(
                        gw.url, headers=stream.session, json={"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {}}))
                    assert listed.status_code == 200, listed.text[:500]
                    assert {"notes__echo", "notes__upper"} <= {t["name"] for t in support.final_message(listed)["result"]["tools"]}
                    # The SDK session heard it too (on its own GET stream).
                    async def sdk_heard() -> bool:
                        return "notifications/tools/list_changed" in heard

                    await await_until(sdk_heard, "tools/list_changed in the SDK session's notifications")
                finally:
                    await anyio.to_thread.run_sync(stream.close)

        # One session from start to end: one initialize, then every request with its id, none refused.
        initializes = [body for method, _, body in requests if method == "POST" and b'"initialize"' in body]
        assert len(initializes) == 1, f"the SDK client initialized {len(initializes)} times"
        ids = {sid for method, sid, body in requests if b'"initialize"' not in body}
        assert len(ids) == 1 and None not in ids, f"session ids the SDK client sent: {ids}"
        assert all(code < 400 for method, code in statuses if method != "DELETE"), statuses

        summary = next_summary(gw, 0)
        assert names_in(summary["added"]) == {"notes"}, summary.group(0)
        assert (summary["changed"], summary["removed"], summary["kept"]) == ("none", "none", "1"), summary.group(0)
        assert not RESTART_WARNING.search(log(gw)), "a reload of mcpServers alone needs no restart"


# --- removing and changing backends ----------------------------------------------------------------------


def test_the_reload_command_removes_a_backend_and_the_others_keep_their_connections(
    peers: dict[str, support.Backend], tmp_path: Path
) -> None:
    with gateway(tmp_path, [lent(peers["weather"]), tagged_stdio("alpha"), tagged_stdio("beta")]) as gw:
        before = stdio_processes(gw)
        assert set(before) == {"alpha", "beta"}, before
        assert text(call(gw, "alpha__text", {}))
        assert text(call(gw, "beta__text", {}))
        assert text(call(gw, "weather__add", {"a": 1, "b": 2})) == "3"
        calls = {name: b["calls"] for name, b in status_backends(gw).items()}
        assert calls["alpha"] >= 1 and calls["weather"] >= 1, calls

        config = config_of(gw)
        del config["mcpServers"]["beta"]
        write_config(gw, config)
        done = gw.cli("reload")
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert f"Asked the gateway (process {gw.proc.pid}) to reload its config" in done.stdout, done.stdout

        summary = next_summary(gw, 0)
        assert (summary["added"], summary["changed"]) == ("none", "none"), summary.group(0)
        assert names_in(summary["removed"]) == {"beta"} and summary["kept"] == "2", summary.group(0)
        wait_until(lambda: not prefixed(tool_names(gw), "beta"), "beta's tools gone from tools/list")
        wait_until(lambda: "reload: stopped the previous 'beta'" in log(gw), "the log saying beta was stopped")
        # Stopped and reaped by the gateway (not left a zombie).
        wait_until(lambda: not Path(f"/proc/{before['beta']}").exists(), f"beta's process {before['beta']} gone")
        assert "beta" not in status_backends(gw)
        refused = call(gw, "beta__text", {})
        assert "error" in refused and "unknown tool" in refused["error"]["message"], refused

        # The others were not touched: alpha is the same process, both keep counting their calls.
        assert stdio_processes(gw) == {"alpha": before["alpha"]}
        assert text(call(gw, "alpha__text", {}))
        assert text(call(gw, "weather__add", {"a": 2, "b": 2})) == "4"
        after = {name: b["calls"] for name, b in status_backends(gw).items()}
        assert after == {"alpha": calls["alpha"] + 1, "weather": calls["weather"] + 1}, (calls, after)


def test_changing_an_entry_restarts_that_backend_only(peers: dict[str, support.Backend], tmp_path: Path) -> None:
    with gateway(tmp_path, [lent(peers["weather"]), tagged_stdio("alpha"), tagged_stdio("beta")]) as gw:
        before = stdio_processes(gw)
        assert set(before) == {"alpha", "beta"}, before
        assert text(call(gw, "alpha__text", {}))
        for _ in range(6):  # so that beta's count is well past what a fresh start counts
            assert text(call(gw, "beta__text", {}))
        assert text(call(gw, "weather__add", {"a": 1, "b": 2})) == "3"
        calls = {name: b["calls"] for name, b in status_backends(gw).items()}
        assert min(calls.values()) >= 1, calls

        config = config_of(gw)
        config["mcpServers"]["beta"]["env"] = {"RELOAD_TAG": "beta-2"}  # one key of its entry differs
        write_config(gw, config)
        sighup(gw)

        summary = next_summary(gw, 0)
        assert (summary["added"], summary["removed"]) == ("none", "none"), summary.group(0)
        assert names_in(summary["changed"]) == {"beta"} and summary["kept"] == "2", summary.group(0)
        wait_until(lambda: "beta-2" in stdio_processes(gw), "beta's new process (RELOAD_TAG=beta-2)")
        wait_until(lambda: not Path(f"/proc/{before['beta']}").exists(), f"beta's old process {before['beta']} stopped and reaped")
        gw.wait_backends_up()
        wait_until(lambda: "beta__text" in tool_names(gw), "beta's tools listed again")
        assert text(call(gw, "beta__text", {}))

        now = stdio_processes(gw)
        assert now["alpha"] == before["alpha"], f"alpha was restarted: {before} -> {now}"
        assert now["beta-2"] != before["beta"] and set(now) == {"alpha", "beta-2"}, now
        assert text(call(gw, "alpha__text", {}))
        assert text(call(gw, "weather__add", {"a": 3, "b": 4})) == "7"
        after = {name: b["calls"] for name, b in status_backends(gw).items()}
        # The unchanged ones kept counting (/status counts every request to a backend, its lists
        # too); the restarted one counts from its new start: its connect and one call.
        assert (after["weather"], after["alpha"]) == (calls["weather"] + 1, calls["alpha"] + 1), (calls, after)
        assert after["beta"] < calls["beta"], f"beta's count went on across its restart: {calls} -> {after}"
        assert not RESTART_WARNING.search(log(gw))


# --- a call in flight -------------------------------------------------------------------------------------


class SlowCall:
    """weather__slow_count(n) over a 2026-07-28 POST stream on its own thread: its progress and
    its final message, each with the time it arrived."""

    def __init__(self, gw: support.Gateway, n: int) -> None:
        self.gw = gw
        self.n = n
        self.progress: list[float] = []
        self.final: dict[str, Any] | None = None
        self.finished_at: float | None = None
        self.failure: BaseException | None = None
        self.first_progress = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        name = "weather__slow_count"
        params = {"name": name, "arguments": {"n": self.n}, "_meta": {**support.modern_meta(), "progressToken": "slow"}}
        body = {"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": params}
        try:
            with httpx2.Client(timeout=30) as http, http.stream(
                "POST", self.gw.url, headers=support.modern_headers(self.gw.token, "tools/call", name), json=body
            ) as r:
                assert r.status_code == 200, f"HTTP {r.status_code}"
                for event in support.sse_events(r.iter_lines(), deadline=time.monotonic() + 30):
                    message = event.message()
                    if message is None:
                        continue
                    if message.get("method") == "notifications/progress":
                        self.progress.append(message["params"]["progress"])
                        self.first_progress.set()
                    elif "result" in message or "error" in message:
                        self.final = message
                        self.finished_at = time.monotonic()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.failure = e
        finally:
            self.first_progress.set()


@pytest.mark.parametrize("how", ["removed", "changed"])
def test_a_call_in_flight_completes_when_a_reload_removes_or_changes_its_backend(
    peers: dict[str, support.Backend], tmp_path: Path, how: str
) -> None:
    with gateway(tmp_path, [lent(peers["weather"]), lent(peers["notes"])]) as gw:
        slow = SlowCall(gw, n=25)  # 2.5 s
        assert slow.first_progress.wait(20) and slow.failure is None, repr(slow.failure)
        assert slow.final is None, "the call ended before the reload: make it slower"

        config = config_of(gw)
        if how == "removed":
            del config["mcpServers"]["weather"]
        else:
            config["mcpServers"]["weather"]["timeout_ms"] = 15000
        write_config(gw, config)
        done = gw.cli("reload")
        assert done.returncode == 0, done.stderr
        summary = next_summary(gw, 0)
        reloaded_at = time.monotonic()
        assert names_in(summary[how]) == {"weather"} and summary["kept"] == "1", summary.group(0)
        if how == "removed":
            wait_until(lambda: not prefixed(tool_names(gw), "weather"), "weather's tools gone")
        # The previous weather is only stopped once its call has ended.
        still_running = slow.final is None
        stopped_early = "stopped the previous 'weather'" in log(gw)

        slow.thread.join(timeout=30)
        assert not slow.thread.is_alive(), "the slow call never ended"
        assert slow.failure is None, repr(slow.failure)
        assert still_running and slow.finished_at is not None and slow.finished_at > reloaded_at, (
            "the reload was not done while the call ran"
        )
        assert not stopped_early, "the previous weather was stopped while its call was in flight"
        assert slow.final is not None and text(slow.final) == "counted 25", slow.final
        assert slow.progress == list(range(1, 26)), slow.progress
        wait_until(lambda: "reload: stopped the previous 'weather'" in log(gw), "the previous weather stopped after its call")
        assert text(call(gw, "notes__upper", {"text": "x"})) == "X"
        if how == "removed":
            assert "weather" not in status_backends(gw)
            assert "error" in call(gw, "weather__add", {"a": 1, "b": 1})
        else:
            gw.wait_backends_up()
            wait_until(lambda: "weather__add" in tool_names(gw), "weather's tools listed again")
            assert text(call(gw, "weather__add", {"a": 5, "b": 5})) == "10"


# --- refused configs ----------------------------------------------------------------------------------


def broken(kind: str, config: dict[str, Any]) -> str:
    """`config` made to fail checking in one way; the text to write."""
    if kind == "unknown key":
        return json.dumps({**config, "bogus_setting": True}, indent=2)
    if kind == "invalid JSON":
        return json.dumps(config, indent=2)[:-1] + ',\n  "mcpServers": }'
    raise ValueError(kind)


PROBLEM = {"unknown key": "$.bogus_setting: unknown key", "invalid JSON": "is not valid JSON"}


@pytest.mark.parametrize("kind", ["unknown key", "invalid JSON"])
def test_a_config_that_fails_checking_is_refused_and_the_old_one_keeps_serving(
    peers: dict[str, support.Backend], tmp_path: Path, kind: str
) -> None:
    with gateway(tmp_path, [lent(peers["weather"])]) as gw:
        tools = tool_names(gw)
        good = config_of(gw)
        wanted = json.loads(json.dumps(good))
        wanted["mcpServers"]["notes"] = peers["notes"].config  # what it would add, were it taken
        gw.config_path.write_text(broken(kind, wanted))

        sighup(gw)
        wait_until(lambda: REFUSED_END in log(gw), "the gateway refusing the reload in its log")
        refusals = [line for line in log(gw).splitlines() if "reload refused:" in line]
        assert any(PROBLEM[kind] in line for line in refusals), refusals
        assert summaries(gw) == [], "a refused config must not be half-applied"
        assert tool_names(gw) == tools
        assert text(call(gw, "weather__add", {"a": 20, "b": 22})) == "42"
        assert gw.proc is not None and gw.proc.alive()

        # The command refuses it as well, naming the problem.
        done = gw.cli("reload")
        assert done.returncode == 1, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert PROBLEM[kind] in done.stderr and "Asked the gateway" not in done.stdout, (done.stdout, done.stderr)

        # Fixed, it is taken: the refused one left nothing behind.
        write_config(gw, wanted)
        sighup(gw)
        summary = next_summary(gw, 0)
        assert names_in(summary["added"]) == {"notes"} and summary["kept"] == "1", summary.group(0)
        wait_until(lambda: prefixed(tool_names(gw), "notes") == {"notes__echo", "notes__upper"}, "notes' tools")


class Sentinel:
    """A process that blocks SIGHUP, named in a PID file: a SIGHUP sent to it stays pending,
    visible at once in /proc/PID/status, so whether the `reload` command signalled is certain.
    With `serving` its command line has `serve` (as a gateway's has), which `reload` looks for
    before it signals; without, it is the stranger that reused a dead gateway's PID."""

    CODE = (
        "import signal, sys, time\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )

    def __init__(self, workdir: Path, serving: bool = True) -> None:
        argv = [sys.executable, "-c", self.CODE] + (["serve"] if serving else [])
        self.proc = support.Proc("sentinel", argv, workdir)
        wait_until(lambda: "ready" in self.proc.stdout_path.read_text(), "the sentinel blocking SIGHUP", timeout=15)

    def hup_pending(self) -> bool:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        masks = {k: int(v, 16) for k, v in re.findall(r"^(SigPnd|ShdPnd):\s*([0-9a-f]+)$", status, re.M)}
        assert set(masks) == {"SigPnd", "ShdPnd"}, status
        return bool((masks["SigPnd"] | masks["ShdPnd"]) & (1 << (signal.SIGHUP - 1)))


@contextmanager
def named_in_pid_file(tmp_path: Path, serving: bool = True) -> Iterator[tuple[Sentinel, Path]]:
    """A sentinel whose PID the state folder's `mcp-gateway.pid` names, and that folder."""
    state = tmp_path / "state"
    state.mkdir()
    sentinel = Sentinel(tmp_path, serving)
    try:
        (state / "mcp-gateway.pid").write_text(f"{sentinel.proc.pid}\n")
        yield sentinel, state
    finally:
        sentinel.proc.close()


def test_the_reload_command_signals_nothing_when_the_config_fails_checking(
    peers: dict[str, support.Backend], tmp_path: Path
) -> None:
    with named_in_pid_file(tmp_path) as (sentinel, state):
        good = {"state_dir": str(state), "mcpServers": {"weather": lent(peers["weather"]).config}}
        path = tmp_path / "gateway.json"
        for kind in ("unknown key", "invalid JSON"):
            path.write_text(broken(kind, good))
            done = support.run_cli(["reload", "--config", str(path)])
            assert done.returncode == 1, f"{kind}: stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
            assert PROBLEM[kind] in done.stderr, (kind, done.stderr)
            assert not sentinel.hup_pending(), f"{kind}: the command sent SIGHUP although the config failed checking"
        # The control: a good config is signalled, to the process the PID file names.
        path.write_text(json.dumps(good))
        done = support.run_cli(["reload", "--config", str(path)])
        assert done.returncode == 0, done.stderr
        assert f"Asked the gateway (process {sentinel.proc.pid}) to reload its config" in done.stdout, done.stdout
        assert sentinel.hup_pending(), "the command said it asked, but no SIGHUP reached the process"


@pytest.mark.parametrize("kind", ["unknown key", "invalid JSON"])
def test_the_reload_command_says_not_reloaded_when_the_config_fails_checking(
    peers: dict[str, support.Backend], tmp_path: Path, kind: str
) -> None:
    """The command's refusal says what it means for the running gateway, whatever the problem."""
    with named_in_pid_file(tmp_path) as (sentinel, state):
        good = {"state_dir": str(state), "mcpServers": {"weather": lent(peers["weather"]).config}}
        path = tmp_path / "gateway.json"
        path.write_text(broken(kind, good))
        done = support.run_cli(["reload", "--config", str(path)])
        assert done.returncode == 1, done.stdout + done.stderr
        assert PROBLEM[kind] in done.stderr, done.stderr
        assert "not reloaded" in done.stderr, f"no \"not reloaded\" in the refusal:\n{done.stderr}"
        assert not sentinel.hup_pending()


def test_the_reload_command_leaves_environment_variables_to_the_gateway(
    peers: dict[str, support.Backend], tmp_path: Path
) -> None:
    """A `${NAME}` the admin's shell lacks may be in the service's environment: the command does
    not refuse for it, the gateway (which has its own environment) decides."""
    with named_in_pid_file(tmp_path) as (sentinel, state):
        config = {"state_dir": str(state), "mcpServers": {"weather": lent(peers["weather"]).config}}
        config["mcpServers"]["weather"]["headers"] = {"X-Interop-Fixture": "${RELOAD_TEST_UNSET_VARIABLE}"}
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps(config))
        env = support.gateway_env()
        env.pop("RELOAD_TEST_UNSET_VARIABLE", None)
        done = support.run_cli(["reload", "--config", str(path)], env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert sentinel.hup_pending(), "the command did not signal the gateway"


def test_the_reload_command_never_signals_a_process_that_is_not_a_gateway(tmp_path: Path) -> None:
    """A PID file left by a killed gateway may name a process that reused the PID: SIGHUP would
    end it, so `reload` refuses when that process is not serving."""
    with named_in_pid_file(tmp_path, serving=False) as (stranger, state):
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps({"state_dir": str(state), "mcpServers": {}}))
        done = support.run_cli(["reload", "--config", str(path)])
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"process {stranger.proc.pid}, which is not a running gateway" in done.stderr, done.stderr
        assert not stranger.hup_pending(), "reload signalled a process that is not a gateway"


# --- tokens and grants ------------------------------------------------------------------------------------


def test_tokens_and_oauth_grants_work_before_and_after_a_reload(peers: dict[str, support.Backend], tmp_path: Path) -> None:
    import test_oauth  # the raw OAuth helpers (registration, consent, code exchange)

    with gateway(tmp_path, [lent(peers["weather"])], prepare=support.enable_oauth) as gw:
        second = gw.create_token("second")
        revoked = gw.create_token("revoked")
        gw.revoke_token("revoked")
        app = test_oauth.register(gw, name="reload-app")
        granted = test_oauth.grant(gw, app)
        access = granted["access_token"]

        def answers(token: str) -> int:
            return mcp_post(gw, "tools/list", token=token).status_code

        for token in (gw.token, second, access):
            assert answers(token) == 200
            assert text(call(gw, "weather__add", {"a": 1, "b": 1}, token=token)) == "2"
        assert answers(revoked) == 401

        config = config_of(gw)
        config["mcpServers"]["notes"] = peers["notes"].config
        write_config(gw, config)
        done = gw.cli("reload")
        assert done.returncode == 0, done.stderr
        next_summary(gw, 0)
        wait_until(lambda: prefixed(tool_names(gw), "notes"), "notes' tools")

        for token in (gw.token, second, access):
            assert answers(token) == 200
            assert text(call(gw, "weather__add", {"a": 2, "b": 2}, token=token)) == "4"
        assert text(call(gw, "notes__upper", {"text": "still mine"}, token=second)) == "STILL MINE"
        assert answers(revoked) == 401, "a revoked token came back with the reload"
        # The grant itself survived: its refresh token still gives a working access token.
        fresh = test_oauth.tokens_of(test_oauth.refresh(gw, app.client_id, granted["refresh_token"]))
        assert answers(fresh["access_token"]) == 200
        assert not RESTART_WARNING.search(log(gw))


# --- settings read only at start ------------------------------------------------------------------------


def test_settings_read_only_at_start_are_logged_as_needing_a_restart(
    peers: dict[str, support.Backend], tmp_path: Path
) -> None:
    gw = support.Gateway(tmp_path, [lent(peers["weather"])])
    try:
        # Started without --listen, so the config's `listen` is the one in force.
        argv = [str(support.gateway_bin()), "serve", "--config", str(gw.config_path)]
        gw.proc = support.Proc("mcp-gateway", argv, gw.workdir, env=support.gateway_env())
        gw.wait_healthy()
        gw.wait_backends_up()
        assert text(call(gw, "weather__add", {"a": 1, "b": 1})) == "2"

        config = config_of(gw)
        other_port = support.free_port()
        config["listen"] = f"127.0.0.1:{other_port}"
        config["workers"] = 4
        config["state_dir"] = str(tmp_path / "other-state")
        config["audit"] = {"enabled": False}  # on by default
        config["oauth"] = {"allow_registration": False}
        config["limits"] = {**config["limits"], "principal_requests_per_minute": 60, "principal_burst": 1}
        write_config(gw, config)
        sighup(gw)

        summary = next_summary(gw, 0)
        assert (summary["added"], summary["changed"], summary["removed"], summary["kept"]) == ("none", "none", "none", "1"), summary.group(0)
        warned = {m["name"].split(" ")[0] for m in RESTART_WARNING.finditer(log(gw))}
        assert warned == {"listen", "workers", "state_dir", "audit", "oauth", "limits"}, warned

        # They did wait for the restart: same address, no rate limit yet, backends untouched.
        with pytest.raises(httpx2.ConnectError):
            httpx2.get(f"http://127.0.0.1:{other_port}/health", timeout=5)
        for n in range(4):
            assert text(call(gw, "weather__add", {"a": n, "b": 1})) == str(n + 1)
        assert not (tmp_path / "other-state").exists()
        assert (tmp_path / "state" / "mcp-gateway.pid").exists()
    finally:
        gw.close()


def test_a_limit_the_reload_applies_at_once_is_not_logged_as_needing_a_restart(tmp_path: Path) -> None:
    """Whatever the gateway does with a new `limits.max_body_bytes`, its log says the truth."""
    with gateway(tmp_path, [], limits={"max_body_bytes": 1048576}) as gw:
        padding = {"padding": "x" * 8000}
        assert mcp_post(gw, "tools/list", padding).status_code == 200
        config = config_of(gw)
        config["limits"]["max_body_bytes"] = 4096
        write_config(gw, config)
        sighup(gw)
        next_summary(gw, 0)
        answer = mcp_post(gw, "tools/list", padding)
        assert answer.status_code in (200, 413), answer.text[:300]
        in_force = answer.status_code == 413
        warned = [m.group(0) for m in RESTART_WARNING.finditer(log(gw))]
        assert in_force != bool(warned), (
            f"the new max_body_bytes is {'already' if in_force else 'not'} in force "
            f"({answer.status_code}: {answer.text[:200]}), yet the log says: {warned or 'nothing'}"
        )


# --- the PID file, and `reload` with no gateway ----------------------------------------------------------


def test_the_pid_file_names_the_running_gateway_and_goes_at_a_clean_stop(tmp_path: Path) -> None:
    with gateway(tmp_path, []) as gw:
        assert gw.proc is not None
        pid_file = tmp_path / "state" / "mcp-gateway.pid"
        assert pid_file.read_text().strip() == str(gw.proc.pid)
        gw.proc.kill(signal.SIGTERM, grace=15)
        assert gw.proc.popen.returncode == 0, gw.proc.describe()
        assert not pid_file.exists(), "the PID file outlived a clean stop"
        assert any((tmp_path / "state").iterdir()), "the rest of the state folder must stay"
        done = gw.cli("reload")
        assert done.returncode == 1 and "no gateway is running" in done.stderr, done.stdout + done.stderr


def test_reload_without_a_running_gateway_exits_1_and_says_so(tmp_path: Path) -> None:
    # Never started: no PID file.
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"state_dir": str(tmp_path / "state"), "mcpServers": {}}))
    done = support.run_cli(["reload", "--config", str(path)])
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no gateway is running" in done.stderr and "Asked" not in done.stdout, (done.stdout, done.stderr)

    # Killed without a chance to clean up: the PID file names a process that is gone.
    with gateway(tmp_path / "killed", []) as gw:
        assert gw.proc is not None
        pid = gw.proc.pid
        gw.proc.kill(signal.SIGKILL)
        assert not running(pid)
        assert (tmp_path / "killed" / "state" / "mcp-gateway.pid").read_text().strip() == str(pid)
        done = gw.cli("reload")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"process {pid}, which is not a running gateway" in done.stderr and "Asked" not in done.stdout, (done.stdout, done.stderr)
