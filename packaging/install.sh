#!/bin/sh
# Installs mcp-gateway as a systemd service on Debian or Raspberry Pi OS (64-bit kernel:
# x86_64 or aarch64). Run as root, from a folder holding this script, mcp-gateway.service,
# config.example.json and the static binary (mcp-gateway-x86_64 / mcp-gateway-aarch64, or
# mcp-gateway), or from a checkout after packaging/build-static.sh (target/static/).
#
#   sh install.sh [--binary PATH] [--no-start] [--root DIR] [--dry-run]
#
#   --binary PATH  the mcp-gateway binary to install (default: found as said above)
#   --no-start     install and create the first token, but do not enable or start the service
#   --root DIR     install under DIR instead of / (implies --no-start; no user, no chown, no
#                  systemctl): to look at or test the file layout
#   --dry-run      print what would be done, change nothing
#
# What it does, each step skipped when already done (a second run changes nothing but the
# binary and the unit, and restarts the service only if one of them changed):
#   - a system user mcp-gateway (home /var/lib/mcp-gateway, no login)
#   - /usr/local/bin/mcp-gateway (replaced atomically, so upgrading a running gateway is safe)
#   - /etc/mcp-gateway/config.json from config.example.json, only if there is none: an existing
#     config is never overwritten; /etc/mcp-gateway/env for secrets, only if there is none
#   - /etc/systemd/system/mcp-gateway.service, /var/lib/mcp-gateway (state, 0700)
#   - the first token, named owner, created before the first start (so the gateway never
#     makes and logs a "default" one), printed once with the URLs to give your clients
#   - systemctl daemon-reload, enable --now
set -eu

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}
die() {
    echo "install.sh: $*" >&2
    exit 1
}
say() {
    echo "== $*"
}

binary=""
root=""
start=yes
dry_run=no
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) [ $# -ge 2 ] || die "--binary needs a path"; binary=$2; shift 2 ;;
        --binary=*) binary=${1#--binary=}; shift ;;
        --root) [ $# -ge 2 ] || die "--root needs a folder"; root=$2; shift 2 ;;
        --root=*) root=${1#--root=}; shift ;;
        --no-start) start=no; shift ;;
        --dry-run) dry_run=yes; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
if [ -n "$root" ]; then
    [ "$dry_run" = yes ] || mkdir -p "$root" || die "cannot create $root"
    root=$(cd "$root" 2>/dev/null && pwd || echo "$root")
    [ "$root" != / ] || root=""
fi
[ -n "$root" ] && start=no

# Runs a command that changes the system, or only prints it with --dry-run.
run() {
    if [ "$dry_run" = yes ]; then
        echo "would run: $*"
    else
        "$@"
    fi
}

# Runs a command with the secrets of the env file in its environment (a config may name them).
with_env() {
    (
        if [ -r "$env_file" ]; then
            set -a
            # shellcheck disable=SC1090 # the admin's secrets, KEY=value lines
            . "$env_file"
            set +a
        fi
        "$@"
    )
}

if [ -z "$root" ] && [ "$dry_run" = no ] && [ "$(id -u)" -ne 0 ]; then
    die "run me as root (sudo sh $0 ...), or with --root DIR or --dry-run"
fi

# The machine's architecture decides the binary. A static binary needs only the kernel's
# architecture: a 64-bit kernel with a 32-bit userland (Raspberry Pi OS 32-bit on a Pi 4 or 5)
# says aarch64 here and runs the aarch64 binary fine.
machine=$(uname -m)
case "$machine" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64 | armv8*) arch=aarch64 ;;
    armv7* | armv6* | armhf | arm)
        die "this is a 32-bit ARM kernel ($machine): mcp-gateway is built for x86_64 and aarch64 only. On a Raspberry Pi 3, 4, 5 or Zero 2, install the 64-bit Raspberry Pi OS (or set arm_64bit=1 in /boot/firmware/config.txt); older Pis (1, 2, Zero) are not supported." ;;
    *) die "unsupported architecture $machine: mcp-gateway is built for x86_64 and aarch64" ;;
esac

if [ -z "$binary" ]; then
    for candidate in "$here/mcp-gateway-$arch" "$here/mcp-gateway" "$here/../target/static/mcp-gateway-$arch"; do
        if [ -f "$candidate" ]; then
            binary=$candidate
            break
        fi
    done
    [ -n "$binary" ] || die "no binary found: put mcp-gateway-$arch next to install.sh, or give --binary PATH"
fi
[ -f "$binary" ] || die "no such binary: $binary"
version=$("$binary" --version 2>/dev/null) \
    || die "$binary does not run on this machine ($machine): is it the $arch build?"
say "installing $version ($binary) for $arch${root:+ under $root}"
[ "$dry_run" = yes ] && echo "(dry run: nothing is changed)"

unit_src="$here/mcp-gateway.service"
config_src="$here/config.example.json"
[ -f "$unit_src" ] || die "missing $unit_src (keep install.sh beside mcp-gateway.service)"
[ -f "$config_src" ] || die "missing $config_src (keep install.sh beside config.example.json)"

user=mcp-gateway
bin_dst="$root/usr/local/bin/mcp-gateway"
etc_dir="$root/etc/mcp-gateway"
config="$etc_dir/config.json"
env_file="$etc_dir/env"
unit_dst="$root/etc/systemd/system/mcp-gateway.service"
state_dir="$root/var/lib/mcp-gateway"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# --- the service's user -------------------------------------------------------------------
if [ -z "$root" ]; then
    if getent passwd "$user" >/dev/null 2>&1; then
        say "user $user exists"
    else
        say "creating system user $user"
        nologin=/usr/sbin/nologin
        [ -x "$nologin" ] || nologin=/bin/false
        run useradd --system --user-group --home-dir /var/lib/mcp-gateway --no-create-home \
            --shell "$nologin" --comment "mcp-gateway service" "$user"
    fi
fi

# --- the binary ---------------------------------------------------------------------------
changed=no
# install_file SRC DST MODE: puts SRC at DST unless DST is already the same (then changed=yes).
# A new file is renamed over the old one: a running gateway keeps its binary until restarted.
install_file() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        say "$2 is up to date"
    else
        say "installing $2"
        changed=yes
        run mkdir -p "$(dirname "$2")"
        run install -m "$3" "$1" "$2.new"
        run mv -f "$2.new" "$2"
    fi
}
install_file "$binary" "$bin_dst" 0755

# --- config and secrets ---------------------------------------------------------------------
run mkdir -p "$etc_dir"
run chmod 0755 "$etc_dir"
if [ -e "$config" ]; then
    say "keeping the existing $config (never overwritten)"
else
    say "writing a starting config to $config"
    # Let the box's own names through the gateway's Host check (an IP address always passes).
    host=$(hostname 2>/dev/null || echo "")
    case "$host" in
        "" | localhost | *[!A-Za-z0-9.-]*) origins="" ;;
        *.*) origins="\"http://$host:8080\"" ;;
        *) origins="\"http://$host:8080\", \"http://$host.local:8080\"" ;;
    esac
    sed "s|\"allowed_origins\": \[\]|\"allowed_origins\": [$origins]|" "$config_src" > "$tmp/config.json"
    "$binary" check-config --config "$tmp/config.json" >/dev/null \
        || die "the starting config does not pass check-config (a bug: please report it)"
    run install -m 0640 "$tmp/config.json" "$config"
    [ -n "$root" ] || run chgrp "$user" "$config"
fi
if [ ! -e "$env_file" ]; then
    say "writing $env_file (for secrets the config names as \${NAME})"
    cat > "$tmp/env" <<'EOF'
# Secrets for /etc/mcp-gateway/config.json, one KEY=value a line (quote values with spaces).
# The config uses them as "${KEY}", e.g. "headers": {"Authorization": "Bearer ${HA_TOKEN}"}.
# Read by systemd (EnvironmentFile=) and by install.sh. Keep this file mode 0600.
#HA_TOKEN=...
EOF
    run install -m 0600 "$tmp/env" "$env_file"
fi

# --- unit and state folder ------------------------------------------------------------------
install_file "$unit_src" "$unit_dst" 0644
if [ -d "$state_dir" ]; then
    say "keeping the state folder $state_dir"
else
    say "creating the state folder $state_dir"
    run mkdir -p "$state_dir"
fi
run chmod 0700 "$state_dir"
[ -n "$root" ] || run chown "$user:$user" "$state_dir"

# --- the first token ----------------------------------------------------------------------
# The CLI runs as the service's user (so tokens.json is the service's own file), with the
# secrets of the env file (a config may name them). Under --root it runs as the caller, with
# the config's state folder moved under DIR.
cli_config=$config
if [ -n "$root" ] && [ "$dry_run" = no ]; then
    configured_state=$(with_env "$binary" check-config --config "$config" 2>/dev/null \
        | sed -n 's/.*state in \(.*\))$/\1/p')
    case "$configured_state" in
        "") configured_state=/var/lib/mcp-gateway ;;
        "$root"/*) configured_state=${configured_state#"$root"} ;;
    esac
    printf '{"state_dir": "%s"}\n' "$root$configured_state" > "$tmp/cli.json"
    cli_config="$tmp/cli.json"
fi
cli() {
    if [ -n "$root" ]; then
        with_env "$bin_dst" "$@" --config "$cli_config"
    else
        with_env runuser -u "$user" -- "$bin_dst" "$@" --config "$cli_config"
    fi
}

token=""
if [ "$dry_run" = yes ]; then
    echo "would run: mcp-gateway token create owner (as $user), unless a token exists"
elif ! listing=$(cli token list 2>"$tmp/err"); then
    cat "$tmp/err" >&2
    die "mcp-gateway token list failed (above); fix the config, then run me again"
elif [ "$(printf '%s\n' "$listing" | sed -n '2,$p' | grep -c .)" -gt 0 ]; then
    say "tokens exist already (not creating another):"
    printf '%s\n' "$listing" | sed 's/^/   /'
else
    say "creating the first token, named owner"
    created=$(cli token create owner) || die "mcp-gateway token create owner failed"
    token=$(printf '%s\n' "$created" | tail -n 1)
fi

# --- start ----------------------------------------------------------------------------------
if [ "$start" = yes ]; then
    run systemctl daemon-reload
    run systemctl enable mcp-gateway
    if [ "$changed" = yes ] && systemctl is-active --quiet mcp-gateway 2>/dev/null; then
        say "restarting mcp-gateway (binary or unit changed)"
        run systemctl restart mcp-gateway
    else
        run systemctl start mcp-gateway
    fi
    if [ "$dry_run" = no ]; then
        healthy=no
        # (`mcp-gateway healthcheck` is newer than some binaries: its usage line says.)
        if "$bin_dst" --help 2>&1 | grep -q '^ *mcp-gateway healthcheck'; then
            i=0
            while [ $i -lt 15 ]; do
                if with_env "$bin_dst" healthcheck --config "$config" >/dev/null 2>&1; then
                    healthy=yes
                    break
                fi
                i=$((i + 1))
                sleep 1
            done
        else
            sleep 2
            systemctl is-active --quiet mcp-gateway && healthy=yes
        fi
        if [ "$healthy" = yes ]; then
            say "mcp-gateway is running"
        else
            echo "warning: mcp-gateway did not come up; see: journalctl -u mcp-gateway -n 50" >&2
        fi
    fi
fi

# --- what to tell the clients -------------------------------------------------------------
if [ "$dry_run" = yes ]; then
    echo "dry run: nothing was changed"
    exit 0
fi
listen=$(with_env "$binary" check-config --config "$config" 2>/dev/null | sed -n 's/.*listen \([^,]*\),.*/\1/p' || true)
port=${listen##*:}
case "$port" in "" | *[!0-9]*) port=8080 ;; esac
case "$listen" in
    127.* | localhost:* | "[::1]:"*) address="127.0.0.1 (the config listens on loopback only: change \"listen\" to reach it from the LAN)" ;;
    *) address=$(hostname -I 2>/dev/null | cut -d' ' -f1) ;;
esac
case "$address" in "" | *" "*) host_ip=127.0.0.1 ;; *) host_ip=$address ;; esac
[ -n "$address" ] || address=127.0.0.1

echo
if [ -n "$token" ]; then
    echo "Your first token (named owner). It is shown only this once: store it now."
    echo
    echo "    $token"
    echo
else
    echo "No new token was made. Make one with:"
    echo "    runuser -u $user -- mcp-gateway token create NAME --config /etc/mcp-gateway/config.json"
    echo
fi
cat <<EOF
Address: $address, port $port
- Open WebUI: Settings > Tools > MCP server: http://$host_ip:$port/mcp, auth Bearer, key = the token;
  or as an OpenAI connection (Settings > Connections): http://$host_ip:$port/v1, key = the token.
- Claude Desktop, Cursor: http://$host_ip:$port/mcp with the header "Authorization: Bearer <token>".
- Claude.ai needs a public https:// address (it refuses names that resolve to private addresses):
    1. put the gateway behind a TLS reverse proxy or tunnel (Caddy, Cloudflare Tunnel,
       tailscale funnel), e.g. a Caddyfile:  mcp.example.net { reverse_proxy 127.0.0.1:$port }
    2. set "public_url": "https://mcp.example.net" in /etc/mcp-gateway/config.json, then
       systemctl reload mcp-gateway
    3. set the owner password (read from stdin):
       runuser -u $user -- mcp-gateway oauth set-password --config /etc/mcp-gateway/config.json
    4. in Claude.ai add the custom connector https://mcp.example.net/mcp and sign in with it.
Config: /etc/mcp-gateway/config.json (after a change: systemctl reload mcp-gateway)
State:  /var/lib/mcp-gateway (tokens.json, oauth.json: back it up, never delete it)
Logs:   journalctl -u mcp-gateway
EOF
