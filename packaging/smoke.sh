#!/bin/sh
# Smoke test of a running gateway with curl: health, auth refusal, tools/list, gateway__status.
# Usage: MCP_GATEWAY_TOKEN=... packaging/smoke.sh [http://127.0.0.1:8080]
set -eu
base=${1:-http://127.0.0.1:8080}
token=${MCP_GATEWAY_TOKEN:?set MCP_GATEWAY_TOKEN to a token from: mcp-gateway token create NAME}
fail() { echo "FAIL: $*" >&2; exit 1; }
post() {
    curl -sS -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' -d "$1" "$base/mcp"
}
curl -sS "$base/health" | grep -q '"ok"' || fail "/health"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{}' "$base/mcp")
[ "$code" = 401 ] || fail "/mcp without a token answered $code, expected 401"
post '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' | grep -q '"gateway__status"' || fail "tools/list"
post '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"gateway__status","arguments":{}}}' \
    | grep -q '"isError":false' || fail "tools/call gateway__status"
echo "smoke test passed against $base"
