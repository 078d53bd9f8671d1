"""An OpenAI client talks to a real LLM through the gateway, which runs the household's tools for it.

The LLM is fixtures/scripted_llm.py, an OpenAI-compatible upstream that answers from a script and
records what the gateway sent it. The household is the session gateway's weather (Streamable HTTP)
and notes (legacy SSE) backends, plus weather again as `garden`, which the `openai.tools` globs
leave out. Each gateway here has its own `openai` section in its config: model `tiny` runs the tool
loop, `plain/tiny` is the upstream as is, `mcp-gateway` is the built-in. The upstream's key reaches
the gateway as ${UPSTREAM_KEY} from its environment.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import support

_spec = importlib_util.spec_from_file_location("scripted_llm", support.FIXTURES / "scripted_llm.py")
assert _spec is not None and _spec.loader is not None
scripted_llm = importlib_util.module_from_spec(_spec)
_spec.loader.exec_module(scripted_llm)
ScriptedLLM, call, calls, text = scripted_llm.ScriptedLLM, scripted_llm.call, scripted_llm.calls, scripted_llm.text

MODEL = "tiny"
UPSTREAM_KEY = "upstream-secret-7f3a9c"
SYSTEM_PROMPT = "You are a household assistant."
MAX_ROUNDS = 3
OUR_TOOLS = {"weather__add", "weather__forecast", "weather__slow_count", "notes__echo", "notes__upper"}
CAPTURE = support.FIXTURES / "openwebui-0.12.4-openai-requests.jsonl"
TITLE_TASK = (
    "### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
    "### Guidelines:\n- The title should clearly represent the main theme or subject of the conversation.\n"
    '### Output:\nJSON format: { "title": "your concise title here" }\n'
    "### Chat History:\n<chat_history>\nUSER: what is 2+40?\nASSISTANT: 2+40 is 42.\n</chat_history>"
)


# --- the captured Open WebUI requests --------------------------------------------------------------


def captured_chats() -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in CAPTURE.read_text().splitlines() if line.strip()]
    return [entry for entry in lines if entry["method"] == "POST" and entry["path"] == "/v1/chat/completions"]


def captured_chat_ids() -> list[str]:
    return [("browser" if e["body"].get("tools") else "streamed" if e["body"].get("stream") else "api") for e in captured_chats()]


def browser_chat() -> dict[str, Any]:
    """The chat as the browser sends it: stream, include_usage and 28 builtin tools."""
    return next(e for e in captured_chats() if e["body"].get("tools"))


def owui_tool(name: str) -> dict[str, Any]:
    """One of Open WebUI's own builtin tools, exactly as it sends it."""
    return next(t for t in browser_chat()["body"]["tools"] if t["function"]["name"] == name)


# --- gateways with an `openai` section -------------------------------------------------------------


def openai_section(llm: ScriptedLLM | str, upstream: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    base_url = llm if isinstance(llm, str) else llm.base_url
    return {
        "upstream": {"base_url": base_url, "api_key": "${UPSTREAM_KEY}", "models": [MODEL], "timeout_ms": 10000,
                     **(upstream or {})},
        "system_prompt": SYSTEM_PROMPT,
        "max_tool_rounds": MAX_ROUNDS,
        "max_tool_result_chars": 20000,
        "tools": ["weather__*", "notes__*"],
        "show_tool_calls": False,
        "cors_origins": [],
        **over,
    }


class LoopGateway(support.Gateway):
    """A gateway whose environment holds the upstream's key (config: "${UPSTREAM_KEY}")."""

    def start(self) -> "LoopGateway":
        argv = [str(support.gateway_bin()), "serve", "--config", str(self.config_path), "--listen", f"127.0.0.1:{self.port}"]
        env = {**support.gateway_env(), "UPSTREAM_KEY": UPSTREAM_KEY}
        self.proc = support.Proc("mcp-gateway", argv, self.workdir, env=env)
        self.wait_healthy()
        self.wait_backends_up()
        return self


@contextmanager
def loop_gateway(workdir: Path, household: list[support.Backend], section: dict[str, Any]) -> Iterator[LoopGateway]:
    gw = LoopGateway(workdir, household)
    try:
        config = json.loads(gw.config_path.read_text())
        config["openai"] = section
        gw.config_path.write_text(json.dumps(config, indent=2))
        gw.start()
        yield gw
    finally:
        gw.close()  # the household's backends are borrowed: nothing of theirs to stop


@pytest.fixture(scope="module")
def household(gateway: support.Gateway) -> list[support.Backend]:
    """The session gateway's weather and notes backends, borrowed (stopping ours leaves them up), and
    weather once more as `garden`, whose tools `openai.tools` leaves out."""
    borrowed = [support.Backend(b.name, None, b.config, b.url) for b in gateway.backends if b.name in ("weather", "notes")]
    weather = next(b for b in borrowed if b.name == "weather")
    return [*borrowed, support.Backend("garden", None, weather.config, weather.url)]


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, household, llm) -> Iterator[LoopGateway]:
    with loop_gateway(tmp_path_factory.mktemp("loop"), household, openai_section(llm)) as g:
        yield g


@pytest.fixture(scope="module")
def troubled(tmp_path_factory: pytest.TempPathFactory, household) -> Iterator[tuple[LoopGateway, ScriptedLLM]]:
    """A gateway that waits only 1.5 s for its upstream, with an upstream of its own."""
    with ScriptedLLM() as fake:
        section = openai_section(fake, upstream={"timeout_ms": 1500})
        with loop_gateway(tmp_path_factory.mktemp("troubled"), household, section) as g:
            yield g, fake


@pytest.fixture(scope="module")
def chatty(tmp_path_factory: pytest.TempPathFactory, household) -> Iterator[tuple[LoopGateway, ScriptedLLM]]:
    """show_tool_calls on, the system prompt from a file, tool results cut at 500 characters, and no
    `tools` globs (so every tool of the household is offered)."""
    workdir = tmp_path_factory.mktemp("chatty")
    prompt = workdir / "prompt.txt"
    prompt.write_text("You run the house. Prompt from a file.")
    with ScriptedLLM() as fake:
        section = openai_section(fake, show_tool_calls=True, system_prompt={"file": str(prompt)}, max_tool_result_chars=500)
        del section["tools"]
        with loop_gateway(workdir, household, section) as g:
            yield g, fake


# --- clients --------------------------------------------------------------------------------------


def client_for(gw: support.Gateway, timeout: float = 30) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.base}/v1", api_key=gw.token, timeout=timeout, max_retries=0)


@dataclass
class Streamed:
    """A streamed chat as the client saw it: every `data:` event with the time it arrived."""

    status: int
    content_type: str
    events: list[tuple[float, Any]] = field(default_factory=list)  # (time.monotonic(), chunk dict or "[DONE]")
    body: str = ""  # the body of a non-200 answer
    broken: str | None = None  # how the connection failed, if it did

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return [e for _, e in self.events if isinstance(e, dict)]

    @property
    def deltas(self) -> list[dict[str, Any]]:
        return [c["choices"][0].get("delta") or {} for c in self.chunks if c.get("choices")]

    @property
    def text(self) -> str:
        return "".join(d.get("content") or "" for d in self.deltas)

    @property
    def finish_reasons(self) -> list[str]:
        return [c["choices"][0]["finish_reason"] for c in self.chunks if c.get("choices") and c["choices"][0].get("finish_reason")]

    @property
    def tool_call_fragments(self) -> list[dict[str, Any]]:
        return [f for d in self.deltas for f in (d.get("tool_calls") or [])]

    @property
    def usages(self) -> list[dict[str, Any]]:
        return [c for c in self.chunks if c.get("usage")]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [c["error"] for c in self.chunks if "error" in c]

    def first_content_at(self) -> float:
        return next(t for t, e in self.events if isinstance(e, dict) and e.get("choices")
                    and (e["choices"][0].get("delta") or {}).get("content"))

    def describe(self) -> str:
        lines = [f"HTTP {self.status} {self.content_type} broken={self.broken}", self.body[:500]]
        lines += [json.dumps(e)[:300] for _, e in self.events]
        return "\n".join(lines)


def stream_chat(gw: support.Gateway, body: dict[str, Any], headers: dict[str, str] | None = None,
                timeout: float = 30) -> Streamed:
    """POST a streamed chat with raw httpx2 and read it event by event."""
    hdrs = {**(headers or {}), **gw.auth()}
    with httpx2.stream("POST", f"{gw.base}/v1/chat/completions", json=body, headers=hdrs, timeout=timeout) as r:
        out = Streamed(r.status_code, r.headers.get("content-type", ""))
        if r.status_code != 200:
            r.read()
            out.body = r.text
            return out
        try:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    data = line[5:].strip()
                    out.events.append((time.monotonic(), data if data == "[DONE]" else json.loads(data)))
        except httpx2.HTTPError as e:
            out.broken = repr(e)
    return out


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


def arithmetician(body: dict[str, Any]) -> dict[str, Any]:
    """A scripted turn that reads the conversation: asked "what is A+B?", it calls weather__add;
    once the tool's result is in, it answers with it. Answers are streamed slowly."""
    msgs = body["messages"]
    if msgs[-1].get("role") == "tool":
        return text(f"The weather server says {msgs[-1]['content']}.", delay=0.2)
    question = next(m["content"] for m in reversed(msgs) if m.get("role") == "user")
    a, b = (int(x) for x in re.findall(r"\d+", question)[:2])
    return {**call("weather__add", a=a, b=b), "delay": 0.2}


def ask(question: str = "what is 2+40?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": question}]


def mcp_input_schemas(gw: support.Gateway) -> dict[str, Any]:
    """Every tool's inputSchema as the gateway lists it on /mcp."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": support.modern_meta()}}
    r = httpx2.post(gw.url, json=body, headers=support.modern_headers(gw.token, "tools/list"), timeout=30)
    result = support.final_message(r, 1)["result"]
    assert not result.get("nextCursor"), "paginated tools/list: extend this helper"
    return {t["name"]: t["inputSchema"] for t in result["tools"]}


# --- what the upstream saw ------------------------------------------------------------------------


def tool_names(body: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in body.get("tools") or []}


def arguments_of(tool_call: dict[str, Any]) -> Any:
    args = tool_call["function"]["arguments"]
    return json.loads(args) if isinstance(args, str) else args


def assert_tool_round(body: dict[str, Any], name: str, arguments: dict[str, Any], result_has: str) -> None:
    """`body` (a later upstream request) holds the assistant's call of `name` and its tool result."""
    msgs = body["messages"]
    assistant = [m for m in msgs if m.get("role") == "assistant" and m.get("tool_calls")]
    assert assistant, f"no assistant message with tool_calls in {json.dumps(msgs)[:2000]}"
    tc = assistant[-1]["tool_calls"][0]
    assert tc["function"]["name"] == name and tc.get("type", "function") == "function", tc
    assert arguments_of(tc) == arguments, tc
    results = [m for m in msgs if m.get("role") == "tool" and m.get("tool_call_id") == tc["id"]]
    assert results, f"no tool message for {tc['id']} in {json.dumps(msgs)[:2000]}"
    content = results[-1]["content"]
    content = content if isinstance(content, str) else json.dumps(content)
    assert result_has in content, results[-1]
    assert msgs.index(assistant[-1]) < msgs.index(results[-1])


def assert_openai_error(response: httpx2.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"HTTP {response.status_code}: {response.text[:500]}"
    error = response.json()["error"]
    assert {"message", "type", "param", "code"} <= set(error), error
    assert isinstance(error["message"], str) and error["message"], error
    return error


# --- the models list ------------------------------------------------------------------------------


def test_the_models_list_offers_the_built_in_the_upstream_model_and_its_plain_variant(gw, llm):
    models = client_for(gw).models.list()
    ids = [m.id for m in models.data]
    assert {"mcp-gateway", MODEL, f"plain/{MODEL}"} <= set(ids), ids
    assert all(m.object == "model" for m in models.data)
    for request in llm.requests:  # if the gateway asked the upstream for its list, it used the upstream's key
        assert request["headers"].get("authorization") == f"Bearer {UPSTREAM_KEY}", request["headers"]


def test_with_the_upstream_gone_the_models_stay_listed_and_a_chat_is_a_502(tmp_path, household):
    with ScriptedLLM() as fake, loop_gateway(tmp_path, household, openai_section(fake)) as g:
        before = {m.id for m in client_for(g).models.list().data}
        fake.stop()
        after = {m.id for m in client_for(g).models.list().data}
        assert {"mcp-gateway", MODEL, f"plain/{MODEL}"} <= after, after
        assert before == after
        started = time.monotonic()
        refused = httpx2.post(f"{g.base}/v1/chat/completions", json={"model": MODEL, "messages": ask()},
                              headers=g.auth(), timeout=30)
        assert time.monotonic() - started < 15
        assert_openai_error(refused, 502)
        with pytest.raises(openai.APIStatusError) as failed:
            client_for(g).chat.completions.create(model=f"plain/{MODEL}", messages=ask())
        assert failed.value.status_code == 502
        seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()}, timeout=15)
        if seen.status == 200:  # a stream may have begun: then it ends with an error event and [DONE]
            assert seen.errors and seen.events[-1][1] == "[DONE]", seen.describe()
        else:
            assert seen.status == 502 and json.loads(seen.body)["error"]["message"], seen.describe()
        # the built-in model needs no LLM: it still works
        answer = client_for(g).chat.completions.create(
            model="mcp-gateway", messages=[{"role": "user", "content": '/call weather__add {"a": 2, "b": 40}'}])
        assert answer.choices[0].message.content == "42"


def test_an_upstream_down_from_the_start_still_has_its_models_listed(tmp_path, household):
    dead = f"http://127.0.0.1:{support.free_port()}/v1"
    with loop_gateway(tmp_path, household, openai_section(dead)) as g:
        ids = {m.id for m in client_for(g).models.list().data}
        assert {"mcp-gateway", MODEL, f"plain/{MODEL}"} <= ids, ids
        with pytest.raises(openai.APIStatusError) as failed:
            client_for(g).chat.completions.create(model=MODEL, messages=ask())
        assert failed.value.status_code == 502


def test_without_the_gateways_token_nothing_reaches_the_upstream(gw, llm):
    llm.script([text("should never be asked")])
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Bearer {UPSTREAM_KEY}"}):
        r = httpx2.post(f"{gw.base}/v1/chat/completions", json={"model": MODEL, "messages": ask()}, headers=headers, timeout=30)
        assert_openai_error(r, 401)
    assert llm.chats == []


# --- the tool loop --------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["pieces", "object"], ids=["arguments-string", "arguments-object"])
def test_the_model_adds_with_our_tool_and_the_client_gets_only_the_answer(gw, llm, style):
    llm.script([{**call("weather__add", a=2, b=40), "style": style}, text("2+40 is 42.")])
    answer = client_for(gw).chat.completions.create(model=MODEL, messages=ask())
    choice = answer.choices[0]
    assert choice.message.content == "2+40 is 42."
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert len(llm.chats) == 2, [c["body"] for c in llm.chats]
    first, second = (c["body"] for c in llm.chats)
    assert first["model"] == MODEL
    assert first["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert first["messages"][-1] == {"role": "user", "content": "what is 2+40?"}
    assert tool_names(first) == OUR_TOOLS
    add = next(t for t in first["tools"] if t["function"]["name"] == "weather__add")
    assert add["type"] == "function"
    assert set(add["function"]["parameters"]["properties"]) == {"a", "b"}
    assert sorted(add["function"]["parameters"]["required"]) == ["a", "b"]
    schemas = mcp_input_schemas(gw)  # each tool's parameters are its input schema on /mcp, untouched
    assert {t["function"]["name"]: t["function"]["parameters"] for t in first["tools"]} == {n: schemas[n] for n in OUR_TOOLS}
    assert_tool_round(second, "weather__add", {"a": 2, "b": 40}, "42")
    assert second["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    for chat in llm.chats:  # the upstream's key, never the client's
        assert chat["headers"].get("authorization") == f"Bearer {UPSTREAM_KEY}"
        assert gw.token not in json.dumps(chat["headers"])


@pytest.mark.parametrize("style", scripted_llm.STYLES)
def test_a_streamed_loop_hides_our_tool_calls_whatever_the_fragmenting(gw, llm, style):
    llm.script([{**call("weather__add", a=2, b=40), "style": style}, text("2+40 is 42.")])
    seen = stream_chat(gw, {"model": MODEL, "stream": True, "messages": ask()})
    assert seen.status == 200, seen.describe()
    assert seen.content_type.split(";")[0].strip() == "text/event-stream"
    assert seen.broken is None, seen.describe()
    assert seen.events and seen.events[-1][1] == "[DONE]", seen.describe()
    assert all(c.get("object") == "chat.completion.chunk" for c in seen.chunks), seen.describe()
    assert seen.text == "2+40 is 42.", seen.describe()
    assert seen.tool_call_fragments == [], seen.describe()
    assert seen.finish_reasons == ["stop"], seen.describe()
    assert seen.usages == [], "no usage chunk without stream_options.include_usage\n" + seen.describe()
    assert seen.errors == []
    assert len(llm.chats) == 2
    assert_tool_round(llm.chats[1]["body"], "weather__add", {"a": 2, "b": 40}, "42")


def test_two_of_our_tools_in_one_turn_both_run_before_the_next_round(gw, llm):
    llm.script([calls(("weather__forecast", {"city": "Oslo"}), ("notes__upper", {"text": "pack a coat"})),
                text("Oslo: snow. PACK A COAT.")])
    answer = client_for(gw).chat.completions.create(model=MODEL, messages=ask("weather in Oslo, and shout a reminder"))
    assert answer.choices[0].message.content == "Oslo: snow. PACK A COAT."
    assert len(llm.chats) == 2
    msgs = llm.chats[1]["body"]["messages"]
    (assistant,) = [m for m in msgs if m.get("role") == "assistant" and m.get("tool_calls")]
    ids = [tc["id"] for tc in assistant["tool_calls"]]
    assert [tc["function"]["name"] for tc in assistant["tool_calls"]] == ["weather__forecast", "notes__upper"]
    results = {m["tool_call_id"]: m["content"] for m in msgs if m.get("role") == "tool"}
    assert set(results) == set(ids)
    assert "Oslo: -3C, snow" in results[ids[0]] and "PACK A COAT" in results[ids[1]], results


def test_two_chats_at_once_each_get_their_own_result(gw, llm):
    llm.script([arithmetician], repeat_last=True)
    results: dict[str, Streamed] = {}

    def chat(question: str) -> None:
        results[question] = stream_chat(gw, {"model": MODEL, "stream": True, "messages": ask(question)})

    threads = [threading.Thread(target=chat, args=(q,)) for q in ("what is 2+40?", "what is 5+6?", "what is 100+1?")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(not t.is_alive() for t in threads)
    for question, total in (("what is 2+40?", "42"), ("what is 5+6?", "11"), ("what is 100+1?", "101")):
        seen = results[question]
        assert seen.status == 200 and seen.events[-1][1] == "[DONE]", seen.describe()
        assert re.fullmatch(rf"The weather server says .*\b{total}\b.*\.", seen.text, re.S), seen.describe()
    assert len(llm.chats) == 6


def test_a_failing_tool_call_reaches_the_model_as_a_tool_result_not_the_client_as_an_error(gw, llm):
    llm.script([call("weather__add", a="two", b=40), text("Sorry, I could not add that.")])
    answer = client_for(gw).chat.completions.create(model=MODEL, messages=ask("what is two+40?"))
    assert answer.choices[0].message.content == "Sorry, I could not add that."
    assert answer.choices[0].finish_reason == "stop"
    assert len(llm.chats) == 2
    msgs = llm.chats[1]["body"]["messages"]
    (assistant,) = [m for m in msgs if m.get("role") == "assistant" and m.get("tool_calls")]
    (result,) = [m for m in msgs if m.get("role") == "tool"]
    assert result["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert result["content"], result


def test_the_first_words_reach_the_client_while_the_model_is_still_writing(gw, llm):
    answer = "The weather server says that 2 and 40 make 42, and that is final."
    llm.script([call("weather__add", a=2, b=40), text(answer, delay=0.5)])
    started = time.monotonic()
    seen = stream_chat(gw, {"model": MODEL, "stream": True, "messages": ask()})
    assert seen.status == 200 and seen.text == answer, seen.describe()
    assert len(llm.chats) == 2 and llm.chats[1]["body"].get("stream") is True, (
        "the final round must be streamed from the upstream to be forwarded as it arrives")
    upstream_done = llm.finished_at[1]
    first = seen.first_content_at()
    assert upstream_done - started > 2.0  # the scripted answer takes 2.5 s to write
    assert first < upstream_done - 1.0, (
        f"first content {first - started:.2f}s after the request, upstream finished at {upstream_done - started:.2f}s")


def test_usage_asked_for_sums_every_upstream_round(gw, llm):
    llm.script([
        {**call("weather__add", a=2, b=40), "usage": {"prompt_tokens": 100, "completion_tokens": 5}},
        text("2+40 is 42.", usage={"prompt_tokens": 130, "completion_tokens": 9}),
    ])
    seen = stream_chat(gw, {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, "messages": ask()})
    assert seen.status == 200 and seen.text == "2+40 is 42.", seen.describe()
    assert len(seen.usages) == 1, seen.describe()
    last = seen.chunks[-1]
    assert last["choices"] == [], seen.describe()
    assert last["usage"]["prompt_tokens"] == 230
    assert last["usage"]["completion_tokens"] == 14
    assert last["usage"]["total_tokens"] == 244
    assert seen.events[-1][1] == "[DONE]"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_a_model_that_never_stops_calling_tools_is_stopped_after_max_rounds(gw, llm, stream):
    llm.script([call("weather__add", a=1, b=1)], repeat_last=True)
    if stream:
        seen = stream_chat(gw, {"model": MODEL, "stream": True, "messages": ask("add 1 and 1 forever")})
        assert seen.status == 200 and seen.events[-1][1] == "[DONE]", seen.describe()
        assert seen.tool_call_fragments == [] and seen.finish_reasons == ["stop"], seen.describe()
        content = seen.text
    else:
        answer = client_for(gw).chat.completions.create(model=MODEL, messages=ask("add 1 and 1 forever"))
        assert answer.choices[0].finish_reason == "stop"
        assert not answer.choices[0].message.tool_calls
        content = answer.choices[0].message.content
    assert content and content.strip(), "the answer explains why the loop stopped"
    assert MAX_ROUNDS <= len(llm.chats) <= MAX_ROUNDS + 1, len(llm.chats)
    last = llm.chats[MAX_ROUNDS - 1]["body"]["messages"]
    assert sum(1 for m in last if m.get("role") == "tool") == MAX_ROUNDS - 1
    assert all("2" in (m["content"] if isinstance(m["content"], str) else json.dumps(m["content"]))
               for m in last if m.get("role") == "tool")


# --- the client's own tools -----------------------------------------------------------------------


def test_a_call_of_the_clients_own_tool_goes_back_to_the_client_and_the_chat_goes_on(gw, llm):
    clock = owui_tool("get_current_timestamp")
    llm.script([call("get_current_timestamp")])
    answer = client_for(gw).chat.completions.create(model=MODEL, messages=ask("what time is it?"), tools=[clock])
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [tc.function.name for tc in choice.message.tool_calls] == ["get_current_timestamp"]
    assert json.loads(choice.message.tool_calls[0].function.arguments or "{}") == {}
    (chat,) = llm.chats
    assert tool_names(chat["body"]) == OUR_TOOLS | {"get_current_timestamp"}
    assert next(t for t in chat["body"]["tools"] if t["function"]["name"] == "get_current_timestamp") == clock

    # The client runs its tool and sends the result back; the model answers.
    tc = choice.message.tool_calls[0]
    follow_up = ask("what time is it?") + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": tc.id, "type": "function", "function": {"name": tc.function.name, "arguments": tc.function.arguments}}]},
        {"role": "tool", "tool_call_id": tc.id, "content": "2026-11-25T17:00:00Z"},
    ]
    llm.script([text("It is five in the afternoon.")])
    answer = client_for(gw).chat.completions.create(model=MODEL, messages=follow_up, tools=[clock])
    assert answer.choices[0].message.content == "It is five in the afternoon."
    assert answer.choices[0].finish_reason == "stop"
    (chat,) = llm.chats
    results = [m for m in chat["body"]["messages"] if m.get("role") == "tool"]
    assert results == [{"role": "tool", "tool_call_id": tc.id, "content": "2026-11-25T17:00:00Z"}]


@pytest.mark.parametrize("style", scripted_llm.STYLES)
def test_a_streamed_call_of_the_clients_own_tool_reaches_the_client_as_tool_calls(gw, llm, style):
    clock = owui_tool("get_current_timestamp")
    llm.script([{**calls(("get_current_timestamp", {"tz": "Europe/Paris"})), "style": style}])
    seen = stream_chat(gw, {"model": MODEL, "stream": True, "messages": ask("what time is it?"), "tools": [clock]})
    assert seen.status == 200 and seen.events[-1][1] == "[DONE]", seen.describe()
    for fragment in seen.tool_call_fragments:  # as OpenAI writes them, whatever the upstream did
        assert isinstance(fragment.get("index"), int), seen.describe()
        assert isinstance((fragment.get("function") or {}).get("arguments", ""), str), seen.describe()
    assembled = assemble(seen.tool_call_fragments)
    assert [c["name"] for c in assembled] == ["get_current_timestamp"], seen.describe()
    assert json.loads(assembled[0]["arguments"]) == {"tz": "Europe/Paris"}
    assert assembled[0]["id"], seen.describe()
    assert seen.finish_reasons == ["tool_calls"], seen.describe()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_when_one_turn_calls_ours_and_the_clients_only_the_clients_call_is_returned(gw, llm, stream):
    clock = owui_tool("get_current_timestamp")
    llm.script([calls(("weather__add", {"a": 2, "b": 40}), ("get_current_timestamp", {}))])
    if stream:
        seen = stream_chat(gw, {"model": MODEL, "stream": True, "messages": ask("add, then tell the time"), "tools": [clock]})
        assert seen.status == 200 and seen.events[-1][1] == "[DONE]", seen.describe()
        assert [c["name"] for c in assemble(seen.tool_call_fragments)] == ["get_current_timestamp"], seen.describe()
        assert seen.finish_reasons == ["tool_calls"], seen.describe()
    else:
        answer = client_for(gw).chat.completions.create(model=MODEL, messages=ask("add, then tell the time"), tools=[clock])
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert [tc.function.name for tc in choice.message.tool_calls] == ["get_current_timestamp"]
    # ours was not run: no second round, no tool message for it anywhere upstream
    assert len(llm.chats) == 1, [c["body"]["messages"] for c in llm.chats]
    assert not [m for m in llm.chats[0]["body"]["messages"] if m.get("role") == "tool"]


# --- requests that must get no tools of ours ------------------------------------------------------


def test_open_webui_title_task_goes_to_the_model_without_tools(gw, llm):
    llm.script([text('{"title": "➕ Adding two numbers"}')])
    answer = client_for(gw).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": TITLE_TASK}],
                                                    stream=False)
    assert answer.choices[0].message.content == '{"title": "➕ Adding two numbers"}'
    assert answer.choices[0].finish_reason == "stop"
    (chat,) = llm.chats
    assert not chat["body"].get("tools"), chat["body"].get("tools")
    assert "weather__" not in json.dumps(chat["body"]) and "notes__" not in json.dumps(chat["body"])
    assert chat["body"]["messages"][-1] == {"role": "user", "content": TITLE_TASK}


def test_the_plain_model_is_the_upstream_with_only_the_clients_tools(gw, llm):
    llm.script([text("Hi! I am tiny.")])
    answer = client_for(gw).chat.completions.create(model=f"plain/{MODEL}", messages=ask("hello"))
    assert answer.choices[0].message.content == "Hi! I am tiny."
    (chat,) = llm.chats
    assert chat["body"]["model"] == MODEL
    assert not chat["body"].get("tools")
    assert "weather__" not in json.dumps(chat["body"])
    assert chat["headers"].get("authorization") == f"Bearer {UPSTREAM_KEY}"

    clock = owui_tool("get_current_timestamp")
    llm.script([call("get_current_timestamp")])
    answer = client_for(gw).chat.completions.create(model=f"plain/{MODEL}", messages=ask("time?"), tools=[clock])
    assert answer.choices[0].finish_reason == "tool_calls"
    assert [tc.function.name for tc in answer.choices[0].message.tool_calls] == ["get_current_timestamp"]
    (chat,) = llm.chats
    assert chat["body"]["model"] == MODEL
    assert chat["body"]["tools"] == [clock]


def test_the_plain_model_streams_the_upstream_answer_through(gw, llm):
    llm.script([text("Hi! I am tiny, streaming.")])
    seen = stream_chat(gw, {"model": f"plain/{MODEL}", "stream": True, "messages": ask("hello")})
    assert seen.status == 200 and seen.events[-1][1] == "[DONE]", seen.describe()
    assert seen.text == "Hi! I am tiny, streaming." and seen.finish_reasons == ["stop"], seen.describe()
    (chat,) = llm.chats
    assert chat["body"]["model"] == MODEL and not chat["body"].get("tools")


# --- Open WebUI's chats, replayed ----------------------------------------------------------


@pytest.mark.parametrize("captured", captured_chats(), ids=captured_chat_ids())
def test_open_webui_chats_replayed_get_our_tools_beside_their_own(gw, llm, captured):
    """Each chat Open WebUI sent (API, streamed, and the browser's with 28 builtin tools), model -> tiny."""
    body = {**captured["body"], "model": MODEL}
    headers = {k: v for k, v in captured["headers"].items() if k not in ("Host", "Content-Length", "Authorization")}
    owui_tools = body.get("tools") or []
    owui_names = {t["function"]["name"] for t in owui_tools}
    llm.script([call("weather__add", a=2, b=40), text("2+40 is 42.")])
    if body.get("stream"):
        seen = stream_chat(gw, body, headers=headers)
        assert seen.status == 200, seen.describe()
        assert seen.text == "2+40 is 42.", seen.describe()
        assert seen.tool_call_fragments == [] and seen.finish_reasons == ["stop"], seen.describe()
        assert seen.events[-1][1] == "[DONE]"
        assert len(seen.usages) == 1 and seen.chunks[-1]["choices"] == [], seen.describe()
        assert seen.chunks[-1]["usage"]["total_tokens"] == 2 * 18  # two rounds of the scripted default 11+7
    else:
        r = httpx2.post(f"{gw.base}/v1/chat/completions", json=body, headers={**headers, **gw.auth()}, timeout=30)
        assert r.status_code == 200, r.text[:1000]
        assert r.json()["choices"][0]["message"]["content"] == "2+40 is 42."
        assert r.json()["choices"][0]["finish_reason"] == "stop"
    first = llm.chats[0]["body"]
    assert tool_names(first) == owui_names | OUR_TOOLS
    assert [t for t in first["tools"] if t["function"]["name"] in owui_names] == owui_tools
    assert_tool_round(llm.chats[1]["body"], "weather__add", {"a": 2, "b": 40}, "42")
    if captured["body"].get("tools"):
        assert len(owui_names) == 28


# --- a troubled upstream --------------------------------------------------------------------------


def test_an_upstream_500_is_a_502_error_object(troubled):
    g, fake = troubled
    fake.script([{"status": 500}])
    error = assert_openai_error(
        httpx2.post(f"{g.base}/v1/chat/completions", json={"model": MODEL, "messages": ask()}, headers=g.auth(), timeout=30),
        502,
    )
    assert UPSTREAM_KEY not in json.dumps(error)
    assert len(fake.chats) == 1


def test_a_streamed_chat_whose_upstream_answers_500_fails_cleanly(troubled):
    g, fake = troubled
    fake.script([{"status": 500}])
    seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()}, timeout=15)
    if seen.status == 200:  # a stream may have begun: then it ends with an error event and [DONE]
        assert seen.errors and seen.events[-1][1] == "[DONE]", seen.describe()
    else:
        assert seen.status == 502 and json.loads(seen.body)["error"]["message"], seen.describe()


def test_an_upstream_that_hangs_is_a_504_after_its_timeout(troubled):
    g, fake = troubled
    fake.script([{"hang": 20}])
    started = time.monotonic()
    response = httpx2.post(f"{g.base}/v1/chat/completions", json={"model": MODEL, "messages": ask()},
                           headers=g.auth(), timeout=30)
    elapsed = time.monotonic() - started
    assert_openai_error(response, 504)
    assert 1.0 < elapsed < 10.0, elapsed


def test_a_stream_cut_by_the_upstream_ends_with_an_error_event_and_done(troubled):
    g, fake = troubled
    fake.script([text("Hello there, the answer is 42.", break_after=2, delay=0.3)])
    started = time.monotonic()
    seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()})
    assert time.monotonic() - started < 15
    assert seen.status == 200, seen.describe()
    assert seen.broken is None, seen.describe()
    assert seen.text.startswith("Hello"), seen.describe()  # what came before the cut reached the client
    assert len(seen.errors) == 1 and seen.errors[0].get("message"), seen.describe()
    assert seen.events[-1][1] == "[DONE]" and "error" in seen.events[-2][1], seen.describe()


def test_a_stream_whose_upstream_hangs_mid_way_ends_with_an_error_event(troubled):
    g, fake = troubled
    fake.script([call("weather__add", a=2, b=40), {"hang": 20}])
    started = time.monotonic()
    seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()})
    assert time.monotonic() - started < 15
    if seen.status == 200:  # the stream had begun: it must end with an error event, then [DONE]
        assert seen.errors and seen.events[-1][1] == "[DONE]", seen.describe()
        assert seen.tool_call_fragments == [], seen.describe()
    else:  # nothing sent yet: a plain 504
        assert seen.status == 504, seen.describe()
        assert json.loads(seen.body)["error"]["message"]


def test_a_stream_that_goes_silent_after_its_first_words_ends_with_an_error_event(troubled):
    """The upstream sends its first words, then nothing, with the connection open: the client
    must not wait for ever (the gateway waits at most about `timeout_ms` for each piece)."""
    g, fake = troubled
    fake.script([text("Hello there, the answer is 42.", stall=30, stall_after=2)])
    started = time.monotonic()
    seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()}, timeout=12)
    elapsed = time.monotonic() - started
    assert seen.broken is None and elapsed < 10, f"after {elapsed:.1f}s\n{seen.describe()}"
    assert seen.status == 200 and seen.text.startswith("Hello"), seen.describe()
    assert seen.errors and seen.events[-1][1] == "[DONE]", seen.describe()


def test_an_answer_that_goes_silent_before_its_body_is_a_504(troubled):
    g, fake = troubled
    fake.script([text("2+40 is 42.", stall=30, stall_after=1)])
    started = time.monotonic()
    try:
        response = httpx2.post(f"{g.base}/v1/chat/completions", json={"model": MODEL, "messages": ask()},
                               headers=g.auth(), timeout=12)
    except httpx2.TimeoutException:
        pytest.fail(f"no answer within {time.monotonic() - started:.1f}s: the gateway waits for a silent upstream", pytrace=False)
    assert_openai_error(response, 504)
    assert time.monotonic() - started < 10


def test_a_slow_but_steady_stream_is_not_cut_by_the_timeout(troubled):
    """timeout_ms bounds silence, not the length of an answer: a small LLM writes slowly."""
    g, fake = troubled
    answer = "A slow model on a small box writes its answer bit by bit, and that is fine."
    fake.script([text(answer, delay=0.7)])  # 3.5 s in all, never 1.5 s silent
    seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()})
    assert seen.errors == [] and seen.text == answer and seen.finish_reasons == ["stop"], seen.describe()


def test_a_streamed_chat_starts_no_thread(troubled):
    """Issue 20: no thread is created on the path of a call once connections are warm. While the
    upstream is silent mid-stream (the moment a reader thread of its own would be waiting), every
    thread of the gateway is one that was there before the chat."""
    g, fake = troubled
    fake.script([text("Warm.")], repeat_last=True)
    for _ in range(2):  # the upstream connection pooled, the connection threads there
        assert stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()}).text == "Warm."
    time.sleep(0.3)
    tasks = Path(f"/proc/{g.proc.pid}/task")
    before = {t.name for t in tasks.iterdir()}
    fake.script([text("Hello there, the answer is 42.", stall=1.0, stall_after=2)])
    first_words = threading.Event()
    seen: dict[str, Any] = {}

    def chat() -> None:
        hdrs = g.auth()
        body = {"model": MODEL, "stream": True, "messages": ask()}
        with httpx2.stream("POST", f"{g.base}/v1/chat/completions", json=body, headers=hdrs, timeout=15) as r:
            seen["status"] = r.status_code
            seen["lines"] = []
            for line in r.iter_lines():
                if line.startswith("data:") and '"content"' in line:
                    first_words.set()
                seen["lines"].append(line)
        first_words.set()

    worker = threading.Thread(target=chat)
    worker.start()
    assert first_words.wait(10), "no words arrived"
    time.sleep(0.2)  # inside the upstream's 1 s of silence
    new = {}
    for tid in {t.name for t in tasks.iterdir()} - before:
        try:
            new[tid] = (tasks / tid / "comm").read_text().strip()
        except OSError:
            new[tid] = "(gone)"
    worker.join(15)
    assert not worker.is_alive() and seen.get("status") == 200, seen
    assert "data: [DONE]" in seen["lines"], seen
    assert not new, f"threads started during the chat (id: name): {new}"


# --- show_tool_calls, a prompt file, long results --------------------------------------------------


def test_show_tool_calls_streams_a_line_per_tool_before_the_answer(chatty):
    g, fake = chatty
    fake.script([call("weather__add", a=2, b=40), call("notes__upper", text="done"), text("2+40 is 42.")])
    seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()})
    assert seen.status == 200 and seen.events[-1][1] == "[DONE]", seen.describe()
    assert seen.tool_call_fragments == [] and seen.finish_reasons == ["stop"], seen.describe()
    assert seen.text.endswith("2+40 is 42."), seen.describe()
    assert "weather__add" in seen.text and "notes__upper" in seen.text, seen.describe()
    assert seen.text.index("weather__add") < seen.text.index("notes__upper") < seen.text.index("2+40 is 42.")
    assert fake.chats[0]["body"]["messages"][0] == {"role": "system", "content": "You run the house. Prompt from a file."}
    garden = {n.replace("weather__", "garden__") for n in OUR_TOOLS if n.startswith("weather__")}
    assert OUR_TOOLS | garden <= tool_names(fake.chats[0]["body"]), "without `tools` globs every tool is offered"


def test_without_show_tool_calls_the_stream_names_no_tool(gw, llm):
    llm.script([call("weather__add", a=2, b=40), text("2+40 is 42.")])
    seen = stream_chat(gw, {"model": MODEL, "stream": True, "messages": ask()})
    assert "weather__add" not in seen.text, seen.describe()


def test_a_long_tool_result_is_cut_to_max_tool_result_chars(chatty):
    g, fake = chatty
    fake.script([call("notes__echo", text="x" * 5000), text("That was long.")])
    answer = client_for(g).chat.completions.create(model=MODEL, messages=ask("echo a lot"))
    assert answer.choices[0].message.content.endswith("That was long.")  # after the `show_tool_calls` line
    msgs = fake.chats[1]["body"]["messages"]
    (result,) = [m for m in msgs if m.get("role") == "tool"]
    assert "x" * 100 in result["content"]
    assert len(result["content"]) <= 500 + 200, len(result["content"])  # the cut, plus a short note at most
