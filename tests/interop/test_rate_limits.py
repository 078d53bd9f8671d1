"""Rate limits (issue 18, item 5): a token bucket per principal and one for the whole gateway.
A request over a limit gets HTTP 429 with `Retry-After`, in the protocol of its face: a JSON-RPC
error with `data.retryAfterMs` on /mcp, an OpenAI `rate_limit_exceeded` error on /v1 (which the
openai SDK reads as a RateLimitError). Other principals keep their own share.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import openai
import pytest

import support


def tools_list(gw: support.Gateway, token: str) -> httpx2.Response:
    return httpx2.post(f"{gw.base}/mcp", headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                       json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=30)


def test_a_principal_over_its_limit_gets_429_and_the_others_do_not(tmp_path: Path) -> None:
    limits = {"principal_requests_per_minute": 60, "principal_burst": 3}
    with support.running_gateway(tmp_path, [], limits=limits) as gw:
        # Fresh tokens: the harness used its own while it waited for the gateway.
        kid, other = gw.create_token("kids-tablet"), gw.create_token("other")
        assert [tools_list(gw, kid).status_code for _ in range(3)] == [200, 200, 200]
        refused = tools_list(gw, kid)
        assert refused.status_code == 429, refused.text
        assert refused.headers.get("retry-after") == "1", dict(refused.headers)
        error = refused.json()["error"]
        assert error["code"] == -32029 and "principal_requests_per_minute" in error["message"], error
        assert 0 < error["data"]["retryAfterMs"] <= 1000 and error["data"]["limit"] == "principal", error
        assert tools_list(gw, other).status_code == 200, "another token has its own bucket"
        # The OpenAI face says the same in its own protocol.
        client = openai.OpenAI(base_url=f"{gw.base}/v1", api_key=kid, max_retries=0, timeout=30)
        with pytest.raises(openai.RateLimitError) as limited:
            client.models.list()
        assert limited.value.code == "rate_limit_exceeded"
        # After Retry-After, the token works again.
        time.sleep(1.05)
        assert tools_list(gw, kid).status_code == 200


def test_the_global_limit_holds_for_all_principals_together(tmp_path: Path) -> None:
    limits = {"global_requests_per_minute": 60, "global_burst": 2}
    with support.running_gateway(tmp_path, [], limits=limits) as gw:
        other = gw.create_token("other")
        time.sleep(2.1)  # the harness's own requests while it waited drained the shared bucket
        assert tools_list(gw, gw.token).status_code == 200
        assert tools_list(gw, other).status_code == 200
        refused = tools_list(gw, other)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["data"]["limit"] == "global"
        assert "global_requests_per_minute" in refused.json()["error"]["message"]
        # /health is never limited: load balancers and procd must always see the truth.
        assert httpx2.get(f"{gw.base}/health", timeout=10).status_code == 200


def test_without_limits_a_burst_passes(tmp_path: Path) -> None:
    with support.running_gateway(tmp_path, []) as gw:
        assert {tools_list(gw, gw.token).status_code for _ in range(50)} == {200}
