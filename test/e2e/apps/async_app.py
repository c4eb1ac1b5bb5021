"""Event-loop HTTP/1.1 proxy (asyncio, one thread): python3 async_app.py PORT.

GET /proxy/<port>/<path> fetches GET /<path> from 127.0.0.1:<port> on a new connection and
answers with its status and body. Used to measure in-process parenting on an event loop,
where one thread serves many requests at once.
"""

import asyncio
import sys


async def fetch(port, path):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ")[1].decode()
            status, body = 404, b"not found\n"
            if target.startswith("/proxy/"):
                port, _, rest = target[len("/proxy/"):].partition("/")
                status, body = await fetch(int(port), "/" + rest)
            writer.write(f"HTTP/1.1 {status} OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
