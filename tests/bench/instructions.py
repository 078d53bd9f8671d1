"""Instructions the gateway runs per request, counted by valgrind's callgrind: the one figure of
the hot path that does not move with the machine's load (wall-clock and CPU figures on a shared
2-core machine do, by more than most changes are worth). Run by hand (not part of the suite):

    CARGO_PROFILE_RELEASE_DEBUG=1 CARGO_PROFILE_RELEASE_STRIP=false cargo build --release
    .venv/bin/python tests/bench/instructions.py [--gateway-bin PATH] [--requests N]

(symbols are only needed to read the profiles it leaves, with `callgrind_annotate`). It needs
valgrind (Debian's `valgrind`). For each request kind it starts the binary under callgrind with
instrumentation off, warms up, counts N requests, and prints instructions per request:

- `tools/call`: a 2026-07-28 `tools/call` of `weather__add` on the Streamable HTTP fixture
  backend (official MCP Python SDK), audit log on;
- `tools/list`: the same gateway with no backend, a 2026-07-28 `tools/list`;
- `/health`: `GET /health` on that gateway.

The profiles stay in a temporary folder whose path it prints (`callgrind_annotate --inclusive=yes
FILE` shows where the instructions go).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))

import httpx2  # noqa: E402
import support  # noqa: E402

WARM_UP = 30


def wrapper(folder: Path, binary: Path, kind: str) -> Path:
    """A script that `support.Gateway` starts as the binary: the binary under callgrind."""
    script = folder / f"callgrind-{kind}.sh"
    out = folder / f"callgrind-{kind}.out"
    script.write_text(
        "#!/bin/sh\n"
        f"exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file={out} {binary} \"$@\"\n"
    )
    script.chmod(0o755)
    return script


def total_instructions(profile: Path) -> int:
    """The `summary:` (or `totals:`) line of a callgrind profile."""
    for line in profile.read_text().splitlines():
        if re.match(r"^(summary|totals):", line):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {profile}")


def measure(folder: Path, binary: Path, kind: str, requests: int) -> int:
    os.environ["MCP_GATEWAY_BIN"] = str(wrapper(folder, binary, kind))
    workdir = folder / kind
    workdir.mkdir()
    backends = [support.start_weather(workdir)] if kind == "tools-call" else []
    gateway = support.Gateway(workdir, backends)
    gateway.start()
    try:
        with httpx2.Client(timeout=120) as client:
            def one(i: int) -> None:
                if kind == "health":
                    response = client.get(f"{gateway.base}/health")
                elif kind == "tools-list":
                    body = {"jsonrpc": "2.0", "id": i, "method": "tools/list", "params": {"_meta": support.modern_meta()}}
                    response = client.post(gateway.url, json=body, headers=support.modern_headers(gateway.token, "tools/list"))
                else:
                    body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                            "params": {"name": "weather__add", "arguments": {"a": i, "b": 1}, "_meta": support.modern_meta()}}
                    response = client.post(gateway.url, json=body,
                                           headers=support.modern_headers(gateway.token, "tools/call", "weather__add"))
                assert response.status_code == 200, response.text
                if kind == "tools-call":
                    assert "result" in support.final_message(response), response.text

            for i in range(WARM_UP):
                one(i)
            pid = str(gateway.proc.pid)
            subprocess.run(["callgrind_control", "-i", "on", pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
            for i in range(requests):
                one(i)
            subprocess.run(["callgrind_control", "-d", pid], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    finally:
        gateway.close()
        for backend in backends:
            backend.close()
    dumps = sorted(folder.glob(f"callgrind-{kind}.out.*"))
    if not dumps:
        raise SystemExit(f"callgrind wrote no dump for {kind} (is valgrind installed?)")
    return total_instructions(dumps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway-bin", default=str(REPO / "target" / "release" / "mcp-gateway"))
    parser.add_argument("--requests", type=int, default=200, help="requests counted per kind (default 200)")
    args = parser.parse_args()
    binary = Path(args.gateway_bin).resolve()
    if not binary.is_file():
        sys.exit(f"{binary} not found: run `cargo build --release` first, or pass --gateway-bin")
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    folder = Path(tempfile.mkdtemp(prefix="mcpgw-instructions-"))
    print(f"binary: {binary} ({binary.stat().st_size} bytes); profiles in {folder}")
    for kind, label in [("tools-call", "tools/call (2026-07-28, Python backend)"),
                        ("tools-list", "tools/list (2026-07-28, no backend)"),
                        ("health", "GET /health")]:
        total = measure(folder, binary, kind, args.requests)
        print(f"{label:42s} {total / args.requests:10,.0f} instructions per request ({args.requests} requests)")


if __name__ == "__main__":
    main()
