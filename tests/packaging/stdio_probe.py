#!/usr/bin/env python3
"""A minimal MCP stdio server (standard library only) for the packaging tests: its one tool,
`probe`, reports what a stdio backend sees under the service's sandbox (user, HOME, whether HOME
and the cache folder are writable, /tmp), so a test can check the unit gives backends what npx and
uvx need."""
import json
import os
import sys
import tempfile


def writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            return True
    except OSError:
        return False


def probe():
    home = os.environ.get("HOME", "")
    cache = os.environ.get("XDG_CACHE_HOME", "")
    return {
        "uid": os.getuid(),
        "home": home,
        "home_writable": bool(home) and writable(os.path.join(home, ".probe")),
        "cache": cache,
        "cache_writable": bool(cache) and writable(os.path.join(cache, "probe")),
        "tmp_writable": writable(tempfile.gettempdir()),
        "cwd": os.getcwd(),
    }


def answer(msg_id, result=None, error=None):
    out = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        out["error"] = error
    else:
        out["result"] = result
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


TOOL = {
    "name": "probe",
    "description": "What a stdio backend sees in the service's sandbox",
    "inputSchema": {"type": "object", "properties": {}},
    "annotations": {"readOnlyHint": True},
}

for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    method, msg_id = msg.get("method"), msg.get("id")
    if msg_id is None:
        continue  # notifications
    if method == "initialize":
        version = msg.get("params", {}).get("protocolVersion", "2025-06-18")
        answer(msg_id, {"protocolVersion": version, "capabilities": {"tools": {}},
                        "serverInfo": {"name": "stdio-probe", "version": "1"}})
    elif method == "tools/list":
        answer(msg_id, {"tools": [TOOL]})
    elif method == "tools/call":
        text = json.dumps(probe(), sort_keys=True)
        answer(msg_id, {"content": [{"type": "text", "text": text}], "isError": False})
    elif method == "ping":
        answer(msg_id, {})
    else:
        answer(msg_id, error={"code": -32601, "message": f"method not found: {method}"})
