import pytest

from sfu.packetcache import PacketCache


def test_lookup_checks_the_stored_sequence_number():
    cache: PacketCache[str] = PacketCache(8)
    for seq in range(65530, 65536):
        cache.store(seq, f"p{seq}")
    for seq in range(0, 4):
        cache.store(seq, f"p{seq}")
    assert cache.get(3) == "p3"
    assert cache.get(65535) == "p65535"
    assert cache.get(65530) is None  # evicted by seq 2 (same slot)
    assert cache.get(4) is None  # never stored
    assert (cache.hits, cache.misses) == (2, 2)


def test_size_must_be_a_power_of_two():
    with pytest.raises(ValueError):
        PacketCache(100)
