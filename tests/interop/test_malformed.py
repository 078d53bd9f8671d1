"""Bad input (issue 21, item 3): thousands of malformed requests against every face, and the
gateway still serves normally afterwards.

The corpus is generated here, deterministically (a seeded `random.Random` plus hand-written
cases), never stored: broken and deeply nested JSON, wrong JSON-RPC shapes, bad `Mcp-*` headers
and forged session and event ids on `/mcp`; broken chat requests on `/v1`; bad parameters on
every OAuth endpoint; wrong methods, content types and paths; huge bodies and heads; and HTTP
framing that only a raw socket can send (invalid UTF-8 in the head, broken chunked bodies,
conflicting lengths). Every request goes over a raw socket, so no client library tidies it up;
well-formed ones share keep-alive connections, a few threads at a time.

Every answer must arrive within a bound, never be a 5xx, and be a clear error in its face's
protocol: a JSON-RPC error object (code and message) on `/mcp`, an OpenAI `{"error": {...}}` on
`/v1`, an RFC 6749 `{"error": ...}` on the OAuth JSON endpoints, an error page or an error
redirect on `/oauth/authorize`, a 4xx elsewhere. A JSON-RPC error in an HTTP 200 body counts
as a protocol error; a request that happens to be valid may get a proper success. The one 5xx
allowed is 505 for a request line that claims HTTP/2 or HTTP/3 (RFC 9110 §15.6.6: the status
for exactly that). Afterwards `/health` is ok, a tool call works, the process is alive with a
sane thread count and RSS, its metrics count no 5xx, and its stderr holds no panic.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import pytest

import support

SEED = 20260721
MAX_BODY = 1024 * 1024  # limits.max_body_bytes of this module's gateway
REQUEST_TIMEOUT_MS = 3000  # limits.request_timeout_ms and io_timeout_ms of this module's gateway
ANSWER_TIMEOUT = 20.0  # per request: far above what any of them needs, even on a busy machine
THREADS = 3  # client threads (the gateway has 16 workers, see `gw`)
MIN_TOTAL = 2000

MISSING = object()  # a key left out of a generated JSON object


# --- raw HTTP -----------------------------------------------------------------------------------


def b(x: str | bytes) -> bytes:
    return x if isinstance(x, bytes) else x.encode("utf-8")


Headers = list[tuple[str | bytes, str | bytes]]


def http(
    method: str | bytes,
    target: str | bytes,
    headers: Headers = (),  # type: ignore[assignment]
    body: bytes = b"",
    *,
    port: int,
    length: bool = True,
    version: str | bytes = "HTTP/1.1",
    host: bool = True,
) -> bytes:
    """One request's bytes: the request line, `Host` (unless `host` is false), `headers` as
    given, a `Content-Length` for the body (unless `length` is false or a
    `Transfer-Encoding`/`Content-Length` is among `headers`), then the body."""
    names = {b(k).lower() for k, _ in headers}
    out = [b(method) + b" " + b(target) + b" " + b(version)]
    if host:
        out.append(f"Host: 127.0.0.1:{port}".encode())
    out += [b(k) + b": " + b(v) for k, v in headers]
    if length and b"transfer-encoding" not in names and b"content-length" not in names and (body or b(method) == b"POST"):
        out.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(out) + b"\r\n\r\n" + body


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float
    closes: bool  # the server ends the connection after this answer

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def text(self, limit: int = 300) -> str:
        return self.body[:limit].decode("utf-8", "replace")


class NoAnswer(Exception):
    """The connection ended, or the deadline passed, before a whole answer arrived."""


class Reader:
    """Reads HTTP/1.1 answers from one socket, with a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NoAnswer(f"no whole answer within {ANSWER_TIMEOUT}s")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise NoAnswer(f"no whole answer within {ANSWER_TIMEOUT}s") from None
        except OSError as e:
            raise NoAnswer(f"connection error: {e}") from None
        if not data:
            raise NoAnswer("the connection closed")
        self.buf += data

    def _line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buf:
            self._more(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._more(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def answer(self, method: bytes, started: float) -> Answer:
        deadline = started + ANSWER_TIMEOUT
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._more(deadline)
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise NoAnswer(f"not an HTTP answer: {lines[0][:200]!r}")
            status = int(parts[1])
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.decode("latin-1").partition(":")
                key = name.strip().lower()
                headers[key] = (headers[key] + ", " if key in headers else "") + value.strip()
            if status != 100:
                break
        closes = "close" in headers.get("connection", "").lower()
        if method == b"HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked(deadline, "text/event-stream" in headers.get("content-type", ""))
            if body is None:  # a stream that stays open: we stop reading, so the connection ends
                return Answer(status, headers, self._stream_part, time.monotonic() - started, True)
        elif "content-length" in headers:
            body = self._exactly(int(headers["content-length"]), deadline)
        else:
            body = b""
            closes = True
            try:
                while True:
                    self._more(deadline)
            except NoAnswer as e:
                if "closed" not in str(e):
                    raise
            body, self.buf = self.buf, b""
        return Answer(status, headers, body, time.monotonic() - started, closes)

    def _chunked(self, deadline: float, stream: bool) -> bytes | None:
        body = b""
        stream_deadline = time.monotonic() + 3.0
        while True:
            size_line = self._line(deadline)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._line(deadline) != b"":
                    pass
                return body
            body += self._exactly(size, deadline)
            self._exactly(2, deadline)
            if stream and b"\n\n" in body and time.monotonic() > stream_deadline:
                self._stream_part = body
                return None


def connect(port: int, source: str | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if source:
        sock.bind((source, 0))
    sock.settimeout(ANSWER_TIMEOUT)
    sock.connect(("127.0.0.1", port))
    return sock


# --- what a clear error looks like, per face ----------------------------------------------------


def is_jsonrpc_error(msg: Any) -> bool:
    err = msg.get("error") if isinstance(msg, dict) else None
    return (
        isinstance(msg, dict)
        and msg.get("jsonrpc") == "2.0"
        and "id" in msg
        and isinstance(err, dict)
        and isinstance(err.get("code"), int)
        and not isinstance(err.get("code"), bool)
        and isinstance(err.get("message"), str)
        and bool(err["message"])
    )


def is_jsonrpc_result(msg: Any) -> bool:
    return isinstance(msg, dict) and msg.get("jsonrpc") == "2.0" and "id" in msg and isinstance(msg.get("result"), dict)


def sse_messages(body: bytes) -> list[Any]:
    out, data = [], []
    for line in body.decode("utf-8").splitlines() + [""]:
        if line == "":
            if data and "".join(data).strip():
                out.append(json.loads("\n".join(data)))
            data = []
        elif line.startswith("data:"):
            data.append(line[6:] if line[5:6] == " " else line[5:])
    return out


def json_body(a: Answer) -> Any:
    assert "application/json" in a.header("content-type"), f"not JSON: {a.header('content-type')!r} {a.text()!r}"
    return a.json()


def check_mcp(a: Answer) -> None:
    """/mcp: a JSON-RPC error (any 4xx, or 200), a JSON-RPC result, or the transport's own
    answers: 202 (a notification or response taken), 401 with a Bearer challenge, 405 with
    `Allow`."""
    if a.status == 202:
        return
    if a.status == 401:
        assert a.header("www-authenticate").startswith("Bearer"), a.headers
        assert isinstance(json_body(a).get("error"), str)
        return
    if a.status == 405:
        assert a.header("allow"), f"405 without Allow: {a.headers}"
        return
    if a.status == 200 and "text/event-stream" in a.header("content-type"):
        msgs = [m for m in sse_messages(a.body) if isinstance(m, dict) and ("result" in m or "error" in m)]
        assert msgs and (is_jsonrpc_error(msgs[-1]) or is_jsonrpc_result(msgs[-1])), a.text(1000)
        return
    msg = json_body(a)
    if a.status == 200:
        assert is_jsonrpc_error(msg) or is_jsonrpc_result(msg), msg
    else:
        assert is_jsonrpc_error(msg), msg


def is_openai_error(body: Any) -> bool:
    err = body.get("error") if isinstance(body, dict) else None
    return isinstance(err, dict) and isinstance(err.get("message"), str) and bool(err["message"]) and isinstance(err.get("type"), str)


def check_openai(a: Answer) -> None:
    """/v1: an OpenAI error object with a 4xx, or a proper success (a list, a model, a chat
    completion, or a stream of chunks)."""
    if a.status == 204:  # a CORS preflight
        return
    if 200 <= a.status < 300:
        if "text/event-stream" in a.header("content-type"):
            text = a.body.decode("utf-8")
            assert "data:" in text, text[:500]
            return
        body = json_body(a)
        assert body.get("object") in ("list", "model", "chat.completion"), body
        return
    assert is_openai_error(json_body(a)), a.text(500)


def check_openapi(a: Answer) -> None:
    """The OpenAPI face: `{"error", "message"}` with a 4xx (401 with a Bearer challenge, 405 with
    `Allow`), a 304, or a success: a document or a tool's answer (JSON, or its text)."""
    if a.status in (204, 304):  # a CORS preflight; a document not changed
        return
    if a.status == 200:
        if "text/plain" not in a.header("content-type"):
            json_body(a)
        return
    body = json_body(a)
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str) and body["message"], body
    if a.status == 401:
        assert a.header("www-authenticate").startswith("Bearer"), a.headers
    if a.status == 405:
        assert a.header("allow"), f"405 without Allow: {a.headers}"


def check_oauth(a: Answer) -> None:
    """The OAuth JSON endpoints: an RFC 6749 error with a 4xx, or a real registration (201)."""
    if a.status == 204:  # a CORS preflight
        return
    body = json_body(a)
    if a.status == 201:
        assert str(body.get("client_id", "")).startswith("mgwc_") and body.get("redirect_uris"), body
        return
    if a.status == 200:  # discovery metadata, or a revocation (RFC 7009: 200 for any token)
        assert isinstance(body, dict) and ("issuer" in body or "resource" in body or body == {}), body
        return
    assert isinstance(body.get("error"), str) and body["error"], body


def check_page(a: Answer) -> None:
    """/oauth/authorize: an error page (4xx, HTML), an error redirect (`error=` in the
    `Location`), or, for a request that is in fact valid, the consent page."""
    if a.status in (302, 303):
        assert "error=" in a.header("location"), a.headers
        return
    if a.status == 200:
        assert "text/html" in a.header("content-type") and b"csrf_token" in a.body, a.text(500)
        return
    assert 400 <= a.status < 500


def check_owner(a: Answer) -> None:
    """The owner's page (`/`, `/owner/...`): the sign-in page (never the signed-in page: no case
    has a session), or a 4xx HTML page; every answer with the page's security headers."""
    assert "text/html" in a.header("content-type"), a.headers
    assert a.header("x-frame-options") == "DENY" and a.header("content-security-policy").startswith("default-src 'none'"), a.headers
    if a.status == 200:
        assert b"mcp-gateway" in a.body and b"/owner/logout" not in a.body, a.text(500)
        return
    assert 400 <= a.status < 500, a.status


def check_any_4xx(a: Answer) -> None:
    assert 400 <= a.status < 500, a.status


def check_health(a: Answer) -> None:
    assert a.status == 200 and json_body(a)["status"] == "ok", a.text()


CHECKS: dict[str, Callable[[Answer], None]] = {
    "mcp": check_mcp,
    "openai": check_openai,
    "openapi": check_openapi,
    "oauth": check_oauth,
    "page": check_page,
    "owner": check_owner,
    "4xx": check_any_4xx,
    "health": check_health,
}


@dataclass
class Case:
    category: str
    raw: bytes
    expect: str  # a key of CHECKS
    fresh: bool = False  # a connection of its own (framing that may end it)
    source: str | None = None  # the loopback address to send from
    allow_505: bool = False  # a request line with HTTP/2.0 or HTTP/3.0
    send_part: int | None = None  # send only this many bytes (a body announced, not sent)

    @property
    def method(self) -> bytes:
        return self.raw.split(b" ", 1)[0]


# --- the corpus -----------------------------------------------------------------------------------


@dataclass
class Target:
    port: int
    token: str
    client_id: str  # a registered client, for authorization requests that name a real one
    redirect_uri: str


def modern_meta() -> dict[str, Any]:
    return support.modern_meta()


def dumps(obj: Any) -> bytes:
    def strip(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if v is not MISSING}
        if isinstance(o, list):
            return [strip(v) for v in o if v is not MISSING]
        return o

    return json.dumps(strip(obj), separators=(",", ":")).encode()


def mutate(rng: random.Random, body: bytes) -> bytes:
    """One random byte-level damage to a JSON body."""
    junk = [b",", b"}", b"]", b"{", b"[", b'"', b"\\", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", b"NaN", b":", b"\\u12", b"\n", b"1e999999"]
    kind = rng.randrange(5)
    if not body:
        return rng.choice(junk)
    i = rng.randrange(len(body))
    if kind == 0:
        return body[:i]
    if kind == 1:
        return body[:i] + bytes([rng.randrange(256)]) + body[i + 1 :]
    if kind == 2:
        return body[:i] + rng.choice(junk) + body[i:]
    if kind == 3:
        j = min(len(body), i + rng.randrange(1, 12))
        return body[:i] + body[j:]
    j = min(len(body), i + rng.randrange(1, 20))
    return body[:i] + body[i:j] * rng.randrange(2, 5) + body[j:]


class Corpus:
    def __init__(self, t: Target) -> None:
        self.t = t
        self.rng = random.Random(SEED)
        self.cases: list[Case] = []
        self._sources = 0

    def add(self, category: str, raw: bytes, expect: str, **kw: Any) -> None:
        self.cases.append(Case(category, raw, expect, **kw))

    def req(self, method: str | bytes, target: str | bytes, headers: Headers = (), body: bytes = b"", **kw: Any) -> bytes:  # type: ignore[assignment]
        return http(method, target, headers, body, port=self.t.port, **kw)

    def source(self) -> str:
        """A loopback address no other case uses (the registration limit is per address)."""
        self._sources += 1
        n = self._sources
        return f"127.88.{n // 250 % 250}.{n % 250 + 1}"

    # helpers for /mcp
    def auth(self) -> Headers:
        return [("Authorization", f"Bearer {self.t.token}")]

    def modern(self, method: str, name: str | None = None) -> Headers:
        h: Headers = [
            ("Authorization", f"Bearer {self.t.token}"),
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
            ("MCP-Protocol-Version", support.MODERN_VERSION),
            ("Mcp-Method", method),
        ]
        if name is not None:
            h.append(("Mcp-Name", name))
        return h

    def legacy(self) -> Headers:
        return [
            ("Authorization", f"Bearer {self.t.token}"),
            ("Accept", "application/json, text/event-stream"),
            ("Content-Type", "application/json"),
        ]

    def mcp(self, category: str, body: bytes, headers: Headers | None = None, expect: str = "mcp", **kw: Any) -> None:
        self.add(category, self.req("POST", "/mcp", self.modern("tools/list") if headers is None else headers, body), expect, **kw)

    def valid_mcp_bodies(self) -> list[tuple[bytes, Headers]]:
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "weather__add", "arguments": {"a": 2, "b": 40}, "_meta": modern_meta()}}
        return [
            (dumps({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": modern_meta()}}), self.modern("server/discover")),
            (dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": modern_meta()}}), self.modern("tools/list")),
            (dumps(call), self.modern("tools/call", "weather__add")),
            (dumps({"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}), self.legacy()),
        ]

    def build(self) -> list[Case]:
        for part in (
            self.mcp_broken_json,
            self.mcp_deep_nesting,
            self.mcp_jsonrpc_shapes,
            self.mcp_bad_headers,
            self.mcp_sessions_and_events,
            self.mcp_methods_and_types,
            self.bad_auth,
            self.openai_broken,
            self.openai_shapes,
            self.openapi_broken,
            self.oauth_token,
            self.oauth_register,
            self.oauth_authorize,
            self.oauth_other,
            self.owner_page,
            self.other_paths,
            self.http_framing,
            self.invalid_utf8_head,
            self.huge,
        ):
            part()
        return self.cases

    # --- /mcp ---
    def mcp_broken_json(self) -> None:
        cat = "mcp: broken JSON"
        for text in [
            b"", b" ", b"\n", b"{", b"}", b"[", b"]", b"{]", b"null", b"true", b"0", b"-", b'"', b'""', b"nul", b"tru",
            b"{'jsonrpc': '2.0'}", b'{"jsonrpc":"2.0",}', b'{"jsonrpc":"2.0" "id":1}', b'{"a":NaN}', b'{"a":Infinity}',
            b'{"a":-Infinity}', b'{"a":1e999999}', b'{"a":01}', b'{"a":.5}', b'{"a":0x10}', b"/* c */ {}", b"{} // c",
            b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"tools/list"}', b'{"a":"\\ud800"}', b'{"a":"\\uDFFF\\uD800"}',
            b'{"a":"\\x41"}', b'{"a":"\x01"}', b'{"a":"\xff\xfe"}', b'{"a":"\xc0\xaf"}', b'{"a":"\xed\xa0\x80"}',
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}{"jsonrpc":"2.0","id":2,"method":"tools/list"}',
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list"} trailing', b"\x00" * 64, bytes(range(256)),
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":' + b'"' + b"a" * 5000,
        ]:
            self.mcp(cat, text)
        valid = self.valid_mcp_bodies()
        for _ in range(260):
            body, headers = self.rng.choice(valid)
            damaged = body
            for _ in range(self.rng.randrange(1, 4)):
                damaged = mutate(self.rng, damaged)
            self.mcp(cat, damaged, headers)

    def mcp_deep_nesting(self) -> None:
        cat = "deep nesting"
        for depth in (64, 127, 128, 129, 200, 1000, 10_000, 100_000, 400_000):
            self.mcp(cat, b"[" * depth + b"]" * depth)
            self.mcp(cat, b'{"a":' * depth + b"1" + b"}" * depth)
            self.mcp(cat, b"[" * depth)  # never closed
            args = b'{"a":' * depth + b"1" + b"}" * depth
            call = (
                b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"weather__add","arguments":{"a":'
                + args
                + b',"b":1},"_meta":'
                + dumps(modern_meta())
                + b"}}"
            )
            self.mcp(cat, call, self.modern("tools/call", "weather__add"))
            meta = b'{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"_meta":' + b"[" * depth + b"]" * depth + b"}}"
            self.mcp(cat, meta)
            chat = b'{"model":"mcp-gateway","messages":[{"role":"user","content":' + b"[" * depth + b"]" * depth + b"}]}"
            self.add(cat, self.req("POST", "/v1/chat/completions", self.auth() + [("Content-Type", "application/json")], chat), "openai")
            reg = b'{"redirect_uris":["https://x.example/cb"],"client_name":' + b"[" * depth + b"]" * depth + b"}"
            if len(reg) <= 16 * 1024:
                self.add(cat, self.req("POST", "/oauth/register", [("Content-Type", "application/json")], reg), "oauth", source=self.source())

    def mcp_jsonrpc_shapes(self) -> None:
        cat = "mcp: wrong JSON-RPC shapes"
        rng = self.rng
        ids = [1, "a", None, -1, 0, 1.5, 2**63, 2**64, -(2**63) - 1, 10**30, True, [], {}, "", "x" * 1000, MISSING]
        versions = ["2.0", "1.0", 2.0, 2, None, "", ["2.0"], MISSING]
        methods = [
            "tools/list", "tools/call", "server/discover", "resources/list", "resources/read", "resources/templates/list",
            "prompts/list", "prompts/get", "completion/complete", "initialize", "ping", "logging/setLevel",
            "notifications/initialized", "notifications/cancelled", "notifications/progress", "subscriptions/listen",
            "resources/subscribe", "resources/unsubscribe", "sampling/createMessage", "", "x" * 300, "tools/", "/", "rpc.discover",
            "TOOLS/LIST", "tools/list\u0000", "tools\u2215list", 42, None, [], {}, MISSING,
        ]
        metas = [modern_meta(), MISSING, "x", [], {"io.modelcontextprotocol/protocolVersion": 5},
                 {"io.modelcontextprotocol/protocolVersion": "1999-01-01"}, {"io.modelcontextprotocol/protocolVersion": None},
                 {**modern_meta(), "io.modelcontextprotocol/clientCapabilities": "none"}, {**modern_meta(), "progressToken": {}}]
        names = ["weather__add", "weather__forecast", "weather__nope", "", "__", "weather__", "x" * 5000, 7, None, [], MISSING]
        arguments = [{"a": 1, "b": 2}, {"a": "1", "b": 2}, {"a": None}, {}, [], "a=1", 5, None, {"a": [1], "b": {}}, MISSING,
                     {"a": 1e308, "b": -1e308}, {"a": 2**70, "b": 1}, {"city": "\u0000\ud7ff" * 10}]
        params_pool: list[Callable[[], Any]] = [
            lambda: MISSING, lambda: None, lambda: [], lambda: "s", lambda: 1, lambda: {},
            lambda: {"_meta": rng.choice(metas)},
            lambda: {"name": rng.choice(names), "arguments": rng.choice(arguments), "_meta": rng.choice(metas)},
            lambda: {"uri": rng.choice(["weather://cities", "", "file:///etc/passwd", 5, None, "x" * 3000, "\u0000"]), "_meta": rng.choice(metas)},
            lambda: {"ref": rng.choice([{}, {"type": "ref/prompt"}, "x", None]), "argument": rng.choice([{}, {"name": 1}, None]), "_meta": rng.choice(metas)},
            lambda: {"requestId": rng.choice(ids), "reason": rng.choice(["x", 5, None])},
            lambda: {"protocolVersion": rng.choice(["2025-11-25", "", 5, None, "9999-99-99"]), "capabilities": rng.choice([{}, [], None]), "clientInfo": rng.choice([{}, "x", None])},
            lambda: {"cursor": rng.choice(["", "garbage", 5, None, "x" * 2000]), "_meta": rng.choice(metas)},
            lambda: {"requestState": rng.choice(["", "garbage", "mgw1.AAAA", 5, None]), "name": "weather__add", "arguments": {}, "_meta": rng.choice(metas)},
            lambda: {"level": rng.choice(["debug", "loud", 3])},
            lambda: {"notifications": rng.choice([{}, [], "all", None]), "_meta": rng.choice(metas)},
        ]
        for _ in range(520):
            method = rng.choice(methods)
            msg: dict[str, Any] = {"jsonrpc": rng.choice(versions), "id": rng.choice(ids), "method": method, "params": rng.choice(params_pool)()}
            extra = rng.randrange(10)
            if extra == 0:
                msg["result"] = {}
            elif extra == 1:
                msg["error"] = rng.choice([{"code": 1, "message": "x"}, "x", None])
            elif extra == 2:
                msg.pop("method")
                msg["result"] = rng.choice([{}, None, 5])
            header_method = method if isinstance(method, str) and method.isascii() and "\u0000" not in method and method else "tools/list"
            style = rng.randrange(4)
            if style == 0:
                headers = self.legacy()
            elif style == 1:
                headers = self.legacy() + [("MCP-Protocol-Version", rng.choice(["2025-06-18", "2025-03-26", "2024-11-05", "2025-11-25"]))]
            else:
                headers = self.modern(header_method)
            if method == "subscriptions/listen" and isinstance(msg.get("params"), dict) and isinstance(msg["params"].get("notifications"), dict):
                msg["params"]["notifications"] = None  # never a real long-lived stream here
            self.mcp(cat, dumps(msg), headers)
        for top in [[], [1], [{}], [{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}] * 2, "x", 5, None, True, [[]], {"jsonrpc": "2.0"}]:
            self.mcp(cat, json.dumps(top).encode())

    def mcp_bad_headers(self) -> None:
        cat = "mcp: bad Mcp-* headers"
        rng = self.rng
        versions = ["", "2099-01-01", "2026-07-28x", "x" * 4000, "2026-07-28, 2025-11-25", " 2026-07-28", "1", "null",
                    "2025-11-25", "2024-11-05", "2026-13-45", "../../", "2026-07-28\t"]
        call = {"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "weather__add", "arguments": {"a": 1, "b": 2}, "_meta": modern_meta()}}
        listing = {"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"_meta": modern_meta()}}
        for v in versions:
            for body, method, name in ((listing, "tools/list", None), (call, "tools/call", "weather__add")):
                h = [x for x in self.modern(method, name) if x[0] != "MCP-Protocol-Version"] + [("MCP-Protocol-Version", v)]
                self.mcp(cat, dumps(body), h)
        bad_values = ["", "tools/call", "tools/list", "TOOLS/CALL", "x" * 8000, "weather__forecast", "weather__ADD", "a b", "\"", "=?base64?", "=?base64?!!!?=", "=?base64?dG9vbHMvY2FsbA==?="]
        for _ in range(160):
            kind = rng.randrange(5)
            h = self.modern("tools/call", "weather__add")
            if kind == 0:
                h = [x for x in h if x[0] != "Mcp-Method"] + [("Mcp-Method", rng.choice(bad_values))]
            elif kind == 1:
                h = [x for x in h if x[0] != "Mcp-Name"] + [("Mcp-Name", rng.choice(bad_values))]
            elif kind == 2:
                h = [x for x in h if x[0] not in ("Mcp-Name", "Mcp-Method")]
            elif kind == 3:
                h = h + [("Mcp-Method", rng.choice(bad_values)), ("Mcp-Name", rng.choice(bad_values))]  # twice
            else:
                h = h + [(f"Mcp-Param-{rng.choice(['a', 'b', 'A', 'city', 'x' * 200, ''])}", rng.choice(["1", "x", "", "=?base64?AAAA?=", "=?base64?%%%?=", "1e999", "-0"]))]
            self.mcp(cat, dumps(call), h)

    def mcp_sessions_and_events(self) -> None:
        cat = "mcp: forged session and event ids"
        rng = self.rng
        sessions = ["0" * 32, "deadbeef", "", " ", "x" * 10000, "../../etc/passwd", "' OR 1=1 --", "%00", "a\tb", "\u00e9".encode("latin-1"),
                    "mgws_" + "0" * 60, "{}", "null", "-1", "1" * 200]
        events = ["0", "-1", "", "x" * 5000, "1/2", "99999999999999999999999", "abc:def", "s/0", "\t", "0/0/0"]
        listing = dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
        note = dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        response = dumps({"jsonrpc": "2.0", "id": "srv-1", "result": {}})
        for _ in range(150):
            sid = rng.choice(sessions)
            kind = rng.randrange(6)
            sh = ("Mcp-Session-Id", sid)
            # a head that is not ASCII is refused by the HTTP layer (400) before any face sees it
            expect = "mcp" if isinstance(sid, str) else "4xx"
            if kind == 0:
                self.mcp(cat, listing, self.legacy() + [sh, ("MCP-Protocol-Version", "2025-11-25")], expect)
            elif kind == 1:
                self.mcp(cat, note, self.legacy() + [sh], expect)
            elif kind == 2:
                self.mcp(cat, response, self.legacy() + [sh], expect)
            elif kind == 3:
                h = self.auth() + [("Accept", "text/event-stream"), sh, ("Last-Event-ID", rng.choice(events))]
                self.add(cat, self.req("GET", "/mcp", h), expect)
            elif kind == 4:
                self.add(cat, self.req("DELETE", "/mcp", self.auth() + [sh]), expect)
            else:
                h = self.modern("tools/list") + [sh, ("Last-Event-ID", rng.choice(events))]
                self.mcp(cat, dumps({"jsonrpc": "2.0", "id": 8, "method": "tools/list", "params": {"_meta": modern_meta()}}), h, expect)
        self.add(cat, self.req("GET", "/mcp", self.auth() + [("Accept", "text/event-stream"), ("Last-Event-ID", "0")]), "mcp")
        self.add(cat, self.req("DELETE", "/mcp", self.auth()), "mcp")

    def mcp_methods_and_types(self) -> None:
        cat = "wrong methods and content types"
        body = dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": modern_meta()}})
        for method in ["PUT", "PATCH", "OPTIONS", "TRACE", "CONNECT", "FOO", "PROPFIND", "get", "Post"]:
            self.add(cat, self.req(method, "/mcp", self.modern("tools/list"), body), "mcp")
        self.add(cat, self.req("GET", "/mcp", self.auth()), "mcp")
        self.add(cat, self.req("GET", "/mcp", self.auth() + [("Accept", "application/json")]), "mcp")
        self.add(cat, self.req("HEAD", "/mcp", self.auth()), "4xx")
        types = ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
                 "application/json; charset=latin1", "application/json; charset=utf-16", "", "*/*", "application/json, text/html", "x" * 2000]
        accepts = ["", "text/html", "*/*", "application/json", "text/event-stream", "image/png", "x" * 2000, "application/json;q=0"]
        for ctype in types:
            for accept in accepts[:4]:
                h = [x for x in self.modern("tools/list") if x[0] not in ("Content-Type", "Accept")] + [("Content-Type", ctype), ("Accept", accept)]
                self.mcp(cat, body, h)
        for accept in accepts:
            h = [x for x in self.modern("tools/call", "weather__add") if x[0] != "Accept"] + [("Accept", accept)]
            self.mcp(cat, dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "weather__add", "arguments": {"a": 1, "b": 1}, "_meta": modern_meta()}}), h)
        for method in ["PUT", "DELETE", "PATCH", "POST"]:
            self.add(cat, self.req(method, "/v1/models", self.auth(), b"{}"), "openai")
        for method in ["GET", "PUT", "DELETE"]:
            self.add(cat, self.req(method, "/v1/chat/completions", self.auth()), "openai")
        for method in ["GET", "PUT", "DELETE", "PATCH"]:
            for path in ["/oauth/token", "/oauth/register", "/oauth/revoke"]:
                self.add(cat, self.req(method, path), "oauth")
        for method in ["PUT", "DELETE", "PATCH"]:
            self.add(cat, self.req(method, "/oauth/authorize"), "oauth")
            self.add(cat, self.req(method, "/status", self.auth()), "4xx")
            self.add(cat, self.req(method, "/metrics", self.auth()), "4xx")

    def bad_auth(self) -> None:
        cat = "bad credentials"
        tok = self.t.token
        values = ["", "Bearer", "Bearer ", f"Basic {tok}", f"Token {tok}", f"Bearer  {tok}x", f"Bearer {tok[:-1]}", f"Bearer {tok} extra",
                  "Bearer " + "a" * 8000, f"Bearer\t{tok}x", "Bearer mgw_", "Bearer mgw_" + "0" * 64, f"Bearer {tok.upper()}",
                  "Bearer \u0000", f"Bearer {tok}\u0000", "Bearer mgwa_" + "0" * 40, "Bearer " + "%" * 50, "Basic Og==", "Basic !!!"]
        body = dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": modern_meta()}})
        chat = dumps({"model": "mcp-gateway", "messages": [{"role": "user", "content": "hi"}]})
        for v in values:
            h = [x for x in self.modern("tools/list") if x[0] != "Authorization"] + ([("Authorization", v)] if v else [])
            self.mcp(cat, body, h)
            self.add(cat, self.req("POST", "/v1/chat/completions", [("Authorization", v), ("Content-Type", "application/json")], chat), "openai")
            self.add(cat, self.req("GET", "/v1/models", [("Authorization", v)]), "openai")
            self.add(cat, self.req("GET", "/status", [("Authorization", v)]), "4xx")
            self.add(cat, self.req("GET", "/metrics", [("Authorization", v)]), "4xx")
        # two Authorization headers, and no header at all
        self.mcp(cat, body, self.modern("tools/list") + [("Authorization", "Bearer wrong")])
        self.mcp(cat, body, [x for x in self.modern("tools/list") if x[0] != "Authorization"])

    # --- /v1 ---
    def chat(self, body: bytes, headers: Headers | None = None) -> bytes:
        h = self.auth() + [("Content-Type", "application/json")] if headers is None else headers
        return self.req("POST", "/v1/chat/completions", h, body)

    def openai_broken(self) -> None:
        cat = "openai: broken JSON"
        valid = [
            dumps({"model": "mcp-gateway", "messages": [{"role": "user", "content": "what can you do?"}]}),
            dumps({"model": "mcp-gateway", "stream": True, "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hello"}]}),
            dumps({"model": "mcp-gateway", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
        ]
        for text in [b"", b"{", b"[]", b"null", b"5", b'"x"', b"{'model':'x'}", b'{"model":"mcp-gateway",}', b"\xff\xfe{}", b'{"model":"\xc3"}']:
            self.add(cat, self.chat(text), "openai")
        for _ in range(150):
            body = self.rng.choice(valid)
            for _ in range(self.rng.randrange(1, 4)):
                body = mutate(self.rng, body)
            self.add(cat, self.chat(body), "openai")

    def openai_shapes(self) -> None:
        cat = "openai: wrong request shapes"
        rng = self.rng
        models = ["mcp-gateway", "", "nope", 5, None, [], MISSING, "x" * 10000, "../mcp-gateway", "mcp-gateway\u0000"]
        contents = ["hi", "", 5, None, [], {}, [{"type": "text", "text": "hi"}], [{"type": "text"}], [{"type": "image_url", "image_url": {"url": "data:,x"}}],
                    [{"type": "weird"}], [5], "x" * 20000, MISSING, "/call weather__nope {}", "/call weather__add {bad json", "/call", "/call weather__add [1,2]"]
        roles = ["user", "system", "assistant", "tool", "developer", "function", "wizard", "", 5, None, MISSING]
        messages: list[Callable[[], Any]] = [
            lambda: MISSING, lambda: None, lambda: [], lambda: "hi", lambda: [1], lambda: [{}], lambda: {"role": "user"},
            lambda: [{"role": rng.choice(roles), "content": rng.choice(contents)} for _ in range(rng.randrange(1, 4))],
            lambda: [{"role": "assistant", "content": None, "tool_calls": rng.choice([[], "x", [{}], [{"id": 1, "type": "function", "function": "x"}],
                     [{"id": "c1", "type": "function", "function": {"name": "weather__nope", "arguments": "{"}}]])}, {"role": "tool", "tool_call_id": rng.choice(["c1", 5, None]), "content": "r"}],
        ]
        extras: list[tuple[str, list[Any]]] = [
            ("stream", [True, False, "yes", 1, None, {}]),
            ("stream_options", [{"include_usage": True}, {"include_usage": "x"}, "x", None]),
            ("tools", ["x", [], [{}], [{"type": "function"}], [{"type": "function", "function": {"name": 5}}], [{"type": "function", "function": {"name": "a" * 300, "parameters": "x"}}]]),
            ("tool_choice", ["auto", "none", "required", "x", {"type": "function", "function": {"name": "nope"}}, 5]),
            ("max_tokens", [-1, 0, 10**12, "x", None]),
            ("n", [0, 1, 1000, -5, "x"]),
            ("temperature", [-1, 3, "hot", None, 1e308]),
            ("response_format", [{"type": "json_object"}, {"type": "x"}, "x"]),
            ("user", [5, "x" * 5000, None]),
        ]
        for _ in range(260):
            req: dict[str, Any] = {"model": rng.choice(models), "messages": rng.choice(messages)()}
            for key, pool in rng.sample(extras, rng.randrange(0, 4)):
                req[key] = rng.choice(pool)
            self.add(cat, self.chat(dumps(req)), "openai")
        for path in ["/v1", "/v1/", "/v1/completions", "/v1/embeddings", "/v1/models/nope", "/v1/models/mcp-gateway/x", "/v1/models/%00",
                     "/v1/models/" + "x" * 3000, "/v1/chat", "/v1/chat/completions/x", "/v1/../mcp", "/v1/models?limit=-1", "/v1//models"]:
            self.add(cat, self.req("GET", path, self.auth()), "openai")
        for ctype in ["text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=utf-16"]:
            h = self.auth() + [("Content-Type", ctype)]
            self.add(cat, self.chat(dumps({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}), h), "openai")
        # a CORS preflight from an origin not in openai.cors_origins: refused (no body: browsers show none)
        self.add(cat, self.req("OPTIONS", "/v1/chat/completions", [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "POST")]), "4xx")

    # --- the OpenAPI face ---
    def openapi_broken(self) -> None:
        cat = "openapi: broken bodies, paths and methods"
        h = self.auth() + [("Content-Type", "application/json")]
        tools = {"weather__add": dumps({"a": 2, "b": 40}), "weather__forecast": dumps({"city": "Oslo"}), "weather__slow_count": dumps({"n": 1})}
        for text in [b"", b"{", b"[]", b"null", b"5", b'"x"', b"{'a':1}", b'{"a":2,}', b"\xff\xfe{}", b'{"a":"\xc3"}', b"{}"]:
            self.add(cat, self.req("POST", "/openapi/weather/weather__add", h, text), "openapi")
        for _ in range(120):
            tool = self.rng.choice(sorted(tools))
            body = tools[tool]
            for _ in range(self.rng.randrange(1, 4)):
                body = mutate(self.rng, body)
            self.add(cat, self.req("POST", f"/openapi/weather/{tool}", h, body), "openapi")
        for method, path in [("GET", "/openapi"), ("GET", "/openapi/"), ("GET", "/openapi/weather"), ("GET", "/openapi/nope/openapi.json"),
                             ("GET", "/openapi/weather/weather__add"), ("POST", "/openapi.json"), ("DELETE", "/openapi/weather/openapi.json"),
                             ("POST", "/openapi/weather/weather__add/x"), ("POST", "/openapi/weather/%00"), ("POST", "/openapi/../mcp"),
                             ("POST", "/openapi/weather/" + "x" * 3000), ("POST", "/openapi//weather__add"), ("GET", "/openapi.json?x=%ff"),
                             ("PUT", "/openapi/weather/weather__add"), ("POST", "/openapi/gateway/weather__add"), ("GET", "/openapi/weather/openapi.json")]:
            self.add(cat, self.req(method, path, h, b"" if method == "GET" else b"{}"), "openapi")
        for value in ["", "Bearer", "Bearer wrong", "Basic eDp5"]:
            self.add(cat, self.req("GET", "/openapi.json", [("Authorization", value)] if value else []), "openapi")
        self.add(cat, self.req("GET", "/openapi.json", self.auth() + [("If-None-Match", '"x", W/"y", *')]), "openapi")
        self.add(cat, self.req("OPTIONS", "/openapi.json", [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")]), "4xx")

    # --- OAuth ---
    def form(self, pairs: list[tuple[str, str]], raw_tail: bytes = b"") -> bytes:
        return urlencode(pairs).encode() + raw_tail

    def oauth_token(self) -> None:
        cat = "oauth: bad token requests"
        rng = self.rng
        grant_types = ["authorization_code", "refresh_token", "client_credentials", "password", "implicit", "", "x" * 3000, "urn:ietf:params:oauth:grant-type:device_code"]
        garbage = ["", "x", "mgwc_" + "0" * 32, "mgwr_" + "0" * 60, "a" * 4000, "\u00e9\u0000", "' OR 1=1", "null", self.t.client_id, "https://127.0.0.1/client.json",
                   "https://x.example/client.json", self.t.redirect_uri, "http://evil.example/cb"]
        keys = ["grant_type", "code", "refresh_token", "client_id", "client_secret", "redirect_uri", "code_verifier", "resource", "scope", "state"]
        for _ in range(240):
            pairs = [("grant_type", rng.choice(grant_types))] if rng.random() < 0.8 else []
            for key in rng.sample(keys, rng.randrange(0, len(keys))):
                pairs.append((key, rng.choice(garbage)))
                if rng.random() < 0.1:
                    pairs.append((key, rng.choice(garbage)))  # repeated
            tail = rng.choice([b"", b"", b"", b"&%zz=1", b"&code=%ff%fe", b"&&&", b"&=", b"&code", b"&%", b"&a=%c3%28", b";x=y"])
            headers: Headers = [("Content-Type", rng.choice(["application/x-www-form-urlencoded", "application/x-www-form-urlencoded", "application/json", "text/plain", ""]))]
            auth = rng.randrange(8)
            if auth == 0:
                headers.append(("Authorization", rng.choice(["Basic !!!", "Basic Og==", "Basic " + "QQ==" * 100, "Basic bWd3Y186", "Bearer x", "Basic"])))
            self.add(cat, self.req("POST", "/oauth/token", headers, self.form(pairs, tail)), "oauth")
        for body in [b"{}", b'{"grant_type":"authorization_code"}', b"[", b"\xff" * 100, b"grant_type=authorization_code&code=" + b"%" * 3000]:
            self.add(cat, self.req("POST", "/oauth/token", [("Content-Type", "application/x-www-form-urlencoded")], body), "oauth")
        for _ in range(40):
            pairs = [("token", rng.choice(garbage))] if rng.random() < 0.7 else []
            if rng.random() < 0.5:
                pairs.append(("token_type_hint", rng.choice(["access_token", "refresh_token", "x", ""])))
            if rng.random() < 0.5:
                pairs.append(("client_id", rng.choice(garbage)))
            self.add(cat, self.req("POST", "/oauth/revoke", [("Content-Type", "application/x-www-form-urlencoded")], self.form(pairs)), "oauth")

    def oauth_register(self) -> None:
        cat = "oauth: bad registrations"
        rng = self.rng
        uris = ["https://x.example/cb", "http://127.0.0.1:9/cb", "javascript:alert(1)", "data:text/html,x", "https://x.example/cb#frag", "", "cb",
                "https://x.example/cb\r\nX: y", "https://user:pw@x.example/cb", "http://x.example/cb", "https://x.example:99999/cb", "https://[::1/cb",
                "https://x.example/" + "a" * 3000, 5, None, "https://x.example;script-src *", "file:///etc/passwd", "https://\u00e9.example/cb"]
        for _ in range(170):
            meta: dict[str, Any] = {}
            r = rng.randrange(6)
            meta["redirect_uris"] = (
                MISSING if r == 0 else rng.choice(uris) if r == 1 else [] if r == 2 else [rng.choice(uris) for _ in range(rng.randrange(1, 5))] if r < 5 else ["https://x.example/cb"] * 200
            )
            if rng.random() < 0.6:
                meta["client_name"] = rng.choice(["ok", 5, None, [], {}, "x" * 5000, "\u001b[31mred", "a\nb", ""])
            if rng.random() < 0.4:
                meta["token_endpoint_auth_method"] = rng.choice(["none", "client_secret_post", "private_key_jwt", "", 5, None])
            if rng.random() < 0.4:
                meta["grant_types"] = rng.choice([["authorization_code"], ["implicit"], [], "authorization_code", [5], None])
            if rng.random() < 0.3:
                meta["response_types"] = rng.choice([["code"], ["token"], "code", None])
            if rng.random() < 0.2:
                meta["scope"] = rng.choice(["mcp", "admin", 5, "x" * 2000])
            body = dumps(meta)
            if rng.random() < 0.15:
                body = mutate(rng, body)
            ctype = rng.choice(["application/json", "application/json", "application/json", "text/plain", "application/x-www-form-urlencoded", ""])
            self.add(cat, self.req("POST", "/oauth/register", [("Content-Type", ctype)], body), "oauth", source=self.source())
        for body in [b"", b"[]", b"null", b'"x"', b"{", b"\xff\xfe", b"redirect_uris=https://x.example/cb", dumps({"redirect_uris": ["https://x.example/cb"], "pad": "x" * 15000})]:
            self.add(cat, self.req("POST", "/oauth/register", [("Content-Type", "application/json")], body), "oauth", source=self.source())

    def oauth_authorize(self) -> None:
        cat = "oauth: bad authorization requests"
        rng = self.rng
        pools: dict[str, list[str]] = {
            "response_type": ["code", "token", "", "code id_token", "x" * 500],
            "client_id": [self.t.client_id, "", "mgwc_" + "0" * 32, "x" * 5000, "https://127.0.0.1/c.json", "https://x.example/c.json", "\u0000", "http://x.example/c.json"],
            "redirect_uri": [self.t.redirect_uri, "", "https://evil.example/cb", self.t.redirect_uri + "x", "javascript:alert(1)", self.t.redirect_uri + "\r\nX: y"],
            "code_challenge": ["", "short", "A" * 43, "A" * 129, "!" * 43, "\u00e9" * 43],
            "code_challenge_method": ["S256", "plain", "", "s256", "x"],
            "state": ["", "x", "x" * 10000, "\r\n", "<script>"],
            "resource": [f"http://127.0.0.1:{self.t.port}/mcp", "https://evil.example/mcp", "", "x" * 2000],
            "scope": ["mcp", "", "admin", "mcp mcp", "x" * 2000],
        }
        for _ in range(170):
            pairs = [(k, rng.choice(v)) for k, v in pools.items() if rng.random() < 0.75]
            if rng.random() < 0.1:
                pairs += pairs[: rng.randrange(1, 3)]
            query = urlencode(pairs) + rng.choice(["", "", "", "&%zz", "&client_id=%ff", "&&", "&state=%c3%28", "&x"])
            self.add(cat, self.req("GET", "/oauth/authorize?" + query), "page")
        for _ in range(70):
            pairs = [(k, rng.choice(v)) for k, v in {
                "csrf_token": ["", "forged", "x" * 3000, "0" * 64],
                "password": ["", "wrong", "x" * 5000],
                "decision": ["approve", "deny", "", "x"],
                "server": ["weather", "nope", ""],
            }.items() if rng.random() < 0.7]
            body = urlencode(pairs).encode() + rng.choice([b"", b"&%zz", b"&password=%ff"])
            self.add(cat, self.req("POST", "/oauth/authorize", [("Content-Type", rng.choice(["application/x-www-form-urlencoded", "application/json", ""]))], body), "page")

    def oauth_other(self) -> None:
        cat = "oauth: discovery and unknown endpoints"
        for path in ["/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp",
                     "/.well-known/openid-configuration"]:
            for method in ["POST", "PUT", "DELETE", "PATCH"]:
                self.add(cat, self.req(method, path, [("Content-Type", "application/json")], b"{}"), "oauth")
            self.add(cat, self.req("GET", path + "?x=%ff%fe"), "oauth")
        for path in ["/.well-known/oauth-x", "/.well-known/oauth-", "/oauth/", "/oauth/x", "/oauth/token/x", "/oauth/authorize/../token", "/oauth/%00",
                     "/oauth/" + "x" * 5000, "/.well-known/oauth-authorization-server/mcp/x"]:
            self.add(cat, self.req("GET", path), "oauth")
            self.add(cat, self.req("POST", path, [("Content-Type", "application/x-www-form-urlencoded")], b"a=b"), "oauth")
        self.add(cat, self.req("OPTIONS", "/oauth/token", [("Origin", "https://x.example")]), "oauth")

    # --- the owner's page ---
    def owner_page(self) -> None:
        cat = "owner's page"
        form = [("Content-Type", "application/x-www-form-urlencoded")]
        for query in ["", "?principal=%ff%fe&server=%3Cscript%3E", "?principal=" + "x" * 5000, "?&&=&%zz", "?server=a&server=b"]:
            self.add(cat, self.req("GET", "/" + query), "owner")
        for cookie in ["mgw_owner=", "mgw_owner=" + "0" * 64, "mgw_owner=%ff; mgw_owner=x", ";;;=;", "mgw_owner=" + "a" * 4000]:
            self.add(cat, self.req("GET", "/", [("Cookie", cookie)]), "owner")
            self.add(cat, self.req("POST", "/owner/tokens", form + [("Cookie", cookie)], b"csrf_token=" + b"0" * 64 + b"&name=x"), "owner")
        for path in ["/owner/tokens", "/owner/tokens/revoke", "/owner/oauth/revoke", "/owner/logout"]:
            for body in [b"", b"csrf_token=&name=x&id=y", b"csrf_token=%ff%fe&name=%00", b"&&&%zz"]:
                self.add(cat, self.req("POST", path, form, body), "owner")
        for body in [b"password=wrong", b"password=%ff%fe%00", b"%zz&password"]:
            self.add(cat, self.req("POST", "/owner/login", form + [("Origin", "http://evil.example")], body), "owner")
        self.add(cat, self.req("POST", "/owner/login", form, b"password=" + b"x" * 20000), "owner")
        for method in ["GET", "PUT", "DELETE", "PATCH"]:
            for path in ["/owner/login", "/owner/x", "/owner", "/owner/" + "x" * 3000]:
                self.add(cat, self.req(method, path, form, b"a=b" if method != "GET" else b""), "owner")

    # --- everything else ---
    def other_paths(self) -> None:
        cat = "unknown paths and odd targets"
        paths = ["/", "/mcp/", "/mcp/x", "/MCP", "//mcp", "/mcp%00", "/mcp/../status", "/%2e%2e/etc/passwd", "/v2/models", "/api", "/index.html",
                 "/mcp?%ff=%fe", "/mcp#frag", "/health/x", "/statusx", "/metrics/x", "/" + "a" * 20000, "/%", "/%zz", "/?" + "a=1&" * 2000,
                 "http://evil.example/mcp", "*", "mcp", "/\\mcp", "/ mcp"]
        for path in paths:
            for method in ["GET", "POST"]:
                h = self.auth() + [("Content-Type", "application/json")]
                expect = "mcp" if path in ("/mcp#frag", "/mcp/", "/mcp?%ff=%fe") else "4xx"
                if path == "/" or path.startswith("/?"):
                    expect = "owner"  # the owner's page: its sign-in page, or 405 for a POST
                self.add(cat, self.req(method, path, h, b"{}" if method == "POST" else b""), expect)
        for method in ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]:
            self.add(cat, self.req(method, "/health", [], b"{}" if method != "GET" and method != "HEAD" else b""), "health" if method != "HEAD" else "any")
        self.add(cat, self.req("POST", "/status", self.auth(), b"{}"), "4xx")

    def http_framing(self) -> None:
        cat = "HTTP framing"
        body = dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": modern_meta()}})
        head = b"\r\n".join(b(k) + b": " + b(v) for k, v in self.modern("tools/list")) + f"\r\nHost: 127.0.0.1:{self.t.port}".encode()
        p = self.t.port
        raws: list[tuple[bytes, str, bool]] = [
            (b"GARBAGE\r\n\r\n", "4xx", False),
            (b"\r\n\r\n", "4xx", False),
            (b"GET\r\n\r\n", "4xx", False),
            (b"GET /mcp\r\n\r\n", "4xx", False),
            (b"GET /health HTTP/1.2\r\n\r\n", "4xx", False),
            (b"GET /health HTTP/2.0\r\n\r\n", "4xx", True),
            (b"GET /health HTTP/3.0\r\n\r\n", "4xx", True),
            (b"GET /health FTP/1.1\r\n\r\n", "4xx", False),
            (b"GET  /health  HTTP/1.1\r\n\r\n", "4xx", False),
            (b"GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n", "any", False),
            (b"GET /health HTTP/1.1\nHost: x\n\n", "4xx", False),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "4xx", True),
            (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 60, "4xx", False),
            (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nNoColonHere\r\n\r\n".encode(), "4xx", False),
            (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n: empty-name\r\n\r\n".encode(), "any", False),
            (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nBad Name: x\r\n\r\n".encode(), "any", False),
            (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nX-Folded: a\r\n continued\r\n\r\n".encode(), "any", False),
            (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nExpect: 200-ok\r\n\r\n".encode(), "4xx", False),
            (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nX-Big: {'a' * 40000}\r\n\r\n".encode(), "4xx", False),
            (f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n".encode() + b"".join(f"X-H{i}: v\r\n".encode() for i in range(150)) + b"\r\n", "4xx", False),
            (b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\n\r\n", "4xx", False),
        ]
        for cl in ["abc", "-1", "1.5", "99999999999999999999999", " ", "0x10", "1, 2", "+5"]:
            raws.append((b"POST /mcp HTTP/1.1\r\n" + head + b"\r\nContent-Length: " + cl.encode() + b"\r\n\r\n" + body, "4xx", False))
        raws.append((b"POST /mcp HTTP/1.1\r\n" + head + f"\r\nContent-Length: {len(body)}\r\nContent-Length: {len(body) + 1}\r\n\r\n".encode() + body, "4xx", False))
        raws.append((b"POST /mcp HTTP/1.1\r\n" + head + f"\r\nContent-Length: {len(body)}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body, "mcp", False))
        chunked_bodies = [
            b"zz\r\n" + body + b"\r\n0\r\n\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
            f"{len(body):x}\r\n".encode() + body + b"XX0\r\n\r\n",
            f"{len(body):x};ext=1\r\n".encode() + body + b"\r\n0\r\n\r\n",
            f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\nTrailer: x\r\n\r\n",
            f"{len(body) + 5:x}\r\n".encode() + body + b"\r\n0\r\n\r\n",
            f"{len(body):x}\n".encode() + body + b"\n0\n\n",
            b"0\r\n\r\n",
            f" {len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n",
            f"{len(body):x}\r\n".encode() + body + b"\r\n\xff\r\n\r\n",
        ]
        for cb in chunked_bodies:
            raws.append((b"POST /mcp HTTP/1.1\r\n" + head + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + cb, "any", False))
            raws.append((f"POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + cb.replace(body, b"g" * len(body)), "any", False))
        for te in ["gzip", "chunked, gzip", "identity", "x" * 100, "chunked\x0b"]:
            raws.append((b"POST /mcp HTTP/1.1\r\n" + head + b"\r\nTransfer-Encoding: " + te.encode() + b"\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n", "any", False))
        raws.append((b"POST /mcp HTTP/1.1\r\n" + head + f"\r\nTransfer-Encoding: chunked\r\nContent-Length: {len(body)}\r\n\r\n".encode() + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n", "mcp", False))
        raws.append((b"POST /mcp HTTP/1.1\r\n" + head + f"\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body, "mcp", False))
        raws.append((b"POST /mcp HTTP/1.0\r\n" + head + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body, "mcp", False))
        raws.append((b"POST /mcp HTTP/1.1\r\n" + head + f"\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body, "any", False))
        raws.append((b"GET /health HTTP/1.0\r\n\r\n", "health", False))
        raws.append((b"GET /health HTTP/0.9\r\n\r\n", "any", False))
        for raw, expect, v2 in raws:
            self.add(cat, raw, expect, fresh=True, allow_505=v2)

    def invalid_utf8_head(self) -> None:
        cat = "invalid UTF-8 and control bytes in the head"
        p = self.t.port
        bad = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xc0\xaf", b"\xe9", b"\x00", b"\x7f", b"caf\xc3\xa9", b"\x1b[31m"]
        targets = [b"/mcp", b"/v1/models", b"/oauth/authorize", b"/oauth/token", b"/health", b"/status"]
        for junk in bad:
            for target in targets:
                self.add(cat, b"GET " + target + b"?q=" + junk + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % p, "any", fresh=True)
                self.add(cat, b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Junk: a" % p + junk + b"b\r\n\r\n", "any", fresh=True)
            self.add(cat, b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-" % p + junk + b": v\r\n\r\n", "any", fresh=True)
            self.add(cat, b"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer " % p + junk + b"\r\n\r\n", "any", fresh=True)
            self.add(cat, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\nMcp-Session-Id: " % (p, self.t.token.encode()) + junk + b"\r\nContent-Length: 2\r\n\r\n{}", "any", fresh=True)
            self.add(cat, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\nMcp-Method: tools/" % (p, self.t.token.encode()) + junk + b"\r\nContent-Length: 2\r\n\r\n{}", "any", fresh=True)
            self.add(cat, b"G" + junk + b"T /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % p, "any", fresh=True)

    def huge(self) -> None:
        cat = "huge bodies"
        # announced bodies over the limit: the answer must come before the body is sent
        for path, n in [("/mcp", MAX_BODY + 1), ("/mcp", 50 * MAX_BODY), ("/v1/chat/completions", MAX_BODY + 1), ("/oauth/token", 65 * 1024),
                        ("/oauth/register", 17 * 1024), ("/oauth/authorize", 10**9), ("/v1/chat/completions", 2**40)]:
            expect = {"/mcp": "mcp", "/v1/chat/completions": "openai", "/oauth/authorize": "page"}.get(path, "oauth")
            h = self.modern("tools/list") if path == "/mcp" else self.auth() + [("Content-Type", "application/json")]
            raw = self.req("POST", path, h + [("Content-Length", str(n))], b"{")
            self.add(cat, raw, expect, fresh=True)
        # sent in full: just over the limit, and just under it (a valid call with a big argument)
        filler = "x" * (MAX_BODY - 300)
        for path, expect in [("/mcp", "mcp"), ("/v1/chat/completions", "openai")]:
            over = dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": modern_meta(), "pad": filler + "x" * 400}})
            h = self.modern("tools/list") if path == "/mcp" else self.auth() + [("Content-Type", "application/json")]
            self.add(cat, self.req("POST", path, h, over), expect, fresh=True)
        under = dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "weather__add", "arguments": {"a": filler, "b": 1}, "_meta": modern_meta()}})
        self.mcp(cat, under[: MAX_BODY - 10], self.modern("tools/call", "weather__add"))
        self.mcp(cat, under, self.modern("tools/call", "weather__add"), fresh=True)
        chat = dumps({"model": "mcp-gateway", "messages": [{"role": "user", "content": filler[:-200]}]})
        self.add(cat, self.chat(chat), "openai")
        # a chunked body that never ends below the limit
        chunk = b"%x\r\n" % 65536 + b"[" * 65536 + b"\r\n"
        self.add(cat, self.req("POST", "/mcp", self.modern("tools/list") + [("Transfer-Encoding", "chunked")], chunk * (MAX_BODY // 65536 + 2) + b"0\r\n\r\n"), "mcp", fresh=True)
        self.add(cat, self.req("POST", "/oauth/token", [("Transfer-Encoding", "chunked")], chunk * 3 + b"0\r\n\r\n"), "oauth", fresh=True)
        # a chunked body that breaks past the first 64 KiB (read by the face's worker, not ahead)
        broken = chunk * 2 + b"zz\r\n" + b"[" * 100 + b"\r\n0\r\n\r\n"
        self.add(cat, self.req("POST", "/mcp", self.modern("tools/list") + [("Transfer-Encoding", "chunked")], broken), "mcp", fresh=True)
        self.add(cat, self.req("POST", "/v1/chat/completions", self.auth() + [("Transfer-Encoding", "chunked")], broken), "openai", fresh=True)
        # a megabyte of one JSON string of escapes, and of numbers
        self.mcp(cat, b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"x":"' + b"\\u0041" * (MAX_BODY // 7) + b'"}}}')
        self.mcp(cat, b"[" + b"1," * (MAX_BODY // 3) + b"1]")
        self.mcp(cat, b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{' + b",".join(b'"k%d":1' % i for i in range(60000)) + b"}}")


# --- running it -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    answer: Answer | None
    error: str | None


class Sender:
    """One thread's keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.reader: Reader | None = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = self.reader = None

    def send(self, case: Case) -> Answer:
        if case.fresh or case.source:
            sock = connect(self.port, case.source)
            try:
                return self._exchange(sock, Reader(sock), case)
            finally:
                sock.close()
        for attempt in range(2):
            if self.sock is None:
                self.sock = connect(self.port)
                self.reader = Reader(self.sock)
            try:
                answer = self._exchange(self.sock, self.reader, case)  # type: ignore[arg-type]
            except NoAnswer as e:
                self.close()
                if attempt == 0 and "closed" in str(e):  # an idle keep-alive connection the server let go
                    continue
                raise
            if answer.closes:
                self.close()
            return answer
        raise AssertionError("unreachable")

    def _exchange(self, sock: socket.socket, reader: Reader, case: Case) -> Answer:
        started = time.monotonic()
        try:
            sock.sendall(case.raw)
        except OSError:
            pass  # the server may answer (413, 431) and close before taking all of it
        return reader.answer(case.method, started)


def run_corpus(port: int, cases: list[Case]) -> list[Outcome]:
    local = threading.local()

    def one(case: Case) -> Outcome:
        sender: Sender = getattr(local, "sender", None) or Sender(port)
        local.sender = sender
        try:
            return Outcome(case, sender.send(case), None)
        except (NoAnswer, OSError) as e:
            sender.close()
            return Outcome(case, None, f"{type(e).__name__}: {e}")

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, cases))


def judge(outcome: Outcome) -> str | None:
    case, a = outcome.case, outcome.answer
    if a is None:
        return f"no answer ({outcome.error})"
    if case.allow_505 and a.status == 505:
        return None
    if a.status >= 500:
        return f"HTTP {a.status}: {a.text()!r}"
    if case.expect == "any":
        return None
    try:
        CHECKS[case.expect](a)
    except (AssertionError, ValueError, KeyError, UnicodeDecodeError) as e:
        return f"HTTP {a.status}, not a clear {case.expect} answer ({type(e).__name__}: {str(e)[:300]}): {a.text()!r}"
    return None


# --- the gateway ----------------------------------------------------------------------------------


def register_client(gw: support.Gateway) -> tuple[str, str]:
    redirect_uri = f"http://127.0.0.1:{support.free_port()}/callback"
    transport = httpx2.HTTPTransport(local_address="127.89.0.1")
    with httpx2.Client(transport=transport, timeout=15) as http_client:
        r = http_client.post(f"{gw.base}/oauth/register", json={"client_name": "corpus", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"})
    assert r.status_code == 201, r.text
    return r.json()["client_id"], redirect_uri


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("malformed")
    # short request and socket timeouts: a head that never ends gets its 408 within seconds
    limits = {"max_body_bytes": MAX_BODY, "request_timeout_ms": REQUEST_TIMEOUT_MS, "io_timeout_ms": REQUEST_TIMEOUT_MS}

    def prepare(gw: support.Gateway) -> None:
        # 16 workers: the OAuth face takes at most half of them (8) and answers 503 "busy"
        # beyond; a worker gives its slot back just after its answer is written, so 3 client
        # threads can briefly hold 6, more than the 4 of the harness's 8 workers
        config = json.loads(gw.config_path.read_text())
        config["workers"] = 16
        gw.config_path.write_text(json.dumps(config, indent=2))
        support.enable_oauth(gw)

    with support.running_gateway(workdir, [lambda: support.start_weather(workdir)], limits=limits, prepare=prepare) as gateway:
        yield gateway


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def tools_call_works(gw: support.Gateway) -> None:
    body = {"jsonrpc": "2.0", "id": 42, "method": "tools/call", "params": {"name": "weather__add", "arguments": {"a": 2, "b": 40}, "_meta": support.modern_meta()}}
    r = httpx2.post(gw.url, json=body, headers=support.modern_headers(gw.token, "tools/call", "weather__add"), timeout=30)
    assert r.status_code == 200, r.text[:500]
    assert support.final_message(r, 42)["result"]["content"][0]["text"] == "42"


def five_xx_counted(gw: support.Gateway) -> int:
    r = httpx2.get(f"{gw.base}/metrics", headers=gw.auth(), timeout=10)
    assert r.status_code == 200, r.text[:300]
    total = 0
    for line in r.text.splitlines():
        m = re.match(r'mcp_gateway_http_requests_total\{[^}]*status="(5\d\d)"[^}]*\} (\d+)', line)
        if m and m.group(1) != "505":
            total += int(m.group(2))
    return total


def test_the_corpus_is_deterministic_and_covers_every_face() -> None:
    t = Target(port=1, token="mgw_" + "0" * 64, client_id="mgwc_x", redirect_uri="http://127.0.0.1:2/callback")
    first = Corpus(t).build()
    second = Corpus(t).build()
    assert [c.raw for c in first] == [c.raw for c in second]
    counts = Counter(c.category for c in first)
    assert sum(counts.values()) >= MIN_TOTAL, counts
    assert len(counts) >= 17 and min(counts.values()) >= 15, counts
    faces = Counter(c.expect for c in first)
    for face in ("mcp", "openai", "openapi", "oauth", "page", "4xx", "any"):
        assert faces[face] >= 20, faces


def test_two_thousand_malformed_requests_get_clear_errors_and_the_gateway_serves_on(gw: support.Gateway) -> None:
    assert gw.proc is not None
    client_id, redirect_uri = register_client(gw)
    tools_call_works(gw)
    before = proc_status(gw.proc.pid)
    cases = Corpus(Target(gw.port, gw.token, client_id, redirect_uri)).build()
    counts = Counter(c.category for c in cases)
    print(f"\ncorpus: {len(cases)} requests (seed {SEED})")
    for category, n in sorted(counts.items()):
        print(f"  {n:5d}  {category}")
    assert len(cases) >= MIN_TOTAL

    started = time.monotonic()
    outcomes = run_corpus(gw.port, cases)
    wall = time.monotonic() - started
    slowest = max((o.answer.seconds for o in outcomes if o.answer), default=0.0)
    statuses = Counter(o.answer.status for o in outcomes if o.answer)
    print(f"sent in {wall:.1f}s with {THREADS} threads; slowest answer {slowest:.2f}s; statuses {dict(sorted(statuses.items()))}")

    failures = [(o, why) for o in outcomes if (why := judge(o))]
    by_category = Counter(o.case.category for o, _ in failures)
    shown: Counter[str] = Counter()
    lines = []
    for o, why in failures:
        shown[o.case.category] += 1
        if shown[o.case.category] <= 4:
            lines.append(f"[{o.case.category}] {why}\n    request: {o.case.raw[:300]!r}")
    report = "\n".join(lines)
    assert not failures, f"{len(failures)} bad answers ({dict(by_category)}):\n{report}"

    # afterwards: alive, healthy, serving, no panic, no 5xx counted, threads and memory sane
    assert gw.proc.alive(), gw.proc.describe()
    gw.wait_healthy(timeout=10)
    tools_call_works(gw)
    assert five_xx_counted(gw) == 0
    stderr = gw.proc.stderr_path.read_text(errors="replace")
    panics = [line for line in stderr.splitlines() if "panicked" in line]
    assert not panics, "\n".join(panics[:20])
    deadline = time.monotonic() + 15
    while True:  # connection threads of the corpus end with their connections
        after = proc_status(gw.proc.pid)
        if after["Threads"] <= before["Threads"] + 8 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    print(f"threads {before['Threads']} -> {after['Threads']}, RSS {before['VmRSS']} -> {after['VmRSS']} KiB")
    assert after["Threads"] <= before["Threads"] + 8, (before, after)
    assert after["VmRSS"] < before["VmRSS"] + 64 * 1024, (before, after)
