"""The recorder's reorder buffer: packets back in sequence order, holes waited for briefly."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from sfu.media.reorder import ReorderBuffer


def rtp(seq: int, ssrc: int = 1) -> RtpPacket:
    return RtpPacket(sequence_number=seq & 0xFFFF, timestamp=seq * 10, ssrc=ssrc, payload=b"x")


def seqs(items) -> list[int]:
    return [i.packet.sequence_number for i in items]


def test_in_order_and_reordered_packets_come_out_in_order_across_the_wrap():
    buffer = ReorderBuffer(max_wait_s=0.5)
    order = [65533, 65535, 65534, 0, 2, 1, 3]
    out = []
    for n, seq in enumerate(order):
        out += buffer.push(rtp(seq), arrival=n * 0.01)
    assert seqs(out) == [65533, 65534, 65535, 0, 1, 2, 3]
    assert all(i.lost_before == 0 for i in out)
    assert buffer.packets_lost == 0


def test_a_hole_is_waited_for_then_given_up_and_a_late_packet_is_dropped():
    buffer = ReorderBuffer(max_wait_s=0.5)
    assert seqs(buffer.push(rtp(10), 0.0)) == [10]
    # 11 is missing: 12 and 13 wait for it
    assert buffer.push(rtp(12), 0.1) == []
    assert buffer.push(rtp(13), 0.2) == []
    # its retransmission arrives in time
    assert seqs(buffer.push(rtp(11), 0.3)) == [11, 12, 13]
    # 14 never comes: given up once the packet after it has waited max_wait_s
    assert buffer.push(rtp(15), 1.0) == []
    out = buffer.push(rtp(16), 1.51)
    assert seqs(out) == [15, 16]
    assert [i.lost_before for i in out] == [1, 0]
    assert buffer.push(rtp(14), 1.6) == []  # too late: its place was given up
    assert (buffer.packets_lost, buffer.packets_late) == (1, 1)


def test_many_holes_do_not_add_up_to_a_growing_delay():
    # 5% loss that nobody repairs: each hole has waited since the packet after it arrived
    buffer = ReorderBuffer(max_wait_s=0.3)
    released_at: dict[int, float] = {}
    for seq in range(2000):
        if seq % 20 == 7:
            continue
        now = seq * 0.01
        for item in buffer.push(rtp(seq), now):
            released_at[item.packet.sequence_number] = now
    delays = [released_at[s] - s * 0.01 for s in released_at]
    assert max(delays) < 0.35
    buffer.flush()
    assert buffer.packets_lost == len([s for s in range(2000) if s % 20 == 7])


def test_duplicates_are_dropped_and_a_new_ssrc_flushes_the_old_stream():
    buffer = ReorderBuffer()
    assert seqs(buffer.push(rtp(1), 0.0)) == [1]
    assert buffer.push(rtp(1), 0.0) == []
    assert buffer.push(rtp(3), 0.01) == []  # waits for 2
    out = buffer.push(rtp(500, ssrc=2), 0.02)  # a new source: the old one's tail first
    assert [(i.packet.ssrc, i.packet.sequence_number, i.lost_before) for i in out] == [
        (1, 3, 1),
        (2, 500, 0),
    ]


def test_a_sequence_jump_is_a_restart_and_flush_releases_everything():
    buffer = ReorderBuffer()
    buffer.push(rtp(1), 0.0)
    assert buffer.push(rtp(3), 0.0) == []
    out = buffer.push(rtp(30000), 0.0)
    assert seqs(out) == [3, 30000]
    assert buffer.push(rtp(30002), 0.0) == []
    assert [(i.packet.sequence_number, i.lost_before) for i in buffer.flush()] == [(30002, 1)]
