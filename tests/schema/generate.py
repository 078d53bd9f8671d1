"""Builds tests/schema/pairs.json: (schema, instance, verdict) triples for the differential test
of the gateway's argument validator (src/policy/schema.rs) against the `jsonschema` package.

Usage (from the repository root, with the test venv of .ci/setup):

    .venv/bin/python tests/schema/generate.py            # rewrite tests/schema/pairs.json
    .venv/bin/python tests/schema/generate.py --check    # exit 1 if pairs.json is not up to date
    .venv/bin/python tests/schema/generate.py --capture  # first refresh tests/schema/sources/

The schemas are real MCP tools' `inputSchema`s, kept in tests/schema/sources/ (a fresh clone has
everything it needs; `--capture` refreshes them from where they come from):

- seed-tools.json: the 231 tools of the seed's household (Home Assistant, TrueNAS, ERPNext and
  Frappe MCP servers), copied from ../shared/fixtures/seed-tools/tools.json;
- server-everything.json: `tools/list` of @modelcontextprotocol/server-everything
  (tests/node_modules), over stdio with the official Python SDK client;
- sdk-fixtures.json: `tools/list` of this repository's Python fixture servers
  (tests/interop/fixtures/*.py), over the SDK's in-memory transport;

plus a few hand-written schemas shaped like real tools (SYNTHETIC below) for the keywords real
tools rarely use (pattern, oneOf, not, if/then/else, $ref recursion, ...).

A schema is kept only when every keyword in it is one the validator claims
(SUPPORTED_KEYWORDS and IGNORED_KEYWORDS in src/policy/schema.rs, plus vendor `x-` keys), minus
the compatibility forms whose meaning Draft 2020-12 changed (array `items`, `additionalItems`,
`dependencies`, boolean `exclusiveMinimum`/`exclusiveMaximum`). Identical schemas are kept once.

For each schema it generates valid instances, then systematically mutated ones: wrong types,
missing required properties, extra properties, numbers on and beyond their bounds, strings and
arrays one too short or too long (in code points: non-ASCII characters too), values outside an
enum, nulls, pattern mismatches, duplicates, nested changes. The verdict recorded is
`Draft202012Validator(schema).is_valid(instance)` from `jsonschema` (no format checker:
`format` is an annotation in 2020-12).

Python's `re` is not ECMA-262 (`\\d`, `\\w`, `\\s`, `\\b` are Unicode-aware there, `$` also matches
before a final newline): strings checked against a `pattern` are kept to printable ASCII, where
the two agree.

Deterministic: a fixed seed, no dependence on hash order; the output is written one schema and
one pair per line.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SOURCES = HERE / "sources"
OUT = HERE / "pairs.json"
VALIDATOR_RS = REPO / "src" / "policy" / "schema.rs"
SEED = 18
MAX_PAIRS_REAL = 50
MAX_PAIRS_SYNTHETIC = 90

# --- capture -------------------------------------------------------------------------------------


def capture() -> None:
    """Refreshes tests/schema/sources/ from the seed fixtures, server-everything and the SDK
    fixture servers."""
    import anyio

    SOURCES.mkdir(exist_ok=True)
    seed = REPO.parent / "shared" / "fixtures" / "seed-tools" / "tools.json"
    if seed.is_file():
        tools = json.loads(seed.read_text())
        write_source("seed-tools.json", "../shared/fixtures/seed-tools/tools.json", tools)
    else:
        print(f"note: {seed} missing: seed-tools.json kept as it is", file=sys.stderr)

    async def listed() -> None:
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        everything = REPO / "tests" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
        params = StdioServerParameters(command="node", args=[str(everything), "stdio"], cwd=str(REPO / "tests"))
        async with Client(params, read_timeout_seconds=30) as client:
            tools = [dump(t) for t in (await client.list_tools()).tools]
        write_source("server-everything.json", "@modelcontextprotocol/server-everything over stdio (tools/list)", tools)

        sys.path.insert(0, str(REPO / "tests" / "interop" / "fixtures"))
        sys.dont_write_bytecode = True
        import importlib

        fixtures = []
        for module in ["weather_server", "notes_server", "rich_server", "changing_server", "llama_house"]:
            server = importlib.import_module(module).mcp
            async with Client(server) as client:
                for t in (await client.list_tools()).tools:
                    entry = dump(t)
                    entry["name"] = f"{module}/{entry['name']}"
                    fixtures.append(entry)
        write_source("sdk-fixtures.json", "tests/interop/fixtures/*.py over the SDK's in-memory transport (tools/list)", fixtures)

    anyio.run(listed)


def dump(tool: Any) -> dict[str, Any]:
    return {"name": tool.name, "inputSchema": tool.model_dump(by_alias=True, exclude_none=True)["inputSchema"]}


def write_source(name: str, origin: str, tools: list[dict[str, Any]]) -> None:
    kept = [{"name": t["name"], "inputSchema": t["inputSchema"]} for t in tools]
    lines = [json.dumps({"name": t["name"], "inputSchema": t["inputSchema"]}, ensure_ascii=False) for t in kept]
    text = '{"origin": ' + json.dumps(origin) + ',\n "tools": [\n  ' + ",\n  ".join(lines) + "\n ]}\n"
    (SOURCES / name).write_text(text)
    print(f"{name}: {len(kept)} tools", file=sys.stderr)


# --- which schemas ---------------------------------------------------------------------------------


def keyword_lists() -> tuple[set[str], set[str]]:
    """SUPPORTED_KEYWORDS and IGNORED_KEYWORDS, read from the validator's source."""
    text = VALIDATOR_RS.read_text()
    out = []
    for name in ["SUPPORTED_KEYWORDS", "IGNORED_KEYWORDS"]:
        m = re.search(r"pub const " + name + r": &\[&str\] = &\[(.*?)\];", text, re.S)
        if m is None:
            raise SystemExit(f"{name} not found in {VALIDATOR_RS}")
        out.append(set(re.findall(r'"([^"]*)"', m.group(1))))
    return out[0], out[1]


SCHEMA_MAPS = ["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"]
SCHEMA_ONE = ["items", "additionalProperties", "contains", "propertyNames", "not", "if", "then", "else",
              "unevaluatedProperties", "unevaluatedItems"]
SCHEMA_LISTS = ["allOf", "anyOf", "oneOf", "prefixItems"]
# Forms the validator accepts for older drafts, whose meaning in Draft 2020-12 differs.
COMPAT_ONLY = {"additionalItems", "dependencies"}


def why_excluded(schema: Any, supported: set[str], ignored: set[str]) -> str | None:
    """Why the differential test cannot use `schema`; None when it can."""
    problems: list[str] = []

    def walk(s: Any, at: str) -> None:
        if isinstance(s, bool):
            return
        if not isinstance(s, dict):
            problems.append(f"{at}: not a schema")
            return
        for k, v in s.items():
            if k in COMPAT_ONLY:
                problems.append(f"{at}: {k} (older drafts only)")
            elif k in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(v, bool):
                problems.append(f"{at}: boolean {k} (Draft 4)")
            elif k == "items" and isinstance(v, list):
                problems.append(f"{at}: array items (older drafts)")
            elif k == "$ref" and not (isinstance(v, str) and (v == "#" or v.startswith("#/"))):
                problems.append(f"{at}: non-local $ref")
            elif k == "$id" and at != "":
                problems.append(f"{at}: nested $id")
            elif k not in supported and k not in ignored and not k.startswith("x-"):
                problems.append(f"{at}: unknown keyword {k}")
        for k in SCHEMA_MAPS:
            if isinstance(s.get(k), dict):
                for name, sub in s[k].items():
                    walk(sub, f"{at}/{k}/{name}")
        for k in SCHEMA_ONE:
            if k in s and not isinstance(s[k], list):
                walk(s[k], f"{at}/{k}")
        for k in SCHEMA_LISTS:
            if isinstance(s.get(k), list):
                for i, sub in enumerate(s[k]):
                    walk(sub, f"{at}/{k}/{i}")

    walk(schema, "")
    return "; ".join(problems) if problems else None


# --- hand-written schemas ------------------------------------------------------------------------

# Strings known to match (first list) and not to match (second) each pattern used below.
PATTERN_SAMPLES: dict[str, tuple[list[str], list[str]]] = {
    r"^[a-z_]+\.[a-z0-9_]+$": (["light.kitchen", "sensor.outdoor_temp_2"], ["Light.Kitchen", "light kitchen", "light.", "kitchen", ""]),
    r"^\d{4}-\d{2}-\d{2}$": (["2026-03-01"], ["2026-3-1", "01-03-2026", "2026-03-01T10:00", "abcd-ef-gh"]),
    r"^#?[0-9a-fA-F]{6}$": (["#ff8800", "00FFaa"], ["#ff880", "ff8800ff", "#gg8800"]),
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$": (["1.2.3", "0.10.0-rc.1"], ["1.2", "01.2.3", "1.2.3-", "v1.2.3"]),
    r"^[a-z0-9]+(?:-[a-z0-9]+)*$": (["my-repo", "a1"], ["My-Repo", "-repo", "repo-", "my--repo", "my_repo"]),
    r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$": (["ada@example.org"], ["ada@example", "ada example.org", "@example.org", "a@b@c.org"]),
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$": (["123e4567-e89b-12d3-a456-426614174000"], ["123e4567e89b12d3a456426614174000", "123E4567-E89B-12D3-A456-426614174000"]),
    r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$": (["192.168.1.20", "10.0.0.1"], ["256.1.1.1", "192.168.1", "192.168.01.1x", "1.2.3.4.5"]),
    r"^(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d)?$": (["07:30", "23:59:59"], ["24:00", "7:30", "07:60", "07:30:"]),
    r"^/": (["/mnt/tank/media"], ["mnt/tank", "tank/"]),
    r"\.(?:jpe?g|png|gif)$": (["photo.jpg", "a.b.jpeg", "x.png"], ["photo.JPG", "photo.jpg.txt", "png"]),
    r"^[A-Z]{2,4}-\d{5}$": (["SINV-00001", "SO-12345"], ["SINV-0001", "sinv-00001", "SINVXX-00001"]),
    r"^\S+$": (["no-spaces"], ["has space", "tab\there", ""]),
    r"^[\w.-]{1,64}$": (["tank.media-01"], ["tank/media", "a" * 65, ""]),
    r"^x-[a-z]+$": (["x-custom"], ["x-", "X-custom", "custom"]),
    r"^[a-z][a-z0-9_]*$": (["brightness", "rgb_color"], ["Brightness", "9lives", "rgb-color"]),
    r"colou?r": (["color", "the colour red"], ["colr", "COLOR"]),
    r"^(?:on|off|toggle)$": (["on", "toggle"], ["ON", "onoff", "of"]),
    r"\bcat\b": (["a cat sat", "cat"], ["concatenate", "cats"]),
    r"^[A-Za-z0-9+/]*={0,2}$": (["aGVsbG8=", ""], ["aGVsbG8===", "a b"]),
}

# (name, schema, extra instances: valid or not, the verdict is jsonschema's)
SYNTHETIC: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("ha/light_turn_on", {
        "type": "object",
        "properties": {
            "entity_id": {"type": "string", "pattern": r"^[a-z_]+\.[a-z0-9_]+$"},
            "brightness": {"type": "integer", "minimum": 0, "maximum": 255},
            "rgb_color": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}, "minItems": 3, "maxItems": 3},
            "hex_color": {"type": "string", "pattern": r"^#?[0-9a-fA-F]{6}$"},
            "transition": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 300}, {"type": "null"}], "default": None},
            "color_name": {"anyOf": [{"type": "string", "enum": ["red", "green", "blue", "warm_white"]}, {"type": "null"}], "default": None},
        },
        "required": ["entity_id"],
        "additionalProperties": False,
    }, [{"entity_id": "light.kitchen", "rgb_color": [255, 128, 0]}, {"entity_id": "light.kitchen", "rgb_color": [255, 128]}]),
    ("ha/automation_trigger", {
        "type": "object",
        "properties": {
            "trigger": {"oneOf": [
                {"type": "object", "properties": {"platform": {"const": "time"}, "at": {"type": "string", "pattern": r"^(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d)?$"}}, "required": ["platform", "at"], "additionalProperties": False},
                {"type": "object", "properties": {"platform": {"const": "state"}, "entity_id": {"type": "string", "pattern": r"^[a-z_]+\.[a-z0-9_]+$"}, "to": {"type": ["string", "null"]}}, "required": ["platform", "entity_id"], "additionalProperties": False},
                {"type": "object", "properties": {"platform": {"const": "numeric_state"}, "entity_id": {"type": "string"}, "above": {"type": "number"}, "below": {"type": "number"}}, "required": ["platform", "entity_id"], "anyOf": [{"required": ["above"]}, {"required": ["below"]}]},
            ]},
            "mode": {"enum": ["single", "restart", "queued", "parallel"], "default": "single"},
        },
        "required": ["trigger"],
    }, [
        {"trigger": {"platform": "time", "at": "07:30"}},
        {"trigger": {"platform": "state", "entity_id": "light.kitchen", "to": None}},
        {"trigger": {"platform": "numeric_state", "entity_id": "sensor.t", "above": 20}},
        {"trigger": {"platform": "numeric_state", "entity_id": "sensor.t"}},
        {"trigger": {"platform": "time", "at": "07:30", "extra": 1}},
        {"trigger": {"platform": "sunrise"}},
    ]),
    ("ha/schedule_with_refs", {
        "$defs": {
            "time": {"type": "string", "pattern": r"^(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d)?$"},
            "day": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
            "slot": {"type": "object", "properties": {"from": {"$ref": "#/$defs/time"}, "to": {"$ref": "#/$defs/time"}, "days": {"type": "array", "items": {"$ref": "#/$defs/day"}, "uniqueItems": True, "minItems": 1}}, "required": ["from", "to"], "additionalProperties": False},
        },
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 32}, "slots": {"type": "array", "items": {"$ref": "#/$defs/slot"}, "maxItems": 4}},
        "required": ["name", "slots"],
    }, [
        {"name": "weekday", "slots": [{"from": "07:00", "to": "08:30", "days": ["mon", "tue"]}]},
        {"name": "dup", "slots": [{"from": "07:00", "to": "08:30", "days": ["mon", "mon"]}]},
        {"name": "bad", "slots": [{"from": "7:00", "to": "08:30"}]},
    ]),
    ("ha/area_tree_recursive", {
        "definitions": {
            "area": {"type": "object", "properties": {"name": {"type": "string"}, "floor": {"type": "integer", "minimum": -5, "maximum": 100}, "children": {"type": "array", "items": {"$ref": "#/definitions/area"}}}, "required": ["name"], "additionalProperties": False},
        },
        "$ref": "#/definitions/area",
    }, [
        {"name": "house", "children": [{"name": "ground", "floor": 0, "children": [{"name": "kitchen"}]}, {"name": "attic", "floor": 2}]},
        {"name": "house", "children": [{"name": "ground", "children": [{"name": 3}]}]},
        {"name": "house", "children": [{"name": "ground", "children": [{"name": "x", "floor": 1.5}]}]},
        {"name": "house", "children": [{"children": []}]},
    ]),
    ("github/create_release", {
        "type": "object",
        "properties": {
            "owner": {"type": "string", "pattern": r"^[a-z0-9]+(?:-[a-z0-9]+)*$"},
            "repo": {"type": "string", "pattern": r"^[a-z0-9]+(?:-[a-z0-9]+)*$"},
            "tag": {"type": "string", "pattern": r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?$"},
            "draft": {"type": "boolean", "default": False},
            "prerelease": {"type": "boolean"},
            "assets": {"type": "array", "items": {"type": "string", "pattern": r"\.(?:jpe?g|png|gif)$"}, "uniqueItems": True, "maxItems": 3},
        },
        "required": ["owner", "repo", "tag"],
        "additionalProperties": False,
        "if": {"properties": {"prerelease": {"const": True}}, "required": ["prerelease"]},
        "then": {"properties": {"tag": {"pattern": "-"}}},
        "else": {"properties": {"draft": {"const": False}}},
    }, [
        {"owner": "acme", "repo": "my-repo", "tag": "1.2.3-rc.1", "prerelease": True},
        {"owner": "acme", "repo": "my-repo", "tag": "1.2.3", "prerelease": True},
        {"owner": "acme", "repo": "my-repo", "tag": "1.2.3", "draft": True},
        {"owner": "acme", "repo": "my-repo", "tag": "1.2.3", "assets": ["a.png", "b.jpg"]},
    ]),
    ("truenas/create_dataset", {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": r"^[\w.-]{1,64}$"},
            "pool": {"type": "string", "minLength": 1},
            "mountpoint": {"type": "string", "pattern": r"^/"},
            "quota_gib": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5},
            "recordsize_kib": {"enum": [4, 8, 16, 32, 64, 128, 256, 512, 1024]},
            "compression": {"enum": ["off", "lz4", "gzip", "zstd", None]},
            "options": {"type": "object", "patternProperties": {r"^x-[a-z]+$": {"type": "string"}}, "additionalProperties": False, "maxProperties": 3},
        },
        "required": ["name", "pool"],
        "dependentRequired": {"quota_gib": ["mountpoint"]},
    }, [
        {"name": "media", "pool": "tank", "mountpoint": "/mnt/tank/media", "quota_gib": 1.5},
        {"name": "media", "pool": "tank", "quota_gib": 10},
        {"name": "media", "pool": "tank", "recordsize_kib": 128.0},
        {"name": "media", "pool": "tank", "options": {"x-owner": "ada", "x-team": "b"}},
        {"name": "media", "pool": "tank", "options": {"owner": "ada"}},
        {"name": "media", "pool": "tank", "options": {"x-a": "1", "x-b": "2", "x-c": "3", "x-d": "4"}},
    ]),
    ("truenas/network_config", {
        "type": "object",
        "properties": {
            "ipv4": {"type": "string", "pattern": r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"},
            "netmask": {"type": "integer", "minimum": 0, "maximum": 32},
            "mtu": {"type": "integer", "minimum": 576, "maximum": 9216, "default": 1500},
            "dns": {"type": "array", "items": {"type": "string", "pattern": r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$"}, "maxItems": 3, "uniqueItems": True},
            "dhcp": {"type": "boolean"},
        },
        "oneOf": [{"required": ["dhcp"], "properties": {"dhcp": {"const": True}}}, {"required": ["ipv4", "netmask"]}],
    }, [
        {"dhcp": True},
        {"ipv4": "192.168.1.20", "netmask": 24},
        {"dhcp": True, "ipv4": "192.168.1.20", "netmask": 24},
        {"dhcp": False},
        {},
    ]),
    ("erpnext/create_invoice", {
        "type": "object",
        "properties": {
            "customer": {"type": "string", "minLength": 1, "maxLength": 140},
            "posting_date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$", "format": "date"},
            "currency": {"type": "string", "enum": ["EUR", "USD", "GBP", "CHF"]},
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 5,
                "items": {
                    "type": "object",
                    "properties": {
                        "item_code": {"type": "string", "minLength": 1},
                        "qty": {"type": "number", "exclusiveMinimum": 0},
                        "rate": {"type": "number", "minimum": 0, "multipleOf": 0.01},
                        "discount_percentage": {"type": "number", "minimum": 0, "exclusiveMaximum": 100},
                    },
                    "required": ["item_code", "qty"],
                    "additionalProperties": False,
                },
            },
            "against": {"type": "string", "pattern": r"^[A-Z]{2,4}-\d{5}$"},
            "is_return": {"type": "boolean", "default": False},
        },
        "required": ["customer", "items"],
        "dependentSchemas": {"is_return": {"required": ["against"]}},
    }, [
        {"customer": "Acme", "items": [{"item_code": "WIDGET", "qty": 2, "rate": 19.99}]},
        {"customer": "Acme", "items": [{"item_code": "WIDGET", "qty": 2, "rate": 19.999}]},
        {"customer": "Acme", "items": [{"item_code": "WIDGET", "qty": 1, "rate": 0.1}, {"item_code": "GADGET", "qty": 3, "rate": 0.07}]},
        {"customer": "Acme", "is_return": True, "items": [{"item_code": "W", "qty": 1}]},
        {"customer": "Acme", "is_return": True, "against": "SINV-00001", "items": [{"item_code": "W", "qty": 1}]},
    ]),
    ("erpnext/report_filters", {
        "type": "object",
        "properties": {
            "report": {"type": "string"},
            "filters": {
                "type": "object",
                "propertyNames": {"pattern": r"^[a-z][a-z0-9_]*$", "maxLength": 20},
                "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
                "minProperties": 1,
            },
            "columns": {"type": "array", "items": {"type": "string"}, "contains": {"const": "name"}, "maxContains": 1},
        },
        "required": ["report"],
    }, [
        {"report": "General Ledger", "filters": {"company": "Acme", "from_date": "2026-01-01", "is_cancelled": False}},
        {"report": "General Ledger", "filters": {"Company": "Acme"}},
        {"report": "General Ledger", "filters": {"a_very_long_filter_name_x": 1}},
        {"report": "General Ledger", "filters": {"company": ["Acme"]}},
        {"report": "General Ledger", "columns": ["name", "posting_date"]},
        {"report": "General Ledger", "columns": ["posting_date"]},
        {"report": "General Ledger", "columns": ["name", "name"]},
    ]),
    ("fs/write_file", {
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1, "not": {"pattern": r"\.\."}},
            "content": {"type": "string", "maxLength": 12},
            "encoding": {"enum": ["utf-8", "base64"], "default": "utf-8"},
            "mode": {"type": "integer", "minimum": 0, "maximum": 511},
        },
        "required": ["path", "content"],
        "additionalProperties": False,
        "if": {"properties": {"encoding": {"const": "base64"}}, "required": ["encoding"]},
        "then": {"properties": {"content": {"pattern": r"^[A-Za-z0-9+/]*={0,2}$"}}},
    }, [
        {"path": "notes/today.md", "content": "hello"},
        {"path": "../etc/passwd", "content": "x"},
        {"path": "img.bin", "content": "aGVsbG8=", "encoding": "base64"},
        {"path": "img.bin", "content": "not base64!", "encoding": "base64"},
        {"path": "img.bin", "content": "ééééééééééé"},
        {"path": "img.bin", "content": "éééééééééééé"},
        {"path": "img.bin", "content": "😀😀😀😀😀😀😀😀😀😀😀😀😀"},
    ]),
    ("search/query", {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 2, "maxLength": 200},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
            "offset": {"type": "integer", "minimum": 0, "multipleOf": 10},
            "sort": {"type": "array", "prefixItems": [{"enum": ["relevance", "date", "name"]}, {"enum": ["asc", "desc"]}], "items": False},
            "tags": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z0-9]+(?:-[a-z0-9]+)*$"}, "uniqueItems": True},
            "match": {"type": "string", "pattern": r"colou?r"},
            "word": {"type": "string", "pattern": r"\bcat\b"},
        },
        "required": ["query"],
        "minProperties": 1,
        "maxProperties": 5,
    }, [
        {"query": "heating", "sort": ["date", "desc"]},
        {"query": "heating", "sort": ["date"]},
        {"query": "heating", "sort": ["date", "desc", "extra"]},
        {"query": "heating", "sort": ["size", "desc"]},
        {"query": "heating", "limit": 10.0, "offset": 20},
        {"query": "heating", "offset": 25},
        {"query": "heating", "tags": ["a", "b", "a"]},
        {"query": "heating", "limit": 1, "offset": 0, "tags": [], "sort": []},
        {"query": "heating", "limit": 1, "offset": 0, "tags": [], "sort": [], "match": "colour"},
    ]),
    ("mixed/values", {
        "type": "object",
        "properties": {
            "flag": {"enum": [1, "1", True, None, [1, 2], {"a": 1}]},
            "exact": {"const": {"k": [1, 2.0, "x"]}},
            "zero": {"const": 0},
            "falsy": {"const": False},
            "num_or_str": {"type": ["number", "string"], "minimum": 1, "minLength": 2},
            "big": {"type": "integer", "maximum": 9007199254740993},
            "tiny": {"type": "number", "multipleOf": 0.001, "maximum": 1},
            "bag": {"type": "array", "uniqueItems": True},
            "anything": True,
            "nothing": False,
        },
        "additionalProperties": {"not": {"type": "null"}},
    }, [
        {"flag": 1.0}, {"flag": True}, {"flag": 2}, {"flag": "1"}, {"flag": [1, 2.0]}, {"flag": [2, 1]}, {"flag": {"a": 1.0}}, {"flag": {"a": True}},
        {"exact": {"k": [1.0, 2, "x"]}}, {"exact": {"k": [1, 2]}},
        {"zero": 0.0}, {"zero": False}, {"falsy": 0}, {"falsy": False},
        {"num_or_str": 0.5}, {"num_or_str": "a"}, {"num_or_str": "ab"}, {"num_or_str": 1},
        {"big": 9007199254740993}, {"big": 9007199254740994}, {"big": 9007199254740992.0},
        {"tiny": 0.123}, {"tiny": 0.1234}, {"tiny": 1}, {"tiny": 0.3},
        {"bag": [1, "1", True, 1.5]}, {"bag": [1, 1.0]}, {"bag": [True, 1]}, {"bag": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}, {"bag": [[1, 2], [1, 2.0]]}, {"bag": [0, False, None, ""]},
        {"anything": {"x": [None]}}, {"nothing": None}, {"extra": None}, {"extra": 0},
    ]),
    ("mixed/unevaluated", {
        "type": "object",
        "properties": {"kind": {"enum": ["user", "group"]}},
        "required": ["kind"],
        "allOf": [{"if": {"properties": {"kind": {"const": "user"}}}, "then": {"properties": {"email": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"}}, "required": ["email"]}, "else": {"properties": {"members": {"type": "array", "items": {"type": "string"}, "minItems": 1}}}}],
        "unevaluatedProperties": False,
    }, [
        {"kind": "user", "email": "ada@example.org"},
        {"kind": "user", "email": "ada@example.org", "members": ["x"]},
        {"kind": "group", "members": ["ada"]},
        {"kind": "group", "members": ["ada"], "email": "ada@example.org"},
        {"kind": "user", "email": "ada"},
    ]),
    ("mixed/unevaluated_items", {
        "type": "array",
        "prefixItems": [{"type": "string"}],
        "anyOf": [{"prefixItems": [True, {"type": "integer"}]}, {"contains": {"type": "boolean"}}],
        "unevaluatedItems": {"type": "null"},
    }, [["a", 1], ["a", 1, None], ["a", 1, 2], ["a", True, None], ["a", "b", True], ["a", "b"], ["a"]]),
    ("mixed/uuid_ids", {
        "type": "object",
        "properties": {
            "ids": {"type": "array", "items": {"type": "string", "pattern": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}, "minItems": 1, "maxItems": 2},
            "state": {"type": "string", "pattern": r"^(?:on|off|toggle)$"},
            "label": {"type": "string", "pattern": r"^\S+$"},
            "field": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*$"},
            "date": {"allOf": [{"type": "string"}, {"pattern": r"^\d{4}-\d{2}-\d{2}$"}, {"not": {"const": "0000-00-00"}}]},
        },
    }, [{"date": "0000-00-00"}, {"date": "2026-01-01"}]),
]


def synthetic_sources(rng: random.Random) -> list[tuple[str, Any, list[Any]]]:
    out = [(f"synthetic/{name}", schema, extra) for name, schema, extra in SYNTHETIC]
    # Each pattern alone, on its samples and on random edits of them (printable ASCII only).
    for i, (pattern, (good, bad)) in enumerate(PATTERN_SAMPLES.items()):
        strings = good + bad
        for _ in range(40):
            strings.append(edit(rng.choice(good + bad), rng))
        out.append((f"synthetic/pattern-{i}", {"type": "string", "pattern": pattern}, strings))
    return out


def edit(s: str, rng: random.Random) -> str:
    """`s` with one to three random edits: a character dropped, doubled, changed or inserted."""
    alphabet = "aZ09_.-:/@#+= xX"
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(4)
        i = rng.randrange(len(s) + 1)
        if kind == 0 and s:
            i = min(i, len(s) - 1)
            s = s[:i] + s[i + 1:]
        elif kind == 1 and s:
            i = min(i, len(s) - 1)
            s = s[:i] + s[i] + s[i:]
        elif kind == 2 and s:
            i = min(i, len(s) - 1)
            s = s[:i] + rng.choice(alphabet + s) + s[i + 1:]
        else:
            s = s[:i] + rng.choice(alphabet + s) + s[i:]
    return "".join(c for c in s if " " <= c <= "~")


# --- instances -----------------------------------------------------------------------------------


def resolve(ref: str, root: Any) -> Any:
    from urllib.parse import unquote

    target = root
    frag = unquote(ref[1:])
    if frag:
        for part in frag.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target[int(part)] if isinstance(target, list) else target[part]
    return target


def deref(s: Any, root: Any) -> Any:
    for _ in range(10):
        if isinstance(s, dict) and "$ref" in s and len([k for k in s if k not in ("$ref", "description", "title", "default")]) == 0:
            s = resolve(s["$ref"], root)
        else:
            break
    if isinstance(s, dict) and "$ref" in s:
        merged = dict(resolve(s["$ref"], root))
        merged.update({k: v for k, v in s.items() if k != "$ref"})
        return merged
    return s


def declared_types(s: Any) -> list[str]:
    if not isinstance(s, dict):
        return []
    t = s.get("type")
    if isinstance(t, str):
        return [t]
    if isinstance(t, list):
        return list(t)
    if "properties" in s or "required" in s or "additionalProperties" in s:
        return ["object"]
    if "items" in s or "prefixItems" in s:
        return ["array"]
    if "minLength" in s or "maxLength" in s or "pattern" in s:
        return ["string"]
    if any(k in s for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return ["number"]
    return []


def has_pattern(s: Any) -> bool:
    return isinstance(s, dict) and ("pattern" in s or any(isinstance(b, dict) and "pattern" in b for b in s.get("allOf", [])))


def pattern_of(s: Any) -> str | None:
    if not isinstance(s, dict):
        return None
    if "pattern" in s:
        return s["pattern"]
    for b in s.get("allOf", []):
        if isinstance(b, dict) and "pattern" in b:
            return b["pattern"]
    return None


class Gen:
    def __init__(self, root: Any, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        # Chance that valid() fills in an optional property.
        self.optional = 0.5

    def valid(self, s: Any, depth: int = 0) -> Any:
        """A value meant to be valid under `s` (jsonschema has the last word)."""
        s = deref(s, self.root)
        if s is True or s == {} or not isinstance(s, dict):
            return "anything"
        if s is False:
            return None
        if depth > 6:
            return None
        if "const" in s:
            return copy.deepcopy(s["const"])
        if "enum" in s and s["enum"]:
            return copy.deepcopy(s["enum"][0])
        for key in ("anyOf", "oneOf"):
            if key in s:
                branches = [deref(b, self.root) for b in s[key]]
                non_null = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
                base = {k: v for k, v in s.items() if k not in ("anyOf", "oneOf")}
                pick = non_null[0] if non_null else branches[0]
                if isinstance(pick, dict):
                    return self.valid({**pick, **{k: v for k, v in base.items() if k not in pick}}, depth + 1)
                return self.valid(pick, depth + 1)
        if "allOf" in s:
            merged = {k: v for k, v in s.items() if k != "allOf"}
            for b in s["allOf"]:
                b = deref(b, self.root)
                if isinstance(b, dict):
                    for k, v in b.items():
                        merged.setdefault(k, v)
            return self.valid(merged, depth + 1)
        if "examples" in s and isinstance(s["examples"], list) and s["examples"]:
            return copy.deepcopy(s["examples"][0])
        types = [t for t in declared_types(s) if t != "null"] or declared_types(s) or ["string"]
        t = types[0]
        if t == "object":
            out: dict[str, Any] = {}
            props = s.get("properties", {}) if isinstance(s.get("properties"), dict) else {}
            required = [r for r in s.get("required", []) if isinstance(r, str)]
            for name in required:
                out[name] = self.valid(props.get(name, True), depth + 1)
            for name, sub in props.items():
                if name not in out and self.rng.random() < self.optional:
                    out[name] = self.valid(sub, depth + 1)
            for name, needs in (s.get("dependentRequired") or {}).items():
                if name in out:
                    for need in needs:
                        out.setdefault(need, self.valid(props.get(need, True), depth + 1))
            return out
        if t == "array":
            prefix = s.get("prefixItems", [])
            items = s.get("items", True)
            n = max(s.get("minItems", 0), len(prefix), 1 if items is not False else 0)
            n = min(n, s.get("maxItems", n))
            out_list = []
            for i in range(n):
                sub = prefix[i] if i < len(prefix) else items
                v = self.valid(sub, depth + 1)
                if s.get("uniqueItems") and v in out_list:
                    v = self.distinct(sub, out_list, depth)
                out_list.append(v)
            if "contains" in s:
                c = self.valid(s["contains"], depth + 1)
                if c not in out_list:
                    out_list.append(c)
            return out_list
        if t == "string":
            p = pattern_of(s)
            if p is not None:
                return PATTERN_SAMPLES[p][0][0]
            n = max(s.get("minLength", 0), min(5, s.get("maxLength", 5)))
            return "value"[:n] if n <= 5 else "v" * n
        if t in ("integer", "number"):
            lo = s.get("minimum", s.get("exclusiveMinimum"))
            hi = s.get("maximum", s.get("exclusiveMaximum"))
            m = s.get("multipleOf")
            v: Any = 1
            if lo is not None:
                v = int(lo) + 1
            if hi is not None and v >= hi:
                v = int(hi) - 1 if t == "integer" else (hi + (lo if lo is not None else hi - 2)) / 2
            if m is not None:
                v = m * max(1, round(v / m)) if isinstance(m, int) else round(m * max(1, round(v / m)), 10)
            return v
        if t == "boolean":
            return True
        return None

    def distinct(self, sub: Any, taken: list[Any], depth: int) -> Any:
        s = deref(sub, self.root)
        if isinstance(s, dict):
            for option in s.get("enum", []):
                if option not in taken:
                    return copy.deepcopy(option)
            p = pattern_of(s)
            if p is not None:
                for option in PATTERN_SAMPLES[p][0]:
                    if option not in taken:
                        return option
            if "integer" in declared_types(s) or "number" in declared_types(s):
                return len(taken) + 2
        return f"value{len(taken)}"


# A few values of every JSON type, for type mutations.
SAMPLES: list[Any] = [None, True, False, 0, 7, -3, 1.5, 2.0, "", "x", "light.kitchen", [], ["x"], [1, 2], {}, {"k": 1}]


def type_of(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def variants_here(g: Gen, s: Any, value: Any, ascii_only: bool) -> list[Any]:
    """Replacement values for one location under subschema `s`."""
    s = deref(s, g.root)
    if not isinstance(s, dict):
        return [None, 1, "x"]
    out: list[Any] = []
    types = declared_types(s)
    # Wrong (and right) types.
    for v in SAMPLES:
        t = type_of(v)
        fits = not types or t in types or (t == "integer" and "number" in types)
        if fits or g.rng.random() < 0.7:
            out.append(v)
    out.append(None)
    if "enum" in s:
        for option in s["enum"]:
            out.append(copy.deepcopy(option))
            if isinstance(option, str):
                out.append(option.upper())
                out.append(option + "_x")
            if isinstance(option, (int, float)) and not isinstance(option, bool):
                out.append(option + 0.5)
                out.append(float(option))
        out.append("not_a_member")
    if "const" in s:
        out.append(copy.deepcopy(s["const"]))
        out.append("something else")
    for key in ("anyOf", "oneOf"):
        for b in s.get(key, []):
            out.append(g.valid(b))
    if "allOf" in s:
        out.append(g.valid(s))
    # Numbers.
    for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        m = s.get(k)
        if isinstance(m, (int, float)) and not isinstance(m, bool):
            out += [m, m - 1, m + 1, m - 0.5, m + 0.5, float(m)]
    m = s.get("multipleOf")
    if isinstance(m, (int, float)) and not isinstance(m, bool):
        out += [m * 3, m * 3 + m / 2, float(m * 2), m * 7]
    if "integer" in types:
        out += [3, 3.0, 3.5, -0.0]
    # Strings.
    p = pattern_of(s)
    if p is not None:
        good, bad = PATTERN_SAMPLES[p]
        out += good + bad + ["", "ABC", "a b", "123", "a.b"]
    for k in ("minLength", "maxLength"):
        n = s.get(k)
        if isinstance(n, int):
            for length in (n - 1, n, n + 1):
                if length >= 0:
                    out.append("a" * length)
                    if not ascii_only and p is None:
                        out.append("é" * length)
                        out.append("😀" * length)
    # Arrays.
    if "array" in types:
        item_schema = s.get("items", True)
        prefix = s.get("prefixItems", [])
        good_item = g.valid(prefix[0] if prefix else item_schema)
        out.append([])
        for k in ("minItems", "maxItems"):
            n = s.get(k)
            if isinstance(n, int):
                for length in (n - 1, n, n + 1):
                    if 0 <= length <= 20:
                        out.append([g.distinct(item_schema, [], 0) if i == 0 else g.distinct(item_schema, [None] * i, 0) for i in range(length)])
        if isinstance(value, list) and value:
            out.append(value + [copy.deepcopy(value[0])])
            out.append(value + [None])
            out.append([value[0], value[0]])
        out.append([good_item, good_item])
        out.append([1, "1"])
    # Objects.
    if "object" in types:
        out.append({})
        if isinstance(value, dict):
            out.append({**value, "unexpected_extra": "x"})
            out.append({**value, "UNEXPECTED": None})
    return out


def set_at(root: Any, path: list[Any], value: Any) -> Any:
    if not path:
        return copy.deepcopy(value)
    out = copy.deepcopy(root)
    at = out
    for p in path[:-1]:
        at = at[p]
    at[path[-1]] = copy.deepcopy(value)
    return out


def delete_at(root: Any, path: list[Any]) -> Any:
    out = copy.deepcopy(root)
    at = out
    for p in path[:-1]:
        at = at[p]
    del at[path[-1]]
    return out


def mutations(g: Gen, schema: Any, base: Any) -> list[Any]:
    """Instances derived from the valid `base` by changing one location at a time."""
    out: list[Any] = []

    def walk(s: Any, value: Any, path: list[Any], depth: int) -> None:
        if depth > 5:
            return
        s = deref(s, g.root)
        if not isinstance(s, dict):
            return
        ascii_only = has_pattern(s) or "propertyNames" in s or "patternProperties" in s
        for v in variants_here(g, s, value, ascii_only):
            out.append(set_at(base, path, v))
        subs = [s] + [deref(b, g.root) for k in ("anyOf", "oneOf", "allOf") for b in s.get(k, [])]
        for sub in subs:
            if not isinstance(sub, dict):
                continue
            if isinstance(value, dict):
                props = sub.get("properties") if isinstance(sub.get("properties"), dict) else {}
                for name in [r for r in sub.get("required", []) if isinstance(r, str)]:
                    if name in value:
                        out.append(delete_at(base, path + [name]))
                for name, ps in props.items():
                    if name in value:
                        walk(ps, value[name], path + [name], depth + 1)
                        if name not in sub.get("required", []):
                            out.append(delete_at(base, path + [name]))
                    elif depth < 3:
                        # Add an optional property: a valid value and a few wrong ones.
                        added = g.valid(ps)
                        out.append(set_at(base, path + [name], added))
                        with_it = set_at(base, path + [name], added)
                        for v in variants_here(g, ps, added, has_pattern(deref(ps, g.root))):
                            out.append(set_at(with_it, path + [name], v))
                if isinstance(sub.get("patternProperties"), dict):
                    for pattern in sub["patternProperties"]:
                        good, bad = PATTERN_SAMPLES[pattern]
                        for key in good[:1] + bad[:2]:
                            out.append(set_at(base, path + [key], "v"))
                            out.append(set_at(base, path + [key], 1))
                if "propertyNames" in sub:
                    for key in ["ok_name", "Bad", "9x", "a_very_long_filter_name_x"]:
                        out.append(set_at(base, path + [key], "v"))
            if isinstance(value, list) and value:
                prefix = sub.get("prefixItems", [])
                for i in sorted({0, len(value) - 1}):
                    item_schema = prefix[i] if i < len(prefix) else sub.get("items")
                    if item_schema is not None and item_schema is not False:
                        walk(item_schema, value[i], path + [i], depth + 1)

    walk(schema, base, [], 0)
    return out


# --- output ------------------------------------------------------------------------------------


def build() -> str:
    import jsonschema
    from jsonschema import Draft202012Validator

    supported, ignored = keyword_lists()
    rng = random.Random(SEED)

    candidates: list[tuple[str, Any, list[Any]]] = []
    for name in ["seed-tools.json", "server-everything.json", "sdk-fixtures.json"]:
        data = json.loads((SOURCES / name).read_text())
        family = name.removesuffix(".json")
        for tool in data["tools"]:
            candidates.append((f"{family}/{tool['name']}", tool["inputSchema"], []))
    candidates += synthetic_sources(rng)

    schemas: list[dict[str, Any]] = []
    pairs: list[tuple[int, Any, bool]] = []
    seen_schemas: dict[str, int] = {}
    excluded: list[tuple[str, str]] = []
    for source, schema, extra in candidates:
        why = why_excluded(schema, supported, ignored)
        if why is None:
            try:
                Draft202012Validator.check_schema(schema)
            except jsonschema.exceptions.SchemaError as e:
                why = f"invalid schema: {e.message}"
        if why is not None:
            excluded.append((source, why))
            continue
        key = json.dumps(schema, sort_keys=True)
        if key in seen_schemas:
            continue
        index = len(schemas)
        seen_schemas[key] = index
        schemas.append({"source": source, "schema": schema})

        validator = Draft202012Validator(schema)
        g = Gen(schema, rng)
        bases = []
        for chance in (0.5, 0.0, 1.0, 0.5, 0.3):
            g.optional = chance
            bases.append(g.valid(schema))
        g.optional = 0.5
        bases += [copy.deepcopy(e) for e in extra]
        instances: list[Any] = []
        for base in bases:
            instances.append(base)
        for base in bases[:3] + [e for e in extra if validator.is_valid(e)]:
            instances += mutations(g, schema, base)
        instances += extra
        unique: list[Any] = []
        seen: set[str] = set()
        for inst in instances:
            k = json.dumps(inst, sort_keys=True)
            if k not in seen:
                seen.add(k)
                unique.append(inst)
        cap = MAX_PAIRS_SYNTHETIC if source.startswith("synthetic/") else MAX_PAIRS_REAL
        verdicts = [validator.is_valid(inst) for inst in unique]
        if len(unique) > cap:
            # As many valid as invalid instances where there are enough: the valid ones on a
            # boundary (a maximum, a length, 3.0 for an integer, null for an optional) catch a
            # validator that refuses too much.
            good = [i for i, v in enumerate(verdicts) if v]
            bad = [i for i, v in enumerate(verdicts) if not v]
            take_good = min(len(good), cap // 2)
            take_bad = min(len(bad), cap - take_good)
            keep = set(rng.sample(good, take_good)) | set(rng.sample(bad, take_bad))
            # The hand-written extras are always kept.
            keep |= {i for i, inst in enumerate(unique) if inst in extra}
            unique, verdicts = [unique[i] for i in sorted(keep)], [verdicts[i] for i in sorted(keep)]
        for inst, verdict in zip(unique, verdicts):
            pairs.append((index, inst, verdict))

    valid = sum(1 for _, _, v in pairs if v)
    by_family: dict[str, int] = {}
    for idx, _, _ in pairs:
        family = schemas[idx]["source"].split("/")[0]
        by_family[family] = by_family.get(family, 0) + 1
    print(f"{len(schemas)} schemas, {len(pairs)} pairs ({valid} valid, {len(pairs) - valid} invalid); by source: {by_family}", file=sys.stderr)
    for source, why in excluded:
        print(f"excluded {source}: {why}", file=sys.stderr)

    lines = ["{"]
    lines.append(f' "generator": "tests/schema/generate.py (seed {SEED})",')
    lines.append(f' "validator": "jsonschema {jsonschema_version()} Draft202012Validator.is_valid, no format checker",')
    lines.append(' "schemas": [')
    lines.append(",\n".join("  " + json.dumps(s, ensure_ascii=False) for s in schemas))
    lines.append(" ],")
    lines.append(' "pairs": [')
    lines.append(",\n".join("  " + json.dumps([i, inst, v], ensure_ascii=False) for i, inst, v in pairs))
    lines.append(" ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def jsonschema_version() -> str:
    from importlib.metadata import version

    return version("jsonschema")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", action="store_true", help="refresh tests/schema/sources/ first")
    parser.add_argument("--check", action="store_true", help="exit 1 if pairs.json is not what this would write")
    args = parser.parse_args()
    if args.capture:
        capture()
    text = build()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is not up to date: run {Path(__file__).name}", file=sys.stderr)
            raise SystemExit(1)
        print(f"{OUT} is up to date", file=sys.stderr)
        return
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.encode())} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
