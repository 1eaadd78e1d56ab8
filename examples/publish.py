"""Publish a video file (or a test pattern) into a Lighthouse room, like a venue camera.

    python examples/publish.py http://127.0.0.1:8080 TOKEN [video.mp4]

Mint a token with `lighthouse token --room demo --role main --participant cam-1`.
"""

from __future__ import annotations

import asyncio
import sys

from aiortc import VideoStreamTrack
from aiortc.contrib.media import MediaPlayer

from signaling.client import SignalingClient


async def main(base_url: str, token: str, path: str | None) -> None:
    client = SignalingClient(base_url, token)
    joined = await client.connect()
    print(f"joined {joined['room']['name']} as {joined['peer_id']}")
    if path:
        player = MediaPlayer(path, loop=True)
        tracks = [t for t in (player.audio, player.video) if t is not None]
    else:
        tracks = [VideoStreamTrack()]  # aiortc's green test pattern
    publication_id = await client.publish(tracks)
    print(f"publishing {publication_id}; Ctrl+C to stop")
    try:
        while True:
            event = await client.events.get()
            if event["type"] == "_closed":
                break
            print("event:", event)
    finally:
        await client.close()


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
