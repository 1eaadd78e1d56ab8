"""The re-send pacing rules (sfu/retransmit.py): a copy a round trip apart, at most so
many, forgotten when sequence numbers come round; and the byte budget's breaker."""

from __future__ import annotations

from sfu.retransmit import DEFAULT_RTT_S, FORGET_S, HISTORY, RepeatLimiter, ResendBudget


def test_a_packet_is_sent_again_only_a_round_trip_after_its_last_copy():
    limiter = RepeatLimiter()
    assert limiter.may_repeat(7, 10.0, 0.2)
    limiter.record(7, 10.0)
    assert not limiter.may_repeat(7, 10.1, 0.2)  # the copy is still on its way
    assert limiter.may_repeat(7, 10.21, 0.2)
    assert limiter.may_repeat(8, 10.1, 0.2)  # another packet is another matter
    assert limiter.suppressed == 1


def test_without_a_measured_round_trip_a_default_stands_for_one():
    limiter = RepeatLimiter()
    limiter.record(1, 0.0)
    assert not limiter.may_repeat(1, DEFAULT_RTT_S * 0.9, None)
    assert limiter.may_repeat(1, DEFAULT_RTT_S * 1.1, None)


def test_copies_stop_at_the_limit_and_start_again_for_a_new_packet_of_that_number():
    limiter = RepeatLimiter(max_repeats=3)
    now = 0.0
    for _ in range(3):
        assert limiter.may_repeat(5, now, 0.1)
        limiter.record(5, now)
        now += 0.2
    assert not limiter.may_repeat(5, now, 0.1)
    # 65,536 packets later the number is another packet's
    later = now + FORGET_S + 1
    assert limiter.may_repeat(5, later, 0.1)
    limiter.record(5, later)
    assert not limiter.may_repeat(5, later + 0.05, 0.1)  # counted afresh: one copy so far
    assert limiter.may_repeat(5, later + 0.2, 0.1)


def test_filter_asks_once_per_round_trip_for_what_is_still_missing():
    limiter = RepeatLimiter()
    assert limiter.filter([1, 2, 3], 0.0, None) == [1, 2, 3]
    # aiortc's generator lists everything still missing at its next gap
    assert limiter.filter([1, 2, 3, 4], 0.01, None) == [4]
    assert limiter.filter([1, 2, 3, 4], 0.2, None) == [1, 2, 3, 4]


def test_the_history_stays_bounded():
    limiter = RepeatLimiter()
    for seq in range(HISTORY * 3):
        limiter.record(seq, 0.0)
    assert len(limiter._asked) <= HISTORY
    assert not limiter.may_repeat(HISTORY * 3 - 1, 0.01, 0.1)  # the newest are kept


def test_the_budget_allows_a_burst_then_only_what_the_stream_earns():
    budget = ResendBudget(share=0.5, burst_bytes=3000)
    assert budget.spend(1200, 0)
    assert budget.spend(1200, 0)
    assert not budget.spend(1200, 0)  # 600 left of the burst
    assert budget.refused == 1
    assert budget.spend(1200, 1200)  # the stream sent 1200 bytes: 600 more earned
    assert not budget.spend(1200, 1200)
    # never more than the burst, however long the stream went without losses
    assert budget.spend(3000, 10**9)
    assert not budget.spend(1, 10**9)
