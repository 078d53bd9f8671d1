#!/usr/bin/env bash
# Proves the static builds of packaging/build-static.sh: for each binary,
#   - `file` says it is statically linked, for the right architecture (x86-64, ARM aarch64);
#   - it runs from an otherwise EMPTY root folder (only the binary, its config and its state dir,
#     as in a `FROM scratch` image; not even /dev, /proc or /etc): `chroot` as root, else
#     `unshare -r chroot` (an unprivileged user namespace); a binary for another architecture runs
#     under Debian's qemu-user-static, whose static qemu-ARCH-static is copied into the root too;
#   - a token made by the binary itself in that root (`token create smoke`), then `serve` on a
#     free loopback port (listen 127.0.0.1:0; the port is read from its log), passes
#     packaging/smoke.sh;
# and prints the time from exec to the first /health 200, and the idle RSS (VmRSS of the process;
# under qemu that is qemu's own RSS, guest and translator together).
#
# Usage: packaging/prove-static.sh [--out DIR] [--target x86_64|aarch64]... [--starts N] [--no-install]
#   --out DIR     where build-static.sh put the binaries (default $CARGO_TARGET_DIR/static, or
#                 target/static)
#   --starts N    time N starts to healthy (default 3) and report the median as well
#   --no-install  do not apt-get anything (file, curl, qemu-user-static); fail if missing
# PROVE_JAIL=chroot|unshare forces how the empty root is entered.
# Exit 0 when every check passed; everything it started is killed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LC_ALL=C

target_dir=${CARGO_TARGET_DIR:-target}
dir=""
targets=()
starts=3
install=1
while [ $# -gt 0 ]; do
    case $1 in
        --out) dir=$2; shift 2 ;;
        --out=*) dir=${1#--out=}; shift ;;
        --target) targets+=("$2"); shift 2 ;;
        --target=*) targets+=("${1#--target=}"); shift ;;
        --starts) starts=$2; shift 2 ;;
        --starts=*) starts=${1#--starts=}; shift ;;
        --no-install) install=0; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "prove-static.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(x86_64 aarch64)
dir=${dir:-$target_dir/static}
host_arch=$(uname -m)
smoke=$PWD/packaging/smoke.sh

passed=0
ok() {
    passed=$((passed + 1))
    echo "ok  $*"
}
fail() {
    echo "FAIL $*"
    echo "prove-static: $passed passed, 1 failed"
    exit 1
}

# --- tools -------------------------------------------------------------------------------------
need_pkgs=()
command -v file >/dev/null 2>&1 || need_pkgs+=(file)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
for t in "${targets[@]}"; do
    if [ "$t" != "$host_arch" ] && ! command -v "qemu-$t-static" >/dev/null 2>&1; then
        need_pkgs+=(qemu-user-static)
    fi
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "$install" = 1 ] || fail "missing Debian packages ${need_pkgs[*]} (and --no-install was given)"
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
            fail "needs Debian packages ${need_pkgs[*]}: install them as root"
        fi
        as_root=(sudo -n)
    fi
    echo "== apt-get install ${need_pkgs[*]} =="
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mcp-gateway-prove.XXXXXX")
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- how to enter an empty root ----------------------------------------------------------------
jail=${PROVE_JAIL:-}
if [ -z "$jail" ]; then
    # Probed with chroot into / (the permission check is the same for any folder).
    if [ "$(id -u)" -eq 0 ] && chroot / true 2>/dev/null; then
        jail=chroot
    elif unshare -r chroot / true 2>/dev/null; then
        jail=unshare
    else
        fail "cannot enter an empty root: not root (chroot), and unprivileged user namespaces are off (unshare -r chroot); id: $(id)"
    fi
fi
case $jail in
    chroot) jail_cmd=(chroot) ;;
    unshare) jail_cmd=(unshare -r chroot) ;;
    *) fail "PROVE_JAIL=$jail: use chroot or unshare" ;;
esac
echo "== entering the empty roots with: ${jail_cmd[*]} ROOT (id: $(id -un), uid $(id -u)) =="

now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "${t}"; }
# The wait loop below forks nothing (a fork of curl costs ~10 ms here, more than the start):
# a short nap is a timed read on a FIFO nobody writes, /health is asked over bash's /dev/tcp.
mkfifo "$work/tick"
exec 9<>"$work/tick"
nap() { read -r -t "$1" -u 9 _ || true; }
health_200() { # health_200 HOST PORT: a GET /health answered 200
    local status=""
    exec 8<>"/dev/tcp/$1/$2" || return 1
    printf 'GET /health HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$1" "$2" >&8
    read -r -t 5 -u 8 status || true
    exec 8<&-
    [[ $status == "HTTP/1."?" 200"* ]]
}

# start ROOT LOG: serve from ROOT in the background; sets $pid, $base and $ms (exec to /health 200).
start() {
    local root=$1 log=$2 t0 addr="" line deadline
    : >"$log"
    t0=$(now_us)
    "${jail_cmd[@]}" "$root" "${runner[@]}" /mcp-gateway serve --config /config.json >"$log" 2>&1 &
    pid=$!
    pids+=("$pid")
    deadline=$(( t0 + wait_s * 1000000 ))
    while :; do
        if [ -z "$addr" ]; then
            while read -r line; do
                if [[ $line =~ listening\ on\ http://([0-9.]+):([0-9]+) ]]; then
                    addr=${BASH_REMATCH[1]}:${BASH_REMATCH[2]}
                    base=http://$addr
                    break
                fi
            done <"$log"
        fi
        if [ -n "$addr" ] && health_200 "${addr%:*}" "${addr##*:}" 2>/dev/null; then
            ms=$(( ($(now_us) - t0 + 500) / 1000 ))
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { sed 's/^/     log: /' "$log"; fail "$label: the gateway exited before it was healthy"; }
        [ "$(now_us)" -lt "$deadline" ] || { sed 's/^/     log: /' "$log"; fail "$label: not healthy within $wait_s s"; }
        nap 0.001
    done
}
# stop: SIGTERM, a bounded wait for a clean exit, then SIGKILL.
stop() {
    local i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "     (did not exit within 5 s of SIGTERM: killed)"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

summary=()
for t in "${targets[@]}"; do
    label="mcp-gateway-$t"
    bin=$dir/mcp-gateway-$t
    echo
    echo "== $label =="
    [ -f "$bin" ] || fail "$bin is missing: run packaging/build-static.sh first"

    # 1. file: static, right architecture.
    case $t in
        x86_64) arch_word="x86-64" ;;
        aarch64) arch_word="ARM aarch64" ;;
        *) fail "unknown target $t" ;;
    esac
    desc=$(file -b "$bin")
    case $desc in *"$arch_word"*) ;; *) fail "$label: file says \"$desc\", not $arch_word" ;; esac
    case $desc in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) fail "$label: file says \"$desc\", not statically linked" ;;
    esac
    case $desc in *interpreter* | *"dynamically linked"*) fail "$label: file says \"$desc\"" ;; esac
    ok "file: $desc"

    # 2. an empty root: the binary, its config, (qemu), and the state dir the binary makes.
    root=$work/root-$t
    mkdir -p "$root"
    cp "$bin" "$root/mcp-gateway"
    printf '{"listen": "127.0.0.1:0", "state_dir": "/state"}\n' >"$root/config.json"
    runner=()
    qemu_name=mcp-gateway
    how="natively"
    wait_s=15
    if [ "$t" != "$host_arch" ]; then
        qemu=$(command -v "qemu-$t-static") || fail "qemu-$t-static is missing (Debian qemu-user-static)"
        case $(file -b "$qemu") in *"static"*) ;; *) fail "$qemu is not a static binary" ;; esac
        qemu_name=qemu-$t-static
        cp "$qemu" "$root/$qemu_name"
        runner=("/$qemu_name")
        how="under qemu-$t-static"
        wait_s=60
    fi

    token=$("${jail_cmd[@]}" "$root" "${runner[@]}" /mcp-gateway token create smoke --config /config.json | sed -n '$p') ||
        fail "$label: token create in the empty root failed"
    case $token in mgw_*) ;; *) fail "$label: token create printed \"$token\" on its last line, not a token" ;; esac
    ok "token create in the empty root ($how)"

    # 3. start-to-healthy, N times; the last start stays up for the smoke test.
    times=()
    for ((i = 1; i <= starts; i++)); do
        start "$root" "$work/$t-serve.log"
        times+=("$ms")
        if [ "$i" -lt "$starts" ]; then stop; fi
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (starts + 1) / 2 ))p")
    ok "serves from the empty root $how on $base: exec to /health 200 in ${times[-1]} ms (starts: ${sorted% }; median $median ms)"

    sleep 1
    idle=$(rss_kib "$pid")
    threads=$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$pid/status")
    ok "idle RSS ${idle} KiB, $threads threads$( [ -z "${runner[*]}" ] || echo " (qemu's RSS: the translator and the guest together)")"

    echo "-- packaging/smoke.sh $base (run with sh) --"
    if ! MCP_GATEWAY_TOKEN=$token sh "$smoke" "$base" | sed 's/^/   /'; then
        fail "$label: the smoke test failed"
    fi
    after=$(rss_kib "$pid")
    ok "smoke test passed; RSS after it ${after} KiB"
    stop

    contents=$(cd "$root" && find . -mindepth 1 | sed 's|^\./||' | sort | tr '\n' ' ')
    for f in $contents; do
        case $f in
            mcp-gateway | config.json | "$qemu_name" | state | state/*) ;;
            *) fail "$label: the root holds $f, which nothing put there" ;;
        esac
    done
    ok "the root held only: ${contents% }"
    summary+=("$(printf '%-22s %-24s %9s %9s %9s %9s' "$label" "$how" "$(stat -c %s "$bin")" "$median" "$idle" "$after")")
done

echo
printf '%-22s %-24s %9s %9s %9s %9s\n' binary runs bytes "start ms" "idle KiB" "smoke KiB"
printf '%s\n' "${summary[@]}"
echo "(start ms: median exec-to-/health-200 over $starts starts; KiB: VmRSS, under qemu qemu's own; empty root entered with ${jail_cmd[*]})"
echo "prove-static: $passed passed, 0 failed"
