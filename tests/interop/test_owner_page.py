"""The owner's page (issue 24): `GET /` in a real browser and over raw HTTP.

A person who installed the gateway opens `http://nas:8080/`, signs in with the owner password
and, on one page, sees whether everything is up, what the AI just did, gives a device a token
and cuts one off. The browser is Debian's chromium driven by Playwright; every request it makes
is recorded and must stay on the gateway's own origin. Screenshots of the main views go to
`$MCP_GATEWAY_ARTIFACTS/owner-page/` (default `tests/artifacts/owner-page/`, kept by CI).

The HTTP stories check what a browser does not show: the cookie's attributes, the security
headers, that sessions end (idle, absolute, sign-out), that forms without their CSRF token or
from another origin are refused, the page's size, and that no token or hash ever appears.
Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

import support
from test_oauth import grant, mcp_post, register
from test_security import CHROMIUM, CHROMIUM_ARGS, csp_directives

HTTP_TIMEOUT = 15.0
PAGE_LIMIT = 30 * 1024
ARTIFACTS = Path(os.environ.get("MCP_GATEWAY_ARTIFACTS", support.TESTS_DIR / "artifacts")) / "owner-page"


# --- helpers ---------------------------------------------------------------------------------------


def unreachable_backend() -> dict[str, Any]:
    """An mcpServers entry nobody answers (a loopback port nothing listens on)."""
    return {"type": "streamable-http", "url": f"http://127.0.0.1:{support.free_port()}/mcp", "timeout_ms": 2000}


def set_config(gw: support.Gateway, **keys: Any) -> None:
    config = json.loads(gw.config_path.read_text())
    config.update(keys)
    gw.config_path.write_text(json.dumps(config, indent=2))


def http() -> httpx2.Client:
    """A client that follows no redirects and keeps no cookies between clients."""
    return httpx2.Client(follow_redirects=False, timeout=HTTP_TIMEOUT)


def sign_in(gw: support.Gateway, client: httpx2.Client, password: str = support.OWNER_PASSWORD) -> httpx2.Response:
    return client.post(f"{gw.base}/owner/login", data={"password": password})


def session_cookie(answer: httpx2.Response) -> str:
    """The `mgw_owner` value a sign-in set."""
    assert answer.status_code == 303, f"sign-in: HTTP {answer.status_code}: {answer.text[:500]}"
    found = re.match(r"mgw_owner=([0-9a-f]{64});", answer.headers.get("set-cookie", ""))
    assert found, answer.headers.get("set-cookie")
    return found.group(1)


def dashboard(gw: support.Gateway, cookie: str, query: str = "") -> httpx2.Response:
    return httpx2.get(f"{gw.base}/{query}", headers={"Cookie": f"mgw_owner={cookie}"}, timeout=HTTP_TIMEOUT)


def is_dashboard(answer: httpx2.Response) -> bool:
    return answer.status_code == 200 and 'action="/owner/logout"' in answer.text


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page)
    assert found, page[:2000]
    return found.group(1)


def post_form(gw: support.Gateway, cookie: str, path: str, form: dict[str, str], **headers: str) -> httpx2.Response:
    return httpx2.post(
        f"{gw.base}{path}",
        data=form,
        headers={"Cookie": f"mgw_owner={cookie}", **headers},
        timeout=HTTP_TIMEOUT,
        follow_redirects=False,
    )


def token_names(gw: support.Gateway) -> set[str]:
    listing = gw.cli("token", "list")
    assert listing.returncode == 0, listing.stderr
    return {line.split()[0] for line in listing.stdout.splitlines()[1:] if line.strip()}


def initialize(gw: support.Gateway, token: str) -> httpx2.Response:
    """A handshake-era `initialize` on /mcp with `token`, as curl would send it."""
    return httpx2.post(
        gw.url,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"},
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}},
        },
        timeout=HTTP_TIMEOUT,
    )


def secrets_on_disk(gw: support.Gateway) -> set[str]:
    """Every hash and secret-like value the state folder keeps (tokens, grants, the password)."""
    found: set[str] = set()
    for name in ("tokens.json", "oauth.json"):
        path = gw.workdir / "state" / name
        if path.exists():
            text = path.read_text()
            found |= set(re.findall(r"[0-9a-f]{64}", text))
            found |= set(re.findall(r'"owner_password":\s*"([^"]+)"', text))
    return found


def assert_security_headers(answer: httpx2.Response) -> None:
    assert "text/html" in answer.headers.get("content-type", "")
    assert answer.headers.get("x-frame-options") == "DENY"
    assert answer.headers.get("x-content-type-options") == "nosniff"
    assert answer.headers.get("referrer-policy") == "no-referrer"
    assert answer.headers.get("cache-control") == "no-store"
    directives = dict(csp_directives(answer.headers["content-security-policy"]))
    assert directives["default-src"] == "'none'", directives
    assert directives["frame-ancestors"] == "'none'", directives
    assert directives["form-action"] == "'self'", directives
    for kind in ("script-src", "style-src"):
        sources = directives.get(kind, "'none'").split()
        assert all(s.startswith("'sha256-") for s in sources), (kind, directives)
    assert "unsafe" not in answer.headers["content-security-policy"]


# --- gateways --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Gateway]:
    """weather (up) and `offline` (nobody listens) behind a gateway with OAuth and a password."""
    workdir = tmp_path_factory.mktemp("owner")

    def prepare(gateway: support.Gateway) -> None:
        support.enable_oauth(gateway)
        config = json.loads(gateway.config_path.read_text())
        config["mcpServers"]["offline"] = unreachable_backend()
        gateway.config_path.write_text(json.dumps(config, indent=2))

    with support.running_gateway(workdir, [lambda: support.start_weather(workdir)], prepare=prepare) as gateway:
        yield gateway


@contextmanager
def lone_gateway(workdir: Path, password: bool = True, **keys: Any) -> Iterator[support.Gateway]:
    """A gateway without backends; `keys` are set in its config (after OAuth's)."""

    def prepare(gateway: support.Gateway) -> None:
        support.enable_oauth(gateway, password=support.OWNER_PASSWORD if password else None)
        set_config(gateway, **keys)

    with support.running_gateway(workdir, [], prepare=prepare) as gateway:
        yield gateway


# =================================================================================================
# HTTP
# =================================================================================================


def test_without_a_session_the_page_shows_name_version_health_and_a_sign_in_form(gw: support.Gateway) -> None:
    answer = httpx2.get(f"{gw.base}/", timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text[:500]
    assert_security_headers(answer)
    text = answer.text
    assert "mcp-gateway" in text and re.search(r"<small>\d+\.\d+\.\d+</small>", text), text[:1000]
    assert "Healthy" in text
    assert 'action="/owner/login"' in text and 'type="password"' in text
    assert "offline" not in text and "weather" not in text, "nothing about the backends before sign-in"
    assert "set-cookie" not in answer.headers


def test_the_session_cookie_is_httponly_strict_and_not_secure_over_plain_http(gw: support.Gateway) -> None:
    with http() as client:
        answer = sign_in(gw, client)
    session_cookie(answer)
    attributes = [a.strip().lower() for a in answer.headers["set-cookie"].split(";")[1:]]
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/" in attributes, attributes
    assert "secure" not in attributes, "http://127.0.0.1 would never send a Secure cookie back"
    assert answer.headers["location"] == "/"


def test_a_wrong_password_is_refused_and_opens_no_session(gw: support.Gateway) -> None:
    with http() as client:
        answer = sign_in(gw, client, "not the password")
    assert answer.status_code == 401, answer.text[:500]
    assert "set-cookie" not in answer.headers
    assert "Wrong password" in answer.text
    assert_security_headers(answer)


def test_forms_without_their_csrf_token_or_from_another_origin_are_refused(gw: support.Gateway) -> None:
    with http() as client:
        cookie = session_cookie(sign_in(gw, client))
    page = dashboard(gw, cookie)
    assert is_dashboard(page), page.text[:500]
    csrf = csrf_of(page.text)
    refused = [
        post_form(gw, cookie, "/owner/tokens", {"name": "no-csrf", "server": "weather"}),
        post_form(gw, cookie, "/owner/tokens", {"name": "no-csrf", "server": "weather", "csrf_token": "0" * 64}),
        post_form(gw, "f" * 64, "/owner/tokens", {"name": "no-csrf", "server": "weather", "csrf_token": csrf}),
        post_form(gw, cookie, "/owner/tokens", {"name": "no-csrf", "server": "weather", "csrf_token": csrf}, Origin="http://evil.example"),
        post_form(gw, cookie, "/owner/tokens", {"name": "no-csrf", "server": "weather", "csrf_token": csrf}, **{"Sec-Fetch-Site": "cross-site"}),
        post_form(gw, cookie, "/owner/tokens/revoke", {"name": "interop"}),
        post_form(gw, cookie, "/owner/logout", {}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused), [(r.status_code, r.text[:200]) for r in refused]
    assert "no-csrf" not in token_names(gw) and "interop" in token_names(gw)
    assert is_dashboard(dashboard(gw, cookie)), "the refused sign-out left the session alone"
    # The same form with its token, from the page's own origin, works.
    done = post_form(gw, cookie, "/owner/tokens", {"name": "with-csrf", "server": "weather", "csrf_token": csrf}, Origin=gw.base)
    assert done.status_code == 303, done.text[:500]
    assert "with-csrf" in token_names(gw)
    listed = [line for line in gw.cli("token", "list").stdout.splitlines() if line.startswith("with-csrf ")]
    assert len(listed) == 1 and "weather" in listed[0] and "offline" not in listed[0], listed  # only the server ticked
    assert "tool-view=search" not in listed[0], listed
    gw.revoke_token("with-csrf")
    # The search view ticked: the token gets it, as `token create --tool-view search` gives it.
    done = post_form(
        gw, cookie, "/owner/tokens",
        {"name": "small-model", "server": "weather", "tool_view": "search", "csrf_token": csrf}, Origin=gw.base,
    )
    assert done.status_code == 303, done.text[:500]
    listed = [line for line in gw.cli("token", "list").stdout.splitlines() if line.startswith("small-model ")]
    assert len(listed) == 1 and "tool-view=search" in listed[0], listed
    assert "tool-view=search" in dashboard(gw, cookie).text
    gw.revoke_token("small-model")


def test_sign_out_ends_the_session(gw: support.Gateway) -> None:
    with http() as client:
        cookie = session_cookie(sign_in(gw, client))
    csrf = csrf_of(dashboard(gw, cookie).text)
    out = post_form(gw, cookie, "/owner/logout", {"csrf_token": csrf})
    assert out.status_code == 303, out.text[:500]
    assert re.match(r"mgw_owner=;.*Max-Age=0", out.headers.get("set-cookie", "")), out.headers.get("set-cookie")
    again = dashboard(gw, cookie)
    assert again.status_code == 200 and not is_dashboard(again) and 'action="/owner/login"' in again.text
    late = post_form(gw, cookie, "/owner/tokens", {"name": "after-logout", "server": "weather", "csrf_token": csrf})
    assert late.status_code == 403
    assert "after-logout" not in token_names(gw)


def test_the_page_is_small_and_never_shows_a_token_or_a_hash(gw: support.Gateway) -> None:
    grant(gw)  # an OAuth client with a grant: its token hashes are in oauth.json
    with http() as client:
        cookie = session_cookie(sign_in(gw, client))
    page = dashboard(gw, cookie)
    assert is_dashboard(page)
    print(f"\nthe owner's page: {len(page.content)} bytes")
    assert len(page.content) < PAGE_LIMIT, len(page.content)
    hidden = secrets_on_disk(gw) | {gw.token}
    assert len(hidden) >= 4, hidden
    leaked = [s for s in hidden if s in page.text]
    assert not leaked, leaked
    assert "mgw_" not in page.text and "mgwa_" not in page.text and "mgwr_" not in page.text
    for source in re.findall(r'(?:src|href|action)="([^"]*)"', page.text):
        assert source.startswith("/") or source.startswith("#"), f"a reference off the page's origin: {source}"


def test_unknown_owner_paths_and_methods(gw: support.Gateway) -> None:
    assert httpx2.get(f"{gw.base}/owner/nothing", timeout=HTTP_TIMEOUT).status_code == 404
    get_login = httpx2.get(f"{gw.base}/owner/login", timeout=HTTP_TIMEOUT)
    assert get_login.status_code == 405 and get_login.headers.get("allow") == "POST"
    post_root = httpx2.post(f"{gw.base}/", data={"a": "b"}, timeout=HTTP_TIMEOUT)
    assert post_root.status_code == 405 and post_root.headers.get("allow") == "GET"
    big = httpx2.post(f"{gw.base}/owner/login", content=b"password=" + b"x" * 20000, timeout=HTTP_TIMEOUT)
    assert big.status_code == 413


def test_over_https_the_cookie_is_secure_and_sessions_expire(tmp_path: Path) -> None:
    owner = {"session_idle_secs": 2, "session_max_secs": 5}
    with lone_gateway(tmp_path, public_url="https://gateway.example.test", owner=owner) as gw:
        # Through the TLS proxy (the request names public_url's host): Secure.
        with http() as client:
            answer = client.post(f"{gw.base}/owner/login", data={"password": support.OWNER_PASSWORD}, headers={"Host": "gateway.example.test"})
        cookie = session_cookie(answer)
        attributes = [a.strip().lower() for a in answer.headers["set-cookie"].split(";")[1:]]
        assert "secure" in attributes and "httponly" in attributes and "samesite=strict" in attributes, attributes
        assert "max-age=5" in attributes, attributes
        # On the LAN over plain http (http://127.0.0.1:port/): not Secure, or no browser keeps it.
        with http() as client:
            lan = sign_in(gw, client)
        session_cookie(lan)
        assert "secure" not in lan.headers["set-cookie"].lower(), lan.headers["set-cookie"]
        assert is_dashboard(dashboard(gw, cookie))
        # Idle for longer than session_idle_secs: gone.
        time.sleep(2.5)
        assert not is_dashboard(dashboard(gw, cookie)), "an idle session must end"
        # Kept busy, a session still ends session_max_secs after sign-in.
        with http() as client:
            busy = session_cookie(sign_in(gw, client))
        signed_in = time.monotonic()
        seen = []
        while time.monotonic() - signed_in < 6.5:
            seen.append(is_dashboard(dashboard(gw, busy)))
            time.sleep(0.4)
        assert seen[0] is True and seen[-1] is False, seen
        assert seen == sorted(seen, reverse=True), f"once ended it stays ended: {seen}"


def test_behind_a_trusted_proxy_x_forwarded_proto_decides_secure(tmp_path: Path) -> None:
    with lone_gateway(tmp_path, oauth={"allow_registration": True, "trust_forwarded_headers": True}) as gw:
        set_cookies = []
        for proto in ("https", "http"):
            with http() as client:
                answer = client.post(f"{gw.base}/owner/login", data={"password": support.OWNER_PASSWORD}, headers={"X-Forwarded-Proto": proto})
            session_cookie(answer)
            set_cookies.append(answer.headers["set-cookie"].lower())
        assert "; secure" in set_cookies[0] and "secure" not in set_cookies[1], set_cookies


def test_without_an_owner_password_the_page_says_how_to_set_one(tmp_path: Path) -> None:
    with lone_gateway(tmp_path / "a", password=False) as gw:
        page = httpx2.get(f"{gw.base}/", timeout=HTTP_TIMEOUT)
        assert page.status_code == 200
        assert "mcp-gateway oauth set-password" in page.text
        assert 'type="password"' not in page.text
        with http() as client:
            refused = sign_in(gw, client, "anything")
        assert refused.status_code == 403 and "set-cookie" not in refused.headers
    with lone_gateway(tmp_path / "b", owner={"enabled": False}) as gw:
        off = httpx2.get(f"{gw.base}/", timeout=HTTP_TIMEOUT)
        assert off.status_code == 404 and off.json()["error"] == "not_found", off.text


# =================================================================================================
# A real browser
# =================================================================================================


class BrowserRun:
    """Chromium with a fresh profile; every request it makes is recorded, and one that leaves the
    gateway's origin is aborted."""

    def __init__(self, gw: support.Gateway, playwright: Any, javascript: bool = True) -> None:
        self.gw = gw
        self.origin = urlsplit(gw.base)
        self.requests: list[str] = []
        self.events: list[str] = []
        self.profile = tempfile.TemporaryDirectory(prefix="owner-chromium-")
        self.context = playwright.chromium.launch_persistent_context(
            self.profile.name,
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            java_script_enabled=javascript,
            viewport={"width": 1100, "height": 900},
        )
        if javascript:
            self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.base)
        self.context.route("**/*", self.stay_on_the_gateway)
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.events.append(f"console {m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.events.append(f"page error: {e}"))
        self.page.on("dialog", self.on_dialog)

    def stay_on_the_gateway(self, route: Any) -> None:
        url = urlsplit(route.request.url)
        if (url.scheme, url.netloc) == (self.origin.scheme, self.origin.netloc):
            route.continue_()
        else:
            self.events.append(f"left the gateway: {route.request.url}")
            route.abort()

    def on_dialog(self, dialog: Any) -> None:
        self.events.append(f"dialog {dialog.type}: {dialog.message}")
        dialog.accept()

    def close(self) -> None:
        self.context.close()
        self.profile.cleanup()

    def screenshot(self, name: str, full_page: bool = True) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)

    def sign_in(self, password: str = support.OWNER_PASSWORD) -> Any:
        self.page.goto(f"{self.gw.base}/")
        self.page.fill("#password", password)
        with self.page.expect_navigation():
            self.page.click("button[type=submit]")
        return self.page

    def backend_state(self, name: str) -> str:
        row = self.page.locator("#backends tr", has_text=name)
        return row.locator("td").nth(1).inner_text().strip()

    def create_token(self, name: str) -> str:
        self.page.fill("#token-name", name)
        with self.page.expect_navigation():
            self.page.click("text=Create token")
        return self.page.inner_text("#new-token").strip()

    def revoke_row(self, section: str, text: str, button: str = "Revoke") -> None:
        row = self.page.locator(f"#{section} tr", has_text=text).first
        with self.page.expect_navigation():
            row.locator(f"button:text-is('{button}')").click()

    def assert_clean(self) -> None:
        off = [u for u in self.requests if urlsplit(u).netloc != self.origin.netloc or urlsplit(u).scheme != self.origin.scheme]
        assert not off, off
        left = [e for e in self.events if e.startswith("left the gateway")]
        assert not left, left
        # A blocked inline script or style (a CSP violation) or a script error shows here.
        bad = [e for e in self.events if "page error" in e or "Content Security Policy" in e or "console error" in e]
        bad = [e for e in bad if "status of 40" not in e]
        assert not bad, bad


def chromium_or_skip() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI: .ci/setup installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); CI installs it")


def wait_for_row(run: BrowserRun, url: str, text: str, timeout: float = 15.0) -> None:
    """Reloads `url` until the activity table shows a row with `text` (the audit log is
    written by a thread of its own, a moment after the call)."""
    deadline = time.monotonic() + timeout
    while True:
        run.page.goto(url)
        if run.page.locator("#activity tr", has_text=text).count() > 0:
            return
        assert time.monotonic() < deadline, run.page.inner_text("#activity")
        time.sleep(0.3)


def test_the_owner_runs_the_gateway_from_a_real_browser(gw: support.Gateway) -> None:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        run = BrowserRun(gw, playwright)
        try:
            page = run.page
            page.goto(f"{gw.base}/")
            assert page.locator("#password").is_visible()
            run.screenshot("login", full_page=False)

            # A wrong password: refused, still the sign-in form.
            run.sign_in("wrong horse")
            assert "Wrong password" in page.inner_text("body")
            assert page.locator("#password").is_visible()

            # Signed in: one backend up, the unreachable one down.
            run.sign_in()
            assert run.backend_state("weather") == "up", page.inner_text("#backends")
            assert run.backend_state("offline") in ("down", "starting"), page.inner_text("#backends")
            assert page.locator("#backends tr", has_text="offline").locator(".err").inner_text().strip()

            # A new token, shown once with a copy button, works on /mcp at once.
            token = run.create_token("phone")
            assert re.fullmatch(r"mgw_[0-9a-f]{64}", token), token
            copy = page.locator("button[data-copy=new-token]")
            assert copy.is_visible()
            copy.click()
            page.wait_for_function("document.querySelector('button[data-copy=new-token]').textContent == 'Copied'")
            assert page.evaluate("navigator.clipboard.readText()") == token
            run.screenshot("new-token", full_page=False)
            assert initialize(gw, token).status_code == 200

            # Its call shows in recent activity, filtered by its principal.
            answer = mcp_post(gw, token, "tools/call", {"name": "weather__add", "arguments": {"a": 2, "b": 3}}, name="weather__add")
            assert answer.status_code == 200, answer.text[:500]
            wait_for_row(run, f"{gw.base}/?principal=phone", "weather__add")
            rows = page.locator("#activity tr")
            assert rows.count() >= 2
            newest = rows.nth(1).inner_text()
            assert "phone" in newest and "weather__add" in newest and "ok" in newest, newest
            assert all("phone" in rows.nth(i).inner_text() for i in range(1, rows.count()))
            page.goto(f"{gw.base}/")
            assert page.locator("#backends tr", has_text="weather").locator("svg.spark").count() == 1
            run.screenshot("dashboard")
            # The README's picture (docs/owner-page.png is a copy): the top of the page.
            page.set_viewport_size({"width": 960, "height": 600})
            run.screenshot("overview", full_page=False)

            # On a phone: nothing wider than the screen.
            page.set_viewport_size({"width": 390, "height": 844})
            page.reload()
            wide = page.evaluate(
                "[...document.querySelectorAll('body *')].filter(e => !e.closest('.scroll') && e.getBoundingClientRect().right > innerWidth + 1).map(e => e.tagName + '.' + e.className + ': ' + e.textContent.slice(0, 40))"
            )
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), wide
            run.screenshot("dashboard-phone", full_page=False)
            page.set_viewport_size({"width": 1100, "height": 900})

            # Revoked on the page: refused on /mcp.
            page.goto(f"{gw.base}/")
            run.revoke_row("tokens", "phone")
            assert "Token phone revoked" in page.inner_text("body")
            assert page.locator("#tokens tr", has_text="phone").count() == 0
            assert initialize(gw, token).status_code == 401
            assert "phone" not in token_names(gw)

            # An OAuth grant made through the consent flow, revoked on the page.
            tokens = grant(gw, register(gw, name="browser-app"))
            assert mcp_post(gw, tokens["access_token"], "tools/list", {}).status_code == 200
            page.goto(f"{gw.base}/")  # not "/#oauth": from "/#tokens" that would not load the page again
            app = page.locator("#oauth tr", has_text="browser-app")
            assert app.count() == 1 and "127.0.0.1" in app.inner_text() and "all" in app.inner_text(), app.all_inner_texts()
            run.revoke_row("oauth", "browser-app")
            assert "Revoked" in page.inner_text("body")
            assert mcp_post(gw, tokens["access_token"], "tools/list", {}).status_code == 401
            run.assert_clean()
            assert any("dialog confirm" in e for e in run.events), "the script asked before revoking"
        finally:
            run.close()


def test_without_javascript_sign_in_create_and_revoke_still_work(gw: support.Gateway) -> None:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        run = BrowserRun(gw, playwright, javascript=False)
        try:
            page = run.sign_in()
            assert run.backend_state("weather") == "up"
            token = run.create_token("no-script")
            assert re.fullmatch(r"mgw_[0-9a-f]{64}", token), token
            assert not page.locator("button[data-copy=new-token]").is_visible(), "no copy button without its script"
            assert initialize(gw, token).status_code == 200
            page.reload()
            assert token not in page.content(), "a new token is shown once"
            run.revoke_row("tokens", "no-script")
            assert initialize(gw, token).status_code == 401
            with page.expect_navigation():
                page.click("text=Sign out")
            assert page.locator("#password").is_visible()
            page.goto(f"{gw.base}/")
            assert page.locator("#password").is_visible(), "signed out for good"
            run.assert_clean()
            assert not any(e.startswith("dialog") for e in run.events)
        finally:
            run.close()
