"""A WebSocket client (Python `websockets`) that exercises a proxied echo server.

Usage: client.py URL. Prints one line per check; exits non-zero on any failure.
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


async def main(url, refused_url):
    async with connect(url, max_size=None, open_timeout=20) as ws:
        await ws.send("hello through the proxy")
        assert await ws.recv() == "hello through the proxy"
        print("text ok", flush=True)

        payload = bytes(range(256)) * 16
        await ws.send(payload)
        assert await ws.recv() == payload
        print("binary ok", flush=True)

        large = bytes((i * 7) % 251 for i in range(4 * 1024 * 1024))
        await ws.send(large)
        echoed = await ws.recv()
        assert echoed == large, f"large message: got {len(echoed)} bytes"
        print("large ok", flush=True)

        for i in range(100):
            await ws.send(f"message {i}")
        for i in range(100):
            assert await ws.recv() == f"message {i}"
        print("ordered ok", flush=True)

        await ws.close(code=1000, reason="done")
    assert ws.close_code == 1000, ws.close_code
    print(f"close ok {ws.close_code}", flush=True)

    try:
        async with connect(refused_url, open_timeout=20):
            print("refused FAILED: the upgrade went through", flush=True)
            sys.exit(1)
    except InvalidStatus as error:
        print(f"refused {error.response.status_code}", flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2]))
