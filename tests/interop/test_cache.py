"""The result cache (`cache_ttl_secs` on a server): a read-only tool's successful result is kept
for that many seconds per principal and per arguments (their key order aside); a repeat within
the TTL is answered without the backend. Never cached: tools that are not read-only, error
results, another principal's entries. `limits.cache_max_entries` / `limits.cache_max_bytes`
bound it; GET /status shows `cache: {hits, misses, entries, bytes}`.

  house   fixtures/guarded_house.py, whose `counter` answers "<label>#<n>" with n rising on
          every call (a cached answer repeats the old n); entry "house": cache_ttl_secs 30 and
          `read_only_tools: ["thermostat"]`
  brief   the same backend once more, cache_ttl_secs 2 and no read_only_tools
  small   another gateway: house with cache_ttl_secs 30, cache_max_entries 2, cache_max_bytes 4096
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import support
from test_access import House, create_token, result_text, start_house, tool_call, unique

LONG_TTL = 30
SHORT_TTL = 2
EXPIRY_DEADLINE = SHORT_TTL + 3.0  # seconds after the first call by which the entry must be gone
SMALL_LIMITS = {"cache_max_entries": 2, "cache_max_bytes": 4096}
CACHE_KEYS = ("hits", "misses", "entries", "bytes")


@pytest.fixture(scope="module")
def house(tmp_path_factory: pytest.TempPathFactory) -> Iterator[House]:
    h = start_house(tmp_path_factory.mktemp("cache-house"))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, house: House) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("cache")
    starters = [
        lambda: house.borrowed("house", cache_ttl_secs=LONG_TTL, read_only_tools=["thermostat"]),
        lambda: house.borrowed("brief", cache_ttl_secs=SHORT_TTL),
    ]
    with support.running_gateway(workdir, starters) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, house: House) -> Iterator[support.Gateway]:
    workdir = tmp_path_factory.mktemp("cache-small")
    starters = [lambda: house.borrowed("house", cache_ttl_secs=LONG_TTL)]
    with support.running_gateway(workdir, starters, limits=SMALL_LIMITS) as gateway:
        yield gateway


def cache_status(gw: support.Gateway) -> dict[str, int]:
    cache = gw.status().get("cache")
    assert isinstance(cache, dict), f"/status has no cache section: {gw.status()}"
    for key in CACHE_KEYS:
        assert isinstance(cache.get(key), int) and cache[key] >= 0, cache
    return cache


def counted(gw: support.Gateway, token: str, arguments: dict[str, Any], server: str = "house") -> str:
    """Call `<server>__counter`; the text it answers (a successful result)."""
    message = tool_call(gw, token, f"{server}__counter", arguments)
    assert "result" in message and not message["result"].get("isError"), message
    return result_text(message)


def test_a_repeated_read_is_answered_from_the_cache(gw: support.Gateway, house: House) -> None:
    label = unique("repeat")
    before = cache_status(gw)
    first = tool_call(gw, gw.token, "house__counter", {"label": label})
    middle = cache_status(gw)
    second = tool_call(gw, gw.token, "house__counter", {"label": label})
    after = cache_status(gw)
    assert "result" in first and not first["result"].get("isError"), first
    assert result_text(first).startswith(f"{label}#"), first
    assert second.get("result", {}).get("content") == first["result"]["content"], (first, second)
    assert second["result"].get("isError") == first["result"].get("isError"), (first, second)
    assert len(house.tool_calls("counter", label=label)) == 1, house.tool_calls("counter", label=label)
    assert middle["misses"] == before["misses"] + 1 and middle["hits"] == before["hits"], (before, middle)
    assert after["hits"] == middle["hits"] + 1 and after["misses"] == middle["misses"], (middle, after)
    assert after["entries"] >= 1 and after["bytes"] > 0, after


def test_the_order_of_the_arguments_does_not_matter(gw: support.Gateway, house: House) -> None:
    label = unique("order")
    first = counted(gw, gw.token, {"label": label, "step": 2})
    hits = cache_status(gw)["hits"]
    second = counted(gw, gw.token, {"step": 2, "label": label})  # the same object, keys the other way round
    assert second == first
    assert cache_status(gw)["hits"] == hits + 1
    assert len(house.tool_calls("counter", label=label)) == 1


def test_other_arguments_reach_the_backend(gw: support.Gateway, house: House) -> None:
    label, other = unique("args"), unique("args")
    first = counted(gw, gw.token, {"label": label})
    assert counted(gw, gw.token, {"label": other}) != first
    stepped = counted(gw, gw.token, {"label": label, "step": 3})
    assert stepped != first
    assert len(house.tool_calls("counter", label=label)) == 2 and len(house.tool_calls("counter", label=other)) == 1
    assert counted(gw, gw.token, {"label": label}) == first, "the first entry is still there"
    assert len(house.tool_calls("counter", label=label)) == 2


def test_another_principal_never_gets_an_entry_it_did_not_make(gw: support.Gateway, house: House) -> None:
    other_token = create_token(gw, unique("cache-other"))
    label = unique("principal")
    mine = counted(gw, gw.token, {"label": label})
    assert counted(gw, gw.token, {"label": label}) == mine, "not cached for its own principal"
    theirs = counted(gw, other_token, {"label": label})
    assert theirs != mine
    assert len(house.tool_calls("counter", label=label)) == 2
    assert counted(gw, other_token, {"label": label}) == theirs, "the other principal has an entry of its own"
    assert len(house.tool_calls("counter", label=label)) == 2


def test_a_tool_that_is_not_read_only_is_never_cached(gw: support.Gateway, house: House) -> None:
    mark = house.mark()
    hits = cache_status(gw)["hits"]
    for _ in range(2):
        message = tool_call(gw, gw.token, "house__set_lights", {"room": "attic", "on": True})
        assert "result" in message and not message["result"].get("isError"), message
    assert len(house.tool_calls("set_lights", mark, room="attic")) == 2
    assert cache_status(gw)["hits"] == hits


def test_read_only_tools_from_the_config_are_cached_and_unannotated_ones_are_not(gw: support.Gateway, house: House) -> None:
    # `house` lists thermostat in read_only_tools; `brief` (the same backend) does not.
    mark = house.mark()
    for _ in range(2):
        assert result_text(tool_call(gw, gw.token, "brief__thermostat", {})) == "21.5C"
    assert len(house.tool_calls("thermostat", mark)) == 2, "a tool without readOnlyHint was cached"
    mark = house.mark()
    for _ in range(2):
        assert result_text(tool_call(gw, gw.token, "house__thermostat", {})) == "21.5C"
    assert len(house.tool_calls("thermostat", mark)) == 1, "read_only_tools did not make thermostat cacheable"


def test_an_error_result_is_never_cached(gw: support.Gateway, house: House) -> None:
    mark = house.mark()
    for _ in range(2):
        message = tool_call(gw, gw.token, "house__broken_reader", {})
        assert "result" in message and message["result"].get("isError") is True, message
    assert len(house.tool_calls("broken_reader", mark)) == 2


def test_an_entry_expires_after_its_ttl(gw: support.Gateway, house: House) -> None:
    label = unique("expiry")
    started = time.monotonic()
    first = counted(gw, gw.token, {"label": label}, server="brief")
    assert counted(gw, gw.token, {"label": label}, server="brief") == first, "not cached within its TTL"
    assert len(house.tool_calls("counter", label=label)) == 1
    deadline = started + EXPIRY_DEADLINE
    latest = first
    while latest == first and time.monotonic() < deadline:
        time.sleep(0.1)
        latest = counted(gw, gw.token, {"label": label}, server="brief")
    assert latest != first, f"still the cached answer {EXPIRY_DEADLINE}s after a {SHORT_TTL}s TTL began"
    assert len(house.tool_calls("counter", label=label)) == 2


def test_the_cache_keeps_at_most_cache_max_entries(small: support.Gateway, house: House) -> None:
    labels = [unique("entries") for _ in range(3)]
    answers = [counted(small, small.token, {"label": label}) for label in labels]
    status = cache_status(small)
    assert 1 <= status["entries"] <= SMALL_LIMITS["cache_max_entries"], status
    # The newest entry is one it kept.
    assert counted(small, small.token, {"label": labels[-1]}) == answers[-1]
    assert len(house.tool_calls("counter", label=labels[-1])) == 1


def test_a_result_bigger_than_cache_max_bytes_is_not_kept(small: support.Gateway, house: House) -> None:
    label = unique("big") + "-" + "x" * (SMALL_LIMITS["cache_max_bytes"] + 1000)
    first = counted(small, small.token, {"label": label})
    assert counted(small, small.token, {"label": label}) != first
    assert len(house.tool_calls("counter", label=label)) == 2
    assert cache_status(small)["bytes"] <= SMALL_LIMITS["cache_max_bytes"]


def test_metrics_report_the_same_cache_figures_as_status(gw: support.Gateway) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    label = unique("metrics")
    counted(gw, gw.token, {"label": label})
    counted(gw, gw.token, {"label": label})

    def scrape() -> dict[str, float]:
        response = support.httpx2.get(f"{gw.base}/metrics", headers=gw.auth(), timeout=10)
        assert response.status_code == 200, response.text
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name.startswith("mcp_gateway_cache_"):
                    samples[sample.name] = sample.value
        return samples

    status = cache_status(gw)
    figures = scrape()
    assert figures["mcp_gateway_cache_hits_total"] == status["hits"] >= 1, (figures, status)
    assert figures["mcp_gateway_cache_misses_total"] == status["misses"] >= 1, (figures, status)
    assert figures["mcp_gateway_cache_entries"] == status["entries"] >= 1, (figures, status)
    assert figures["mcp_gateway_cache_bytes"] == status["bytes"] > 0, (figures, status)
