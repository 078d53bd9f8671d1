"""Prometheus metrics (issue 18, item 8): `GET /metrics` in the text exposition format 0.0.4.

Each scrape is checked with `promtool check metrics` (Debian's `prometheus` package; skipped
where it is missing, except under CI=true, where that is a failure) and parsed with the
`prometheus_client` text parser. The counters must move by exactly what the test did: calls
made, refused as unknown, refused by the schema, a burst over a rate limit, failed
authentication; `mcp_gateway_backend_up` follows a backend's death. Then who may scrape:
a bearer token by default, only the listed static tokens with `metrics.tokens`, anyone with
`metrics.public`, nobody (404) with `metrics.enabled: false`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

import support
from test_oauth import grant

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def promtool_check(text: str) -> None:
    """`promtool check metrics` must accept the scrape without a single lint remark."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool not found: .ci/setup installs Debian's prometheus package")
        pytest.skip("promtool not found (apt-get install prometheus)")
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), (
        f"promtool check metrics exited {done.returncode}:\n{done.stdout}{done.stderr}\n--- scrape ---\n{text}"
    )


def parse(text: str) -> Samples:
    """Every sample of the scrape by (sample name, labels), through prometheus_client's parser."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        assert family.documentation, f"{family.name} has no HELP"
        assert family.type in {"counter", "gauge", "histogram"}, (family.name, family.type)
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
    return samples


def scrape(gw: support.Gateway, token: str | None) -> Samples:
    """One scrape (with `token`, or none), checked by promtool and parsed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx2.get(f"{gw.base}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:500]}"
    assert r.headers.get("content-type") == CONTENT_TYPE, dict(r.headers)
    promtool_check(r.text)
    return parse(r.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; a series not (yet) there counts as 0."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def mcp_call(gw: support.Gateway, token: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    r = httpx2.post(f"{gw.base}/mcp", headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    json=body, timeout=30)
    assert r.status_code == 200, r.text
    return support.final_message(r)


def tools_list(gw: support.Gateway, token: str) -> int:
    r = httpx2.post(f"{gw.base}/mcp", headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)
    return r.status_code


def with_metrics(section: dict[str, Any], also: Callable[[support.Gateway], None] | None = None) -> Callable[[support.Gateway], None]:
    """A `prepare` for support.running_gateway that sets the config's `metrics` section."""

    def prepare(gw: support.Gateway) -> None:
        if also is not None:
            also(gw)
        config = json.loads(gw.config_path.read_text())
        config["metrics"] = section
        gw.config_path.write_text(json.dumps(config, indent=2))

    return prepare


def test_counters_move_by_exactly_what_was_done(tmp_path: Path) -> None:
    limits = {"principal_requests_per_minute": 600, "principal_burst": 5}
    with support.running_gateway(tmp_path, [lambda: support.start_weather(tmp_path)], limits=limits) as gw:
        scraper, caller, burster = (gw.create_token(n) for n in ("prometheus", "caller", "burster"))

        before = scrape(gw, scraper)
        version = value_label(before, "mcp_gateway_build_info", "version")
        assert version and value(before, "mcp_gateway_build_info", version=version) == 1
        assert value(before, "mcp_gateway_uptime_seconds") > 0
        assert value(before, "mcp_gateway_backend_up", server="weather") == 1
        for family in ("hits_total", "misses_total", "entries", "bytes"):
            assert (f"mcp_gateway_cache_{family}", frozenset()) in before, f"cache {family} missing: dashboards need zeros"

        ok = mcp_call(gw, caller, "weather__add", {"a": 2, "b": 3})
        assert "result" in ok and not ok["result"].get("isError"), ok
        unknown = mcp_call(gw, caller, "weather__nope", {})
        assert unknown["error"]["code"] == -32602, unknown
        invalid = mcp_call(gw, caller, "weather__add", {"a": "two", "b": 3})
        assert invalid["error"]["code"] == -32602 and "/a" in invalid["error"]["message"], invalid
        statuses = [tools_list(gw, burster) for _ in range(20)]
        assert set(statuses) <= {200, 429} and 429 in statuses, statuses
        limited, passed = statuses.count(429), statuses.count(200)
        assert httpx2.get(f"{gw.base}/metrics", timeout=10).status_code == 401
        bad = httpx2.post(f"{gw.base}/mcp", headers={"Authorization": "Bearer wrong"}, json={}, timeout=10)
        assert bad.status_code == 401
        assert httpx2.get(f"{gw.base}/nowhere", timeout=10).status_code == 404
        oauth_status = httpx2.get(f"{gw.base}/.well-known/oauth-protected-resource", timeout=10).status_code

        after = scrape(gw, scraper)
        calls = "mcp_gateway_calls_total"
        assert delta(before, after, calls, action="tools/call", server="weather", tool="weather__add", outcome="ok") == 1
        assert delta(before, after, calls, action="tools/call", server="", tool="(unknown)", outcome="refused") == 1
        assert delta(before, after, calls, action="tools/call", server="weather", tool="weather__add", outcome="refused") == 1
        assert not any(dict(labels).get("tool") == "weather__nope" for _, labels in after), "a made-up name became a label"
        assert sum(v for (n, _), v in after.items() if n == calls) - sum(v for (n, _), v in before.items() if n == calls) == 3

        # Only the call that was made has a duration; the histogram is consistent.
        hist = "mcp_gateway_call_duration_seconds"
        assert delta(before, after, f"{hist}_count", server="weather") == 1
        assert value(after, f"{hist}_bucket", server="weather", le="+Inf") == value(after, f"{hist}_count", server="weather")
        buckets = sorted(
            (float(dict(labels)["le"]), v) for (n, labels), v in after.items() if n == f"{hist}_bucket" and dict(labels)["server"] == "weather"
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets), buckets
        assert 0 < value(after, f"{hist}_sum", server="weather") < 10

        assert delta(before, after, "mcp_gateway_rate_limited_total", scope="principal") == limited
        assert delta(before, after, "mcp_gateway_rate_limited_total", scope="global") == 0
        assert delta(before, after, "mcp_gateway_auth_failures_total") == 2

        http = "mcp_gateway_http_requests_total"
        assert delta(before, after, http, face="mcp", status="200") == 3 + passed
        assert delta(before, after, http, face="mcp", status="429") == limited
        assert delta(before, after, http, face="mcp", status="401") == 1
        # The first scrape counts once it is answered, so the second one sees it.
        assert delta(before, after, http, face="status", status="200") == 1
        assert delta(before, after, http, face="status", status="401") == 1
        assert delta(before, after, http, face="other", status="404") == 1
        assert delta(before, after, http, face="oauth", status=str(oauth_status)) == 1
        assert delta(before, after, "mcp_gateway_backend_calls_total", server="weather") >= 1
        assert value(after, "mcp_gateway_audit_write_failures_total") == 0

        # The backend dies: its gauge drops to 0 (a call that fails may be what notices first).
        weather = gw.backends[0]
        assert weather.proc is not None
        weather.proc.kill()
        deadline = time.monotonic() + 30
        while True:
            now = scrape(gw, scraper)
            if value(now, "mcp_gateway_backend_up", server="weather") == 0:
                break
            assert time.monotonic() < deadline, "mcp_gateway_backend_up stayed 1 after the backend died"
            mcp_call(gw, caller, "weather__add", {"a": 1, "b": 1})
            time.sleep(0.5)


def value_label(samples: Samples, name: str, label: str) -> str:
    """The value of `label` on the one series of `name`."""
    found = [dict(labels)[label] for (n, labels) in samples if n == name]
    assert len(found) == 1, found
    return found[0]


def test_only_the_listed_tokens_may_scrape(tmp_path: Path) -> None:
    prepare = with_metrics({"tokens": ["prometheus"]}, also=support.enable_oauth)
    with support.running_gateway(tmp_path, [], prepare=prepare) as gw:
        scraper = gw.create_token("prometheus")
        scrape(gw, scraper)
        other = httpx2.get(f"{gw.base}/metrics", headers=gw.auth(), timeout=10)
        assert other.status_code == 403, other.text
        access_token = grant(gw)["access_token"]
        assert httpx2.get(f"{gw.base}/mcp", headers={"Authorization": f"Bearer {access_token}"}, timeout=10).status_code != 401
        oauth = httpx2.get(f"{gw.base}/metrics", headers={"Authorization": f"Bearer {access_token}"}, timeout=10)
        assert oauth.status_code == 403, "an OAuth token is never one of metrics.tokens"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            refused = httpx2.get(f"{gw.base}/metrics", headers=headers, timeout=10)
            assert refused.status_code == 401, refused.text
            assert refused.headers.get("www-authenticate", "").startswith("Bearer "), dict(refused.headers)
        samples = scrape(gw, scraper)
        assert value(samples, "mcp_gateway_http_requests_total", face="status", status="403") == 2
        assert value(samples, "mcp_gateway_http_requests_total", face="status", status="401") == 2
        assert value(samples, "mcp_gateway_auth_failures_total") == 2
        assert sum(v for (n, labels), v in samples.items()
                   if n == "mcp_gateway_http_requests_total" and dict(labels)["face"] == "oauth") >= 3, "the OAuth flow is counted"


def test_any_token_may_scrape_by_default_and_posts_are_refused(tmp_path: Path) -> None:
    with support.running_gateway(tmp_path, [], prepare=support.enable_oauth) as gw:
        scrape(gw, gw.token)
        scrape(gw, grant(gw)["access_token"])
        post = httpx2.post(f"{gw.base}/metrics", headers=gw.auth(), content=b"", timeout=10)
        assert post.status_code == 405 and post.headers.get("allow") == "GET", post.text


def test_public_metrics_need_no_token(tmp_path: Path) -> None:
    with support.running_gateway(tmp_path, [], prepare=with_metrics({"public": True})) as gw:
        samples = scrape(gw, None)
        assert value(samples, "mcp_gateway_auth_failures_total") == 0
        scrape(gw, "not-even-a-token")


def test_disabled_metrics_are_not_found(tmp_path: Path) -> None:
    with support.running_gateway(tmp_path, [], prepare=with_metrics({"enabled": False})) as gw:
        for headers in ({}, gw.auth()):
            r = httpx2.get(f"{gw.base}/metrics", headers=headers, timeout=10)
            assert r.status_code == 404, r.text
        assert httpx2.get(f"{gw.base}/status", headers=gw.auth(), timeout=10).status_code == 200
