#!/bin/sh
# Smoke test of a running mcp-gateway: the first thing to run after installing it.
#
# Usage:
#   MCP_GATEWAY_TOKEN=mgw_... sh packaging/smoke.sh [BASE_URL]     (default http://127.0.0.1:8080)
#
# The token comes from `mcp-gateway token create NAME --config PATH` (the last line it prints); it
# must be allowed to reach gateway__status (a token created without ACCESS may reach everything).
# Needs only a POSIX sh, curl, grep, sed and tr, so it runs on a router or NAS as well as a laptop.
# SMOKE_TIMEOUT (seconds, default 10) bounds each request.
#
# One line per check, "ok  WHAT" or "FAIL WHAT: why" (with the start of the answer's body);
# it stops at the first failure with exit 1 (2 for a usage error), and exits 0 when all pass:
#   /health 200 without a token; /status with the token (JSON with "version");
#   /mcp without a token is refused with 401;
#   the handshake era (2025-11-25): initialize, Mcp-Session-Id, notifications/initialized,
#     tools/list in the session lists gateway__status, DELETE ends the session;
#   the stateless era (2026-07-28): one tools/list with the _meta envelope lists gateway__status;
#   the OpenAI face: /v1/models lists the built-in model "mcp-gateway", and a chat with it,
#     "/call gateway__status {}", answers with a non-empty message.
# /mcp answers may be JSON or SSE (text/event-stream); both are accepted.
set -u

base=${1:-http://127.0.0.1:8080}
base=${base%/}
timeout=${SMOKE_TIMEOUT:-10}
token=${MCP_GATEWAY_TOKEN:-}
if [ -z "$token" ]; then
    echo "FAIL usage: set MCP_GATEWAY_TOKEN to a token from: mcp-gateway token create NAME --config PATH" >&2
    exit 2
fi
command -v curl >/dev/null 2>&1 || { echo "FAIL usage: curl is not installed" >&2; exit 2; }

tmp=$(mktemp -d 2>/dev/null || echo "/tmp/mcp-gateway-smoke.$$")
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

checks=0
ok() {
    checks=$((checks + 1))
    echo "ok  $1"
}
fail() {
    echo "FAIL $1"
    if [ -s "$tmp/body" ]; then
        echo "     answer: $(tr -d '\r' <"$tmp/body" | tr '\n' ' ' | cut -c1-300)"
    fi
    exit 1
}

# req METHOD PATH [curl options...]: the status code goes to $code (000 when curl failed), the
# headers to $tmp/headers, the body to $tmp/body.
req() {
    method=$1
    path=$2
    shift 2
    : >"$tmp/headers"
    : >"$tmp/body"
    code=$(curl -sS --connect-timeout 5 --max-time "$timeout" -X "$method" \
        -D "$tmp/headers" -o "$tmp/body" -w '%{http_code}' "$@" "$base$path" 2>"$tmp/curl-error")
    if [ -z "$code" ] || [ "$code" = 000 ]; then
        code=000
        cp "$tmp/curl-error" "$tmp/body"
    fi
}
auth="Authorization: Bearer $token"
json="Content-Type: application/json"
accept="Accept: application/json, text/event-stream"
# body_has TEXT: the body (JSON, or the data lines of an SSE answer) contains TEXT.
body_has() { grep -F -q -- "$1" "$tmp/body"; }
# header VALUE of NAME (case-insensitive) from the last answer, without the CR.
header() {
    tr -d '\r' <"$tmp/headers" | grep -i "^$1:" | sed 's/^[^:]*:[[:space:]]*//' | sed -n '$p'
}

# --- plain HTTP ------------------------------------------------------------------------------
req GET /health
[ "$code" = 200 ] || fail "/health: status $code, expected 200"
body_has '"ok"' || fail "/health: no {\"status\":\"ok\"} in the answer"
ok "/health"

req GET /status -H "$auth"
[ "$code" = 200 ] || fail "/status: status $code, expected 200 (is MCP_GATEWAY_TOKEN a valid token?)"
body_has '"version"' || fail "/status: no \"version\" in the answer"
version=$(sed -n 's/.*"version" *: *"\([^"]*\)".*/\1/p' "$tmp/body" | sed -n '1p')
ok "/status (version $version)"

req POST /mcp -H "$json" -H "$accept" -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
[ "$code" = 401 ] || fail "/mcp without a token: status $code, expected 401"
ok "/mcp without a token is refused (401)"

# --- MCP, handshake era (2025-11-25): initialize, a session, tools/list, DELETE ----------------
req POST /mcp -H "$auth" -H "$json" -H "$accept" \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"smoke","version":"1"}}}'
[ "$code" = 200 ] || fail "/mcp initialize (2025-11-25): status $code, expected 200"
body_has '"protocolVersion":"2025-11-25"' || body_has '"protocolVersion": "2025-11-25"' ||
    fail "/mcp initialize (2025-11-25): the answer does not agree on protocolVersion 2025-11-25"
session=$(header Mcp-Session-Id)
[ -n "$session" ] || fail "/mcp initialize (2025-11-25): no Mcp-Session-Id header in the answer"
ok "/mcp initialize (2025-11-25, session ${session})"
# era_old METHOD [BODY]: a request in that session.
era_old() {
    if [ $# -gt 1 ]; then
        req "$1" /mcp -H "$auth" -H "$json" -H "$accept" \
            -H "Mcp-Session-Id: $session" -H "MCP-Protocol-Version: 2025-11-25" -d "$2"
    else
        req "$1" /mcp -H "$auth" -H "$accept" \
            -H "Mcp-Session-Id: $session" -H "MCP-Protocol-Version: 2025-11-25"
    fi
}

era_old POST '{"jsonrpc":"2.0","method":"notifications/initialized"}'
case $code in 200 | 202 | 204) ;; *) fail "/mcp notifications/initialized: status $code, expected 202" ;; esac
ok "/mcp notifications/initialized ($code)"

era_old POST '{"jsonrpc":"2.0","id":2,"method":"tools/list"}'
[ "$code" = 200 ] || fail "/mcp tools/list (2025-11-25 session): status $code, expected 200"
body_has '"gateway__status"' || fail "/mcp tools/list (2025-11-25 session): gateway__status not listed"
ok "/mcp tools/list (2025-11-25 session) lists gateway__status"

era_old DELETE
case $code in 200 | 202 | 204) ;; *) fail "DELETE /mcp (end the session): status $code, expected 200" ;; esac
ok "DELETE /mcp ends the session ($code)"

# --- MCP, stateless era (2026-07-28): one request, the version in headers and _meta -------------
req POST /mcp -H "$auth" -H "$json" -H "$accept" \
    -H "MCP-Protocol-Version: 2026-07-28" -H "Mcp-Method: tools/list" \
    -d '{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"smoke","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}'
[ "$code" = 200 ] || fail "/mcp tools/list (2026-07-28): status $code, expected 200"
body_has '"gateway__status"' || fail "/mcp tools/list (2026-07-28): gateway__status not listed"
ok "/mcp tools/list (2026-07-28) lists gateway__status"

# --- OpenAI face -------------------------------------------------------------------------------
req GET /v1/models -H "$auth"
[ "$code" = 200 ] || fail "/v1/models: status $code, expected 200"
body_has '"data"' || fail "/v1/models: no \"data\" in the answer"
# The built-in model (no LLM needed); with an upstream its models are listed after it.
model=mcp-gateway
body_has "\"id\":\"$model\"" || body_has "\"id\": \"$model\"" ||
    fail "/v1/models: the built-in model \"$model\" is not listed"
ok "/v1/models lists $model"

req POST /v1/chat/completions -H "$auth" -H "$json" \
    -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"/call gateway__status {}\"}]}"
[ "$code" = 200 ] || fail "/v1/chat/completions ($model): status $code, expected 200"
body_has '"choices"' || fail "/v1/chat/completions ($model): no \"choices\" in the answer"
grep -q '"content" *: *"[^"]' "$tmp/body" ||
    fail "/v1/chat/completions ($model): no non-empty choices[0].message.content"
if grep -q '"content" *: *"Error calling' "$tmp/body"; then
    fail "/v1/chat/completions ($model): the call of gateway__status failed"
fi
ok "/v1/chat/completions ($model, /call gateway__status) answers"

echo "smoke test passed: $checks checks against $base"
