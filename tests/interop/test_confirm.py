"""Confirmation before a call leaves: a backend's tools matching its `confirm` globs (on the
backend's own names) are only called after the client's user said yes to an elicitation the
gateway itself sends. Declined or cancelled, the call never reaches the backend; a client that
cannot elicit gets what `confirm_fallback` says ("refuse", the default, or "allow"). Each answer
is audited (action "confirm", outcome "accepted" or "declined").

  house     fixtures/guarded_house.py with `"confirm": ["*unlock*", "*delete*"]`
  strict    a gateway in front of it with the default fallback (refuse)
  lenient   the same with `"confirm_fallback": "allow"`

Eras: the official SDK client (handshake era with mode="legacy": an `elicitation/create` request
on the call's stream; mode="auto": 2026-07-28, the SDK answers `input_required` rounds itself),
raw 2026-07-28 HTTP (the `input_required` result, `inputResponses` and `requestState` on the
wire), and the OpenAI face (no one to ask: the fallback decides).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import mcp_types as types
import pytest

import support
from test_access import House, audit_lines, chat, result_text, rpc, start_house, start_loop_gateway, tool_messages, wait_audit
from test_openai_loop import LoopGateway, ScriptedLLM, call, text

ERAS = ["legacy", "auto"]
STEP = 30.0
CONFIRM = ["*unlock*", "*delete*"]
UNLOCKED = "The front door is now unlocked."
# (tool as clients see it, the backend's name, arguments, what the backend answers, a word of the
# arguments the question must show)
CONFIRMED = {
    "unlock": ("house__unlock", "unlock", {"door": "front"}, UNLOCKED, "front"),
    "delete": ("house__delete_scene", "delete_scene", {"name": "party"}, "Scene party deleted.", "party"),
}
ELICITATION = {"elicitation": {}}


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Iterator[House]:
    h = start_house(tmp_path_factory.mktemp("confirm-house"))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as fake:
        yield fake


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, house: House, llm: ScriptedLLM) -> Iterator[LoopGateway]:
    gateway = start_loop_gateway(tmp_path_factory.mktemp("confirm-strict"), [house.borrowed(confirm=CONFIRM)], llm)
    try:
        yield gateway
    finally:
        gateway.close()


@pytest.fixture(scope="module")
def lenient(tmp_path_factory: pytest.TempPathFactory, house: House, llm: ScriptedLLM) -> Iterator[LoopGateway]:
    def change(config: dict[str, Any]) -> None:
        config["confirm_fallback"] = "allow"

    gateway = start_loop_gateway(tmp_path_factory.mktemp("confirm-lenient"), [house.borrowed(confirm=CONFIRM)], llm, change)
    try:
        yield gateway
    finally:
        gateway.close()


class Asker:
    """An elicitation callback that answers `action` and remembers what it was asked, and how many
    calls of `tool` the backend had seen at that moment (none: the question came first)."""

    def __init__(self, house: House, tool: str, action: str, content: dict[str, Any] | None = None) -> None:
        self.house = house
        self.tool = tool
        self.action = action
        self.content = content
        self.mark = house.mark()
        self.asked: list[Any] = []
        self.backend_calls_when_asked: list[int] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.asked.append(params)
        self.backend_calls_when_asked.append(len(self.house.tool_calls(self.tool, self.mark)))
        if self.action == "accept":
            return types.ElicitResult(action="accept", content=self.content or {"confirm": True})
        return types.ElicitResult(action=self.action)


async def sdk_call(gw: support.Gateway, mode: str, name: str, arguments: dict[str, Any], asker: Asker | None = None) -> types.CallToolResult:
    kwargs: dict[str, Any] = {} if asker is None else {"elicitation_callback": asker}
    async with support.mcp_client(gw.url, gw.token, mode, **kwargs) as client:
        with anyio.fail_after(STEP):
            return await client.call_tool(name, arguments)


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def assert_question(params: Any, names: str, shows: str) -> None:
    """A form elicitation whose message names the tool and shows the arguments."""
    assert isinstance(params, types.ElicitRequestFormParams), params
    assert names in params.message and shows in params.message, params.message
    assert params.requested_schema.get("type") == "object", params.requested_schema


# --- the official SDK client --------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("which", sorted(CONFIRMED))
@pytest.mark.parametrize("mode", ERAS)
async def test_a_confirmed_call_asks_first_and_runs_once_accepted(strict: LoopGateway, house: House, mode: str, which: str) -> None:
    name, tool, arguments, answer, shown = CONFIRMED[which]
    asker = Asker(house, tool, "accept")
    result = await sdk_call(strict, mode, name, arguments, asker)
    assert len(asker.asked) == 1, asker.asked
    assert_question(asker.asked[0], tool, shown)
    assert asker.backend_calls_when_asked == [0], "the call reached the backend before the user said yes"
    assert not result.is_error, result
    assert text_of(result) == answer
    assert house.tool_calls(tool, asker.mark) == [{"tool": tool, "arguments": arguments}]


@pytest.mark.anyio
@pytest.mark.parametrize(("action", "word"), [("decline", "declined"), ("cancel", "cancel")])
@pytest.mark.parametrize("mode", ERAS)
async def test_a_declined_or_cancelled_call_never_reaches_the_backend(strict: LoopGateway, house: House, mode: str,
                                                                     action: str, word: str) -> None:
    asker = Asker(house, "unlock", action)
    result = await sdk_call(strict, mode, "house__unlock", {"door": "front"}, asker)
    assert len(asker.asked) == 1, asker.asked
    assert result.is_error, result
    assert word in text_of(result).lower(), text_of(result)
    assert UNLOCKED not in text_of(result)
    assert house.tool_calls("unlock", asker.mark) == []


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_client_that_cannot_elicit_is_refused_by_the_default_fallback(strict: LoopGateway, house: House, mode: str) -> None:
    mark = house.mark()
    result = await sdk_call(strict, mode, "house__unlock", {"door": "front"})
    assert result.is_error, result
    assert "confirm_fallback" in text_of(result), text_of(result)
    assert house.tool_calls("unlock", mark) == []


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_fallback_allow_lets_a_client_that_cannot_elicit_through(lenient: LoopGateway, house: House, mode: str) -> None:
    mark = house.mark()
    result = await sdk_call(lenient, mode, "house__unlock", {"door": "front"})
    assert not result.is_error, result
    assert text_of(result) == UNLOCKED
    assert house.tool_calls("unlock", mark) == [{"tool": "unlock", "arguments": {"door": "front"}}]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_fallback_allow_still_asks_a_client_that_can_elicit(lenient: LoopGateway, house: House, mode: str) -> None:
    asker = Asker(house, "unlock", "decline")
    result = await sdk_call(lenient, mode, "house__unlock", {"door": "back"}, asker)
    assert len(asker.asked) == 1, asker.asked
    assert result.is_error and "declined" in text_of(result).lower(), result
    assert house.tool_calls("unlock", asker.mark) == []


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ERAS)
async def test_a_tool_without_confirm_never_asks(strict: LoopGateway, house: House, mode: str) -> None:
    asker = Asker(house, "set_lights", "decline")
    result = await sdk_call(strict, mode, "house__set_lights", {"room": "hall", "on": True}, asker)
    assert asker.asked == [], asker.asked
    assert not result.is_error and text_of(result) == "The hall lights are now on.", result
    assert house.tool_calls("set_lights", asker.mark) == [{"tool": "set_lights", "arguments": {"room": "hall", "on": True}}]


# --- raw 2026-07-28 HTTP ------------------------------------------------------------------------------


def first_round(gw: support.Gateway, house: House, door: str) -> tuple[str, str]:
    """The first tools/call of house__unlock from a client that can elicit: an input_required
    result asking the question; the request's key and the requestState."""
    mark = house.mark()
    message = rpc(gw, gw.token, "tools/call", {"name": "house__unlock", "arguments": {"door": door}},
                  capabilities=ELICITATION, request_id="first")
    assert "result" in message, message
    interim = message["result"]
    assert interim.get("resultType") == "input_required", interim
    requests = interim.get("inputRequests")
    assert isinstance(requests, dict) and len(requests) == 1, interim
    ((key, request),) = requests.items()
    assert request["method"] == "elicitation/create", request
    params = request["params"]
    assert "unlock" in params["message"] and door in params["message"], params
    assert params["requestedSchema"]["type"] == "object", params
    assert isinstance(interim.get("requestState"), str) and interim["requestState"], interim
    assert house.tool_calls("unlock", mark) == [], "the call left before the user answered"
    return key, interim["requestState"]


def retry(gw: support.Gateway, door: str, key: str, state: str, answer: dict[str, Any]) -> dict[str, Any]:
    params = {"name": "house__unlock", "arguments": {"door": door}, "inputResponses": {key: answer}, "requestState": state}
    return rpc(gw, gw.token, "tools/call", params, capabilities=ELICITATION, request_id="retry")


def test_modern_the_first_call_is_input_required_and_an_accepted_retry_runs_it(strict: LoopGateway, house: House) -> None:
    mark = house.mark()
    key, state = first_round(strict, house, "garage")
    final = retry(strict, "garage", key, state, {"action": "accept", "content": {"confirm": True}})
    assert "result" in final and final["result"].get("resultType", "complete") == "complete", final
    assert not final["result"].get("isError"), final
    assert result_text(final) == "The garage door is now unlocked."
    assert house.tool_calls("unlock", mark) == [{"tool": "unlock", "arguments": {"door": "garage"}}]


def test_modern_a_declined_retry_is_an_error_and_never_reaches_the_backend(strict: LoopGateway, house: House) -> None:
    mark = house.mark()
    key, state = first_round(strict, house, "back")
    final = retry(strict, "back", key, state, {"action": "decline"})
    assert "result" in final and final["result"].get("isError") is True, final
    assert final["result"].get("resultType", "complete") == "complete", final
    assert "declined" in result_text(final).lower(), final
    assert house.tool_calls("unlock", mark) == []


def test_modern_a_client_without_elicitation_gets_the_fallback(strict: LoopGateway, house: House) -> None:
    mark = house.mark()
    message = rpc(strict, strict.token, "tools/call", {"name": "house__unlock", "arguments": {"door": "front"}})
    assert "result" in message, message
    assert message["result"].get("resultType", "complete") == "complete", message
    assert message["result"].get("isError") is True, message
    assert "confirm_fallback" in result_text(message), message
    assert house.tool_calls("unlock", mark) == []


def test_modern_fallback_allow_lets_a_client_without_elicitation_through(lenient: LoopGateway, house: House) -> None:
    mark = house.mark()
    message = rpc(lenient, lenient.token, "tools/call", {"name": "house__unlock", "arguments": {"door": "front"}})
    assert "result" in message and not message["result"].get("isError"), message
    assert result_text(message) == UNLOCKED
    assert house.tool_calls("unlock", mark) == [{"tool": "unlock", "arguments": {"door": "front"}}]


# --- the OpenAI face ----------------------------------------------------------------------------------


def test_the_openai_face_refuses_a_confirmed_tool_by_default(strict: LoopGateway, house: House, llm: ScriptedLLM) -> None:
    mark = house.mark()
    llm.script([call("house__unlock", door="front"), text("Done.")])
    answer = chat(strict, strict.token, "open the front door")
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "Done."
    assert len(llm.chats) == 2
    (result,) = tool_messages(llm, 1)
    assert "confirm_fallback" in result and UNLOCKED not in result, result
    assert house.tool_calls("unlock", mark) == []


def test_the_openai_face_runs_a_confirmed_tool_with_fallback_allow(lenient: LoopGateway, house: House, llm: ScriptedLLM) -> None:
    mark = house.mark()
    llm.script([call("house__unlock", door="front"), text("Done.")])
    answer = chat(lenient, lenient.token, "open the front door")
    assert answer.status_code == 200, answer.text
    assert len(llm.chats) == 2
    (result,) = tool_messages(llm, 1)
    assert UNLOCKED in result, result
    assert house.tool_calls("unlock", mark) == [{"tool": "unlock", "arguments": {"door": "front"}}]


# --- the audit log ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("action", "outcome"), [("accept", "accepted"), ("decline", "declined")])
async def test_each_answer_to_a_confirmation_is_audited(strict: LoopGateway, house: House, action: str, outcome: str) -> None:
    since = len(audit_lines(strict))
    asker = Asker(house, "unlock", action)
    await sdk_call(strict, "legacy", "house__unlock", {"door": "front"}, asker)
    assert len(asker.asked) == 1
    lines = wait_audit(strict, since, lambda l: l.get("action") == "confirm")
    assert len(lines) == 1, audit_lines(strict)[since:]
    assert lines[0].get("outcome") == outcome, lines[0]
    assert "unlock" in json.dumps(lines[0]), lines[0]
