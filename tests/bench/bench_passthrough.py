"""Benchmark of what passes through the gateway: how late a backend's progress notification reaches
the client, and how long a 1 MiB image result takes, through mcp-gateway against the backend
directly. Run by hand (not part of the suite):

    cargo build --release
    .venv/bin/python tests/bench/bench_passthrough.py

The backend is the rich fixture (tests/interop/fixtures/rich_server.py, official MCP Python SDK)
over Streamable HTTP; the client is raw httpx in the stateless 2026-07-28 form, reading the SSE
stream as it arrives. The backend puts time.time_ns() in each progress `message`; the client
subtracts it from its own clock on arrival (one machine, loopback). Counts are bounded.
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
os.environ.setdefault("MCP_GATEWAY_BIN", str(REPO / "target" / "release" / "mcp-gateway"))

import httpx2  # noqa: E402
import support  # noqa: E402

NOTIFICATIONS = 200
NOTIFICATION_GAP_MS = 5
IMAGE_CALLS = 30
IMAGE_KIB = 1024
TIMEOUT = 60.0


def call_body(request_id: int, name: str, arguments: dict[str, Any], progress_token: str | None = None) -> dict[str, Any]:
    meta = support.modern_meta()
    if progress_token is not None:
        meta["progressToken"] = progress_token
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": arguments, "_meta": meta}}


def progress_delays_ms(client: httpx2.Client, url: str, token: str | None, name: str, count: int) -> list[float]:
    """One `progress` call of `count` stamped steps; for each notification, arrival minus stamp."""
    delays: list[float] = []
    body = call_body(1, name, {"steps": count, "delay_ms": NOTIFICATION_GAP_MS, "stamp": True}, "bench")
    deadline = time.monotonic() + TIMEOUT
    with client.stream("POST", url, json=body, headers=support.modern_headers(token, "tools/call", name)) as response:
        assert response.status_code == 200, response.read()
        for event in support.sse_events(response.iter_lines(), deadline):
            arrived = time.time_ns()
            message = event.message()
            if message is None:
                continue
            if message.get("method") == "notifications/progress":
                delays.append((arrived - int(message["params"]["message"])) / 1e6)
            elif message.get("id") == 1:
                assert "result" in message, message
                break
    assert len(delays) == count, f"{len(delays)} of {count} notifications arrived"
    return delays


def image_call_ms(client: httpx2.Client, url: str, token: str | None, name: str, count: int) -> list[float]:
    """`count` sequential `big_image` calls: time from sending to the whole result parsed."""
    headers = support.modern_headers(token, "tools/call", name)
    samples: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        response = client.post(url, json=call_body(i, name, {"size_kib": IMAGE_KIB}), headers=headers)
        message = support.final_message(response, i)
        samples.append((time.perf_counter() - started) * 1000)
        data = message["result"]["content"][0]["data"]
        if i == 0:
            assert len(base64.b64decode(data)) == IMAGE_KIB * 1024, "the image is not whole"
    return samples


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(int(len(ordered) * 0.95) - 1, 0)]
    return f"median {statistics.median(ordered):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ordered)})"


def main() -> None:
    binary = Path(os.environ["MCP_GATEWAY_BIN"])
    if not binary.is_file():
        sys.exit(f"{binary} not found: run `cargo build --release` first")
    workdir = Path(tempfile.mkdtemp(prefix="mcpgw-bench-passthrough-"))
    rich = support.start_rich(workdir, resumable=False)
    gateway = support.Gateway(workdir, [rich])
    assert rich.url is not None
    try:
        gateway.start()
        with httpx2.Client(timeout=TIMEOUT) as client:
            progress_delays_ms(client, rich.url, None, "progress", 10)  # warm up both paths
            progress_delays_ms(client, gateway.url, gateway.token, "rich__progress", 10)
            direct = progress_delays_ms(client, rich.url, None, "progress", NOTIFICATIONS)
            through = progress_delays_ms(client, gateway.url, gateway.token, "rich__progress", NOTIFICATIONS)
            image_call_ms(client, rich.url, None, "big_image", 3)
            image_call_ms(client, gateway.url, gateway.token, "rich__big_image", 3)
            image_direct = image_call_ms(client, rich.url, None, "big_image", IMAGE_CALLS)
            image_through = image_call_ms(client, gateway.url, gateway.token, "rich__big_image", IMAGE_CALLS)
        rows = [
            ("progress notification, direct", describe(direct)),
            ("progress notification, through gateway", describe(through)),
            ("  added by the gateway (median)", f"{statistics.median(through) - statistics.median(direct):7.2f} ms"),
            (f"big_image({IMAGE_KIB}) (1 MiB PNG) call, direct", describe(image_direct)),
            (f"big_image({IMAGE_KIB}) call, through gateway", describe(image_through)),
            ("  added by the gateway (median)", f"{statistics.median(image_through) - statistics.median(image_direct):7.2f} ms"),
        ]
        for label, figures in rows:
            print(f"{label + ':':<45} {figures}")
    finally:
        gateway.close()
        rich.close()


if __name__ == "__main__":
    main()
