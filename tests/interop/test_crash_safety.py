"""Crash safety (issue 21, item 4): SIGKILL at random moments while tokens are created and revoked
and OAuth clients register, over two hundred rounds; the state always loads, and every token
whose creation was acknowledged before the kill still works.

Each round starts the gateway on the state folder the previous round's kill left behind, checks
it (the server comes up healthy, `token list` works, both state files parse, every acknowledged
token authenticates on `/mcp`, every acknowledged revocation is refused, every acknowledged
registration reaches the consent page), then runs, all at once: two threads of short-lived
`token create` / `token revoke` CLI processes and one thread registering clients on
`POST /oauth/register`; after a random (seeded) delay it SIGKILLs the server and every CLI
process still running. "Acknowledged" is what a user saw: a token line printed by
`token create` (even if the process died right after), exit 0 of `token revoke`, a whole 201 from
`/oauth/register`. What was cut short may have happened or not; either is fine, but never a
state that fails to load.

State files are written to a temp file, fsynced and renamed (src/store.rs); a kill that lands
between the temp file and the rename leaves the temp file behind, which is how the figures
below count "kills mid-write".
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

import support
from test_oauth import Pkce, authorize_url

SEED = 2112
ROUNDS = 220
TIME_BUDGET = 170.0  # seconds for all rounds; about 60 s on an idle 2-core machine
KILL_DELAY_MAX = 0.1  # the kill comes 0..100 ms after the work starts
SAMPLE = 12  # acknowledged clients and revoked tokens checked per round (all of them at the end)


@dataclass
class Acknowledged:
    """What the gateway told the user it had done."""

    live: dict[str, str] = field(default_factory=dict)  # name -> token: created, never a revoke started
    revoked: dict[str, str] = field(default_factory=dict)  # name -> token: revocation acknowledged
    uncertain: dict[str, str] = field(default_factory=dict)  # a revocation was cut short
    clients: dict[str, str] = field(default_factory=dict)  # client_id -> redirect_uri
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_live(self, rng: random.Random) -> tuple[str, str] | None:
        """Moves a random live token to `uncertain` (its revocation is about to start)."""
        with self.lock:
            if not self.live:
                return None
            name = rng.choice(sorted(self.live))
            token = self.live.pop(name)
            self.uncertain[name] = token
            return name, token


@dataclass
class Figures:
    rounds: int = 0
    creates_acknowledged: int = 0
    revokes_acknowledged: int = 0
    registrations_acknowledged: int = 0
    cli_killed: int = 0
    registrations_cut: int = 0
    kills_mid_write: Counter[str] = field(default_factory=Counter)  # state file -> kills that left its temp file
    temp_files: set[str] = field(default_factory=set)


class Lab:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.gw = support.Gateway(workdir, [])  # config, state folder and a first token
        support.enable_oauth(self.gw)  # public_url, registration on, an owner password
        self.state = workdir / "state"
        self.ack = Acknowledged(live={"interop": self.gw.token})
        self.figures = Figures()
        self.proc: support.Proc | None = None
        self.running_cli: set[subprocess.Popen[bytes]] = set()
        self.cli_lock = threading.Lock()
        self.stop = threading.Event()
        self.serial = 0

    # --- the server ---
    def start(self) -> None:
        argv = [str(support.gateway_bin()), "serve", "--config", str(self.gw.config_path)]
        self.proc = support.Proc("mcp-gateway", argv, self.workdir, env=support.gateway_env())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not self.proc.alive():
                raise AssertionError(f"the gateway did not start on the state a kill left behind\n{self.proc.describe()}")
            try:
                if httpx2.get(f"{self.gw.base}/health", timeout=2).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.01)
        raise AssertionError(f"/health not 200 within 20 s\n{self.proc.describe()}")

    def kill_all(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        with self.cli_lock:
            self.stop.set()
            for p in self.running_cli:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
        if self.proc is not None:
            self.proc.close()

    # --- checks after a kill ---
    def check_state(self, http: httpx2.Client, rng: random.Random, everything: bool = False) -> None:
        for name in ("tokens.json", "oauth.json"):
            path = self.state / name
            if path.exists():
                json.loads(path.read_text())  # never half a file
        leftovers = {p.name for p in self.state.iterdir() if ".tmp-" in p.name}
        new = leftovers - self.figures.temp_files
        for written in {n.split(".tmp-")[0].lstrip(".") for n in new}:
            self.figures.kills_mid_write[written] += 1
        self.figures.temp_files |= new
        listed = support.run_cli(["token", "list", "--config", str(self.gw.config_path)])
        assert listed.returncode == 0, f"token list: {listed.stdout}{listed.stderr}"
        names = {line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()}
        missing = sorted(set(self.ack.live) - names)
        assert not missing, f"acknowledged tokens {missing} missing from token list:\n{listed.stdout}"

        def sample(items: dict[str, str]) -> list[tuple[str, str]]:
            pairs = sorted(items.items())
            return pairs if everything or len(pairs) <= SAMPLE else rng.sample(pairs, SAMPLE)

        for name, token in sorted(self.ack.live.items()):
            status = discover(http, self.gw, token)
            assert status == 200, f"acknowledged token {name} got HTTP {status} after a kill"
        for name, token in sample(self.ack.revoked):
            status = discover(http, self.gw, token)
            assert status == 401, f"token {name}, whose revocation was acknowledged, got HTTP {status} after a kill"
        for client_id, redirect_uri in sample(self.ack.clients):
            page = http.get(authorize_url(self.gw, client_id, redirect_uri, Pkce.new()))
            assert page.status_code == 200 and "csrf_token" in page.text, (
                f"acknowledged client {client_id} gets HTTP {page.status_code} at /oauth/authorize after a kill: {page.text[:300]}"
            )

    # --- the work a kill interrupts ---
    def cli(self, *args: str) -> tuple[int | None, str]:
        with self.cli_lock:
            if self.stop.is_set():
                return None, ""
            p = subprocess.Popen(
                [str(support.gateway_bin()), *args, "--config", str(self.gw.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=support.gateway_env(),
            )
            self.running_cli.add(p)
        try:
            out, _ = p.communicate(timeout=30)
        finally:
            with self.cli_lock:
                self.running_cli.discard(p)
        return p.returncode, out.decode("utf-8", "replace")

    def token_work(self, rng: random.Random, steps: int) -> None:
        for _ in range(steps):
            if self.stop.is_set():
                return
            with self.ack.lock:
                n_live = len(self.ack.live)
            if n_live > 3 and rng.random() < (0.3 if n_live < 25 else 0.8):
                taken = self.ack.take_live(rng)
                if taken is None:
                    continue
                name, token = taken
                code, _ = self.cli("token", "revoke", name)
                with self.ack.lock:
                    if code == 0:
                        self.ack.uncertain.pop(name, None)
                        self.ack.revoked[name] = token
                        self.figures.revokes_acknowledged += 1
                    elif code is None:  # never started: still live
                        self.ack.live[name] = self.ack.uncertain.pop(name)
                    elif code is not None and code < 0:
                        self.figures.cli_killed += 1
                    # otherwise: not started, or killed: stays uncertain
            else:
                with self.ack.lock:
                    self.serial += 1
                    name = f"t{self.serial}"
                code, out = self.cli("token", "create", name)
                token = next((w for w in out.split() if w.startswith("mgw_") and len(w) == 68), None) if "\n" in out else None
                lines = out.splitlines(keepends=True)
                printed = token is not None and any(line.strip() == token and line.endswith("\n") for line in lines)
                with self.ack.lock:
                    if printed:
                        self.ack.live[name] = token  # type: ignore[assignment]
                        self.figures.creates_acknowledged += 1
                    if code is not None and code < 0:
                        self.figures.cli_killed += 1
                    if code == 0:
                        assert printed, f"token create {name} exited 0 without printing a token: {out!r}"

    def register_work(self, rng: random.Random, steps: int) -> None:
        with httpx2.Client(timeout=5) as http:
            for _ in range(steps):
                if self.stop.is_set():
                    return
                redirect_uri = f"http://127.0.0.1:{rng.randrange(20000, 60000)}/callback"
                try:
                    r = http.post(
                        f"{self.gw.base}/oauth/register",
                        json={"client_name": "crash", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"},
                    )
                except httpx2.HTTPError:
                    self.figures.registrations_cut += 1
                    return
                assert r.status_code == 201, f"register: HTTP {r.status_code}: {r.text[:300]}"
                with self.ack.lock:
                    self.ack.clients[r.json()["client_id"]] = redirect_uri
                    self.figures.registrations_acknowledged += 1

    def round(self, rng: random.Random, http: httpx2.Client) -> None:
        self.start()
        self.check_state(http, rng)
        self.stop.clear()
        seeds = [rng.randrange(2**32) for _ in range(3)]
        room = len(self.ack.clients) < 300  # well below the 500 kept clients (MAX_CLIENTS)
        errors: list[BaseException] = []

        def guarded(work: Any, *args: Any) -> threading.Thread:
            def run() -> None:
                try:
                    work(*args)
                except BaseException as e:  # shown by the round, not lost in the thread
                    errors.append(e)

            return threading.Thread(target=run)

        workers = [
            guarded(self.token_work, random.Random(seeds[0]), rng.randrange(1, 4)),
            guarded(self.token_work, random.Random(seeds[1]), rng.randrange(0, 3)),
            guarded(self.register_work, random.Random(seeds[2]), rng.randrange(1, 4) if room else 0),
        ]
        for w in workers:
            w.start()
        time.sleep(rng.uniform(0, KILL_DELAY_MAX))
        self.kill_all()
        for w in workers:
            w.join(timeout=30)
            assert not w.is_alive(), "a worker thread did not end after the kill"
        if errors:
            raise errors[0]
        self.figures.rounds += 1


def discover(http: httpx2.Client, gw: support.Gateway, token: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": support.modern_meta()}}
    r = http.post(gw.url, json=body, headers=support.modern_headers(token, "server/discover"))
    if r.status_code == 200:
        assert "result" in support.final_message(r, 1), r.text[:300]
    return r.status_code


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.kill_all()


def test_sigkill_during_token_and_client_writes_never_loses_an_acknowledged_one(lab: Lab) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    with httpx2.Client(timeout=10, follow_redirects=False) as http:
        for _ in range(ROUNDS):
            lab.round(rng, http)
            assert time.monotonic() - started < TIME_BUDGET, f"only {lab.figures.rounds} rounds within {TIME_BUDGET}s"
        lab.start()
        lab.check_state(http, rng, everything=True)
    lab.kill_all()
    f = lab.figures
    print(
        f"\n{f.rounds} rounds in {time.monotonic() - started:.1f}s: {f.creates_acknowledged} creates, {f.revokes_acknowledged} revokes, "
        f"{f.registrations_acknowledged} registrations acknowledged; {f.cli_killed} CLI processes and {f.registrations_cut} "
        f"registrations cut by a kill; kills mid-write (temp file left) {dict(f.kills_mid_write)}; "
        f"{len(lab.ack.live)} live, {len(lab.ack.revoked)} revoked, {len(lab.ack.uncertain)} uncertain at the end"
    )
    assert f.rounds >= 200
    assert f.creates_acknowledged >= 100 and f.revokes_acknowledged >= 30 and f.registrations_acknowledged >= 40, f
    # How many kills land while a CLI process runs depends on the machine's speed (19 and over
    # 20 have both been seen in 220 rounds); 10 still shows the kills reach the CLI's writes.
    assert f.cli_killed >= 10, f"the kills seldom hit a running CLI process: {f}"
