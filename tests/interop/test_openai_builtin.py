"""An OpenAI client (the official `openai` SDK) uses the gateway's built-in `mcp-gateway` model,
which needs no LLM: it lists the household's tools and runs one with `/call`."""

from __future__ import annotations

import httpx2
import openai
import pytest

import support

MODEL = "mcp-gateway"


def client_for(gateway: support.Gateway, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.base}/v1", api_key=token or gateway.token, timeout=30, max_retries=0)


def test_the_models_list_has_the_built_in_model(gateway):
    models = client_for(gateway).models.list()
    assert MODEL in [m.id for m in models.data]
    one = client_for(gateway).models.retrieve(MODEL)
    assert one.id == MODEL and one.object == "model"


def test_any_message_gets_the_tool_catalog_grouped_by_server(gateway):
    answer = client_for(gateway).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "what can you do?"}])
    text = answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop"
    for heading in ("### weather", "### notes", "### everything", "### gateway"):
        assert heading in text, text
    assert "`weather__add`" in text and "`notes__upper`" in text


def test_slash_call_runs_a_tool_on_its_backend(gateway):
    answer = client_for(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": '/call weather__add {"a": 2, "b": 40}'}]
    )
    assert answer.choices[0].message.content == "42"


def test_a_streamed_answer_arrives_in_chunks_and_ends_with_usage_when_asked(gateway):
    stream = client_for(gateway).chat.completions.create(
        model=MODEL,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": '/call notes__upper {"text": "streamed"}'}],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "STREAMED"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_a_bad_tool_call_is_explained_not_crashed(gateway):
    answer = client_for(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "/call weather__nope {}"}]
    )
    assert "unknown tool" in answer.choices[0].message.content
    answer = client_for(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "/call weather__add {not json"}]
    )
    assert "not valid JSON" in answer.choices[0].message.content


def test_errors_are_openai_error_objects(gateway):
    with pytest.raises(openai.AuthenticationError) as denied:
        client_for(gateway, token="wrong").models.list()
    assert denied.value.status_code == 401
    assert denied.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        client_for(gateway).chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    assert missing.value.param == "model"
    raw = httpx2.post(
        f"{gateway.base}/v1/chat/completions", json={"model": MODEL}, headers=gateway.auth(), timeout=30
    )
    assert raw.status_code == 400
    assert raw.json()["error"]["param"] == "messages"
