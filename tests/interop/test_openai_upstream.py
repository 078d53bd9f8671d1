"""The OpenAI face against an upstream that behaves like a real model server (issue 16).

The scripted upstream (fixtures/scripted_llm.py) plays what llama-cpp-python 0.3.36 was seen doing
on the wire: it refuses an assistant turn whose content is null (HTTP 500 with its internals in the
message), ends a failed stream properly but with no finish_reason and no [DONE], refuses a prompt
that overflows its context with a 400 and an error object of its own, sends no usage in streams;
and a model that obeys a forced `tool_choice` calls the tool again on every round it is forced.
The real server itself is driven in test_openai_llama.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from test_openai_loop import (  # noqa: F401  (household is a fixture used by name)
    MAX_ROUNDS,
    MODEL,
    UPSTREAM_KEY,
    LoopGateway,
    ScriptedLLM,
    ask,
    assert_openai_error,
    assert_tool_round,
    call,
    household,
    loop_gateway,
    openai_section,
    stream_chat,
    text,
)

CONTEXT_OVERFLOW = {
    "status": 400,
    "flat": True,  # llama-cpp-python writes the fields at the top level
    "message": "Requested tokens (5000) exceed context window of 4096",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}


@pytest.fixture(scope="module")
def like_llama(tmp_path_factory: pytest.TempPathFactory, household) -> Iterator[tuple[LoopGateway, ScriptedLLM]]:
    """A gateway in front of an upstream with llama-cpp-python's rules."""
    with ScriptedLLM() as fake:
        fake.strict_content = True
        with loop_gateway(tmp_path_factory.mktemp("like-llama"), household, openai_section(fake)) as g:
            yield g, fake


def counting_client(gw: LoopGateway, retries: int = 2) -> openai.OpenAI:
    """The openai SDK as applications use it: with its default retries on server faults."""
    return openai.OpenAI(base_url=f"{gw.base}/v1", api_key=gw.token, timeout=30, max_retries=retries)


def post_chat(gw: LoopGateway, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(f"{gw.base}/v1/chat/completions", json=body, headers=gw.auth(), timeout=30)


# --- finding 1: the tool loop's second round ------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_the_assistant_turn_of_a_tool_round_has_string_content_so_the_loop_completes(like_llama, stream):
    g, fake = like_llama
    fake.script([call("weather__add", a=2, b=40), text("2+40 is 42.")])
    body = {"model": MODEL, "messages": ask(), "stream": stream}
    if stream:
        seen = stream_chat(g, body)
        assert seen.status == 200 and seen.errors == [], seen.describe()
        assert seen.text == "2+40 is 42." and seen.finish_reasons == ["stop"], seen.describe()
    else:
        answer = post_chat(g, body)
        assert answer.status_code == 200, answer.text[:500]
        assert answer.json()["choices"][0]["message"]["content"] == "2+40 is 42."
    second = fake.chats[1]["body"]
    assert_tool_round(second, "weather__add", {"a": 2, "b": 40}, "42")
    (assistant,) = [m for m in second["messages"] if m.get("role") == "assistant"]
    assert assistant["content"] == "", assistant


def test_an_upstream_fault_is_a_502_that_keeps_its_internals_in_the_log(like_llama):
    """The old gateway's null content made llama-cpp-python answer 500 with a file path in its
    message; whatever the upstream says in a 500 stays in our log, the client gets a short text."""
    g, fake = like_llama
    fake.script([{"status": 500, "message": 'Traceback: File "/opt/venv/lib/python3.11/site-packages/llama_cpp/server/app.py"'}])
    error = assert_openai_error(post_chat(g, {"model": MODEL, "messages": ask()}), 502)
    assert error["code"] == "upstream_error" and error["type"] == "upstream_error", error
    assert "/opt/venv" not in error["message"] and "Traceback" not in error["message"], error
    assert "500" in error["message"], error
    assert UPSTREAM_KEY not in json.dumps(error)
    assert "/opt/venv" in g.proc.stderr_path.read_text(), "the details are in the gateway's log"


# --- finding 2: a stream that ends without finishing ----------------------------------------------


@pytest.mark.parametrize("end_after", [0, 3], ids=["nothing-sent", "after-some-words"])
def test_a_stream_that_ends_unfinished_is_an_error_event_not_a_finished_answer(like_llama, end_after):
    g, fake = like_llama
    fake.script([text("Hello there, the answer is 42.", end_after=end_after)])
    seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask()})
    if seen.status != 200:  # nothing had been sent: a plain error answer is as good
        assert seen.status == 502 and json.loads(seen.body)["error"]["message"], seen.describe()
        return
    assert seen.broken is None, seen.describe()
    assert seen.finish_reasons == [], f"a cut stream was reported as finished\n{seen.describe()}"
    assert len(seen.errors) == 1 and seen.errors[0]["message"], seen.describe()
    assert seen.events[-1][1] == "[DONE]" and "error" in seen.events[-2][1], seen.describe()


def test_a_stream_that_ends_unfinished_before_any_word_is_never_an_empty_stop(like_llama):
    """What the issue saw: a role chunk, `finish_reason: "stop"` and [DONE] for a failed answer."""
    g, fake = like_llama
    fake.script([text("never sent", end_after=0)])
    with pytest.raises(openai.APIError):
        stream = counting_client(g, retries=0).chat.completions.create(model=MODEL, messages=ask(), stream=True)
        for _ in stream:
            pass


# --- finding 3: upstream 4xx pass through ----------------------------------------------------------


def test_a_context_overflow_is_a_400_with_the_upstreams_code_and_one_request(like_llama):
    g, fake = like_llama
    fake.script([CONTEXT_OVERFLOW], repeat_last=True)
    with pytest.raises(openai.BadRequestError) as refused:
        counting_client(g).chat.completions.create(model=MODEL, messages=ask("a very long prompt"))
    assert refused.value.status_code == 400
    assert refused.value.code == "context_length_exceeded"
    assert refused.value.param == "messages"
    assert "context window" in refused.value.message
    assert len(fake.chats) == 1, "the SDK must not retry a 400 as a server fault"


def test_a_streamed_context_overflow_is_a_400_before_anything_is_sent(like_llama):
    g, fake = like_llama
    fake.script([CONTEXT_OVERFLOW])
    seen = stream_chat(g, {"model": MODEL, "stream": True, "messages": ask("a very long prompt")})
    assert seen.status == 400, seen.describe()
    assert json.loads(seen.body)["error"]["code"] == "context_length_exceeded", seen.body


@pytest.mark.parametrize("status", [400, 404, 413, 422, 429])
def test_upstream_refusals_keep_their_status_and_error_object(like_llama, status):
    g, fake = like_llama
    turn = {"status": status, "message": f"refused with {status}", "type": "invalid_request_error",
            "param": "model", "code": f"code_{status}"}
    if status == 429:
        turn.update(type="rate_limit_error", retry_after=7)
    fake.script([turn])
    response = post_chat(g, {"model": MODEL, "messages": ask()})
    error = assert_openai_error(response, status)
    assert error == {"message": f"refused with {status}", "type": turn["type"], "param": "model",
                     "code": f"code_{status}"}, error
    if status == 429:
        assert response.headers.get("retry-after") == "7", dict(response.headers)


def test_a_rate_limited_upstream_is_retried_by_the_sdk_after_its_retry_after(like_llama):
    g, fake = like_llama
    fake.script([{"status": 429, "type": "rate_limit_error", "retry_after": 1, "message": "slow down"},
                 text("Now it works.")])
    answer = counting_client(g, retries=1).chat.completions.create(model=MODEL, messages=ask())
    assert answer.choices[0].message.content == "Now it works."
    assert len(fake.chats) == 2
    assert fake.chats[1]["t"] - fake.chats[0]["t"] >= 0.9, "the SDK waited as told"


# --- finding 4: a forced tool_choice ----------------------------------------------------------------


def obedient(body: dict[str, Any]) -> dict[str, Any]:
    """A model that calls whatever `tool_choice` forces, and answers when it is free to."""
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return call(choice["function"]["name"], a=2, b=40)
    if choice == "required":
        return call("weather__add", a=2, b=40)
    return text("2+40 is 42.")


@pytest.mark.parametrize(
    "tool_choice",
    [{"type": "function", "function": {"name": "weather__add"}}, "required"],
    ids=["named", "required"],
)
def test_a_forced_tool_of_ours_runs_exactly_once(like_llama, tool_choice):
    g, fake = like_llama
    fake.script([obedient], repeat_last=True)
    answer = post_chat(g, {"model": MODEL, "messages": ask(), "tool_choice": tool_choice})
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["choices"][0]["message"]["content"] == "2+40 is 42."
    assert answer.json()["choices"][0]["finish_reason"] == "stop"
    assert len(fake.chats) == 2, [c["body"].get("tool_choice") for c in fake.chats]
    assert fake.chats[0]["body"]["tool_choice"] == tool_choice
    assert fake.chats[1]["body"]["tool_choice"] == "auto"
    tool_results = [m for m in fake.chats[1]["body"]["messages"] if m.get("role") == "tool"]
    assert len(tool_results) == 1, tool_results
    assert len(fake.chats) <= MAX_ROUNDS


def test_a_forced_client_tool_goes_back_to_the_client_unchanged(like_llama):
    g, fake = like_llama
    clock = {"type": "function", "function": {"name": "get_current_timestamp", "description": "now",
                                              "parameters": {"type": "object", "properties": {}}}}
    forced = {"type": "function", "function": {"name": "get_current_timestamp"}}
    fake.script([call("get_current_timestamp")])
    answer = post_chat(g, {"model": MODEL, "messages": ask("time?"), "tools": [clock], "tool_choice": forced})
    assert answer.status_code == 200, answer.text[:500]
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_current_timestamp"]
    assert fake.chats[0]["body"]["tool_choice"] == forced and len(fake.chats) == 1


# --- finding 5: usage the upstream never gave -------------------------------------------------------


def test_without_upstream_usage_none_is_claimed(like_llama):
    g, fake = like_llama
    fake.script([text("No usage from me.", no_usage=True)])
    seen = stream_chat(g, {"model": MODEL, "stream": True, "stream_options": {"include_usage": True},
                           "messages": ask()})
    assert seen.status == 200 and seen.text == "No usage from me.", seen.describe()
    last = seen.chunks[-1]
    assert last["choices"] == [] and "usage" in last and last["usage"] is None, seen.describe()

    fake.script([text("Still none.", no_usage=True)])
    answer = post_chat(g, {"model": MODEL, "messages": ask()})
    assert answer.status_code == 200 and "usage" not in answer.json(), answer.text[:500]
    # The SDK reads both.
    fake.script([text("Read by the SDK.", no_usage=True)])
    parsed = counting_client(g, retries=0).chat.completions.create(model=MODEL, messages=ask())
    assert parsed.usage is None and parsed.choices[0].message.content == "Read by the SDK."


def test_upstream_usage_is_still_added_up(like_llama):
    g, fake = like_llama
    fake.script([call("weather__add", a=2, b=40), text("2+40 is 42.")])
    answer = post_chat(g, {"model": MODEL, "messages": ask()})
    assert answer.json()["usage"]["total_tokens"] == 2 * 18, answer.json()  # the scripted 11+7, twice
