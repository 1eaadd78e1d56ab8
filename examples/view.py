"""Subscribe to every publication of a room and print the frames received per second.

python examples/view.py http://127.0.0.1:8080 TOKEN
"""

from __future__ import annotations

import asyncio
import sys
import time

from signaling.client import SignalingClient


async def count_frames(name: str, track) -> None:
    count, since = 0, time.monotonic()
    while True:
        frame = await track.recv()
        count += 1
        if time.monotonic() - since >= 5:
            print(
                f"{name}: {count / (time.monotonic() - since):.1f} fps, "
                f"{frame.width}x{frame.height}"
            )
            count, since = 0, time.monotonic()


async def main(base_url: str, token: str) -> None:
    client = SignalingClient(base_url, token)
    joined = await client.connect()
    tasks = []

    async def watch(publication: dict) -> None:
        subscription = await client.subscribe(publication["publication_id"])
        await asyncio.sleep(1)
        if "video" in subscription.tracks:
            tasks.append(
                asyncio.ensure_future(
                    count_frames(publication["name"], subscription.tracks["video"])
                )
            )

    for publication in joined["publications"]:
        await watch(publication)
    try:
        while True:
            event = await client.events.get()
            if event["type"] == "publication_added":
                await watch(event)
            elif event["type"] == "_closed":
                break
    finally:
        for task in tasks:
            task.cancel()
        await client.close()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2]))
