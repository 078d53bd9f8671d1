"""Benchmark of the OpenAI face: time to first token through the gateway against the upstream LLM
directly, and the latency one round of tool calls adds. Run by hand (not part of the suite):

    cargo build --release
    .venv/bin/python tests/bench/bench_openai.py

The upstream is the tests' scripted OpenAI-compatible LLM (tests/interop/fixtures/scripted_llm.py)
and the tool runs on the Streamable HTTP fixture backend (official MCP Python SDK), all on
loopback, with a bounded number of requests.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from importlib import util as importlib_util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
os.environ.setdefault("MCP_GATEWAY_BIN", str(REPO / "target" / "release" / "mcp-gateway"))

import openai  # noqa: E402
import support  # noqa: E402

_spec = importlib_util.spec_from_file_location("scripted_llm", support.FIXTURES / "scripted_llm.py")
assert _spec is not None and _spec.loader is not None
scripted_llm = importlib_util.module_from_spec(_spec)
_spec.loader.exec_module(scripted_llm)

RUNS = 40
ANSWER = "The sum of two and forty is forty-two, as the weather server's add tool said."
MESSAGES = [{"role": "user", "content": "what is 2+40?"}]


def first_token_ms(client: openai.OpenAI, model: str) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    assert first is not None, "no content arrived"
    return (first - started) * 1000


def whole_answer_ms(client: openai.OpenAI, model: str) -> float:
    started = time.perf_counter()
    answer = client.chat.completions.create(model=model, messages=MESSAGES)
    assert answer.choices[0].message.content == ANSWER, answer
    return (time.perf_counter() - started) * 1000


def median(samples: list[float]) -> str:
    return f"{statistics.median(samples):6.2f} ms"


def main() -> None:
    binary = Path(os.environ["MCP_GATEWAY_BIN"])
    if not binary.is_file():
        sys.exit(f"{binary} not found: run `cargo build --release` first")
    workdir = Path(tempfile.mkdtemp(prefix="mcpgw-bench-openai-"))
    llm = scripted_llm.ScriptedLLM(models=["tiny"]).start()
    weather = support.start_weather(workdir)
    gateway = support.Gateway(workdir, [weather])
    config = json.loads(gateway.config_path.read_text())
    config["openai"] = {"upstream": {"base_url": llm.base_url, "models": ["tiny"], "timeout_ms": 10000}, "tools": ["weather__*"]}
    gateway.config_path.write_text(json.dumps(config))
    try:
        gateway.start()
        direct = openai.OpenAI(base_url=llm.base_url, api_key="unused", max_retries=0, timeout=30)
        through = openai.OpenAI(base_url=f"{gateway.base}/v1", api_key=gateway.token, max_retries=0, timeout=30)
        llm.script([scripted_llm.text(ANSWER)], repeat_last=True)
        for client in (direct, through):  # warm up
            first_token_ms(client, "tiny")
        ttft_direct = [first_token_ms(direct, "tiny") for _ in range(RUNS)]
        ttft_through = [first_token_ms(through, "tiny") for _ in range(RUNS)]
        no_tools = [whole_answer_ms(through, "tiny") for _ in range(RUNS)]
        with_round = []
        for _ in range(RUNS):
            llm.script([scripted_llm.call("weather__add", a=2, b=40), scripted_llm.text(ANSWER)])
            with_round.append(whole_answer_ms(through, "tiny"))
        print(f"time to first token, upstream direct:   {median(ttft_direct)}   ({RUNS} streamed chats)")
        print(f"time to first token, through gateway:   {median(ttft_through)}")
        print(f"added to the first token (median):      {statistics.median(ttft_through) - statistics.median(ttft_direct):6.2f} ms")
        print(f"answer through gateway, no tool call:   {median(no_tools)}")
        print(f"answer through gateway, one tool round: {median(with_round)}")
        print(f"added by one tool round (median):       {statistics.median(with_round) - statistics.median(no_tools):6.2f} ms"
              " (one upstream request more + weather__add on the Python backend)")
    finally:
        gateway.close()
        weather.close()
        llm.stop()


if __name__ == "__main__":
    main()
