import itertools

from sfu.rewriter import StreamRewriter, parse_header, rewrite_header, seq_diff, ts_diff


def test_seq_and_ts_diff_wrap_around():
    assert seq_diff(2, 65534) == 4
    assert seq_diff(65534, 2) == -4
    assert ts_diff(5, 0xFFFFFFF0) == 0x15
    assert ts_diff(0xFFFFFFF0, 5) == -0x15


def test_sequence_continues_across_upstream_wrap():
    rewriter = StreamRewriter(90000, initial_sequence=65530, initial_timestamp=0xFFFFFF00)
    outs = [
        rewriter.rewrite(1111, (65533 + i) & 0xFFFF, (4000 + 3000 * i) & 0xFFFFFFFF, 0.0)
        for i in range(8)
    ]
    seqs = [o[0] for o in outs]
    assert seqs == [(65530 + i) & 0xFFFF for i in range(8)]  # wraps 65535 -> 0 with no gap
    stamps = [o[1] for o in outs]
    assert all(ts_diff(b, a) == 3000 for a, b in itertools.pairwise(stamps))
    assert stamps[0] == 0xFFFFFF00 and stamps[-1] < 0xFFFFFF00  # timestamp wrapped too


def test_gaps_are_kept_and_reordering_maps_consistently():
    rewriter = StreamRewriter(90000, initial_sequence=100)
    assert rewriter.rewrite(1, 500, 0, 0.0)[0] == 100
    assert rewriter.rewrite(1, 502, 0, 0.0)[0] == 102  # a loss stays a gap: NACKed
    assert rewriter.rewrite(1, 501, 0, 0.0)[0] == 101  # the late packet fills it
    assert rewriter.rewrite(1, 503, 0, 0.0)[0] == 103


def test_publisher_switch_offsets_timestamp_by_elapsed_time():
    rewriter = StreamRewriter(90000, initial_sequence=10, initial_timestamp=1000)
    assert rewriter.rewrite(0xAAAA, 40000, 123456, now=10.0) == (10, 1000)
    assert rewriter.rewrite(0xAAAA, 40001, 123456 + 3000, now=10.033) == (11, 4000)
    # a new publisher with unrelated numbering, 0.5 s later
    seq, ts = rewriter.rewrite(0xBBBB, 7, 999_999_999, now=10.533)
    assert seq == 12  # no gap, no repeat
    assert ts_diff(ts, 4000) == 45000  # 0.5 s at 90 kHz
    assert rewriter.rewrite(0xBBBB, 8, 999_999_999 + 3000, now=10.566) == (13, ts + 3000)


def test_late_packet_of_previous_source_is_dropped():
    rewriter = StreamRewriter(48000)
    rewriter.rewrite(1, 100, 0, 0.0)
    rewriter.rewrite(2, 5000, 0, 0.1)
    rewriter.rewrite(2, 5001, 960, 0.12)
    # a packet from before the switch point of the current source would collide
    assert rewriter.rewrite(2, 4999, 0, 0.13) is None


def test_original_sequence_maps_back_only_within_current_source():
    rewriter = StreamRewriter(90000, initial_sequence=65535)
    for i in range(5):
        rewriter.rewrite(9, 300 + i, 0, 0.0)
    assert rewriter.original_sequence(65535) == 300
    assert rewriter.original_sequence(3) == 304
    assert rewriter.original_sequence(4) is None  # not sent yet
    rewriter.rewrite(10, 20, 0, 1.0)  # switch
    assert rewriter.original_sequence(3) is None  # belongs to the old source
    assert rewriter.original_sequence(4) == 20


def test_rewrite_header_keeps_marker_extensions_and_payload():
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensions, HeaderExtensionsMap, RtpPacket

    ext_map = HeaderExtensionsMap()
    ext_map.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(
                    id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                )
            ]
        )
    )
    packet = RtpPacket(
        payload_type=102, marker=1, sequence_number=7, timestamp=9, ssrc=1, payload=b"\x65payload"
    )
    packet.extensions = HeaderExtensions(abs_send_time=0x123456)
    data = rewrite_header(packet.serialize(ext_map), 96, 65535, 0xFFFFFFFF, 0xDEADBEEF)
    assert parse_header(data) == (96, True, 65535, 0xFFFFFFFF, 0xDEADBEEF)
    parsed = RtpPacket.parse(bytes(data), ext_map)
    assert parsed.payload == b"\x65payload"
    assert parsed.extensions.abs_send_time == 0x123456
