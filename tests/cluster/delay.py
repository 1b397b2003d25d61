"""A TCP relay that holds every byte for a fixed delay each way, for kernels without netem:

    python -m tests.cluster.delay LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_S

Bytes keep their order and their timing relative to each other; each chunk is released
DELAY_S after it arrived, so the path behaves as a long link, not a slow one (throughput is
not capped). TCP hides loss as delay anyway, so this stands in for `netem delay` only.
"""

from __future__ import annotations

import asyncio
import sys
import time


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(release())
    try:
        while data := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, data))
    except (ConnectionError, OSError):
        pass
    queue.put_nowait((0.0, b""))
    try:
        await sender
    except (ConnectionError, OSError):
        pass


async def main(host: str, port: int, target_host: str, target_port: int, delay: float) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pump(reader, up_w, delay), pump(up_r, writer, delay))

    server = await asyncio.start_server(relay, host, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])))
