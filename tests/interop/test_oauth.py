"""OAuth 2.1: the gateway is its own authorization server, and an MCP client signs in through it.

Part one drives the official SDK's OAuth client (`OAuthClientProvider`) from a 401 on `/mcp` to
tool calls, through discovery, dynamic registration, the owner's consent page (filled in by a
small "browser" that parses the HTML form), the code exchange, a refresh and a gateway restart.

Part two tells what an attacker or a confused client sees, with raw HTTP: each story asserts
the exact HTTP status and RFC 6749 `error` code of the gateway's contract.

Every gateway here has `public_url` = its own loopback address (see `support.enable_oauth`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

import support

HTTP_TIMEOUT = 15.0
SDK_TIMEOUT = 90.0
SCOPE = "mcp"


# --- PKCE (RFC 7636, S256 only) --------------------------------------------------------------------


def s256_challenge(verifier: str) -> str:
    """base64url (no padding) of SHA-256 of the verifier: the S256 `code_challenge`."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class Pkce:
    """A PKCE pair: the verifier the client keeps, the challenge it sends to /authorize."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(64)  # 86 unreserved characters (43..128 allowed)
        return cls(verifier, s256_challenge(verifier))


# --- the consent page's HTML form ------------------------------------------------------------------


@dataclass
class FormField:
    """One named control of a form: an <input>, a <button>, a <select> or a <textarea>."""

    tag: str
    type: str
    name: str
    value: str
    checked: bool


@dataclass
class HtmlForm:
    method: str
    action: str
    fields: list[FormField] = field(default_factory=list)

    def hidden(self) -> dict[str, str]:
        return {f.name: f.value for f in self.fields if f.type == "hidden"}

    def of_type(self, kind: str, name: str | None = None) -> list[FormField]:
        return [f for f in self.fields if f.type == kind and (name is None or f.name == name)]

    def submit_values(self, name: str) -> set[str]:
        return {f.value for f in self.fields if f.type == "submit" and f.name == name}


class FormParser(HTMLParser):
    """Collects every <form> of a page with its named controls (`html.parser`, no dependencies)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []
        self._current: HtmlForm | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        present = {k.lower() for k, _ in attrs}
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._current = HtmlForm(method=(a.get("method") or "get").lower(), action=a.get("action", ""))
        elif tag in ("input", "button", "select", "textarea") and self._current is not None and a.get("name"):
            default_type = {"input": "text", "button": "submit"}.get(tag, tag)
            kind = (a.get("type") or default_type).lower()
            self._current.fields.append(FormField(tag, kind, a["name"], a.get("value", ""), "checked" in present))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._current is not None:
            self.forms.append(self._current)
            self._current = None

    def close(self) -> None:
        super().close()
        if self._current is not None:  # an unclosed <form>
            self.forms.append(self._current)
            self._current = None


def parse_forms(page: str) -> list[HtmlForm]:
    parser = FormParser()
    parser.feed(page)
    parser.close()
    return parser.forms


def consent_form(page: str) -> HtmlForm:
    """The form on the consent page that carries the `csrf_token`."""
    forms = [f for f in parse_forms(page) if "csrf_token" in f.hidden()]
    assert len(forms) == 1, f"expected one form with a csrf_token, found {len(forms)} in:\n{page[:3000]}"
    return forms[0]


# --- the "browser": a person at the consent page ---------------------------------------------------


def query_of(url: str) -> dict[str, str]:
    """The query parameters of a URL, one value each."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


class Browser:
    """The gateway's owner in a web browser: opens the authorization URL, reads the consent form,
    submits it. Keeps cookies, follows no redirects (the redirect to the client is the result)."""

    def __init__(self) -> None:
        self.http = httpx2.Client(follow_redirects=False, timeout=HTTP_TIMEOUT)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def open(self, authorize_url: str) -> httpx2.Response:
        return self.http.get(authorize_url)

    def submit(
        self,
        page: httpx2.Response,
        *,
        password: str = support.OWNER_PASSWORD,
        decision: str = "approve",
        servers: list[str] | None = None,
        csrf_token: str | None = None,
        drop: tuple[str, ...] = (),
    ) -> httpx2.Response:
        """POST the consent form of `page`: hidden fields as served (`csrf_token` replaced when
        given, fields in `drop` left out), the password, the `server` boxes (all the checked ones
        unless `servers` names some) and the `decision` button."""
        assert page.status_code == 200, f"consent page: HTTP {page.status_code}\n{page.text[:2000]}"
        form = consent_form(page.text)
        assert form.method == "post", form
        pairs: list[tuple[str, str]] = [(k, v) for k, v in form.hidden().items()]
        if csrf_token is not None:
            pairs = [(k, csrf_token if k == "csrf_token" else v) for k, v in pairs]
        checked = [f.value for f in form.of_type("checkbox", "server") if f.checked]
        pairs += [("password", password)]
        pairs += [("server", s) for s in (checked if servers is None else servers)]
        pairs += [("decision", decision)]
        pairs = [(k, v) for k, v in pairs if k not in drop]
        return self.http.post(
            urljoin(str(page.url), form.action),
            content=urlencode(pairs),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    def approve(self, authorize_url: str, servers: list[str] | None = None) -> str:
        """Open the URL, approve with the owner password; the `Location` the gateway redirects to."""
        answer = self.submit(self.open(authorize_url), servers=servers)
        assert answer.status_code == 302, f"approval: HTTP {answer.status_code}\n{answer.text[:2000]}"
        return answer.headers["location"]


# --- clients, codes and tokens over raw HTTP -------------------------------------------------------


def loopback_redirect_uri() -> str:
    """A loopback callback nobody listens on: the browser stops at the redirect anyway."""
    return f"http://127.0.0.1:{support.free_port()}/callback"


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    redirect_uris: tuple[str, ...]

    @property
    def redirect_uri(self) -> str:
        return self.redirect_uris[0]


def register(gw: support.Gateway, redirect_uris: list[str] | None = None, name: str = "interop-raw") -> RegisteredClient:
    """Dynamic registration (RFC 7591) of a public client."""
    uris = redirect_uris or [loopback_redirect_uri()]
    answer = httpx2.post(
        f"{gw.base}/oauth/register",
        json={
            "client_name": name,
            "redirect_uris": uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        },
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 201, f"register: HTTP {answer.status_code}: {answer.text[:1000]}"
    return RegisteredClient(answer.json()["client_id"], tuple(uris))


def authorize_url(
    gw: support.Gateway,
    client_id: str,
    redirect_uri: str,
    pkce: Pkce | None,
    state: str = "",
    **overrides: str | None,
) -> str:
    """An authorization request URL; `overrides` replace parameters, None leaves one out."""
    params: dict[str, str | None] = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": pkce.challenge if pkce else None,
        "code_challenge_method": "S256",
        "state": state or secrets.token_urlsafe(16),
        "resource": gw.url,
        "scope": SCOPE,
        **overrides,
    }
    return f"{gw.base}/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})


def get_code(gw: support.Gateway, client: RegisteredClient, pkce: Pkce, servers: list[str] | None = None) -> str:
    """The owner approves the client's request; the authorization code from the redirect."""
    state = secrets.token_urlsafe(16)
    with Browser() as browser:
        location = browser.approve(authorize_url(gw, client.client_id, client.redirect_uri, pkce, state), servers)
    assert location.startswith(client.redirect_uri + "?"), location
    params = query_of(location)
    assert params.get("state") == state, location
    assert params.get("iss") == gw.base, location
    assert params.get("code"), location
    return params["code"]


def token_request(gw: support.Gateway, form: dict[str, str]) -> httpx2.Response:
    """POST /oauth/token, form-urlencoded, as a public client (no secret)."""
    return httpx2.post(f"{gw.base}/oauth/token", data=form, timeout=HTTP_TIMEOUT)


def exchange(
    gw: support.Gateway, client_id: str, code: str, verifier: str, redirect_uri: str, resource: str | None = None
) -> httpx2.Response:
    """`grant_type=authorization_code` with the PKCE verifier and the `resource` (RFC 8707)."""
    return token_request(
        gw,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
            "resource": resource or gw.url,
        },
    )


def refresh(gw: support.Gateway, client_id: str, refresh_token: str) -> httpx2.Response:
    """`grant_type=refresh_token` with exactly the contract's fields."""
    return token_request(gw, {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id})


def tokens_of(answer: httpx2.Response) -> dict[str, Any]:
    """A successful token answer, checked against the contract's shape."""
    assert answer.status_code == 200, f"token endpoint: HTTP {answer.status_code}: {answer.text[:1000]}"
    body = answer.json()
    assert body.get("token_type", "").lower() == "bearer", body
    assert body.get("access_token") and body.get("refresh_token"), body
    assert isinstance(body.get("expires_in"), int) and body["expires_in"] > 0, body
    assert SCOPE in str(body.get("scope", "")).split(), body
    return body


def grant(gw: support.Gateway, client: RegisteredClient | None = None, servers: list[str] | None = None) -> dict[str, Any]:
    """A whole raw authorization: (registration), consent, code exchange; the token answer."""
    client = client or register(gw)
    pkce = Pkce.new()
    code = get_code(gw, client, pkce, servers)
    return tokens_of(exchange(gw, client.client_id, code, pkce.verifier, client.redirect_uri))


def assert_oauth_error(answer: httpx2.Response, status: int, error: str) -> None:
    """An RFC 6749 §5.2 error answer: the HTTP status and the JSON `error` code."""
    assert answer.status_code == status, f"want HTTP {status} {error}, got {answer.status_code}: {answer.text[:1000]}"
    try:
        body = answer.json()
    except ValueError:
        raise AssertionError(f"error answer is not JSON: {answer.headers.get('content-type')} {answer.text[:500]}")
    assert body.get("error") == error, body


def assert_error_page(answer: httpx2.Response, status: int = 400) -> None:
    """An HTML error page with no redirect: the client's redirect URI is not trusted yet."""
    assert answer.status_code == status, f"want HTTP {status} page, got {answer.status_code}: {answer.text[:1000]}"
    assert "location" not in answer.headers, answer.headers.get("location")
    assert "text/html" in answer.headers.get("content-type", ""), answer.headers.get("content-type")


def assert_error_redirect(answer: httpx2.Response, redirect_uri: str, state: str, errors: str | set[str]) -> None:
    """A 302 back to the client with an `error` (one of `errors`), the client's `state`, no code."""
    allowed = {errors} if isinstance(errors, str) else errors
    assert answer.status_code == 302, f"want 302 error={allowed}, got {answer.status_code}: {answer.text[:1000]}"
    location = answer.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    params = query_of(location)
    assert params.get("error") in allowed, location
    assert params.get("state") == state, location
    assert "code" not in params, location


# --- MCP over raw HTTP -----------------------------------------------------------------------------


def mcp_post(gw: support.Gateway, token: str | None, method: str, params: dict[str, Any], name: str | None = None) -> httpx2.Response:
    """One stateless (2026-07-28) JSON-RPC request to /mcp with `token` as the bearer."""
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {**params, "_meta": support.modern_meta()}}
    return httpx2.post(gw.url, json=body, headers=support.modern_headers(token, method, name), timeout=30)


def tool_names(gw: support.Gateway, token: str) -> set[str]:
    answer = mcp_post(gw, token, "tools/list", {})
    assert answer.status_code == 200, f"tools/list: HTTP {answer.status_code}: {answer.text[:1000]}"
    message = support.final_message(answer, 7)
    assert "result" in message, message
    return {t["name"] for t in message["result"]["tools"]}


def call_tool(gw: support.Gateway, token: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    answer = mcp_post(gw, token, "tools/call", {"name": name, "arguments": arguments}, name=name)
    assert answer.status_code == 200, f"tools/call: HTTP {answer.status_code}: {answer.text[:1000]}"
    return support.final_message(answer, 7)


def texts(message: dict[str, Any]) -> list[str]:
    assert "result" in message, message
    return [c.get("text") for c in message["result"]["content"]]


def resource_metadata_url(gw: support.Gateway) -> str:
    return f"{gw.base}/.well-known/oauth-protected-resource/mcp"


def assert_mcp_refuses(gw: support.Gateway, token: str | None) -> None:
    """/mcp answers 401 with a Bearer challenge pointing at the protected resource metadata."""
    answer = mcp_post(gw, token, "tools/list", {})
    assert answer.status_code == 401, f"want 401 on /mcp, got {answer.status_code}: {answer.text[:500]}"
    challenge = answer.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer "), challenge
    found = re.search(r'resource_metadata="([^"]*)"', challenge)
    assert found and found.group(1) == resource_metadata_url(gw), challenge


def new_ids(before: str, after: str) -> set[str]:
    """Id-like words `oauth list` shows in `after` but not in `before`: at least 8 characters
    with both letters and digits (random ids), no URLs or times (no ':')."""

    def ids(listing: str) -> set[str]:
        words = {w.strip(".,;()[]{}'\"") for w in listing.split()}
        return {w for w in words if len(w) >= 8 and re.search(r"[A-Za-z]", w) and re.search(r"\d", w) and ":" not in w}

    return ids(after) - ids(before)


# --- gateways --------------------------------------------------------------------------------------


def weather_and_notes(workdir: Path) -> list[Callable[[], support.Backend]]:
    return [lambda: support.start_weather(workdir), lambda: support.start_notes(workdir)]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    """One gateway for the stories whose state does not matter: weather and notes behind it."""
    workdir = tmp_path_factory.mktemp("oauth")
    with support.running_oauth_gateway(workdir, weather_and_notes(workdir)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def app(gw: support.Gateway) -> RegisteredClient:
    """The client most stories use, registered once (registrations per address may be limited),
    with two redirect URIs; authorizations go through the first."""
    return register(gw, [loopback_redirect_uri(), loopback_redirect_uri()], name="interop-app")


@pytest.fixture(scope="module")
def other_app(gw: support.Gateway) -> RegisteredClient:
    """A second registered client, for stories about codes or tokens crossing clients."""
    return register(gw, name="interop-other-app")


@contextmanager
def lone_gateway(workdir: Path, oauth: dict[str, Any] | None = None) -> Iterator[support.Gateway]:
    """A gateway of the test's own (weather only), for stories with state: rate limits, TTLs."""
    with support.running_oauth_gateway(workdir, [lambda: support.start_weather(workdir)], oauth=oauth) as gateway:
        yield gateway


# =================================================================================================
# The helpers themselves (no gateway needed)
# =================================================================================================


def test_the_pkce_helper_matches_rfc_7636_appendix_b() -> None:
    assert s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    pair = Pkce.new()
    assert 43 <= len(pair.verifier) <= 128 and re.fullmatch(r"[A-Za-z0-9._~-]+", pair.verifier)
    assert "=" not in pair.challenge and len(pair.challenge) == 43


def test_the_form_parser_reads_a_consent_page() -> None:
    page = """<!doctype html><html><body><h1>Allow <b>Claude</b>?</h1>
      <form method="get" action="/elsewhere"><input name="q"></form>
      <form method="POST" action="/oauth/authorize">
        <input type="hidden" name="csrf_token" value="a&amp;b">
        <label>Password <input type="password" name="password" autocomplete="current-password"></label>
        <label><input type="checkbox" name="server" value="weather" checked> weather</label>
        <label><input type="checkbox" name="server" value="notes" checked="checked"/> notes</label>
        <input type=checkbox name=server value=off>
        <button type="submit" name="decision" value="approve">Allow</button>
        <button name="decision" value="deny">Deny</button>
      </form></body></html>"""
    form = consent_form(page)
    assert (form.method, form.action) == ("post", "/oauth/authorize")
    assert form.hidden() == {"csrf_token": "a&b"}
    assert [f.name for f in form.of_type("password")] == ["password"]
    assert [(f.value, f.checked) for f in form.of_type("checkbox", "server")] == [
        ("weather", True),
        ("notes", True),
        ("off", False),
    ]
    assert form.submit_values("decision") == {"approve", "deny"}


# =================================================================================================
# Part one: the official SDK's OAuth client
# =================================================================================================


class MemoryTokenStorage:
    """The SDK's `TokenStorage`, in memory, keeping every token set it was given."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.history: list[OAuthToken] = []

    @property
    def current(self) -> OAuthToken:
        """The tokens the SDK holds now (it must hold some)."""
        assert self.tokens is not None, "the SDK stored no tokens"
        return self.tokens

    @property
    def client_id(self) -> str:
        assert self.client_info is not None, "the SDK stored no client registration"
        return self.client_info.client_id

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class SdkPerson:
    """The SDK's redirect_handler and callback_handler: a person who approves in the browser.

    The redirect handler does what the browser would (GET the URL, fill the form, POST it) and
    keeps the redirect's parameters for the callback handler, as a loopback callback would."""

    def __init__(self, servers: list[str] | None = None) -> None:
        self.redirect_uri = loopback_redirect_uri()
        self.servers = servers
        self.authorization_urls: list[str] = []
        self._pending: dict[str, str] | None = None

    async def redirect_handler(self, url: str) -> None:
        self.authorization_urls.append(url)

        def in_browser() -> str:
            with Browser() as browser:
                return browser.approve(url, self.servers)

        location = await anyio.to_thread.run_sync(in_browser)
        assert location.startswith(self.redirect_uri + "?"), location
        self._pending = query_of(location)

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self._pending is not None, "callback before redirect"
        params, self._pending = self._pending, None
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


@dataclass
class Exchange:
    """One HTTP exchange the SDK made: enough to tell the OAuth story afterwards."""

    method: str
    url: str
    status: int
    form: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def __str__(self) -> str:
        shown = {k: (v if k in ("grant_type", "resource", "scope", "client_id", "redirect_uri") else "…") for k, v in self.form.items()}
        return f"{self.method} {self.path} -> {self.status} {shown if shown else ''}"


@asynccontextmanager
async def sdk_client(gw: support.Gateway, storage: MemoryTokenStorage, person: SdkPerson, trace: list[Exchange]) -> AsyncIterator[Client]:
    """The official SDK client on Streamable HTTP with `OAuthClientProvider` as the httpx2 auth;
    every HTTP exchange it makes (the auth flow's too) is appended to `trace`."""
    provider = OAuthClientProvider(
        server_url=gw.url,
        client_metadata=OAuthClientMetadata(
            client_name="interop-sdk",
            redirect_uris=[person.redirect_uri],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )

    async def seen(response: httpx2.Response) -> None:
        request = response.request
        form: dict[str, str] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = {k: v[-1] for k, v in parse_qs(request.content.decode()).items()}
        trace.append(Exchange(request.method, str(request.url), response.status_code, form))

    async with create_mcp_http_client(auth=provider) as http:
        http.event_hooks = {"request": [], "response": [seen]}
        async with Client(streamable_http_client(gw.url, http_client=http), mode="auto", read_timeout_seconds=30) as client:
            yield client


def story(trace: list[Exchange]) -> str:
    return "\n".join(str(e) for e in trace)


@pytest.mark.anyio
async def test_the_sdk_client_signs_in_from_a_401_and_refreshes_when_its_token_expires(tmp_path: Path) -> None:
    """Discovery from the 401, registration, the owner's consent, the code exchange, tools from
    both backends; then the 2-second access token expires and the SDK refreshes on its own."""
    with support.running_oauth_gateway(tmp_path, weather_and_notes(tmp_path), oauth={"access_token_ttl_secs": 2}) as gw:
        storage, person, trace = MemoryTokenStorage(), SdkPerson(), []
        empty = gw.cli("oauth", "list")
        assert empty.returncode == 0, empty.stderr
        with anyio.fail_after(SDK_TIMEOUT):
            async with sdk_client(gw, storage, person, trace) as client:
                names = {t.name for t in (await client.list_tools()).tools}
                assert {"weather__add", "weather__forecast", "notes__upper"} <= names, names
                added = await client.call_tool("weather__add", {"a": 2, "b": 40})
                assert [c.text for c in added.content] == ["42"], added

                # What the SDK did, in order: the 401, both metadata documents, registration, token.
                told = story(trace)
                first = trace[0]
                assert (first.method, first.path, first.status) == ("POST", "/mcp", 401), told
                paths = [(e.method, e.path, e.status) for e in trace]
                assert ("GET", "/.well-known/oauth-protected-resource/mcp", 200) in paths, told
                assert ("GET", "/.well-known/oauth-authorization-server", 200) in paths, told
                assert ("POST", "/oauth/register", 201) in paths, told
                code_exchanges = [e for e in trace if e.path == "/oauth/token" and e.form.get("grant_type") == "authorization_code"]
                assert [e.status for e in code_exchanges] == [200], told
                assert code_exchanges[0].form.get("resource") == gw.url, told
                assert len(person.authorization_urls) == 1, person.authorization_urls
                asked = query_of(person.authorization_urls[0])
                assert asked["resource"] == gw.url and asked["scope"] == SCOPE, asked
                assert asked["code_challenge_method"] == "S256" and urlsplit(person.authorization_urls[0]).path == "/oauth/authorize"

                before = storage.current
                await anyio.sleep(3)  # the access token (2 s) has expired
                again = await client.call_tool("weather__add", {"a": 20, "b": 22})
                assert [c.text for c in again.content] == ["42"], again
                told = story(trace)
                refreshes = [e for e in trace if e.path == "/oauth/token" and e.form.get("grant_type") == "refresh_token"]
                assert refreshes and all(e.status == 200 for e in refreshes), told
                assert len(person.authorization_urls) == 1, f"the SDK authorized again instead of refreshing:\n{told}"
                assert storage.current.access_token != before.access_token
                assert storage.current.refresh_token != before.refresh_token, "refresh tokens rotate on every use"
                print(f"SDK exchanges:\n{told}")

        listed = gw.cli("oauth", "list")
        assert listed.returncode == 0, listed.stderr
        shown = listed.stdout + listed.stderr
        assert storage.client_id in shown, shown
        assert "interop-sdk" in shown, shown
        assert re.search(r"grant", shown, re.I), shown
        assert new_ids(empty.stdout, listed.stdout) - {storage.client_id}, f"no grant id listed:\n{shown}"
        for tokens in storage.history:
            for secret in (tokens.access_token, tokens.refresh_token):
                assert secret and secret not in shown, "oauth list printed a token"


@pytest.mark.anyio
async def test_the_sdk_client_stays_signed_in_across_a_gateway_restart(tmp_path: Path) -> None:
    """The gateway stops and starts again on the same port and state folder: the client's stored
    tokens keep working (no new consent), in the open session and in a new client process."""
    with support.running_oauth_gateway(tmp_path, [lambda: support.start_weather(tmp_path)]) as gw:
        storage, person, trace = MemoryTokenStorage(), SdkPerson(), []
        with anyio.fail_after(SDK_TIMEOUT):
            async with sdk_client(gw, storage, person, trace) as client:
                added = await client.call_tool("weather__add", {"a": 2, "b": 40})
                assert [c.text for c in added.content] == ["42"]
                assert len(person.authorization_urls) == 1

                await anyio.to_thread.run_sync(support.restart_gateway, gw)

                again = await client.call_tool("weather__add", {"a": 40, "b": 2})
                assert [c.text for c in again.content] == ["42"], story(trace)

            # A new client process with the same stored tokens and client registration.
            async with sdk_client(gw, storage, person, trace) as client:
                third = await client.call_tool("weather__add", {"a": 41, "b": 1})
                assert [c.text for c in third.content] == ["42"], story(trace)
        assert len(person.authorization_urls) == 1, f"asked for consent again after the restart:\n{story(trace)}"
        assert not [e for e in trace if e.status == 401 and e.path == "/mcp"][1:], story(trace)

        # The refresh token survived the restart too.
        renewed = tokens_of(refresh(gw, storage.client_id, storage.current.refresh_token or ""))
        assert "weather__add" in tool_names(gw, renewed["access_token"])


@pytest.mark.anyio
async def test_the_sdk_client_asks_the_owner_again_after_its_grant_is_revoked(tmp_path: Path) -> None:
    """The owner ends the grant with `oauth revoke GRANT_ID`: the client's next call gets a 401,
    the SDK runs the authorization again (same registration) and the call succeeds."""
    with support.running_oauth_gateway(tmp_path, [lambda: support.start_weather(tmp_path)]) as gw:
        storage, person, trace = MemoryTokenStorage(), SdkPerson(), []
        before = gw.cli("oauth", "list")
        with anyio.fail_after(SDK_TIMEOUT):
            async with sdk_client(gw, storage, person, trace) as client:
                await client.call_tool("weather__add", {"a": 1, "b": 1})
                after = gw.cli("oauth", "list")
                grant_id = new_ids(before.stdout, after.stdout) - {storage.client_id}
                assert len(grant_id) == 1, after.stdout
                done = gw.cli("oauth", "revoke", grant_id.pop())
                assert done.returncode == 0, done.stderr
                revoked = storage.current.access_token
                assert_mcp_refuses(gw, revoked)

                again = await client.call_tool("weather__add", {"a": 2, "b": 40})
                assert [c.text for c in again.content] == ["42"], story(trace)
        assert len(person.authorization_urls) == 2, story(trace)
        assert [e.path for e in trace].count("/oauth/register") == 1, story(trace)
        assert storage.current.access_token != revoked


# =================================================================================================
# Part two: raw HTTP stories
# =================================================================================================

# --- discovery ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
def test_the_protected_resource_metadata_names_the_gateway(gw: support.Gateway, path: str) -> None:
    answer = httpx2.get(gw.base + path, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text[:500]
    meta = answer.json()
    # RFC 9728 allows more members (e.g. resource_name); these four are the contract.
    assert {k: meta.get(k) for k in ("resource", "authorization_servers", "scopes_supported", "bearer_methods_supported")} == {
        "resource": gw.url,
        "authorization_servers": [gw.base],
        "scopes_supported": ["mcp"],
        "bearer_methods_supported": ["header"],
    }, meta


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
def test_the_authorization_server_metadata_follows_rfc_8414(gw: support.Gateway, path: str) -> None:
    answer = httpx2.get(gw.base + path, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text[:500]
    meta = answer.json()
    assert meta["issuer"] == gw.base
    assert meta["authorization_endpoint"] == f"{gw.base}/oauth/authorize"
    assert meta["token_endpoint"] == f"{gw.base}/oauth/token"
    assert meta["registration_endpoint"] == f"{gw.base}/oauth/register"
    assert meta["revocation_endpoint"] == f"{gw.base}/oauth/revoke"
    assert meta["response_types_supported"] == ["code"]
    assert meta["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert "none" in meta["token_endpoint_auth_methods_supported"]


def test_a_forged_host_header_does_not_change_the_urls_the_gateway_advertises(gw: support.Gateway) -> None:
    """Every OAuth URL comes from `public_url`, never from Host or X-Forwarded-* (else a link
    sent to the owner could make the gateway name an attacker's server as its issuer)."""
    forged = {"Host": "attacker.example", "X-Forwarded-Host": "attacker.example", "X-Forwarded-Proto": "https"}
    answers = [
        httpx2.get(f"{gw.base}/.well-known/oauth-authorization-server", headers=forged, timeout=HTTP_TIMEOUT),
        httpx2.get(f"{gw.base}/.well-known/oauth-protected-resource/mcp", headers=forged, timeout=HTTP_TIMEOUT),
        mcp_post_with(gw, forged),
    ]
    for answer in answers:
        assert answer.status_code < 500, (answer.status_code, answer.text[:500])
        assert "attacker.example" not in answer.text, answer.text[:1000]
        assert "attacker.example" not in answer.headers.get("www-authenticate", ""), answer.headers
    # Served (not refused as a foreign Host): then naming this gateway only.
    if answers[0].status_code == 200:
        assert answers[0].json()["issuer"] == gw.base
    if answers[1].status_code == 200:
        assert answers[1].json()["resource"] == gw.url
    if answers[2].status_code == 401:
        assert resource_metadata_url(gw) in answers[2].headers.get("www-authenticate", ""), answers[2].headers


def mcp_post_with(gw: support.Gateway, headers: dict[str, str]) -> httpx2.Response:
    """A tokenless tools/list to /mcp with extra headers."""
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": support.modern_meta()}}
    return httpx2.post(gw.url, json=body, headers={**support.modern_headers(None, "tools/list"), **headers}, timeout=30)


def test_mcp_without_a_token_points_the_client_at_the_metadata_and_static_tokens_still_work(gw: support.Gateway) -> None:
    assert_mcp_refuses(gw, None)
    assert_mcp_refuses(gw, "not-a-token-at-all")
    assert "weather__add" in tool_names(gw, gw.token)


# --- registration ---------------------------------------------------------------------------------


def test_registration_accepts_https_and_loopback_and_refuses_plain_http_elsewhere(gw: support.Gateway) -> None:
    assert register(gw, ["https://app.example.com/callback"]).client_id
    assert register(gw, ["http://127.0.0.1:9/cb", "http://localhost:9/cb"]).client_id
    refused = httpx2.post(
        f"{gw.base}/oauth/register",
        json={"client_name": "sneaky", "redirect_uris": ["http://attacker.example.com/cb"], "token_endpoint_auth_method": "none"},
        timeout=HTTP_TIMEOUT,
    )
    assert refused.status_code == 400, refused.text[:500]
    assert refused.json().get("error") in ("invalid_redirect_uri", "invalid_client_metadata"), refused.text[:500]


def test_a_confidential_client_gets_a_secret_and_its_code_needs_it(gw: support.Gateway) -> None:
    """RFC 7591 §3.2.1 / RFC 6749 §2.3.1: a `client_secret_post` client is given a secret, and
    its code is not exchanged without it (a stolen code alone is useless)."""
    redirect_uri = loopback_redirect_uri()
    answer = httpx2.post(
        f"{gw.base}/oauth/register",
        json={"client_name": "server-side-app", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "client_secret_post"},
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 201, answer.text[:500]
    registered = answer.json()
    assert registered.get("client_secret"), registered
    client = RegisteredClient(registered["client_id"], (redirect_uri,))
    pkce = Pkce.new()
    code = get_code(gw, client, pkce)
    assert_oauth_error(exchange(gw, client.client_id, code, pkce.verifier, redirect_uri), 401, "invalid_client")
    wrong = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client.client_id,
        "code_verifier": pkce.verifier,
        "resource": gw.url,
        "client_secret": "not-the-secret",
    }
    assert_oauth_error(token_request(gw, wrong), 401, "invalid_client")
    tokens_of(token_request(gw, {**wrong, "client_secret": registered["client_secret"]}))


# --- the consent page -----------------------------------------------------------------------------


def test_the_consent_page_asks_the_owner_with_every_server_checked(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    with Browser() as browser:
        page = browser.open(authorize_url(gw, client.client_id, client.redirect_uri, Pkce.new()))
    assert page.status_code == 200, page.text[:1000]
    assert "text/html" in page.headers.get("content-type", "")
    form = consent_form(page.text)
    assert (form.method, form.action) == ("post", "/oauth/authorize")
    assert form.hidden()["csrf_token"]
    assert [f.name for f in form.of_type("password")] == ["password"]
    boxes = form.of_type("checkbox", "server")
    assert sorted(f.value for f in boxes) == ["notes", "weather"]
    assert all(f.checked for f in boxes), boxes
    assert form.submit_values("decision") == {"approve", "deny"}


def test_an_unknown_client_gets_an_error_page_not_a_redirect(gw: support.Gateway) -> None:
    redirect_uri = loopback_redirect_uri()
    with Browser() as browser:
        answer = browser.open(authorize_url(gw, "no-such-client", redirect_uri, Pkce.new()))
    assert_error_page(answer, 400)


def test_an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    with Browser() as browser:
        answer = browser.open(authorize_url(gw, client.client_id, "http://127.0.0.1:9/evil", Pkce.new()))
    assert_error_page(answer, 400)
    assert "127.0.0.1:9/evil" not in answer.headers.get("location", "")


BAD_AUTHORIZATION_REQUESTS = pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"code_challenge_method": "plain"}, {"invalid_request"}),
        ({"code_challenge": None}, {"invalid_request"}),
        # RFC 6749 §4.1.2.1 calls this unsupported_response_type; the contract allows invalid_request.
        ({"response_type": "token"}, {"unsupported_response_type", "invalid_request"}),
        ({"resource": "https://other-server.example.com/mcp"}, {"invalid_target"}),
    ],
    ids=["plain-challenge", "no-challenge", "implicit-grant", "another-resource"],
)


def open_bad_authorization_request(gw: support.Gateway, client: RegisteredClient, state: str, overrides: dict[str, str | None]) -> httpx2.Response:
    pkce = Pkce.new()
    if overrides.get("code_challenge_method") == "plain":
        overrides = {**overrides, "code_challenge": pkce.verifier}
    with Browser() as browser:
        return browser.open(authorize_url(gw, client.client_id, client.redirect_uri, pkce, state, **overrides))


@pytest.fixture(scope="module")
def owner_added_app(gw: support.Gateway) -> RegisteredClient:
    """A client the owner added with `mcp-gateway oauth client add`: its redirect URI is trusted."""
    redirect_uri = loopback_redirect_uri()
    added = gw.cli("oauth", "client", "add", "owner-added-app", "--redirect-uri", redirect_uri)
    assert added.returncode == 0, f"stdout:\n{added.stdout}\nstderr:\n{added.stderr}"
    return RegisteredClient([line.strip() for line in added.stdout.splitlines() if line.strip()][-1], (redirect_uri,))


@BAD_AUTHORIZATION_REQUESTS
def test_a_bad_authorization_request_from_a_client_the_owner_added_is_sent_back_with_an_error(
    gw: support.Gateway, owner_added_app: RegisteredClient, overrides: dict[str, str | None], errors: set[str]
) -> None:
    state = secrets.token_urlsafe(16)
    answer = open_bad_authorization_request(gw, owner_added_app, state, overrides)
    assert_error_redirect(answer, owner_added_app.redirect_uri, state, errors)


@BAD_AUTHORIZATION_REQUESTS
def test_a_bad_authorization_request_from_a_self_registered_client_gets_an_error_page_not_a_redirect(
    gw: support.Gateway, app: RegisteredClient, overrides: dict[str, str | None], errors: set[str]
) -> None:
    """Anyone can register any https redirect URI, so redirecting errors there would make the
    gateway an open redirector (RFC 9700 §4.11.2): the error is shown on the gateway's page."""
    answer = open_bad_authorization_request(gw, app, secrets.token_urlsafe(16), overrides)
    assert_error_page(answer, 400)
    assert app.redirect_uri not in answer.headers.get("location", "")


def test_the_owner_says_no_and_the_client_gets_access_denied(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    state = secrets.token_urlsafe(16)
    with Browser() as browser:
        page = browser.open(authorize_url(gw, client.client_id, client.redirect_uri, Pkce.new(), state))
        answer = browser.submit(page, decision="deny")
    assert_error_redirect(answer, client.redirect_uri, state, "access_denied")


def test_a_consent_without_its_csrf_token_is_refused(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    with Browser() as browser:
        url = authorize_url(gw, client.client_id, client.redirect_uri, Pkce.new())
        missing = browser.submit(browser.open(url), drop=("csrf_token",))
        forged = browser.submit(browser.open(url), csrf_token="forged-" + secrets.token_urlsafe(16))
    assert_error_page(missing, 400)
    assert_error_page(forged, 400)


def test_a_wrong_owner_password_shows_the_page_again_and_gives_no_code(tmp_path: Path) -> None:
    with lone_gateway(tmp_path) as gw:
        client = register(gw)
        url = authorize_url(gw, client.client_id, client.redirect_uri, Pkce.new())
        with Browser() as browser:
            answer = browser.submit(browser.open(url), password="not the password")
        assert answer.status_code in (200, 401), f"HTTP {answer.status_code}: {answer.text[:1000]}"
        assert "location" not in answer.headers, answer.headers["location"]
        assert "code=" not in answer.text
        assert re.search(r"wrong|incorrect|invalid|not correct|does not match|didn.t match", answer.text, re.I), answer.text[:2000]
        # The owner types it right the next time.
        assert get_code(gw, client, Pkce.new())


def test_more_than_five_wrong_passwords_are_answered_429(tmp_path: Path) -> None:
    with lone_gateway(tmp_path) as gw:
        client = register(gw)
        url = authorize_url(gw, client.client_id, client.redirect_uri, Pkce.new())
        seen: list[int] = []
        with Browser() as browser:
            for _ in range(5):
                answer = browser.submit(browser.open(url), password=f"guess-{secrets.token_hex(4)}")
                seen.append(answer.status_code)
                assert "location" not in answer.headers
            assert all(s in (200, 401) for s in seen), seen
            sixth = browser.submit(browser.open(url), password="guess-six")
            # The address is limited, not the wrong guesses only: otherwise the one guess that
            # is not answered 429 would tell the attacker the password.
            right = browser.submit(browser.open(url))
        assert sixth.status_code == 429, (seen, sixth.status_code, sixth.text[:500])
        assert "location" not in sixth.headers
        assert right.status_code == 429 and "location" not in right.headers, (right.status_code, right.headers)


# --- the token endpoint ---------------------------------------------------------------------------


def test_a_code_with_the_wrong_pkce_verifier_is_invalid_grant(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    pkce = Pkce.new()
    code = get_code(gw, client, pkce)
    assert_oauth_error(exchange(gw, client.client_id, code, Pkce.new().verifier, client.redirect_uri), 400, "invalid_grant")


def test_a_code_works_once_only(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    pkce = Pkce.new()
    code = get_code(gw, client, pkce)
    first = tokens_of(exchange(gw, client.client_id, code, pkce.verifier, client.redirect_uri))
    assert "weather__add" in tool_names(gw, first["access_token"])
    assert_oauth_error(exchange(gw, client.client_id, code, pkce.verifier, client.redirect_uri), 400, "invalid_grant")


def test_an_expired_code_is_invalid_grant(tmp_path: Path) -> None:
    with lone_gateway(tmp_path, {"code_ttl_secs": 1}) as gw:
        client = register(gw)
        pkce = Pkce.new()
        code = get_code(gw, client, pkce)
        time.sleep(2.5)
        assert_oauth_error(exchange(gw, client.client_id, code, pkce.verifier, client.redirect_uri), 400, "invalid_grant")


def test_a_code_presented_with_another_redirect_uri_is_invalid_grant(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    pkce = Pkce.new()
    code = get_code(gw, client, pkce)  # asked with the first redirect URI
    assert_oauth_error(exchange(gw, client.client_id, code, pkce.verifier, client.redirect_uris[1]), 400, "invalid_grant")


def test_an_unknown_client_at_the_token_endpoint_is_invalid_client(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    pkce = Pkce.new()
    code = get_code(gw, client, pkce)
    assert_oauth_error(exchange(gw, "no-such-client", code, pkce.verifier, client.redirect_uri), 401, "invalid_client")
    assert_oauth_error(refresh(gw, "no-such-client", "no-such-refresh-token"), 401, "invalid_client")


def test_a_code_stolen_by_another_client_is_invalid_grant(gw: support.Gateway, app: RegisteredClient, other_app: RegisteredClient) -> None:
    victim, thief = app, other_app
    pkce = Pkce.new()
    code = get_code(gw, victim, pkce)
    # RFC 6749 §5.2: a code "issued to another client" is invalid_grant.
    assert_oauth_error(exchange(gw, thief.client_id, code, pkce.verifier, victim.redirect_uri), 400, "invalid_grant")


def test_refresh_tokens_rotate_and_a_replayed_one_ends_the_whole_grant(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    first = grant(gw, client)
    second = tokens_of(refresh(gw, client.client_id, first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert "weather__add" in tool_names(gw, second["access_token"])

    # The client moves on with its new refresh token; then someone replays the rotated one:
    # refused, and the grant is over for everyone. (Within a few seconds of a rotation the
    # token just rotated away still gets the same new pair, for a client that lost the answer:
    # the grace is tested in test_security.py; here the new token was used, so no grace.)
    third = tokens_of(refresh(gw, client.client_id, second["refresh_token"]))
    assert_oauth_error(refresh(gw, client.client_id, first["refresh_token"]), 400, "invalid_grant")
    assert_mcp_refuses(gw, third["access_token"])
    assert_oauth_error(refresh(gw, client.client_id, third["refresh_token"]), 400, "invalid_grant")


def test_an_expired_access_token_is_refused_but_its_refresh_token_still_works(tmp_path: Path) -> None:
    with lone_gateway(tmp_path, {"access_token_ttl_secs": 2}) as gw:
        client = register(gw)
        tokens = grant(gw, client)
        assert tokens["expires_in"] <= 2, tokens
        assert "weather__add" in tool_names(gw, tokens["access_token"])
        time.sleep(3)
        assert_mcp_refuses(gw, tokens["access_token"])
        renewed = tokens_of(refresh(gw, client.client_id, tokens["refresh_token"]))
        assert "weather__add" in tool_names(gw, renewed["access_token"])


# --- revocation -----------------------------------------------------------------------------------


def revoke(gw: support.Gateway, token: str, client_id: str) -> httpx2.Response:
    """RFC 7009 revocation by the client itself."""
    return httpx2.post(f"{gw.base}/oauth/revoke", data={"token": token, "client_id": client_id}, timeout=HTTP_TIMEOUT)


def test_a_client_revokes_its_access_token_and_its_refresh_token(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    tokens = grant(gw, client)
    assert "weather__add" in tool_names(gw, tokens["access_token"])
    answer = revoke(gw, tokens["access_token"], client.client_id)
    assert answer.status_code == 200, answer.text[:500]
    assert_mcp_refuses(gw, tokens["access_token"])

    other = grant(gw, client)
    answer = revoke(gw, other["refresh_token"], client.client_id)
    assert answer.status_code == 200, answer.text[:500]
    assert_oauth_error(refresh(gw, client.client_id, other["refresh_token"]), 400, "invalid_grant")

    # RFC 7009 §2.2: an unknown token is answered 200 as well.
    assert revoke(gw, "no-such-token", client.client_id).status_code == 200


def test_the_owner_revokes_a_client_with_the_cli_and_its_tokens_stop_working(gw: support.Gateway, app: RegisteredClient) -> None:
    client, bystander = register(gw, name="to-be-revoked"), app
    tokens = [grant(gw, client), grant(gw, client)]
    kept = grant(gw, bystander)
    listed = gw.cli("oauth", "list")
    assert listed.returncode == 0, listed.stderr
    assert client.client_id in listed.stdout, listed.stdout
    for t in [*tokens, kept]:
        assert t["access_token"] not in listed.stdout + listed.stderr
        assert t["refresh_token"] not in listed.stdout + listed.stderr

    done = gw.cli("oauth", "revoke", client.client_id)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    for t in tokens:
        assert_mcp_refuses(gw, t["access_token"])
        # The client is gone, so `invalid_client` (401); a kept-but-disabled client would say invalid_grant.
        renewal = refresh(gw, client.client_id, t["refresh_token"])
        if renewal.status_code == 401:
            assert_oauth_error(renewal, 401, "invalid_client")
        else:
            assert_oauth_error(renewal, 400, "invalid_grant")
    assert "weather__add" in tool_names(gw, kept["access_token"])


def test_the_owner_revokes_one_grant_with_the_cli(gw: support.Gateway, app: RegisteredClient) -> None:
    client = app
    before = gw.cli("oauth", "list")
    first = grant(gw, client)
    after = gw.cli("oauth", "list")
    assert after.returncode == 0, after.stderr
    grant_id = new_ids(before.stdout, after.stdout)
    assert len(grant_id) == 1, f"cannot tell the new grant's id from `oauth list`:\n{after.stdout}"
    second = grant(gw, client)

    done = gw.cli("oauth", "revoke", grant_id.pop())
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert_mcp_refuses(gw, first["access_token"])
    assert "weather__add" in tool_names(gw, second["access_token"])  # the client's other grant stays


# --- narrowing to some servers --------------------------------------------------------------------


def test_a_token_approved_for_one_server_sees_only_that_servers_tools(gw: support.Gateway, app: RegisteredClient) -> None:
    tokens = grant(gw, app, servers=["weather"])
    names = tool_names(gw, tokens["access_token"])
    assert "weather__add" in names, names
    assert names - {"gateway__status"} == {n for n in names if n.startswith("weather__")}, names
    assert texts(call_tool(gw, tokens["access_token"], "weather__add", {"a": 2, "b": 40})) == ["42"]
    # Its status report names only the servers it may use.
    status = httpx2.get(f"{gw.base}/status", headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=HTTP_TIMEOUT)
    assert status.status_code == 200, status.text[:500]
    assert [b["name"] for b in status.json()["backends"]] == ["weather"], status.json()
    # A tool it cannot see, it cannot call either: a JSON-RPC error (any HTTP status but 401/403,
    # the token itself is good) or an error result.
    hidden = mcp_post(gw, tokens["access_token"], "tools/call", {"name": "notes__upper", "arguments": {"text": "x"}}, "notes__upper")
    assert hidden.status_code not in (401, 403), hidden.text[:500]
    message = support.final_message(hidden, 7)
    assert "error" in message or message["result"].get("isError") is True, (hidden.status_code, message)
    # A grant with every server checked sees both.
    assert {"weather__add", "notes__upper"} <= tool_names(gw, grant(gw, app)["access_token"])


# --- a pre-registered client, registration closed -------------------------------------------------


def test_a_client_added_with_the_cli_signs_in_while_registration_is_closed(tmp_path: Path) -> None:
    with lone_gateway(tmp_path, {"allow_registration": False}) as gw:
        closed = httpx2.post(
            f"{gw.base}/oauth/register",
            json={"client_name": "walk-in", "redirect_uris": [loopback_redirect_uri()], "token_endpoint_auth_method": "none"},
            timeout=HTTP_TIMEOUT,
        )
        assert 400 <= closed.status_code < 500 and "client_id" not in closed.text, (closed.status_code, closed.text[:500])

        redirect_uri = loopback_redirect_uri()
        added = gw.cli("oauth", "client", "add", "desk-app", "--redirect-uri", redirect_uri)
        assert added.returncode == 0, f"stdout:\n{added.stdout}\nstderr:\n{added.stderr}"
        client_id = [line.strip() for line in added.stdout.splitlines() if line.strip()][-1]
        tokens = grant(gw, RegisteredClient(client_id, (redirect_uri,)))
        assert texts(call_tool(gw, tokens["access_token"], "weather__add", {"a": 40, "b": 2})) == ["42"]
        assert "desk-app" in gw.cli("oauth", "list").stdout
