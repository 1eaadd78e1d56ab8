"""Real aiortc peers through the running server: forwarding, keyframes, NACK, ownership."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import AudioStreamTrack

from signaling.client import SignalingClient

from conftest import BOTH_PLANES
from media import PictureTrack, face_picture, similarity


async def joined_client(
    server, participant: str, role: str = "terminal", room: str = "h264room"
) -> SignalingClient:
    client = SignalingClient(server.base_url, server.token(participant, role, room))
    await client.connect()
    return client


async def decoded_frames(track, count: int, timeout: float = 15.0):
    frames = []

    async def collect():
        while len(frames) < count:
            frames.append(await track.recv())

    await asyncio.wait_for(collect(), timeout)
    return frames


@BOTH_PLANES
@pytest.mark.parametrize("room", ["h264room", "vp8room"])
async def test_one_publisher_five_subscribers_decode_the_picture(server, room):
    picture = face_picture()
    publisher = await joined_client(server, "county-main", "main", room)
    subscribers = [await joined_client(server, f"village-{i}", "terminal", room) for i in range(5)]
    try:
        publication_id = await publisher.publish([AudioStreamTrack(), PictureTrack(picture)])
        for subscriber in subscribers:
            event = await subscriber.next_event("publication_added")
            assert event["publication_id"] == publication_id
            assert event["role"] == "main"
        # at once, as five TVs joining together do (one after another, each round trip
        # can outlast the keyframe-request window on a loaded machine)
        subscriptions = await asyncio.gather(*(s.subscribe(publication_id) for s in subscribers))
        results = await asyncio.gather(
            *(decoded_frames(s.tracks["video"], 10) for s in subscriptions)
        )
        for subscription in subscriptions:
            audio = await decoded_frames(subscription.tracks["audio"], 5)
            assert audio[-1].sample_rate == 48000
        for frames in results:
            last = frames[-1]
            assert (last.width, last.height) == (640, 360)
            assert similarity(picture, last.to_ndarray(format="rgb24")) > 0.95
            pts = [f.pts for f in frames]
            assert pts == sorted(pts) and len(set(pts)) == len(pts)
        views = list((await server.publication_views(room, publication_id)).values())
        expected_mime = {"h264room": "video/H264", "vp8room": "video/VP8"}[room]
        assert all(view["video"]["mime_type"] == expected_mime for view in views)
        # every subscriber is fed on its own worker; the origin's own ones and one pipe
        # to each other worker
        forwarded = [n for view in views for n in view["video"]["forwarded"] if n]
        assert len(forwarded) == 5
        # five subscribers starting at once were served by few keyframe requests
        assert views[0]["video"]["keyframe_requests_sent"] <= 3
        assert all(view["audio"]["mime_type"] == "audio/opus" for view in views)
        assert len([n for view in views for n in view["audio"]["forwarded"] if n]) == 5
    finally:
        for client in (publisher, *subscribers):
            await client.close()


async def test_late_subscriber_gets_a_picture_within_one_second(server):
    picture = face_picture()
    publisher = await joined_client(server, "main", "main")
    early = await joined_client(server, "early")
    try:
        publication_id = await publisher.publish([PictureTrack(picture)])
        await early.next_event("publication_added")
        await decoded_frames((await early.subscribe(publication_id)).tracks["video"], 5)
        await asyncio.sleep(3)  # the stream is well past its first keyframe
        late = await joined_client(server, "late")
        try:
            assert [p["publication_id"] for p in late.joined["publications"]] == [publication_id]
            started = time.monotonic()
            subscription = await late.subscribe(publication_id)
            frame = await asyncio.wait_for(subscription.tracks["video"].recv(), 5)
            elapsed = time.monotonic() - started
            assert similarity(picture, frame.to_ndarray(format="rgb24")) > 0.9
            assert elapsed < 1.0, f"first picture after {elapsed:.2f} s"
        finally:
            await late.close()
    finally:
        await publisher.close()
        await early.close()


async def test_lost_packets_are_retransmitted_from_the_cache(server):
    picture = face_picture()
    publisher = await joined_client(server, "main", "main")
    subscriber = await joined_client(server, "village")
    try:
        publication_id = await publisher.publish([PictureTrack(picture)])
        await subscriber.next_event("publication_added")
        subscription = await subscriber.subscribe(publication_id)
        await decoded_frames(subscription.tracks["video"], 3)
        downtrack = (
            server.room("h264room").publications[publication_id].uptracks["video"].downtracks[0]
        )
        sender = downtrack.sender
        original = sender.send_rtp_now  # the forwarding path (retransmissions use send_rtp)
        dropped: list[int] = []

        def lossy_send(data):
            seq = int.from_bytes(data[2:4], "big")
            # drop one packet in 6 of the first ones, never a retransmission (they use RTX)
            if (
                (data[1] & 0x7F) == sender.negotiated.payload_type
                and seq % 6 == 0
                and len(dropped) < 8
            ):
                dropped.append(seq)
                return True
            return original(data)

        sender.send_rtp_now = lossy_send
        frames = []
        deadline = time.monotonic() + 20
        while (len(dropped) < 8 or len(frames) < 40) and time.monotonic() < deadline:
            frames += await decoded_frames(subscription.tracks["video"], 1)
        assert len(dropped) == 8
        assert downtrack.retransmissions >= 4, "subscriber NACKs were answered from the cache"
        assert similarity(picture, frames[-1].to_ndarray(format="rgb24")) > 0.95
    finally:
        await publisher.close()
        await subscriber.close()


async def test_subscriber_picture_loss_reaches_the_publisher_deduplicated(server):
    publisher = await joined_client(server, "main", "main")
    subscriber = await joined_client(server, "village")
    try:
        publication_id = await publisher.publish([PictureTrack(face_picture())])
        await subscriber.next_event("publication_added")
        subscription = await subscriber.subscribe(publication_id)
        await decoded_frames(subscription.tracks["video"], 3)
        uptrack = server.room("h264room").publications[publication_id].uptracks["video"]
        downtrack = uptrack.downtracks[0]
        await asyncio.sleep(0.3)
        sent_before = uptrack.keyframes.sent_count
        keyframes_before = uptrack.keyframes_received
        for _ in range(10):  # a burst of PLIs from the subscriber
            await downtrack.on_keyframe_request()
        assert uptrack.keyframes.sent_count == sent_before + 1
        await asyncio.sleep(1.0)
        assert uptrack.keyframes_received > keyframes_before, "the publisher answered the PLI"
    finally:
        await publisher.close()
        await subscriber.close()


async def test_closing_the_publisher_ends_every_subscription(server):
    publisher = await joined_client(server, "main", "main")
    subscribers = [await joined_client(server, f"v{i}") for i in range(2)]
    try:
        publication_id = await publisher.publish([PictureTrack(face_picture())])
        subs = []
        for s in subscribers:
            await s.next_event("publication_added")
            subs.append(await s.subscribe(publication_id))
        await decoded_frames(subs[0].tracks["video"], 2)
        room = server.room("h264room")
        publication = room.publications[publication_id]
        server_subscriptions = list(publication.subscriptions)
        # the media objects, held before they are closed and let go
        uptrack, publication_pc = publication.uptracks["video"], publication.pc
        subscription_pcs = [sub.pc for sub in server_subscriptions]
        await publisher.close()
        for s, sub in zip(subscribers, subs, strict=True):
            ended = await s.next_event("subscription_ended")
            assert ended == {
                "type": "subscription_ended",
                "subscription_id": sub.subscription_id,
                "reason": "publication_removed",
            }
            assert (await s.next_event("publication_removed"))["publication_id"] == publication_id
            assert (await s.next_event("peer_left"))["peer_id"] == publisher.joined["peer_id"]
        assert publication_id not in room.publications
        assert all(sub.closed for sub in server_subscriptions)
        assert all(not sub.peer.subscriptions for sub in server_subscriptions)
        assert uptrack.downtracks == []
        assert publication.uptracks == {}, "the router let go of them"
        await asyncio.sleep(0.2)
        assert publication_pc.connectionState == "closed"
        assert all(pc.connectionState == "closed" for pc in subscription_pcs)
    finally:
        for s in subscribers:
            await s.close()


async def test_unsubscribe_stops_forwarding_and_keeps_the_publication(server):
    publisher = await joined_client(server, "main", "main")
    subscriber = await joined_client(server, "village")
    try:
        publication_id = await publisher.publish([PictureTrack(face_picture())])
        await subscriber.next_event("publication_added")
        subscription = await subscriber.subscribe(publication_id)
        await decoded_frames(subscription.tracks["video"], 2)
        uptrack = server.room("h264room").publications[publication_id].uptracks["video"]
        assert len(uptrack.downtracks) == 1
        await subscriber.unsubscribe(subscription.subscription_id)
        assert uptrack.downtracks == []
        assert publication_id in server.room("h264room").publications
        again = await subscriber.subscribe(publication_id)
        await decoded_frames(again.tracks["video"], 2)
    finally:
        await publisher.close()
        await subscriber.close()


NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900 -> 1970


class LatePictureTrack(PictureTrack):
    """A camera whose 30th and 70th frames come 0.8 s late (a busy publisher); the frames
    after each catch up."""

    async def recv(self):
        if self._count in (30, 70):
            await asyncio.sleep(0.8)
        return await super().recv()


async def test_sender_reports_match_the_forwarded_stream(server):
    """Each sender report's RTP time is "now" on the stream the subscriber receives, judged
    against the packets that came soonest: for each packet its timestamp minus its arrival
    (wall clock, in ticks); the largest of these plus the report's own NTP time is "now".
    The publisher's camera is late twice: aiortc pairs its report with its last packet, so
    a report right after the late frame lags its own stream by the lateness; relayed as
    it was, the subscriber's report lagged by up to 61,234 ticks (a fresh clone's first
    run once failed at 69,909), now it keeps to the stream's freshest packets."""
    from aiortc.rtp import RtcpSrPacket

    from sfu.rewriter import ts_diff

    publisher = await joined_client(server, "main", "main")
    subscriber = await joined_client(server, "village")
    try:
        publication_id = await publisher.publish(
            [AudioStreamTrack(), LatePictureTrack(face_picture())]
        )
        await subscriber.next_event("publication_added")
        subscription = await subscriber.subscribe(publication_id)
        receivers = {t.kind: t.receiver for t in subscription.pc.getTransceivers()}
        clock_rates = {"audio": 48000, "video": 90000}
        reports: dict[str, list[tuple[RtcpSrPacket, int]]] = {"audio": [], "video": []}
        first_timestamp: dict[str, int] = {}
        soonest: dict[str, float] = {}  # the largest (unwrapped timestamp - arrival ticks)
        for kind, receiver in receivers.items():
            handle_rtcp, handle_rtp = receiver._handle_rtcp_packet, receiver._handle_rtp_packet
            rate = clock_rates[kind]

            async def on_rtcp(packet, kind=kind, rate=rate, handle_rtcp=handle_rtcp):
                if isinstance(packet, RtcpSrPacket) and kind in soonest:
                    sent = packet.sender_info.ntp_timestamp / 2**32 - NTP_EPOCH_OFFSET_S
                    now_on_stream = first_timestamp[kind] + int(soonest[kind] + sent * rate)
                    reports[kind].append((packet, now_on_stream & 0xFFFFFFFF))
                await handle_rtcp(packet)

            async def on_rtp(packet, arrival_time_ms, kind=kind, rate=rate, handle_rtp=handle_rtp):
                first = first_timestamp.setdefault(kind, packet.timestamp)
                offset = ts_diff(packet.timestamp, first) - time.time() * rate
                soonest[kind] = max(soonest.get(kind, offset), offset)
                await handle_rtp(packet, arrival_time_ms)

            receiver._handle_rtcp_packet, receiver._handle_rtp_packet = on_rtcp, on_rtp
        await asyncio.sleep(4.5)
        for kind, seen in reports.items():
            assert len(seen) >= 2, f"no sender reports for {kind}"
            for report, now_on_stream in seen:
                drift = abs(ts_diff(report.sender_info.rtp_timestamp, now_on_stream))
                assert drift < 0.1 * clock_rates[kind], (kind, drift)
            assert seen[-1][0].sender_info.packet_count > seen[0][0].sender_info.packet_count
        # the subscriber's receiver reports reach the server: round-trip time is known
        publication = server.room("h264room").publications[publication_id]
        for kind in ("audio", "video"):
            assert publication.uptracks[kind].downtracks[0].sender.rtt is not None
    finally:
        await publisher.close()
        await subscriber.close()
