"""The conformance fixture: an MCP server on the official Python SDK (`mcp` 2.x, MCPServer) that
offers every tool, resource and prompt the server scenarios of `@modelcontextprotocol/conformance`
call, over Streamable HTTP on 127.0.0.1, speaking both the handshake era (2025-11-25) and the
stateless 2026-07-28 revision.

Usage: python fixture_server.py --port N

It serves http://127.0.0.1:N/mcp, with an event store (so handshake-era SSE streams start with a
priming event and can be resumed with Last-Event-ID) and the SDK's DNS-rebinding protection.
What each scenario asks of the server is in the suite's own descriptions
(`node <suite>/dist/index.js list --server` names them; each scenario class's `description`
spells it out). The texts and keys below are the ones those descriptions give.

Not served: the tasks extension (`tasks-*`, SEP-2663) and the skills extension (`sep-2640-*`):
the SDK has neither, so they are not declared (the skills scenarios then skip their checks).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.caching import CacheHint
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Message, UserMessage
from mcp.server.mcpserver.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CallToolResult,
    Completion,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    GetPromptResult,
    ImageContent,
    InputRequiredResult,
    ListRootsRequest,
    ListRootsResult,
    PromptMessage,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

# The interop fixtures' event store (resumable SSE streams).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop" / "fixtures"))
from event_store import MemoryEventStore  # noqa: E402

# A 1x1 PNG and a tiny WAV, as in the suite's own examples.
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_B64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

WATCHED_URI = "test://watched-resource"

# Every cacheable method carries caching hints (2026-07-28, SEP-2549).
CACHE_HINTS: dict[Any, CacheHint] = {
    method: CacheHint(ttl_ms=0, scope="private")
    for method in ("tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read")
}

log = logging.getLogger("conformance-fixture")


def is_modern(ctx: Context) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def text(value: str) -> TextContent:
    return TextContent(type="text", text=value)


def elicitation(message: str, properties: dict[str, Any], required: list[str]) -> ElicitRequest:
    schema = {"type": "object", "properties": properties, "required": required}
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def sampling(prompt: str, max_tokens: int = 100) -> CreateMessageRequest:
    return CreateMessageRequest(
        params=CreateMessageRequestParams(
            messages=[SamplingMessage(role="user", content=text(prompt))], max_tokens=max_tokens
        )
    )


NAME = {"name": {"type": "string"}}


def accepted(responses: Any, key: str) -> dict[str, Any] | None:
    """The content of an accepted elicitation answer under `key`, else None."""
    answer = (responses or {}).get(key)
    if isinstance(answer, ElicitResult) and answer.action == "accept" and isinstance(answer.content, dict):
        return answer.content
    return None


# --- handshake-era handlers the SDK leaves to the server ----------------------------------------

subscribed: set[str] = set()


async def set_level(ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
    """logging/setLevel (handshake era): accepted; the tools here log at info."""
    return EmptyResult()


async def subscribe(ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
    subscribed.add(str(params.uri))
    return EmptyResult()


async def unsubscribe(ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams) -> EmptyResult:
    subscribed.discard(str(params.uri))
    return EmptyResult()


# --- tools with hand-written schemas ------------------------------------------------------------

JSON_SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

HEADER_ECHO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "x-mcp-header": "Text"}},
    "required": ["text"],
}


def json_schema_2020_12_tool(**kwargs: Any) -> str:
    """Tool with JSON Schema 2020-12 features"""
    return "json_schema_2020_12_tool called"


def test_header_echo(text: str) -> str:
    """Echoes `text`, which 2026-07-28 clients mirror into the Mcp-Param-Text header (SEP-2243)."""
    return f"echo: {text}"


def test_simple_text() -> str:
    """Tests simple text content response"""
    return "This is a simple text response for testing."


def first_tools() -> list[Tool]:
    """The tools listed first, some with hand-written schemas. The first one must answer a call
    with no arguments (http-header-validation calls the first listed tool with `{}`)."""
    simple = Tool.from_function(test_simple_text, structured_output=False)
    with_2020 = Tool.from_function(json_schema_2020_12_tool, name="json_schema_2020_12_tool")
    with_2020.parameters = JSON_SCHEMA_2020_12
    with_header = Tool.from_function(test_header_echo)
    with_header.parameters = HEADER_ECHO_SCHEMA
    return [simple, with_2020, with_header]


mcp = MCPServer(
    "mcp-conformance-fixture", version="1.0.0", log_level="WARNING", cache_hints=CACHE_HINTS, tools=first_tools()
)
mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
mcp._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
mcp._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


# --- content tools (both eras) ------------------------------------------------------------------


@mcp.tool(structured_output=False)
def test_image_content() -> list[ImageContent]:
    """Tests image content response"""
    return [ImageContent(type="image", data=PNG_B64, mime_type="image/png")]


@mcp.tool(structured_output=False)
def test_audio_content() -> list[AudioContent]:
    """Tests audio content response"""
    return [AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]


@mcp.tool(structured_output=False)
def test_embedded_resource() -> list[EmbeddedResource]:
    """Tests embedded resource content response"""
    resource = TextResourceContents(
        uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
    )
    return [EmbeddedResource(type="resource", resource=resource)]


@mcp.tool(structured_output=False)
def test_multiple_content_types() -> list[Any]:
    """Tests response with multiple content types (text, image, resource)"""
    resource = TextResourceContents(
        uri="test://mixed-content-resource", mime_type="application/json", text='{"test":"data","value":123}'
    )
    return [
        text("Multiple content types test:"),
        ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
        EmbeddedResource(type="resource", resource=resource),
    ]


@mcp.tool()
def test_error_handling() -> CallToolResult:
    """Tests error response handling (isError: true)"""
    return CallToolResult(content=[text("This tool intentionally returns an error for testing")], is_error=True)


@mcp.tool(structured_output=False)
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends three info log lines, ~50 ms apart, then answers"""
    for i, line in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
        if i:
            await asyncio.sleep(0.05)
        await ctx.info(line)
    return "Tool with logging executed successfully"


@mcp.tool(structured_output=False)
async def test_logging_tool(ctx: Context) -> str:
    """Logs a line: a 2026-07-28 request without _meta logLevel must receive none"""
    await ctx.info("test_logging_tool ran")
    await asyncio.sleep(0.05)
    return "Logging tool executed"


@mcp.tool(structured_output=False)
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress 0, 50, 100 of 100, ~50 ms apart"""
    for i, step in enumerate((0, 50, 100)):
        if i:
            await asyncio.sleep(0.05)
        await ctx.report_progress(step, 100, f"Completed step {step} of 100")
    return "Progress tool executed"


# --- server-to-client requests, in either era ---------------------------------------------------
# Handshake era: a standalone request on the call's SSE stream. 2026-07-28: an input_required
# result naming the request, then the client's retry with the answer (SEP-2322). A gateway
# speaking 2026-07-28 to this backend and the handshake era to its client translates between the
# two, so these tools work directly and through it.


async def ask(ctx: Context, key: str, request: ElicitRequest | CreateMessageRequest) -> Any:
    """The client's answer to `request` (an ElicitResult or a CreateMessageResult), or, on
    2026-07-28 before it answered, the InputRequiredResult to return. A client that did not
    declare the capability is refused with -32021 (MissingRequiredClientCapability)."""
    capability = "elicitation" if isinstance(request, ElicitRequest) else "sampling"
    caps = ctx.client_capabilities
    if caps is None or getattr(caps, capability) is None:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message=f"this tool needs the client's {capability} capability",
            data={"requiredCapabilities": {capability: {}}},
        )
    result_type = ElicitResult if capability == "elicitation" else CreateMessageResult
    if not is_modern(ctx):
        metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
        return await ctx.session.send_request(request, result_type, metadata=metadata)
    answer = (ctx.input_responses or {}).get(key)
    if isinstance(answer, result_type):
        return answer
    return InputRequiredResult(input_requests={key: request})


def said(result: CreateMessageResult) -> str:
    return result.content.text if isinstance(result.content, TextContent) else result.content.type


@mcp.tool(structured_output=False)
async def test_sampling(prompt: str, ctx: Context) -> str | InputRequiredResult:
    """Asks the client's model (sampling/createMessage) and returns its answer"""
    answer = await ask(ctx, "sampling", sampling(prompt))
    return answer if isinstance(answer, InputRequiredResult) else f"LLM response: {said(answer)}"


def elicited(answer: ElicitResult, prefix: str) -> str:
    return f"{prefix}: action={answer.action}, content={json.dumps(answer.content or {})}"


@mcp.tool(structured_output=False)
async def test_elicitation(message: str, ctx: Context) -> str | InputRequiredResult:
    """Asks the user (elicitation/create) for a username and an email"""
    properties = {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    }
    answer = await ask(ctx, "user_info", elicitation(message, properties, ["username", "email"]))
    return answer if isinstance(answer, InputRequiredResult) else elicited(answer, "User response")


@mcp.tool(structured_output=False)
async def test_elicitation_sep1034_defaults(ctx: Context) -> str | InputRequiredResult:
    """Elicitation whose schema has a default for every primitive type (SEP-1034)"""
    properties = {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    }
    answer = await ask(ctx, "user_info", elicitation("Please provide user information", properties, []))
    return answer if isinstance(answer, InputRequiredResult) else elicited(answer, "Elicitation completed")


@mcp.tool(structured_output=False)
async def test_elicitation_sep1330_enums(ctx: Context) -> str | InputRequiredResult:
    """Elicitation with the five enum schema forms (SEP-1330)"""
    properties = {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    }
    message = "Please select values using different enum schema types"
    answer = await ask(ctx, "choices", elicitation(message, properties, []))
    return answer if isinstance(answer, InputRequiredResult) else elicited(answer, "Elicitation completed")


@mcp.tool(structured_output=False)
async def test_reconnection(ctx: Context) -> str:
    """Closes its SSE stream mid-call (SEP-1699); the client resumes with Last-Event-ID"""
    await ctx.info("Before disconnect")
    await ctx.close_sse_stream()
    await asyncio.sleep(0.2)
    await ctx.info("After reconnect")
    return "Reconnection test completed"


# --- 2026-07-28 diagnostics (server-stateless) --------------------------------------------------


@mcp.tool(structured_output=False)
async def test_missing_capability(ctx: Context) -> str | InputRequiredResult:
    """Needs the client's sampling capability: without it the call is refused with -32021"""
    answer = await ask(ctx, "greeting", sampling("Say hello", max_tokens=16))
    return answer if isinstance(answer, InputRequiredResult) else f"The model said: {said(answer)}"


@mcp.tool(structured_output=False)
async def test_streaming_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Asks the user for a name: on 2026-07-28 as an input_required result, never as a request"""
    answer = await ask(ctx, "user_name", elicitation("What is your name?", NAME, ["name"]))
    return answer if isinstance(answer, InputRequiredResult) else elicited(answer, "Streaming elicitation")


def test_dynamic_tool() -> str:
    """Added and removed again by test_trigger_tool_change"""
    return "dynamic tool"


def test_dynamic_prompt() -> list[Message]:
    """Added and removed again by test_trigger_prompt_change"""
    return [UserMessage("This prompt comes and goes.")]


async def tell_handshake_sessions(ctx: Context, kind: str) -> None:
    """Handshake-era sessions hear of list changes on their GET stream (if they opened one)."""
    if is_modern(ctx):
        return
    try:
        if kind == "tools":
            await ctx.session.send_tool_list_changed()
        else:
            await ctx.session.send_prompt_list_changed()
    except Exception as e:  # no standalone stream: nobody to tell
        log.debug("list_changed not sent: %r", e)


# The triggers change the list and change it back (as the Python SDK's own conformance server
# does), so the list a client fetches afterwards is the same as before, yet it did change: a
# listener must still be told. Other scenarios then always see the same tools and prompts.


@mcp.tool(structured_output=False)
async def test_trigger_tool_change(ctx: Context) -> str:
    """Changes the tool list (adds, then removes test_dynamic_tool) and notifies listeners"""
    mcp.add_tool(test_dynamic_tool, structured_output=False)
    mcp.remove_tool("test_dynamic_tool")
    await ctx.notify_tools_changed()
    await tell_handshake_sessions(ctx, "tools")
    return "tool list changed"


@mcp.tool(structured_output=False)
async def test_trigger_prompt_change(ctx: Context) -> str:
    """Changes the prompt list (adds, then removes test_dynamic_prompt) and notifies listeners"""
    mcp.prompt()(test_dynamic_prompt)
    mcp.remove_prompt("test_dynamic_prompt")
    await ctx.notify_prompts_changed()
    await tell_handshake_sessions(ctx, "prompts")
    return "prompt list changed"


# --- 2026-07-28 multi-round-trip requests (SEP-2322) --------------------------------------------
# The SDK seals every requestState the server returns and rejects a tampered one (-32602) before
# the tool runs, so the tools below see only the plaintext they minted.

@mcp.tool(structured_output=False)
async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
    """Round 1: input_required asking user_name; round 2: Hello, <name>!"""
    content = accepted(ctx.input_responses, "user_name")
    if content is None or not isinstance(content.get("name"), str):
        return InputRequiredResult(input_requests={"user_name": elicitation("What is your name?", NAME, ["name"])})
    return f"Hello, {content['name']}!"


@mcp.tool(structured_output=False)
async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
    """Round 1: input_required sampling capital_question; round 2: the model's answer"""
    answer = (ctx.input_responses or {}).get("capital_question")
    if not isinstance(answer, CreateMessageResult):
        return InputRequiredResult(input_requests={"capital_question": sampling("What is the capital of France?")})
    return f"Sampling response: {said(answer)}"


@mcp.tool(structured_output=False)
async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
    """Round 1: input_required roots/list client_roots; round 2: the roots"""
    answer = (ctx.input_responses or {}).get("client_roots")
    if not isinstance(answer, ListRootsResult):
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})
    return "Client roots: " + ", ".join(str(root.uri) for root in answer.roots)


CONFIRM = ({"ok": {"type": "boolean"}}, ["ok"])


@mcp.tool(structured_output=False)
async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
    """Round 1: input_required confirm with a requestState; round 2 checks it: state-ok"""
    if accepted(ctx.input_responses, "confirm") is None or ctx.request_state != "confirm-asked":
        return InputRequiredResult(
            input_requests={"confirm": elicitation("Please confirm", *CONFIRM)}, request_state="confirm-asked"
        )
    return "state-ok: the echoed request state was verified"


@mcp.tool(structured_output=False)
async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
    """Like request_state; a tampered requestState is refused by the SDK before this runs"""
    if accepted(ctx.input_responses, "confirm") is None or ctx.request_state != "tamper-check":
        return InputRequiredResult(
            input_requests={"confirm": elicitation("Please confirm", *CONFIRM)}, request_state="tamper-check"
        )
    return "Request state verified"


@mcp.tool(structured_output=False)
async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
    """Round 1: elicitation, sampling and roots at once; round 2 (all answered): complete"""
    responses = ctx.input_responses or {}
    if ctx.request_state == "multiple-asked" and all(k in responses for k in ("user_name", "greeting", "client_roots")):
        return "Every input answered"
    return InputRequiredResult(
        input_requests={
            "user_name": elicitation("What is your name?", NAME, ["name"]),
            "greeting": sampling("Generate a greeting", max_tokens=50),
            "client_roots": ListRootsRequest(),
        },
        request_state="multiple-asked",
    )


@mcp.tool(structured_output=False)
async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
    """Three rounds: step1 (name), step2 (colour) with a new requestState, then complete"""
    if ctx.request_state == "round-1" and (name := accepted(ctx.input_responses, "step1")) is not None:
        color = {"color": {"type": "string"}}
        return InputRequiredResult(
            input_requests={"step2": elicitation("Step 2: What is your favorite color?", color, ["color"])},
            request_state="round-2:" + json.dumps(name.get("name")),
        )
    if (ctx.request_state or "").startswith("round-2:") and (color := accepted(ctx.input_responses, "step2")):
        return f"{json.loads(ctx.request_state.split(':', 1)[1])} likes {color.get('color')}"
    return InputRequiredResult(
        input_requests={"step1": elicitation("Step 1: What is your name?", NAME, ["name"])}, request_state="round-1"
    )


@mcp.tool(structured_output=False)
async def test_input_required_result_capabilities(ctx: Context) -> str | InputRequiredResult:
    """Asks only for what the client declared it can answer (sampling, elicitation, roots)"""
    caps = ctx.client_capabilities
    requests: dict[str, Any] = {}
    if caps is not None and caps.sampling is not None:
        requests["greeting"] = sampling("Generate a greeting", max_tokens=50)
    if caps is not None and caps.elicitation is not None:
        requests["user_name"] = elicitation("What is your name?", NAME, ["name"])
    if caps is not None and caps.roots is not None:
        requests["client_roots"] = ListRootsRequest()
    if not requests or set(ctx.input_responses or {}) >= set(requests):
        return "Declared-capability input answered"
    return InputRequiredResult(input_requests=requests)


# --- resources ----------------------------------------------------------------------------------


@mcp.resource("test://static-text", name="static-text", mime_type="text/plain")
def static_text() -> str:
    """A static text resource for testing"""
    return "This is the content of the static text resource."


@mcp.resource("test://static-binary", name="static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A static binary resource (image) for testing"""
    return base64.b64decode(PNG_B64)


@mcp.resource("test://template/{id}/data", name="template-data", mime_type="application/json")
def template_data(id: str) -> str:
    """A resource template with parameter substitution"""
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@mcp.resource(WATCHED_URI, name="watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource that can be subscribed to for updates"""
    return "Watched resource content"


# --- prompts ------------------------------------------------------------------------------------


@mcp.prompt()
def test_simple_prompt() -> list[Message]:
    """A simple prompt without arguments"""
    return [UserMessage("This is a simple prompt for testing.")]


@mcp.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> list[Message]:
    """A prompt with required arguments"""
    return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]


@mcp.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
    """A prompt that includes an embedded resource"""
    resource = TextResourceContents(uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing.")
    return [
        UserMessage(EmbeddedResource(type="resource", resource=resource)),
        UserMessage("Please process the embedded resource above."),
    ]


@mcp.prompt()
def test_prompt_with_image() -> list[Message]:
    """A prompt that includes image content"""
    return [
        UserMessage(ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
        UserMessage("Please analyze the image above."),
    ]


@mcp.prompt()
async def test_input_required_result_prompt(ctx: Context) -> GetPromptResult | InputRequiredResult:
    """A prompt that first asks the user for context (2026-07-28 input_required on prompts/get)"""
    content = accepted(ctx.input_responses, "user_context")
    if content is None:
        return InputRequiredResult(
            input_requests={
                "user_context": elicitation(
                    "What context should the prompt use?", {"context": {"type": "string"}}, ["context"]
                )
            }
        )
    return GetPromptResult(
        messages=[PromptMessage(role="user", content=text(f"Use this context: {content.get('context')}"))]
    )


@mcp.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Completion:
    """Completions for test_prompt_with_arguments' arguments (a fixed list, by prefix)."""
    values = [v for v in ("paris", "park", "party", "test-value") if v.startswith(argument.value)]
    return Completion(values=values, total=len(values), has_more=False)


# --- running ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    app = mcp.streamable_http_app(event_store=MemoryEventStore(), retry_interval=500, host="127.0.0.1")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
