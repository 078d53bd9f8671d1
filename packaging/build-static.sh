#!/usr/bin/env bash
# Builds stripped, fully static release binaries of mcp-gateway for x86_64 and aarch64 Linux
# (musl), and prints a size table beside the ordinary glibc release build.
#
# Usage: packaging/build-static.sh [--out DIR] [--target x86_64|aarch64]... [--no-glibc]
#                                  [--no-install] [--max-bytes N]
#   --out DIR      where the binaries go (default: $CARGO_TARGET_DIR/static, or target/static):
#                  DIR/mcp-gateway-x86_64, DIR/mcp-gateway-aarch64, DIR/SHA256SUMS
#   --target T     build only this one (repeatable; default both)
#   --no-glibc     skip the glibc release build (it is only there for the size comparison)
#   --no-install   do not apt-get/rustup anything; fail if something is missing
#   --max-bytes N  fail if a static binary is larger than N bytes (default: no limit;
#                  MCP_GATEWAY_MAX_BYTES sets it too)
#
# What it needs, and installs when missing (idempotent; apt-get as root or through `sudo -n`):
#   rustup targets x86_64-unknown-linux-musl and aarch64-unknown-linux-musl;
#   Debian musl-tools (musl-gcc: ring, under ureq's rustls, has C and assembly to compile) and
#   gcc-aarch64-linux-gnu (the C compiler for ring on aarch64; ring's C needs no libc headers).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target_dir=${CARGO_TARGET_DIR:-target}
out=""
targets=()
glibc=1
install=1
max_bytes=${MCP_GATEWAY_MAX_BYTES:-}
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$2; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        --target) targets+=("$2"); shift 2 ;;
        --target=*) targets+=("${1#--target=}"); shift ;;
        --no-glibc) glibc=0; shift ;;
        --no-install) install=0; shift ;;
        --max-bytes) max_bytes=$2; shift 2 ;;
        --max-bytes=*) max_bytes=${1#--max-bytes=}; shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "build-static.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(x86_64 aarch64)
out=${out:-$target_dir/static}
for t in "${targets[@]}"; do
    case $t in x86_64 | aarch64) ;; *) echo "build-static.sh: unknown target $t (x86_64 or aarch64)" >&2; exit 2 ;; esac
done

# --- what the builds need ------------------------------------------------------------------------
apt_install() { # apt_install PACKAGE... (as root, or with sudo -n)
    if [ "$install" = 0 ]; then
        echo "build-static.sh: missing Debian packages $* (and --no-install was given)" >&2
        exit 1
    fi
    local as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            as_root=(sudo -n)
        else
            echo "build-static.sh: needs Debian packages $*: install them as root (apt-get install $*)" >&2
            exit 1
        fi
    fi
    echo "== apt-get install $* =="
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
need_pkgs=()
for t in "${targets[@]}"; do
    case $t in
        x86_64) command -v musl-gcc >/dev/null 2>&1 || need_pkgs+=(musl-tools) ;;
        aarch64)
            command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need_pkgs+=(gcc-aarch64-linux-gnu)
            command -v aarch64-linux-gnu-ar >/dev/null 2>&1 || need_pkgs+=(binutils-aarch64-linux-gnu)
            ;;
    esac
done
[ ${#need_pkgs[@]} -eq 0 ] || apt_install "${need_pkgs[@]}"

installed_targets=$(rustup target list --installed 2>/dev/null || true)
for t in "${targets[@]}"; do
    triple=$t-unknown-linux-musl
    if ! grep -qx "$triple" <<<"$installed_targets"; then
        if [ "$install" = 0 ]; then
            echo "build-static.sh: the Rust target $triple is missing (rustup target add $triple)" >&2
            exit 1
        fi
        echo "== rustup target add $triple =="
        rustup target add "$triple"
    fi
done

# --- builds ----------------------------------------------------------------------------------
# Both link with rust-lld (shipped with the Rust toolchain) against Rust's self-contained musl:
#   --icf=all                 folds identical functions (x86_64: -26 KiB; --icf=safe: -6 KiB)
#   -z pack-relative-relocs   x86_64 stays a static PIE (ASLR) but its 92 KiB of relocations
#                             are packed as RELR, which musl's static-PIE start-up applies: -96 KiB
#                             (a non-PIE link, -C relocation-model=static, would save 3 KiB more)
# aarch64-unknown-linux-musl links a non-PIE static executable by the target's default.
# The link arguments go to the final binary only (`cargo rustc ... --`), so they neither rebuild
# the dependencies nor reach the glibc build.
build() { # build LABEL CARGO-SUBCOMMAND-AND-ARGS...
    local label=$1 started
    shift
    echo "== cargo $* ($label) =="
    started=$(date +%s)
    cargo "$@"
    echo "$label built in $(( $(date +%s) - started )) s"
}
mkdir -p "$out"
for t in "${targets[@]}"; do
    triple=$t-unknown-linux-musl
    case $t in
        x86_64)
            CC_x86_64_unknown_linux_musl=musl-gcc \
                CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
                build "$triple" rustc --release --locked --target "$triple" --bin mcp-gateway \
                -- -C link-arg=--icf=all -C link-arg=-zpack-relative-relocs
            ;;
        aarch64)
            CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc \
                AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
                CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
                build "$triple" rustc --release --locked --target "$triple" --bin mcp-gateway \
                -- -C link-arg=--icf=all
            ;;
    esac
    cp "$target_dir/$triple/release/mcp-gateway" "$out/mcp-gateway-$t.new"
    mv "$out/mcp-gateway-$t.new" "$out/mcp-gateway-$t"
done
if [ "$glibc" = 1 ]; then
    build "glibc, for comparison" build --release --locked
fi
# SHA256SUMS of the binaries in DIR (`sha256sum -c SHA256SUMS` there checks a copy).
(cd "$out" && for f in mcp-gateway-x86_64 mcp-gateway-aarch64; do [ ! -f "$f" ] || sha256sum "$f"; done >SHA256SUMS)

# --- the size table ----------------------------------------------------------------------------
row() { # row TARGET FILE
    local bytes
    bytes=$(stat -c %s "$2")
    printf '%-34s %10s %8s %8s  %s\n' "$1" "$bytes" "$(( (bytes + 1023) / 1024 ))" \
        "$(awk -v b="$bytes" 'BEGIN { printf "%.2f", b / 1048576 }')" "$2"
}
echo
printf '%-34s %10s %8s %8s  %s\n' target bytes KiB MiB file
for t in "${targets[@]}"; do
    row "$t-unknown-linux-musl" "$out/mcp-gateway-$t"
done
if [ -f "$target_dir/release/mcp-gateway" ] && [ "$glibc" = 1 ]; then
    row "$(rustc -vV | sed -n 's/^host: //p') (glibc)" "$target_dir/release/mcp-gateway"
fi
echo

too_big=0
if [ -n "$max_bytes" ]; then
    for t in "${targets[@]}"; do
        bytes=$(stat -c %s "$out/mcp-gateway-$t")
        if [ "$bytes" -gt "$max_bytes" ]; then
            echo "FAIL mcp-gateway-$t is $bytes bytes, over the limit of $max_bytes" >&2
            too_big=1
        fi
    done
fi
exit "$too_big"
