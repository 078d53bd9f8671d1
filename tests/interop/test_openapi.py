"""The OpenAPI tool-server face: Open WebUI (or any OpenAPI tool runner) adds the gateway as a tool
server, whole (`http://host:port`, document `/openapi.json`) or one backend at a time
(`http://host:port/openapi/<server>`, document `/openapi/<server>/openapi.json`), and calls
`POST /openapi/<server>/<tool>` with the tool's arguments as a JSON object.

  house     fixtures/guarded_house.py (records every tool call); `confirm: ["delete_scene"]`
  weather   fixtures/weather_server.py (add, forecast, slow_count)
  everything  @modelcontextprotocol/server-everything (stdio)
  rich      fixtures/rich_server.py (stdio; every content type, a 2020-12 schema, an outputSchema)
  changing  fixtures/changing_server.py (`toggle_tool` adds or removes the tool `dynamic`)
  seed      fixtures/seed_server.py (stdio; the seed household's 230 real tool schemas, prefix "")
  shaped    fixtures/shaped_server.py (stdio; a top-level oneOf, a top-level allOf, $ref, a cycle)

The documents are checked with openapi-spec-validator; every house, weather and shaped operation is
called with valid bodies (the tool runs: the house records it, weather answers the known result,
shaped answers the arguments it got) and with invalid ones (a clear 4xx, the tool not run). Open WebUI 0.12.4's own requests
(fixtures/openwebui-0.12.4-openapi-requests.jsonl) are replayed against our documents.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from openapi_spec_validator import validate

import support
from test_access import HOUSE_TOOLS, House, audit_lines, create_token, edit_config, listed, start_house, unique, wait_audit
from test_modern_rules import start_changing

ORIGIN = "https://chat.example.net"
OTHER_ORIGIN = "https://elsewhere.example.com"
CAPTURE = Path(__file__).resolve().parent / "fixtures" / "openwebui-0.12.4-openapi-requests.jsonl"
SERVERS = ("house", "weather", "everything", "rich", "changing", "shaped", "gateway")
WEATHER_ANSWERS = {  # valid bodies of the weather tools and what they answer
    "weather__add": ({"a": 2, "b": 40}, {"result": 42}),
    "weather__forecast": ({"city": "Oslo"}, {"result": "Oslo: -3C, snow, wind 20 km/h"}),
    "weather__slow_count": ({"n": 1}, {"result": "counted 1"}),
}
LIST_CHANGE_TIMEOUT = 20.0


@dataclass
class Face:
    gw: support.Gateway
    house: House

    def get(self, path: str, token: str | None = "default", **headers: str) -> httpx2.Response:
        if token == "default":
            token = self.gw.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx2.get(self.gw.base + path, headers=headers, timeout=30)

    def post(self, path: str, body: Any = None, token: str | None = "default", content: bytes | None = None,
             **headers: str) -> httpx2.Response:
        if token == "default":
            token = self.gw.token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if content is None:
            content = json.dumps(body if body is not None else {}).encode()
        headers.setdefault("Content-Type", "application/json")
        return httpx2.post(self.gw.base + path, headers=headers, content=content, timeout=30)

    def document(self, path: str = "/openapi.json", token: str | None = "default") -> dict[str, Any]:
        r = self.get(path, token)
        assert r.status_code == 200, (path, r.status_code, r.text[:1000])
        assert r.headers["content-type"].startswith("application/json"), r.headers
        return r.json()


def seed_stdio() -> support.Backend:
    config = {"command": sys.executable, "args": [str(support.FIXTURES / "seed_server.py")],
              "cwd": str(support.FIXTURES), "prefix": "", "timeout_ms": 20000}
    return support.Backend("seed", None, config)


def shaped_stdio() -> support.Backend:
    config = {"command": sys.executable, "args": [str(support.FIXTURES / "shaped_server.py")],
              "cwd": str(support.FIXTURES), "timeout_ms": 20000}
    return support.Backend("shaped", None, config)


@pytest.fixture(scope="module")
def face(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Face]:
    workdir = tmp_path_factory.mktemp("openapi")
    house = start_house(workdir)
    backends: list[support.Backend] = []
    gw = None
    try:
        backends.append(house.borrowed(confirm=["delete_scene"]))
        backends.append(support.start_weather(workdir))
        backends.append(support.everything_stdio())
        backends.append(support.rich_stdio())
        backends.append(start_changing(workdir))
        backends.append(seed_stdio())
        backends.append(shaped_stdio())
        gw = support.Gateway(workdir, backends)
        edit_config(gw, lambda c: c.update({"openai": {"cors_origins": [ORIGIN]}}))
        gw.start()
        yield Face(gw, house)
    finally:
        if gw is not None:
            gw.close()
        else:
            for b in backends:
                b.close()
        house.close()


def operations(document: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """operationId -> (path, operation), as Open WebUI reads them (operations without an
    operationId are ignored)."""
    found = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            assert method == "post", (path, method)
            if op.get("operationId"):
                assert op["operationId"] not in found, op["operationId"]
                found[op["operationId"]] = (path, op)
    return found


def body_schema(op: dict[str, Any]) -> dict[str, Any]:
    return op["requestBody"]["content"]["application/json"]["schema"]


def sample(schema: Any) -> Any:
    """A value `schema` accepts (enough for the fixtures' schemas)."""
    if not isinstance(schema, dict):
        return "x"
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"]
            return sample(branches[0] if branches else schema[key][0])
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: sample(schema.get("properties", {}).get(name)) for name in schema.get("required", [])}
    return {"string": "kitchen", "integer": 1, "number": 1.5, "boolean": True, "null": None,
            "array": [sample(schema.get("items"))] * schema.get("minItems", 1)}[kind]


def wrong(schema: dict[str, Any]) -> Any:
    """A value `schema` refuses."""
    if "enum" in schema:
        return "not-one-of-them"
    return {"string": 12345, "integer": "twelve", "number": "twelve", "boolean": "yes"}.get(schema.get("type"), None)


def assert_error(r: httpx2.Response, status: int, kind: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:1000])
    body = r.json()
    assert body["error"] == kind, body
    assert isinstance(body["message"], str) and body["message"], body
    for word in words:
        assert word in body["message"], (word, body)
    return body


def assert_flat(document: dict[str, Any]) -> None:
    """Every request body is one flat object schema Open WebUI reads parameters from."""
    for name, (_, op) in operations(document).items():
        schema = body_schema(op)
        assert schema.get("type") == "object" and isinstance(schema.get("properties"), dict), (name, schema)
        assert not {"allOf", "oneOf", "anyOf", "$ref", "$defs", "definitions"} & set(schema), (name, schema)
        assert "$ref" not in json.dumps(schema), (name, schema)


# --- the documents ----------------------------------------------------------------------------------


def test_the_whole_document_validates_and_lists_every_tool(face):
    document = face.document()
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": face.gw.base}]
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "A token from `mcp-gateway token create`"}
    assert document["security"] == [{"bearer": []}]
    ops = operations(document)
    # Exactly the tools the MCP face lists to this token, each under its server's path.
    assert set(ops) == listed(face.gw, face.gw.token, "tools/list")
    assert HOUSE_TOOLS <= set(ops) and set(WEATHER_ANSWERS) <= set(ops)
    assert len([n for n in ops if not n.split("__")[0] in SERVERS]) == 230, "the seed's tools"
    for name, (path, op) in ops.items():
        server = name.split("__")[0] if name.split("__")[0] in SERVERS else "seed"
        assert path == f"/openapi/{server}/{name}", (name, path)
        assert op["responses"] == {"200": {"$ref": "#/components/responses/Result"}, "default": {"$ref": "#/components/responses/Error"}}
    assert ops["house__set_lights"][1]["description"] == "Switch the lights of a room on or off."
    assert set(body_schema(ops["weather__add"][1])["required"]) == {"a", "b"}
    assert_flat(document)


@pytest.mark.parametrize("server", [*SERVERS, "seed"])
def test_each_server_document_validates_with_paths_relative_to_its_base(face, server):
    whole = operations(face.document())
    document = face.document(f"/openapi/{server}/openapi.json")
    validate(document)
    assert document["servers"] == [{"url": f"{face.gw.base}/openapi/{server}"}]
    ops = operations(document)
    assert ops, server
    for name, (path, op) in ops.items():
        # The user enters http://host:port/openapi/<server>; Open WebUI appends the path.
        assert path == f"/{name}", (server, path)
        assert f"/openapi/{server}{path}" == whole[name][0]
        assert op == whole[name][1]
    expected = {n for n, (p, _) in whole.items() if p.startswith(f"/openapi/{server}/")}
    assert set(ops) == expected
    assert_flat(document)


def test_schemas_pass_through_but_for_the_flattening(face):
    ops = operations(face.document("/openapi/rich/openapi.json"))
    listed_tools = {t["name"]: t for t in tools_of(face)}
    for name, (_, op) in ops.items():
        original = listed_tools[name]["inputSchema"]
        if "$ref" not in json.dumps(original) and not {"allOf", "anyOf", "oneOf"} & set(original):
            expected = {k: v for k, v in original.items() if k not in ("$schema", "$id")}
            expected.setdefault("properties", {})
            if not expected.get("required"):
                expected.pop("required", None)
            assert body_schema(op) == expected, name


def tools_of(face: Face) -> list[dict[str, Any]]:
    from test_access import rpc

    message = rpc(face.gw, face.gw.token, "tools/list")
    return message["result"]["tools"]


def test_schemas_open_api_runners_choke_on_are_flattened(face):
    ops = operations(face.document("/openapi/shaped/openapi.json"))
    pick = body_schema(ops["shaped__pick"][1])
    assert list(pick["properties"]) == ["limit", "id", "kind", "name"]
    assert pick["properties"]["id"] == {"type": "string", "pattern": "^[0-9]+$"}
    assert pick["properties"]["kind"] == {"enum": ["lamp", "door"]}
    assert pick["required"] == ["kind"]  # the one name both alternatives require
    assert "(id, kind) or (name, kind)" in pick["description"]
    merge = body_schema(ops["shaped__merge"][1])
    assert merge["properties"] == {"room": {"type": "string"}, "on": {"type": "boolean"}}
    assert merge["required"] == ["room", "on"] and merge["type"] == "object"
    node = body_schema(ops["shaped__tree"][1])["properties"]["node"]
    assert node["properties"]["children"] == {"type": "array", "items": {}}  # the cycle, cut
    # Calls are still checked against the tool's own schema: what the flattening loosened holds.
    cases = [
        ("shaped__pick", {"id": "12", "kind": "lamp", "limit": 2}, None),
        ("shaped__pick", {"name": "desk", "kind": "door"}, None),
        ("shaped__pick", {"kind": "lamp"}, "oneOf"),
        ("shaped__pick", {"id": "12", "name": "desk", "kind": "lamp"}, "oneOf"),
        ("shaped__pick", {"id": "x12", "kind": "lamp"}, "oneOf"),
        ("shaped__merge", {"room": "hall", "on": True}, None),
        ("shaped__merge", {"room": "hall"}, "on"),
        ("shaped__tree", {"node": {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}}, None),
        ("shaped__tree", {"node": {"name": "a", "children": [{"children": []}]}}, "/node/children/0"),
    ]
    for name, arguments, refusal in cases:
        r = face.post(f"/openapi/shaped/{name}", arguments)
        if refusal is None:
            assert r.status_code == 200, (name, arguments, r.text)
            assert r.json() == arguments, (name, r.text)  # the tool got exactly these
        else:
            assert_error(r, 422, "invalid_arguments", refusal)


# --- calls ------------------------------------------------------------------------------------------


def test_every_house_operation_runs_with_a_valid_body(face):
    ops = operations(face.document("/openapi/house/openapi.json"))
    assert set(ops) == HOUSE_TOOLS
    for name, (path, op) in sorted(ops.items()):
        original = name.removeprefix("house__")
        arguments = sample(body_schema(op))
        mark = face.house.mark()
        r = face.post(f"/openapi/house{path}", arguments)
        if original == "delete_scene":  # confirm: this face cannot ask the user
            assert_error(r, 409, "confirmation_required", "confirm")
            assert face.house.tool_calls(original, mark) == []
            continue
        assert face.house.tool_calls(original, mark, **arguments), (name, arguments, face.house.since(mark), r.text)
        if original == "broken_reader":  # the tool ran and reported an error
            assert_error(r, 400, "tool_error", "broken_reader")
            continue
        assert r.status_code == 200, (name, r.status_code, r.text)
        # The SDK gives a function's return value as structuredContent {"result": ...} too.
        assert r.headers["content-type"].startswith("application/json"), r.headers
        assert isinstance(r.json()["result"], str), (name, r.text)
    r = face.post("/openapi/house/house__set_lights", {"room": "hall", "on": False})
    assert r.json() == {"result": "The hall lights are now off."}


def test_every_weather_operation_answers_as_the_tool_does(face):
    ops = operations(face.document("/openapi/weather/openapi.json"))
    assert set(ops) == set(WEATHER_ANSWERS)
    for name, (arguments, answer) in WEATHER_ANSWERS.items():
        r = face.post(f"/openapi/weather/{name}", arguments)
        assert r.status_code == 200, (name, r.text)
        assert r.headers["content-type"].startswith("application/json")  # structuredContent
        assert r.json() == answer


def test_invalid_bodies_get_a_clear_error_and_the_tool_never_runs(face):
    ops = operations(face.document("/openapi/house/openapi.json"))
    for name, (path, op) in sorted(ops.items()):
        original = name.removeprefix("house__")
        schema = body_schema(op)
        url = f"/openapi/house{path}"
        mark = face.house.mark()
        assert_error(face.post(url, content=b"{not json"), 400, "invalid_body", "JSON")
        assert_error(face.post(url, content=b"[1, 2]"), 400, "invalid_body", "JSON object")
        assert_error(face.post(url, content=b'"kitchen"'), 400, "invalid_body", "JSON object")
        for missing in schema.get("required", []):
            arguments = sample(schema)
            del arguments[missing]
            body = assert_error(face.post(url, arguments), 422, "invalid_arguments", missing)
            assert body["violations"], body
            arguments = {**sample(schema), missing: wrong(schema["properties"][missing])}
            body = assert_error(face.post(url, arguments), 422, "invalid_arguments", f"/{missing}")
            assert any(v["pointer"] == f"/{missing}" for v in body["violations"]), body
        assert face.house.tool_calls(original, mark) == [], name
    weather = operations(face.document("/openapi/weather/openapi.json"))
    for name, (arguments, _) in WEATHER_ANSWERS.items():
        properties = body_schema(weather[name][1])["properties"]
        for key in arguments:
            r = face.post(f"/openapi/weather/{name}", {**arguments, key: wrong(properties[key])})
            assert_error(r, 422, "invalid_arguments", key)


def test_wrong_paths_and_methods(face):
    assert_error(face.post("/openapi/weather/weather__nope", {}), 404, "unknown_tool", "weather__nope")
    # A tool only under its own server's path.
    assert_error(face.post("/openapi/house/weather__add", {"a": 1, "b": 2}), 404, "unknown_tool", "/openapi.json")
    assert_error(face.post("/openapi/nobody/weather__add", {"a": 1, "b": 2}), 404, "unknown_tool")
    assert_error(face.get("/openapi/nobody/openapi.json"), 404, "not_found", "nobody")
    assert_error(face.get("/openapi"), 404, "not_found", "/openapi.json")
    # A URL entered with a trailing slash, joined with a path that starts with one.
    assert face.get("//openapi.json").headers["etag"] == face.get("/openapi.json").headers["etag"]
    assert face.post("/openapi/weather//weather__add", {"a": 1, "b": 2}).json() == {"result": 3}
    r = face.get("/openapi/weather/weather__add")
    assert_error(r, 405, "method_not_allowed", "POST")
    assert r.headers["allow"] == "POST"
    r = face.post("/openapi.json", {})
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"


def test_content_other_than_text_is_named_and_structured_content_is_json(face):
    r = face.post("/openapi/rich/rich__image", {})
    assert r.status_code == 200, r.text
    assert r.text == "[image content (image/png) not shown]"
    r = face.post("/openapi/rich/rich__structured", {"city": "Lyon"})
    assert r.status_code == 200 and r.json()["city"] == "Lyon" and r.json()["wind"]["direction"] == "NW", r.text
    r = face.post("/openapi/rich/rich__text", {})  # no structuredContent: the text
    assert r.headers["content-type"].startswith("text/plain") and r.text == "plain text from rich"
    assert_error(face.post("/openapi/rich/rich__failing", {}), 400, "tool_error")
    r = face.post("/openapi/gateway/gateway__status", content=b"")  # no body: no arguments
    assert r.status_code == 200 and r.json()["tools"] >= 230, r.text
    # A tool that asks the user (elicitation) cannot get an answer through this face.
    assert_error(face.post("/openapi/rich/rich__ask_user", {}), 409, "input_required", "elicitation")
    r = face.post("/openapi/everything/everything__echo", {"message": "hi"})
    assert r.status_code == 200 and "hi" in r.text, r.text


# --- access -----------------------------------------------------------------------------------------


def test_a_forbidden_tool_is_absent_from_the_document_and_refused(face):
    kid = unique("kids")
    token = create_token(face.gw, kid, "--server", "house", "--deny", "*unlock*")
    ops = operations(face.document(token=token))
    assert "house__unlock" not in ops and "weather__add" not in ops
    assert HOUSE_TOOLS - {"house__unlock"} <= set(ops)
    assert not [n for n in ops if n.split("__")[0] not in ("house", "gateway")], sorted(ops)
    assert set(operations(face.document("/openapi/house/openapi.json", token))) == HOUSE_TOOLS - {"house__unlock"}
    assert_error(face.get("/openapi/weather/openapi.json", token), 404, "not_found")
    mark = face.house.mark()
    since = len(audit_lines(face.gw))
    assert_error(face.post("/openapi/house/house__unlock", {"door": "front"}, token), 403, "forbidden", "deny")
    assert face.house.tool_calls("unlock", mark) == []
    refused = wait_audit(face.gw, since, lambda l: l.get("name") == "house__unlock" and l.get("principal") == kid)
    assert [(l["face"], l["outcome"], l["arguments"]) for l in refused] == [("openapi", "refused", {"door": "front"})]
    assert_error(face.post("/openapi/weather/weather__add", {"a": 1, "b": 2}, token), 403, "forbidden")
    # The token's own tools run.
    r = face.post("/openapi/house/house__lights_status", {"room": "attic"}, token)
    assert r.status_code == 200 and r.json() == {"result": "The attic lights are off."}
    ran = wait_audit(face.gw, since, lambda l: l.get("name") == "house__lights_status" and l.get("principal") == kid)
    assert [(l["face"], l["outcome"]) for l in ran] == [("openapi", "ok")]


def test_without_a_valid_token_401(face):
    mark = face.house.mark()
    for r in (face.get("/openapi.json", None), face.get("/openapi/house/openapi.json", None),
              face.post("/openapi/house/house__set_lights", {"room": "hall", "on": True}, None)):
        body = assert_error(r, 401, "unauthorized", "Bearer")
        assert r.headers["www-authenticate"].startswith("Bearer "), r.headers
        assert "token" in body["message"]
    r = face.get("/openapi.json", "mgw_not-a-real-token")
    assert_error(r, 401, "unauthorized", "not valid")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert face.house.tool_calls("set_lights", mark) == []


def test_over_the_request_limit_429_in_this_face(tmp_path: Path):
    limits = {"principal_requests_per_minute": 60, "principal_burst": 2}
    with support.running_gateway(tmp_path, [], limits=limits) as gw:
        token = gw.create_token("fresh")  # (the harness's own token spent some of its burst)
        answers = [httpx2.post(f"{gw.base}/openapi/gateway/gateway__status", headers=gw.auth(token), content=b"{}", timeout=10)
                   for _ in range(3)]
        assert [r.status_code for r in answers[:2]] == [200, 200]
        body = assert_error(answers[2], 429, "rate_limited", "principal_requests_per_minute")
        assert int(answers[2].headers["retry-after"]) >= 1, body


# --- caching ----------------------------------------------------------------------------------------


def test_etag_and_if_none_match(face):
    first = face.get("/openapi.json")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"'), etag
    assert "no-cache" in first.headers["cache-control"]
    again = face.get("/openapi.json")
    assert again.headers["etag"] == etag and again.content == first.content
    for tag in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = face.get("/openapi.json", **{"If-None-Match": tag})
        assert r.status_code == 304, (tag, r.status_code)
        assert r.content == b"" and r.headers["etag"] == etag
    assert face.get("/openapi.json", **{"If-None-Match": '"stale"'}).status_code == 200
    own = face.get("/openapi/weather/openapi.json")
    assert own.headers["etag"] != etag
    assert face.get("/openapi/weather/openapi.json", **{"If-None-Match": own.headers["etag"]}).status_code == 304
    # Another access rule, another document.
    token = create_token(face.gw, unique("weather-only"), "--server", "weather")
    narrow = face.get("/openapi.json", token)
    assert narrow.headers["etag"] != etag
    assert face.get("/openapi.json", token, **{"If-None-Match": etag}).status_code == 200


def wait_for_document(face: Face, present: bool, name: str) -> httpx2.Response:
    deadline = time.monotonic() + LIST_CHANGE_TIMEOUT
    while True:
        r = face.get("/openapi.json")
        if (name in operations(r.json())) == present:
            return r
        assert time.monotonic() < deadline, f"{name} {'never appeared' if present else 'never went'}"
        time.sleep(0.2)


def test_the_document_follows_the_catalog(face):
    dynamic = "changing__dynamic"
    before = face.get("/openapi.json")
    assert dynamic not in operations(before.json())
    r = face.post("/openapi/changing/changing__toggle_tool", {})
    assert r.status_code == 200 and r.text == "dynamic added", r.text
    after = wait_for_document(face, True, dynamic)
    assert after.headers["etag"] != before.headers["etag"]
    assert face.get("/openapi.json", **{"If-None-Match": before.headers["etag"]}).status_code == 200
    validate(after.json())
    own = operations(face.document("/openapi/changing/openapi.json"))
    assert own[dynamic][0] == "/changing__dynamic"
    assert face.post("/openapi/changing/changing__dynamic", {}).text == "here"
    assert face.post("/openapi/changing/changing__toggle_tool", {}).text == "dynamic removed"
    gone = wait_for_document(face, False, dynamic)
    assert gone.headers["etag"] == before.headers["etag"]  # the same tools: the same document
    assert_error(face.post("/openapi/changing/changing__dynamic", {}), 404, "unknown_tool")


def wait_for_servers(face: Face, url: str) -> None:
    deadline = time.monotonic() + LIST_CHANGE_TIMEOUT
    while face.document()["servers"] != [{"url": url}]:
        assert time.monotonic() < deadline, f"servers never became {url}"
        time.sleep(0.2)


def test_servers_come_from_public_url(face):
    """Behind a TLS proxy the documents name the public URL (Open WebUI itself ignores
    `servers`; other OpenAPI clients use it). Set and removed by a reload (SIGHUP)."""
    assert face.gw.proc is not None
    public = "https://gw.example.net"
    try:
        edit_config(face.gw, lambda c: c.update({"public_url": public}))
        os.kill(face.gw.proc.pid, signal.SIGHUP)
        wait_for_servers(face, public)
        document = face.document("/openapi/weather/openapi.json")
        assert document["servers"] == [{"url": f"{public}/openapi/weather"}]
        validate(document)
    finally:
        edit_config(face.gw, lambda c: c.pop("public_url", None))
        os.kill(face.gw.proc.pid, signal.SIGHUP)
    wait_for_servers(face, face.gw.base)


# --- CORS -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/openapi.json", "/openapi/house/openapi.json", "/openapi/weather/weather__add"])
def test_cors_preflight_for_the_configured_origin_only(face, path):
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
    r = httpx2.options(face.gw.base + path, headers={"Origin": ORIGIN, **ask}, timeout=10)
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = httpx2.options(face.gw.base + path, headers={"Origin": OTHER_ORIGIN, **ask}, timeout=10)
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers


def test_cors_headers_on_answers(face):
    assert face.get("/openapi.json", Origin=ORIGIN).headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in face.get("/openapi.json", Origin=OTHER_ORIGIN).headers
    r = face.post("/openapi/weather/weather__add", {"a": 1, "b": 1}, Origin=ORIGIN)
    assert r.json() == {"result": 2} and r.headers["access-control-allow-origin"] == ORIGIN
    r = face.get("/openapi.json", None, Origin=ORIGIN)  # the browser must be able to read the 401
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == ORIGIN


# --- Open WebUI 0.12.4, replayed --------------------------------------------------------------------


def load_capture() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CAPTURE.read_text().splitlines() if line.strip()]


def test_the_capture_is_what_we_think_it_is():
    captured = load_capture()
    assert [(e["method"], e["path"]) for e in captured] == [("GET", "/openapi.json")] * 4 + [("POST", "/add")]
    assert captured[-1]["body"] == {"a": 2, "b": 40}


def open_webui_tools(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What Open WebUI makes of a document: one tool per operation with an operationId, its
    parameters the request body schema's top-level properties."""
    tools = {}
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            if not op.get("operationId"):
                continue
            schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            tools[op["operationId"]] = {"path": path, "method": method,
                                        "description": op.get("description", op.get("summary")),
                                        "properties": schema.get("properties", {}), "required": schema.get("required", [])}
    return tools


@pytest.mark.parametrize("base", ["", "/openapi/weather"], ids=["whole", "per-server"])
def test_open_webui_requests_replayed(face, base):
    """The user entered http://host:port (whole) or http://host:port/openapi/weather; Open WebUI
    fetches {url}/openapi.json, then POSTs {url}{path} with the arguments."""
    tools: dict[str, dict[str, Any]] = {}
    for entry in load_capture():
        headers = {k: v for k, v in entry["headers"].items() if k.lower() not in ("host", "content-length")}
        headers["Authorization"] = f"Bearer {face.gw.token}"
        if entry["method"] == "GET":
            r = httpx2.get(face.gw.base + base + entry["path"], headers=headers, timeout=30)
            assert r.status_code == entry["status_seen"], (r.status_code, r.text[:500])
            tools = open_webui_tools(r.json())
            add = tools["weather__add"]
            assert add["method"] == "post" and set(add["properties"]) == {"a", "b"} and set(add["required"]) == {"a", "b"}
            assert add["description"] == "Add two integers."
        else:
            # The capture's `add` is our weather__add; the path is the one our document gives.
            path = tools["weather__add"]["path"]
            r = httpx2.post(face.gw.base + base + path, headers=headers,
                            content=json.dumps(entry["body"]).encode(), timeout=30)
            assert r.status_code == entry["status_seen"], (r.status_code, r.text[:500])
            assert r.json() == {"result": 42}
