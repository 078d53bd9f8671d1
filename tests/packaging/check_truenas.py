#!/usr/bin/env python3
"""Static checks of packaging/truenas/ (.ci/platforms): Docker cannot run on CI, so this checks
what can be checked without it.

- compose.yaml parses (PyYAML) and is what a TrueNAS SCALE custom app needs: an image, port
  8080, /data on a host path, restart unless-stopped, the same healthcheck as the Dockerfile;
- the Dockerfile is FROM scratch, USER 65534, VOLUME /data, EXPOSE 8080, the healthcheck and
  serve entrypoint with MCP_GATEWAY_CONFIG=/data/config.json; every file it COPYs exists in the
  repository or is an output of packaging/build-static.sh, and Dockerfile.dockerignore lets each
  through.

Usage: check_truenas.py REPO_ROOT   (prints one line per check; exit 1 on any failure)
"""
import fnmatch
import json
import os
import shlex
import sys

import yaml

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
DIR = os.path.join(ROOT, "packaging", "truenas")
# What packaging/build-static.sh writes (its --out default under the target folder).
BUILD_OUTPUTS = {"target/static/mcp-gateway-x86_64", "target/static/mcp-gateway-aarch64"}
HEALTHCHECK = ["/mcp-gateway", "healthcheck", "--config", "/data/config.json"]

failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def dockerfile_instructions(path):
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = pending + line
            pending = ""
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def exec_form(text):
    return json.loads(text) if text.startswith("[") else None


def dockerignore_allows(patterns, path):
    """Docker's rule: the last pattern that matches decides; '!' re-includes."""
    allowed = True
    for p in patterns:
        negate = p.startswith("!")
        pat = p[1:] if negate else p
        if fnmatch.fnmatchcase(path, pat) or path.startswith(pat.rstrip("/") + "/"):
            allowed = negate
    return allowed


# --- Dockerfile -----------------------------------------------------------------------------
dockerfile = os.path.join(DIR, "Dockerfile")
ins = dockerfile_instructions(dockerfile)
stages = [a for i, a in ins if i == "FROM"]
check(all(s.split()[0] == "scratch" or s.split()[0].startswith("binary-") for s in stages)
      and stages[-1].startswith("binary-${TARGETARCH}"),
      "Dockerfile: every stage is FROM scratch; the last one picks the binary by TARGETARCH")
arch_stages = {s.split()[2] for s in stages if " AS " in s.upper().replace(" as ", " AS ")}
check({"binary-amd64", "binary-arm64"} <= arch_stages, "Dockerfile: stages for amd64 and arm64")

copies = []
for i, a in ins:
    if i == "COPY":
        parts = [p for p in shlex.split(a) if not p.startswith("--")]
        copies.extend(parts[:-1])
with open(os.path.join(DIR, "Dockerfile.dockerignore")) as f:
    ignore = [l.strip() for l in f if l.strip() and not l.startswith("#")]
for src in copies:
    present = os.path.exists(os.path.join(ROOT, src))
    if src in BUILD_OUTPUTS:
        check(True, f"Dockerfile: COPY {src} is an output of packaging/build-static.sh"
              + ("" if present else " (not built here)"))
    else:
        check(present, f"Dockerfile: COPY {src} exists in the repository")
    check(dockerignore_allows(ignore, src), f"Dockerfile.dockerignore lets {src} through")
check(any(s == "target/static/mcp-gateway-x86_64" for s in copies)
      and any(s == "target/static/mcp-gateway-aarch64" for s in copies),
      "Dockerfile: copies both static binaries (x86_64, aarch64)")

final = ins[max(n for n, (i, _) in enumerate(ins) if i == "FROM"):]
def last(name):
    vals = [a for i, a in final if i == name]
    return vals[-1] if vals else None
check(last("USER") in ("65534", "65534:65534"), "Dockerfile: USER 65534")
check(last("VOLUME") == "/data", "Dockerfile: VOLUME /data")
check(last("EXPOSE") == "8080", "Dockerfile: EXPOSE 8080")
check(last("ENV") == "MCP_GATEWAY_CONFIG=/data/config.json",
      "Dockerfile: ENV MCP_GATEWAY_CONFIG=/data/config.json")
check(exec_form(last("ENTRYPOINT") or "") == ["/mcp-gateway", "serve"],
      'Dockerfile: ENTRYPOINT ["/mcp-gateway", "serve"]')
hc = last("HEALTHCHECK") or ""
check(exec_form(hc[hc.find("CMD") + 3:].strip()) == HEALTHCHECK if "CMD" in hc else False,
      "Dockerfile: HEALTHCHECK CMD " + json.dumps(HEALTHCHECK))
config_copy = [a for i, a in final if i == "COPY" and "/data/config.json" in a]
check(bool(config_copy) and "--chown=65534:65534" in config_copy[0],
      "Dockerfile: the default config goes to /data/config.json, owned by 65534")

# --- compose.yaml ---------------------------------------------------------------------------
with open(os.path.join(DIR, "compose.yaml")) as f:
    compose = yaml.safe_load(f)
check(isinstance(compose, dict) and isinstance(compose.get("services"), dict),
      "compose.yaml parses and has services")
svc = compose["services"].get("mcp-gateway", {})
check(bool(svc.get("image")), f"compose.yaml: image {svc.get('image')!r}")
check(svc.get("restart") == "unless-stopped", "compose.yaml: restart unless-stopped")
ports = [str(p) for p in svc.get("ports", [])]
check(any(p.endswith(":8080") for p in ports), f"compose.yaml: port 8080 published ({ports})")
vols = svc.get("volumes", [])
data = [v for v in vols if (isinstance(v, dict) and v.get("target") == "/data")
        or (isinstance(v, str) and v.split(":")[1] == "/data")]
check(len(data) == 1 and (isinstance(data[0], str) or data[0].get("type") == "bind"),
      "compose.yaml: /data is a bind mount of a host path (a TrueNAS dataset)")
check(svc.get("healthcheck", {}).get("test") == ["CMD"] + HEALTHCHECK,
      "compose.yaml: healthcheck is the Dockerfile's")
env = svc.get("environment", {})
env = dict(e.split("=", 1) for e in env) if isinstance(env, list) else env
check(env.get("MCP_GATEWAY_CONFIG") == "/data/config.json",
      "compose.yaml: MCP_GATEWAY_CONFIG=/data/config.json")

# --- the default config ---------------------------------------------------------------------
with open(os.path.join(DIR, "config.json")) as f:
    config = json.load(f)
check(config.get("listen") == "0.0.0.0:8080", "config.json: listen 0.0.0.0:8080")
check(config.get("state_dir") == "/data/state", "config.json: state_dir /data/state")

if failures:
    print(f"{len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)
