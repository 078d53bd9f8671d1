"""A loopback HTTP/1.1 forwarder that adds `Authorization: Bearer <token>` to every request.

The conformance suite sends no Authorization header; the gateway wants a token. This sits
between them and is otherwise transparent: it works on the byte stream, so the request line,
every header (Host, Origin, Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name,
Mcp-Param-*, Last-Event-ID, in their own spelling and case), the body, and the whole answer
(status, headers, JSON or SSE) pass unchanged, and answers are relayed as their bytes arrive
(no buffering of SSE). Only the request heads are parsed, to put the header in (an
`Authorization` the client sent is replaced) and to find where each body ends, so several
requests on one keep-alive connection all get it.

Usage: python forwarder.py --listen-port N --target-port M   (token in MCP_GATEWAY_TOKEN)
Both ends are 127.0.0.1. It prints "listening" once the port is open.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 300.0  # a connection silent this long in both directions is dropped


class BadRequest(Exception):
    pass


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """One request head up to and including the blank line, or None at a clean end of stream."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise BadRequest("connection closed inside a request head") from e
        return None
    except asyncio.LimitOverrunError as e:
        raise BadRequest("request head too large") from e
    return head


def rewrite_head(head: bytes, token: bytes) -> tuple[bytes, int | None, bool]:
    """The head with our Authorization header in place of any other, its Content-Length (None
    without one) and whether the body is chunked."""
    lines = head[:-4].split(b"\r\n")
    out = [lines[0]]
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"authorization":
            continue
        if key == b"content-length":
            try:
                length = int(value.strip())
            except ValueError as e:
                raise BadRequest("bad Content-Length") from e
        if key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        out.append(line)
    out.append(b"Authorization: Bearer " + token)
    return b"\r\n".join(out) + b"\r\n\r\n", length, chunked


async def copy_exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while n > 0:
        chunk = await asyncio.wait_for(reader.read(min(n, 65536)), IDLE_TIMEOUT)
        if not chunk:
            raise BadRequest("connection closed inside a request body")
        writer.write(chunk)
        n -= len(chunk)
    await writer.drain()


async def copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Relay a chunked body as it is (chunk sizes, extensions and trailers included)."""
    while True:
        size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), IDLE_TIMEOUT)
        writer.write(size_line)
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError as e:
            raise BadRequest("bad chunk size") from e
        if size == 0:
            while True:  # trailers, then the blank line
                line = await asyncio.wait_for(reader.readuntil(b"\r\n"), IDLE_TIMEOUT)
                writer.write(line)
                if line == b"\r\n":
                    await writer.drain()
                    return
        await copy_exact(reader, writer, size + 2)


async def requests_up(client: asyncio.StreamReader, upstream: asyncio.StreamWriter, token: bytes) -> None:
    while True:
        head = await read_head(client)
        if head is None:
            break
        head, length, chunked = rewrite_head(head, token)
        upstream.write(head)
        if chunked:
            await copy_chunked(client, upstream)
        elif length:
            await copy_exact(client, upstream, length)
        else:
            await upstream.drain()
    if upstream.can_write_eof():
        upstream.write_eof()


async def answers_down(upstream: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
    while True:
        chunk = await asyncio.wait_for(upstream.read(65536), IDLE_TIMEOUT)
        if not chunk:
            break
        client.write(chunk)
        await client.drain()


async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, target: int, token: bytes) -> None:
    try:
        up_r, up_w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", target, limit=MAX_HEAD), 10)
    except (OSError, asyncio.TimeoutError):
        client_w.close()
        return
    up = asyncio.ensure_future(requests_up(client_r, up_w, token))
    down = asyncio.ensure_future(answers_down(up_r, client_w))
    try:
        # The answer stream decides the end: the upstream closing (or failing) ends the
        # connection. A request-side failure (a malformed head) ends it too.
        done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if up in done and up.exception() is None:
            await down  # the client finished sending; relay the rest of the answers
    except Exception:
        pass
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
        for w in (up_w, client_w):
            try:
                w.close()
            except Exception:
                pass


async def serve(listen: int, target: int, token: bytes) -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, target, token), "127.0.0.1", listen, limit=MAX_HEAD
    )
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--target-port", type=int, required=True)
    args = parser.parse_args()
    token = os.environ.get("MCP_GATEWAY_TOKEN", "")
    if not token:
        sys.exit("MCP_GATEWAY_TOKEN is not set")
    asyncio.run(serve(args.listen_port, args.target_port, token.encode()))


if __name__ == "__main__":
    main()
