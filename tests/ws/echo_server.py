"""A WebSocket echo server (Python `websockets`) on a Unix socket, for the upgrade suite.

Usage: echo_server.py SOCKET_PATH. Prints "ready" once listening; stops on SIGTERM.
"""

import asyncio
import signal
import sys

from websockets.asyncio.server import unix_serve


async def echo(connection):
    async for message in connection:
        await connection.send(message)


async def main(path):
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with unix_serve(echo, path, max_size=None):
        print("ready", flush=True)
        await stop


asyncio.run(main(sys.argv[1]))
