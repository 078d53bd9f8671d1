"""What a backend sends reaches the client through the gateway unchanged, in both eras.

The rich backend (fixtures/rich_server.py, official SDK) has a tool per content type, progress,
logging, sampling, elicitation, roots, a subscribable resource, a blob, a template with
completions and prompts with images and embedded resources. Each story runs against three
set-ups (module-scoped gateways of their own, since all three expose the same resource URIs):

  plain     Streamable HTTP backend with `"prefix": ""`: exposed names are the backend's own
  prefixed  Streamable HTTP backend, default prefix: exposed names are `rich__<name>`
  stdio     the gateway spawns the backend over stdio (default prefix)
  handshake a Streamable HTTP backend that refuses 2026-07-28 (default prefix): the gateway
            must translate between a 2026-07-28 client's `input_required` rounds and the
            backend's standalone server-to-client requests

and, where it makes sense, against a `target`: "direct" (the same SDK client straight at the
backend, which proves the expectation itself) and "gateway". Results are compared as whole JSON
(`model_dump(by_alias=True, exclude_none=True)`), never as substrings.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

import support

# The handshake-era features exercised here (logging, subscribe, roots...) are deprecated in 2026-07-28.
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]

ERAS = ["auto", "legacy"]
TARGETS = ["direct", "gateway"]
VARIANTS = ["plain", "prefixed", "stdio", "handshake"]
HANDSHAKE_VERSION = "2025-11-25"
SERVER_INFO_META_KEY = "io.modelcontextprotocol/serverInfo"
COUNTER_URI = "rich://counter"
STEP = 30.0  # seconds any single step (a call, a wait for a notification) may take

# Every tool of the rich backend whose result depends only on its arguments, with the arguments
# used to compare results through the gateway against results direct.
PLAIN_CALLS: dict[str, dict[str, Any]] = {
    "text": {},
    "image": {},
    "audio": {},
    "embedded_text": {},
    "embedded_blob": {},
    "resource_link": {},
    "mixed": {},
    "failing": {},
    "decorated": {},
    "structured": {"city": "Oslo"},
    "schema_2020": {"point": [12.5, -3], "label": "home"},
    "routed": {"region": "eu west/Zürich", "count": 3},
    "big_image": {"size_kib": 64},
    "progress": {"steps": 2, "delay_ms": 0},
    "chatty": {"lines": 2},
    "touch": {"uri": "rich://item/kiwi"},
}
# Tools that ask the client something; each has stories of its own below.
INTERACTIVE = {"ask_model", "ask_user", "ask_url", "my_roots"}
RESOURCE_URIS = [COUNTER_URI, "rich://logo.png", "rich://item/apple"]
PROMPT_ARGS: dict[str, dict[str, str]] = {
    "plan_trip": {"city": "Oslo", "days": "2"},
    "describe_image": {},
    "review_doc": {},
}


# --- set-ups ------------------------------------------------------------------------------------


@dataclass
class Rig:
    """One gateway in front of one rich backend, and a rich backend to call directly."""

    variant: str
    gateway: support.Gateway
    direct_url: str
    prefix: str
    direct_is_modern: bool  # whether the directly reached backend speaks 2026-07-28

    def name(self, target: str, name: str) -> str:
        """The name a tool or prompt has for `target`."""
        return name if target == "direct" else self.prefix + name

    def url(self, target: str) -> str:
        return self.gateway.url if target == "gateway" else self.direct_url

    def token(self, target: str) -> str | None:
        return self.gateway.token if target == "gateway" else None


@pytest.fixture(scope="module", params=VARIANTS)
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The gateway of one set-up. "direct" is the gateway's own backend for the HTTP set-ups; for
    stdio (where the gateway owns the backend's pipes) it is the same fixture started over
    Streamable HTTP, which answers alike: a stdio client per test would cost seconds each."""
    variant: str = request.param
    workdir = tmp_path_factory.mktemp(f"passthrough-{variant}")
    starters: dict[str, Callable[[], support.Backend]] = {
        "plain": lambda: support.start_rich(workdir, prefix=""),
        "prefixed": lambda: support.start_rich(workdir),
        "stdio": lambda: support.rich_stdio(),
        "handshake": lambda: support.start_rich(workdir, handshake_only=True),
    }
    with ExitStack() as stack:
        reference: support.Backend | None = None
        if variant == "stdio":
            reference = support.start_rich(workdir, name="rich-reference")
            stack.callback(reference.close)
        gw = stack.enter_context(support.running_gateway(workdir, [starters[variant]]))
        direct_url = (reference or gw.backends[0]).url
        assert direct_url is not None
        yield Rig(variant, gw, direct_url, "" if variant == "plain" else "rich__", variant != "handshake")


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]


@asynccontextmanager
async def connect(rig: Rig, target: str, mode: str, **kwargs: Any) -> AsyncIterator[Client]:
    """The official SDK client, connected to the gateway or straight to a backend. An error that
    escapes the block comes out as itself, not wrapped in the transport's exception group."""
    try:
        async with support.mcp_client(rig.url(target), rig.token(target) or "unused-by-the-backend", mode, **kwargs) as client:
            yield client
    except BaseExceptionGroup as group:
        errors = [e for e in leaves(group) if not isinstance(e, anyio.get_cancelled_exc_class())]
        if len(errors) == 1:
            raise errors[0] from group
        raise


# --- comparing ----------------------------------------------------------------------------------


def wire(model: Any) -> Any:
    """A result as JSON, without the answering server's identity stamp (2026-07-28 `_meta`)."""
    data = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    if isinstance(data, dict) and isinstance(data.get("_meta"), dict):
        data["_meta"].pop(SERVER_INFO_META_KEY, None)
        if not data["_meta"]:
            del data["_meta"]
    return data


def renamed(definition: Any, name: str) -> dict[str, Any]:
    """A tool or prompt definition as JSON, with its name replaced by `name`."""
    data = wire(definition)
    data["name"] = name
    return data


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def wait_until(check: Callable[[], bool], timeout: float = STEP) -> None:
    """Poll `check` every 50 ms until it is true; fail after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.05)


# --- everything compares equal ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_tool_definitions_equal_the_backends_apart_from_the_name(rig, mode):
    async with connect(rig, "direct", mode) as direct, connect(rig, "gateway", mode) as gateway:
        with anyio.fail_after(STEP):
            own = {t.name: t for t in (await direct.list_tools()).tools}
            exposed = {t.name: t for t in (await gateway.list_tools()).tools}
    assert set(own) == set(PLAIN_CALLS) | INTERACTIVE, "the fixture grew a tool this file does not test"
    for name, tool in own.items():
        through = exposed.get(rig.name("gateway", name))
        assert through is not None, f"{name} not exposed as {rig.name('gateway', name)}: {sorted(exposed)}"
        assert renamed(through, name) == wire(tool)
    schema = own["schema_2020"].input_schema
    assert {"$defs", "unevaluatedProperties", "$schema"} <= set(schema) and "prefixItems" in schema["properties"]["point"]
    decorated = wire(own["decorated"])
    assert {"title", "annotations", "icons", "_meta"} <= set(decorated), decorated
    assert "outputSchema" in wire(own["structured"])


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("tool", sorted(PLAIN_CALLS))
async def test_every_tool_result_equals_the_backends(rig, mode, tool):
    async with connect(rig, "direct", mode) as direct, connect(rig, "gateway", mode) as gateway:
        with anyio.fail_after(STEP):
            own = await direct.call_tool(tool, PLAIN_CALLS[tool])
            through = await gateway.call_tool(rig.name("gateway", tool), PLAIN_CALLS[tool])
    assert wire(through) == wire(own)
    assert own.is_error == (tool == "failing")


async def test_a_big_image_arrives_whole(rig):
    async with connect(rig, "gateway", "auto") as client:
        with anyio.fail_after(STEP):
            result = await client.call_tool(rig.name("gateway", "big_image"), {"size_kib": 1024})
    (image,) = result.content
    assert isinstance(image, types.ImageContent) and image.mime_type == "image/png"
    assert len(base64.b64decode(image.data)) == 1024 * 1024


@pytest.mark.parametrize("mode", ERAS)
async def test_resources_templates_and_reads_equal_the_backends(rig, mode):
    async with connect(rig, "direct", mode) as direct, connect(rig, "gateway", mode) as gateway:
        with anyio.fail_after(STEP):
            own = {r.uri: r for r in (await direct.list_resources()).resources}
            exposed = {r.uri: r for r in (await gateway.list_resources()).resources}
            own_templates = (await direct.list_resource_templates()).resource_templates
            exposed_templates = (await gateway.list_resource_templates()).resource_templates
            reads = [(await direct.read_resource(uri), await gateway.read_resource(uri)) for uri in RESOURCE_URIS]
    assert set(own) == {COUNTER_URI, "rich://logo.png"}
    for uri, resource in own.items():
        assert uri in exposed, sorted(exposed)
        assert wire(exposed[uri]) == wire(resource)
    assert [wire(t) for t in own_templates] == [wire(t) for t in exposed_templates if t.uri_template.startswith("rich://")]
    for own_read, through_read in reads:
        assert wire(through_read) == wire(own_read)
    blob = reads[1][1].contents[0]
    assert isinstance(blob, types.BlobResourceContents) and blob.mime_type == "image/png"


@pytest.mark.parametrize("mode", ERAS)
async def test_prompts_equal_the_backends(rig, mode):
    async with connect(rig, "direct", mode) as direct, connect(rig, "gateway", mode) as gateway:
        with anyio.fail_after(STEP):
            own = {p.name: p for p in (await direct.list_prompts()).prompts}
            exposed = {p.name: p for p in (await gateway.list_prompts()).prompts}
            got = {
                name: (await direct.get_prompt(name, args), await gateway.get_prompt(rig.name("gateway", name), args))
                for name, args in PROMPT_ARGS.items()
            }
    assert set(own) == set(PROMPT_ARGS)
    for name, prompt in own.items():
        through = exposed.get(rig.name("gateway", name))
        assert through is not None, sorted(exposed)
        assert renamed(through, name) == wire(prompt)
    for name, (own_prompt, through_prompt) in got.items():
        assert wire(through_prompt) == wire(own_prompt), name
    kinds = [[m.content.type for m in got[name][1].messages] for name in ("describe_image", "review_doc")]
    assert kinds == [["text", "image"], ["resource", "text"]]


@pytest.mark.parametrize("mode", ERAS)
async def test_completions_equal_the_backends(rig, mode):
    template = types.ResourceTemplateReference(uri="rich://item/{item_id}")
    async with connect(rig, "direct", mode) as direct, connect(rig, "gateway", mode) as gateway:
        with anyio.fail_after(STEP):
            items = [await c.complete(template, {"name": "item_id", "value": "ap"}) for c in (direct, gateway)]
            cities = [
                await c.complete(types.PromptReference(name=rig.name(t, "plan_trip")), {"name": "city", "value": "l"})
                for c, t in ((direct, "direct"), (gateway, "gateway"))
            ]
    assert items[0].completion.values == ["apple", "apricot"]
    assert cities[0].completion.values == ["Lisbon", "London", "Lyon"]
    assert wire(items[1]) == wire(items[0])
    assert wire(cities[1]) == wire(cities[0])


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("target", TARGETS)
async def test_an_unknown_resource_is_invalid_params_naming_the_uri(rig, mode, target):
    uri = "rich://no/such/thing"
    async with connect(rig, target, mode) as client:
        with anyio.fail_after(STEP), pytest.raises(MCPError) as failure:
            await client.read_resource(uri)
    assert failure.value.error.code == types.INVALID_PARAMS, failure.value.error
    assert isinstance(failure.value.error.data, dict) and failure.value.error.data.get("uri") == uri, failure.value.error


# --- progress and logging -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("target", TARGETS)
async def test_every_progress_notification_arrives_in_order_before_the_result(rig, mode, target):
    events: list[Any] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    async with connect(rig, target, mode) as client:
        with anyio.fail_after(STEP):
            result = await client.call_tool(
                rig.name(target, "progress"), {"steps": 5, "delay_ms": 20}, progress_callback=on_progress
            )
        events.append(text_of(result))
    assert events == [(i, 5, f"step {i} of 5") for i in range(1, 6)] + ["done 5 steps"]


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("target", TARGETS)
async def test_log_lines_arrive_in_order_with_their_levels_before_the_result(rig, mode, target):
    events: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        events.append((params.level, params.logger, params.data))

    # 2026-07-28: log delivery is opted into per request (`log_level` stamps it on every request).
    async with connect(rig, target, mode, logging_callback=on_log, log_level="debug") as client:
        with anyio.fail_after(STEP):
            result = await client.call_tool(rig.name(target, "chatty"), {"lines": 6})
        events.append(text_of(result))
    levels = ["info", "warning", "error"] * 2
    assert events == [(levels[i - 1], "rich.chatty", f"line {i} at {levels[i - 1]}") for i in range(1, 7)] + ["logged 6 lines"]


@pytest.mark.parametrize("target", TARGETS)
async def test_set_level_warning_stops_info_lines(rig, target):
    lines: list[tuple[str, Any]] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        lines.append((params.level, params.data))

    async with connect(rig, target, "legacy", logging_callback=on_log) as client:
        with anyio.fail_after(STEP):
            await client.set_logging_level("warning")
            result = await client.call_tool(rig.name(target, "chatty"), {"lines": 6})
            await client.set_logging_level("debug")
    assert text_of(result) == "logged 6 lines"
    assert lines == [(level, f"line {i} at {level}") for i, level in ((2, "warning"), (3, "error"), (5, "warning"), (6, "error"))]


@pytest.mark.parametrize("target", TARGETS)
async def test_set_level_of_one_session_leaves_another_sessions_lines_alone(rig, target):
    lines: list[Any] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        lines.append(params.data)

    async with connect(rig, target, "legacy") as quiet, connect(rig, target, "legacy", logging_callback=on_log) as chatty:
        with anyio.fail_after(STEP):
            await quiet.set_logging_level("error")
            await chatty.call_tool(rig.name(target, "chatty"), {"lines": 3})
            await quiet.set_logging_level("debug")
    assert lines == ["line 1 at info", "line 2 at warning", "line 3 at error"]


# --- the backend asks the client: sampling, elicitation, roots ------------------------------------


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("target", TARGETS)
async def test_sampling_reaches_the_clients_handler_and_its_answer_the_tool(rig, mode, target):
    asked: list[types.CreateMessageRequestParams] = []

    async def sample(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        asked.append(params)
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(text="Lisbon"), model="test-model-1", stop_reason="endTurn"
        )

    async with connect(rig, target, mode, sampling_callback=sample) as client:
        with anyio.fail_after(STEP):
            result = await client.call_tool(rig.name(target, "ask_model"), {"question": "Best city?"})
    assert not result.is_error, result
    assert text_of(result) == "the model (test-model-1, assistant) said: Lisbon"
    assert len(asked) == 1, asked
    assert wire(asked[0]) == {
        "messages": [{"role": "user", "content": {"type": "text", "text": "Best city?"}}],
        "maxTokens": 64,
        "systemPrompt": "Answer in one word.",
        "temperature": 0.0,
    }


def contact_schema(params: types.ElicitRequestFormParams) -> dict[str, Any]:
    """The part of a requested schema both eras render alike (2025-era adds title/description)."""
    schema = params.requested_schema
    return {"type": schema["type"], "properties": schema["properties"], "required": schema["required"]}


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("action", ["accept", "decline"])
async def test_form_elicitation_reaches_the_clients_handler_and_its_answer_the_tool(rig, mode, target, action):
    asked: list[Any] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        if action == "accept":
            return types.ElicitResult(action="accept", content={"name": "Ada", "age": 36})
        return types.ElicitResult(action="decline")

    async with connect(rig, target, mode, elicitation_callback=elicit) as client:
        with anyio.fail_after(STEP):
            result = await client.call_tool(rig.name(target, "ask_user"), {})
    assert not result.is_error, result
    assert text_of(result) == ("hello Ada, age 36" if action == "accept" else "the user chose decline")
    assert len(asked) == 1 and isinstance(asked[0], types.ElicitRequestFormParams), asked
    assert asked[0].message == "Who are you?"
    assert contact_schema(asked[0]) == {
        "type": "object",
        "properties": {"name": {"title": "Name", "type": "string"}, "age": {"title": "Age", "type": "integer"}},
        "required": ["name", "age"],
    }


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("target", TARGETS)
async def test_url_elicitation_reaches_the_clients_handler(rig, mode, target):
    asked: list[Any] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept")

    async with connect(rig, target, mode, elicitation_callback=elicit) as client:
        protocol = client.protocol_version
        with anyio.fail_after(STEP):
            result = await client.call_tool(rig.name(target, "ask_url"), {})
    assert not result.is_error, result
    assert text_of(result) == "url elicitation: accept"
    assert len(asked) == 1 and isinstance(asked[0], types.ElicitRequestURLParams), asked
    shown = wire(asked[0])
    elicitation_id = shown.pop("elicitationId", None)
    assert shown == {"mode": "url", "message": "Sign in to the widget service", "url": "https://widgets.example/signin?x=1"}
    if protocol in MODERN_PROTOCOL_VERSIONS:
        assert elicitation_id is None, "2026-07-28 has no elicitationId"
    elif target == "direct" or not rig.direct_is_modern:
        assert elicitation_id == "signin-1"
    else:
        # Required at 2025-11-25; a gateway whose link to the backend is 2026-07-28 mints its own.
        assert isinstance(elicitation_id, str) and elicitation_id, shown


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("target", TARGETS)
async def test_roots_come_from_the_clients_handler(rig, mode, target):
    calls: list[int] = []

    async def roots(context: Any) -> types.ListRootsResult:
        calls.append(1)
        return types.ListRootsResult(
            roots=[types.Root(uri="file:///home/ada/project", name="project"), types.Root(uri="file:///srv/share")]
        )

    async with connect(rig, target, mode, list_roots_callback=roots) as client:
        with anyio.fail_after(STEP):
            result = await client.call_tool(rig.name(target, "my_roots"), {})
    assert not result.is_error, result
    assert text_of(result) == "roots: project=file:///home/ada/project, -=file:///srv/share"
    assert calls == [1]


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("target", TARGETS)
async def test_a_client_that_cannot_elicit_gets_an_error_not_a_hang(rig, mode, target):
    async with connect(rig, target, mode) as client:
        with anyio.fail_after(STEP):
            try:
                result = await client.call_tool(rig.name(target, "ask_user"), {})
            except MCPError as e:
                assert "elicitation" in e.error.message.lower(), e.error
                return
    assert result.is_error, result
    assert "elicitation" in text_of(result).lower(), result


# --- subscriptions ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
async def test_a_subscribed_client_hears_of_updates_until_it_unsubscribes(rig, target):
    updates: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(message.params.uri)

    async with connect(rig, target, "legacy", message_handler=on_message) as client:
        resources = client.server_capabilities.resources
        assert resources is not None and resources.subscribe, client.server_capabilities
        touch = rig.name(target, "touch")
        with anyio.fail_after(STEP):
            await client.subscribe_resource(COUNTER_URI)
            await client.call_tool(touch, {"uri": COUNTER_URI})
        await wait_until(lambda: COUNTER_URI in updates)
        with anyio.fail_after(STEP):
            await client.call_tool(touch, {"uri": "rich://item/not-subscribed"})
            await client.unsubscribe_resource(COUNTER_URI)
            await client.call_tool(touch, {"uri": COUNTER_URI})
        await anyio.sleep(1.0)  # time for a wrong notification to arrive
    assert updates == [COUNTER_URI]


# --- raw HTTP: the client's own progress token, resumption --------------------------------------


def messages_of(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a whole Streamable HTTP answer (a JSON body or an SSE stream,
    whose data-less priming events are skipped)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = support.sse_events(iter(response.text.splitlines() + [""]), time.monotonic() + STEP)
        return [m for m in (e.message() for e in events) if m is not None]
    body = response.json()
    return body if isinstance(body, list) else [body]


class HandshakeSession:
    """A raw handshake-era (2025-11-25) session over httpx, for what the SDK client hides."""

    def __init__(self, http: httpx2.Client, url: str, token: str | None) -> None:
        self.http = http
        self.url = url
        self.base = {"Authorization": f"Bearer {token}"} if token else {}
        init = http.post(
            url,
            headers={**self.base, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"},
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": HANDSHAKE_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "passthrough-raw", "version": "0.1.0"},
                },
            },
        )
        assert init.status_code == 200, init.text
        self.session_id = init.headers["mcp-session-id"]
        done = http.post(url, headers=self.headers(), json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert done.status_code in (200, 202), done.text

    def headers(self, accept: str = "application/json, text/event-stream") -> dict[str, str]:
        return {
            **self.base,
            "Accept": accept,
            "Content-Type": "application/json",
            "Mcp-Session-Id": self.session_id,
            "MCP-Protocol-Version": HANDSHAKE_VERSION,
        }

    def close(self) -> None:
        self.http.delete(self.url, headers=self.headers())


def progress_call(request_id: int, token: str | int, steps: int, delay_ms: int, name: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {"steps": steps, "delay_ms": delay_ms}, "_meta": {**(meta or {}), "progressToken": token}},
    }


@pytest.mark.parametrize("era", ["modern", "handshake"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("token", ["tok-1/α é", 42], ids=["string", "int"])
def test_the_clients_own_progress_token_comes_back_exactly(rig, era, target, token):
    if era == "modern" and target == "direct" and not rig.direct_is_modern:
        pytest.skip("this backend refuses 2026-07-28")
    url, name = rig.url(target), rig.name(target, "progress")
    with httpx2.Client(timeout=STEP) as http:
        if era == "modern":
            body = progress_call(7, token, 3, 10, name, support.modern_meta())
            response = http.post(url, headers=support.modern_headers(rig.token(target), "tools/call", name), json=body)
        else:
            session = HandshakeSession(http, url, rig.token(target))
            response = http.post(url, headers=session.headers(), json=progress_call(7, token, 3, 10, name))
            session.close()
    messages = messages_of(response)
    progress = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
    assert [(p["progressToken"], type(p["progressToken"])) for p in progress] == [(token, type(token))] * 3, messages
    assert [p["progress"] for p in progress] == [1, 2, 3]
    final = messages[-1]
    assert final.get("id") == 7 and final["result"]["content"][0]["text"] == "done 3 steps", messages


@pytest.mark.parametrize("target", TARGETS)
def test_a_dropped_stream_resumes_with_last_event_id(rig, target):
    """Handshake era: read two progress events, drop the connection, GET with Last-Event-ID:
    the rest of the progress and the result arrive, none twice, none missing."""
    url, name = rig.url(target), rig.name(target, "progress")
    deadline = time.monotonic() + 2 * STEP
    with httpx2.Client(timeout=STEP) as http:
        session = HandshakeSession(http, url, rig.token(target))
        first: list[support.SseEvent] = []
        with http.stream("POST", url, headers=session.headers(), json=progress_call(9, "resume-1", 6, 300, name)) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for event in support.sse_events(response.iter_lines(), deadline):
                first.append(event)
                if sum(1 for e in first if (e.message() or {}).get("method") == "notifications/progress") == 2:
                    break
        # leaving the `with` closed the connection mid-stream
        assert first and first[0].retry is not None, f"the stream does not start with a retry field: {first}"
        seen = [e for e in first if e.message() is not None]
        assert all(e.id for e in seen), f"an event without an id: {first}"
        assert [m["params"]["progress"] for m in (e.message() for e in seen) if m.get("method") == "notifications/progress"] == [1, 2]

        rest: list[dict[str, Any]] = []
        resume = {**session.headers("text/event-stream"), "Last-Event-ID": seen[-1].id or ""}
        resume.pop("Content-Type")
        with http.stream("GET", url, headers=resume) as response:
            assert response.status_code == 200, response.read()
            for event in support.sse_events(response.iter_lines(), deadline):
                message = event.message()
                if message is not None:
                    rest.append(message)
                    if message.get("id") == 9:
                        break
        session.close()
    progress = [m["params"]["progress"] for m in rest if m.get("method") == "notifications/progress"]
    assert progress == [3, 4, 5, 6], rest
    assert rest[-1].get("id") == 9 and rest[-1]["result"]["content"][0]["text"] == "done 6 steps", rest
