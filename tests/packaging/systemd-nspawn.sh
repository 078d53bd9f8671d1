#!/usr/bin/env bash
# End-to-end test of packaging/install.sh and packaging/mcp-gateway.service under a real systemd:
# a Debian 12 container booted with systemd-nspawn (systemd as its PID 1), the real install
# (user, files, enable --now, first token), the hardened unit running stdio backends (npx and
# Python), reload, and the CLI as root and as the service's user. Not part of .ci/platforms: it
# needs root, about 5 minutes and network for the first debootstrap (Debian's mirror) and for
# npx (the npm registry); later runs reuse the container image and take about a minute.
#
#   sudo bash tests/packaging/systemd-nspawn.sh [BINARY]
#
# BINARY: a binary that runs on Debian 12 (default target/debug/mcp-gateway; a static one from
# packaging/build-static.sh works too). The base image is kept at $MCP_NSPAWN_BASE (default
# target/nspawn-debian12); each run boots a throw-away copy of it (--ephemeral). The container
# shares the host's network, so port 8080 must be free on the host.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=$(realpath "${1:-target/debug/mcp-gateway}")
base=$(realpath -m "${MCP_NSPAWN_BASE:-target/nspawn-debian12}")

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }
[ "$(id -u)" -eq 0 ] || fail "run me as root"
[ -x "$bin" ] || fail "no binary at $bin (cargo build, or give its path)"
if ss -ltn 2>/dev/null | grep -q ':8080 '; then fail "port 8080 is taken on this host"; fi

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

nspawn=(systemd-nspawn -q --keep-unit --register=no)
# nspawn cleans up under /run/systemd/nspawn, and refuses to where /run is not a tmpfs.
mounted_run=no
if [ "$(findmnt -n -o FSTYPE /run 2>/dev/null)" != tmpfs ] && ! findmnt -n /run/systemd/nspawn >/dev/null; then
    mkdir -p /run/systemd/nspawn
    mount -t tmpfs tmpfs /run/systemd/nspawn
    mounted_run=yes
fi

if [ ! -x "$base/usr/bin/npx" ]; then
    echo "== making the Debian 12 image at $base (debootstrap, then npm) =="
    rm -rf "$base"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,python3,nodejs,curl,procps,ca-certificates \
        bookworm "$base" http://deb.debian.org/debian > "$base.log" 2>&1 || fail "debootstrap (see $base.log)"
    # The image trusts what this host trusts (a registry behind a TLS-inspecting proxy).
    cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"
    "${nspawn[@]}" -D "$base" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm' \
        >> "$base.log" 2>&1 || fail "apt-get install npm in the image (see $base.log)"
fi
cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"

# What the test puts into the container (the ephemeral copy is made from $base at boot).
rm -rf "$base/root/pkg"
mkdir -p "$base/root/pkg" "$base/usr/local/lib/mcp-test" "$base/srv/share"
cp packaging/install.sh packaging/mcp-gateway.service packaging/config.example.json "$base/root/pkg/"
cp "$bin" "$base/root/pkg/mcp-gateway-x86_64"
cp tests/packaging/stdio_probe.py "$base/usr/local/lib/mcp-test/"
echo hello > "$base/srv/share/hello.txt"

log=$(mktemp)
"${nspawn[@]}" -x -b -D "$base" > "$log" 2>&1 &
nspawn_pid=$!
cleanup() {
    if [ -n "${inner:-}" ]; then nsenter -t "$inner" -a systemctl poweroff 2>/dev/null || true; fi
    for _ in $(seq 50); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.2; done
    kill "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
    [ "$mounted_run" = no ] || umount /run/systemd/nspawn 2>/dev/null || true
    rm -f "$log"
}
trap cleanup EXIT
inner=""
for _ in $(seq 100); do
    inner=$(pgrep -P "$nspawn_pid" -x systemd || true)
    [ -n "$inner" ] && break
    sleep 0.2
done
[ -n "$inner" ] || { cat "$log"; fail "the container did not boot"; }
ct() { nsenter -t "$inner" -a "$@"; }
# Right after exec its bus is not there yet: ask again until it answers.
state=""
for _ in $(seq 60); do
    state=$(ct systemctl is-system-running --wait 2>/dev/null || true)
    case "$state" in running | degraded | maintenance | stopping) break ;; esac
    sleep 1
done
[ "$state" = running ] || fail "the container's systemd is '$state'"
version=$(ct systemctl --version)
ok "Debian 12 booted with systemd as PID 1 (${version%%$'\n'*})"

# --- install ----------------------------------------------------------------------------------
out=$(ct sh /root/pkg/install.sh 2>&1) || { echo "$out"; fail "install.sh"; }
token=$(sed -n 's/^ *\(mgw_[0-9a-f]*\)$/\1/p' <<<"$out")
[ -n "$token" ] || { echo "$out"; fail "install.sh printed no token"; }
grep -q 'mcp-gateway is running' <<<"$out" || { echo "$out"; fail "install.sh did not see the gateway come up"; }
ct systemctl is-active --quiet mcp-gateway || fail "the service is not active"
ct systemctl is-enabled --quiet mcp-gateway || fail "the service is not enabled"
ok "install.sh: user, files, enable --now, the owner token printed once"
status() { ct curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" http://127.0.0.1:8080/status; }
[ "$(status "$token")" = 200 ] || fail "the printed token does not work"
journal() { ct journalctl -u mcp-gateway --no-pager -o cat; }
grep -q 'was created' <<<"$(journal)" && fail "the gateway made a default token too"
ok "the printed token works (/status 200); no default token was made"
perms=$(ct stat -c '%n %U:%G %a' /etc/mcp-gateway/config.json /etc/mcp-gateway/env /var/lib/mcp-gateway /var/lib/mcp-gateway/tokens.json /var/cache/mcp-gateway)
for want in '/etc/mcp-gateway/config.json root:mcp-gateway 640' '/etc/mcp-gateway/env root:root 600' \
    '/var/lib/mcp-gateway mcp-gateway:mcp-gateway 700' \
    '/var/lib/mcp-gateway/tokens.json mcp-gateway:mcp-gateway 600' \
    '/var/cache/mcp-gateway mcp-gateway:mcp-gateway 700'; do
    grep -qx "$want" <<<"$perms" || { echo "$perms"; fail "owners or modes: no '$want'"; }
done
ok "owners and modes: config root:mcp-gateway 640, env 600, state and cache mcp-gateway 700"
pid=$(ct systemctl show -p MainPID --value mcp-gateway)
out2=$(ct sh /root/pkg/install.sh 2>&1) || { echo "$out2"; fail "install.sh, second run"; }
grep -q 'mgw_' <<<"$out2" && fail "the second run printed a token"
[ "$(ct systemctl show -p MainPID --value mcp-gateway)" = "$pid" ] || fail "the second run restarted the service"
ok "a second run changes nothing (no token, no restart)"
out=$(ct systemd-analyze verify /etc/systemd/system/mcp-gateway.service 2>&1) || fail "verify: $out"
[ -z "$out" ] || fail "verify is not clean: $out"
score=$(ct systemd-analyze security mcp-gateway | sed -n 's/.*exposure level for mcp-gateway.service: \([0-9.]*\).*/\1/p')
ok "systemd-analyze verify clean; security (the running unit): $score"

# --- stdio backends under the sandbox ---------------------------------------------------------
ct sh -c 'cat > /etc/mcp-gateway/config.json <<EOF
{
  "listen": "0.0.0.0:8080",
  "state_dir": "/var/lib/mcp-gateway",
  "mcpServers": {
    "py": {"command": "python3", "args": ["/usr/local/lib/mcp-test/stdio_probe.py"]},
    "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem@2026.8.31", "/srv/share"]},
    "everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything@2026.8.31"]}
  }
}
EOF
chown mcp-gateway /srv/share
mkdir -p /etc/systemd/system/mcp-gateway.service.d
printf "[Service]\nReadWritePaths=/srv/share\n" > /etc/systemd/system/mcp-gateway.service.d/share.conf
systemctl daemon-reload && systemctl restart mcp-gateway'
for _ in $(seq 180); do
    n=$(grep -c '\] connected (stdio' <<<"$(journal)" || true)
    [ "$n" -ge 3 ] && break
    sleep 1
done
[ "$n" -ge 3 ] || { journal | tail -20; fail "the stdio backends did not all connect"; }
ok "three stdio backends connect under the unit: python3, and two npx packages fetched into /var/cache/mcp-gateway"
call() {
    ct curl -s -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -H 'Accept: application/json, text/event-stream' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"$1\",\"arguments\":$2}}" \
        http://127.0.0.1:8080/mcp
}
probe=$(call py__probe '{}')
for want in '\"home_writable\": true' '\"cache_writable\": true' '\"tmp_writable\": true' '\"home\": \"/var/lib/mcp-gateway\"'; do
    grep -qF "$want" <<<"$probe" || fail "probe: no $want in $probe"
done
ok "a stdio backend has a writable HOME, cache and /tmp"
r=$(call files__write_file '{"path":"/srv/share/out.txt","content":"written"}')
grep -q 'Successfully wrote' <<<"$r" || fail "write through ReadWritePaths: $r"
[ "$(ct cat /srv/share/out.txt)" = written ] || fail "the file was not written"
r=$(call everything__echo '{"message":"hi"}')
grep -q 'Echo: hi' <<<"$r" || fail "everything__echo: $r"
ok "npx backends answer; a write to a ReadWritePaths folder works"
ct sh -c 'rm -r /etc/systemd/system/mcp-gateway.service.d && systemctl daemon-reload && systemctl restart mcp-gateway'
for _ in $(seq 60); do
    [ "$(grep -c '\[files\] connected' <<<"$(journal)")" -ge 2 ] && break
    sleep 1
done
sleep 1
r=$(call files__write_file '{"path":"/srv/share/out2.txt","content":"x"}')
grep -q 'EROFS' <<<"$r" || fail "a write outside ReadWritePaths was not refused: $r"
ok "without ReadWritePaths the same write is refused (EROFS: ProtectSystem=strict)"

# --- reload and the command line ----------------------------------------------------------------
pid=$(ct systemctl show -p MainPID --value mcp-gateway)
ct sh -c 'python3 -c "
import json; p=\"/etc/mcp-gateway/config.json\"; c=json.load(open(p))
c[\"mcpServers\"][\"py2\"]={\"command\":\"python3\",\"args\":[\"/usr/local/lib/mcp-test/stdio_probe.py\"]}
json.dump(c,open(p,\"w\"))"'
ct systemctl reload mcp-gateway || fail "systemctl reload"
sleep 1
grep -q 'added py2' <<<"$(journal)" || fail "the reload did not add py2"
[ "$(ct systemctl show -p MainPID --value mcp-gateway)" = "$pid" ] || fail "reload restarted the process"
ok "systemctl reload: check-config, SIGHUP; a backend added without a restart"
ct cp /etc/mcp-gateway/config.json /root/good.json
ct sh -c 'echo "{\"mcpServers\": {\"x\": {\"url\": 5}}}" > /etc/mcp-gateway/config.json'
ct systemctl reload mcp-gateway 2>/dev/null && fail "a broken config was reloaded"
ct systemctl is-active --quiet mcp-gateway || fail "a broken config stopped the service"
ct cp /root/good.json /etc/mcp-gateway/config.json
ok "a broken config fails systemctl reload; the gateway keeps running"
ct runuser -u mcp-gateway -- mcp-gateway reload --config /etc/mcp-gateway/config.json > /dev/null || fail "mcp-gateway reload as the service's user"
ct mcp-gateway reload --config /etc/mcp-gateway/config.json > /dev/null || fail "mcp-gateway reload as root"
ct mcp-gateway healthcheck --config /etc/mcp-gateway/config.json > /dev/null || fail "mcp-gateway healthcheck"
ok "mcp-gateway reload (as root and as mcp-gateway) and healthcheck"
t2=$(ct runuser -u mcp-gateway -- mcp-gateway token create laptop --config /etc/mcp-gateway/config.json | tail -n 1)
[ "$(status "$t2")" = 200 ] || fail "a token made as the service's user does not work at once"
t3=$(ct mcp-gateway token create made-by-root --config /etc/mcp-gateway/config.json | tail -n 1)
[ "$(status "$t3")" = 401 ] || echo "notice: a token made by root works at once (the CLI now keeps the folder's owner?)"
ct systemctl reload mcp-gateway
sleep 1
[ "$(status "$t3")" = 200 ] || fail "systemctl reload did not hand a root-made token file back to the service"
[ "$(status "$t2")" = 200 ] || fail "the other tokens stopped working"
ok "a token made as mcp-gateway works at once; one made by root works after systemctl reload"
ct systemctl restart mcp-gateway
sleep 2
ct systemctl is-active --quiet mcp-gateway || fail "restart"
[ "$(status "$token")" = 200 ] || fail "the owner token after a restart"
ok "after a restart every token still works"
echo "systemd end-to-end test passed"
