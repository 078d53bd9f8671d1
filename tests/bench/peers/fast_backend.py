"""The benchmark's backend: the official MCP Python SDK's MCPServer with one tool, `add(a, b)`.

Usage: python fast_backend.py streamable-http PORT     serves http://127.0.0.1:PORT/mcp
       python fast_backend.py stdio                    speaks MCP on stdin/stdout

Over HTTP it is as quick as the SDK allows: stateless (no session to look up), plain JSON answers
(no SSE stream to open), warnings only, no access log. Both MCP eras are served: the 2026-07-28
stateless POST and the `initialize` handshake (a stateless server simply gives no Mcp-Session-Id).
"""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("bench", version="1.0.0", log_level="WARNING")


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def serve_http(port: int) -> None:
    import uvicorn

    app = mcp.streamable_http_app(stateless_http=True, json_response=True, host="127.0.0.1")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "streamable-http":
        serve_http(int(sys.argv[2]))
    elif len(sys.argv) == 2 and sys.argv[1] == "stdio":
        mcp.run("stdio")
    else:
        sys.exit(__doc__)
