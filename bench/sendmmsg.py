"""Send path: what one system call per packet per subscriber costs, against batching.

The forwarding loop writes each packet once per subscriber, on that subscriber's own UDP
socket (aioice gives every connection its own). The plan for reaching Janus was one shared
socket per worker and one `sendmmsg` per incoming packet for all its subscribers. This
measures, in one process and the same run, the CPU per packet of three ways to send N
(default 50) copies of a 1,200-byte packet over loopback to N receiving sockets:

- `sendto_per_socket`: today's path, one socket per subscriber, `socket.sendto` each;
- `sendto_one_socket`: one shared socket, `socket.sendto` each;
- `sendmmsg_one_socket`: one shared socket, one `sendmmsg` (libc through ctypes) per round.

Reported as µs per packet and as ratios against `sendto_per_socket`. The last line is one
JSON object.

    python bench/sendmmsg.py            # 4000 rounds of 50, three repeats, best of each
    python bench/sendmmsg.py --quick    # 1000 rounds (a few seconds)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(_IoVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("header", _MsgHdr), ("length", ctypes.c_uint)]


def _receivers(count: int) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind(("127.0.0.1", 0))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        receiver.setblocking(False)
        sockets.append(receiver)
    return sockets


def _drain(receivers: list[socket.socket]) -> None:
    for receiver in receivers:
        try:
            while True:
                receiver.recv(2048)
        except BlockingIOError:
            pass


def _timed(rounds: int, send_round: Callable[[], None], receivers: list[socket.socket]) -> float:
    """CPU seconds of this process for `rounds` rounds (drained every 20 so nothing drops)."""
    started = time.process_time()
    for number in range(rounds):
        send_round()
        if number % 20 == 0:
            _drain(receivers)
    spent = time.process_time() - started
    _drain(receivers)
    return spent


def measure(subscribers: int, rounds: int, size: int) -> dict[str, float]:
    receivers = _receivers(subscribers)
    addresses = [r.getsockname() for r in receivers]
    payload = os.urandom(size)
    per_subscriber = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in receivers]
    shared = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for sender in (*per_subscriber, shared):
        sender.setblocking(False)

    def sendto_per_socket() -> None:
        for sender, address in zip(per_subscriber, addresses, strict=True):
            sender.sendto(payload, address)

    def sendto_one_socket() -> None:
        for address in addresses:
            shared.sendto(payload, address)

    libc = ctypes.CDLL(None, use_errno=True)
    names = [
        ctypes.create_string_buffer(
            struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton(host)),
            16,
        )
        for host, port in addresses
    ]
    messages = (_MMsgHdr * subscribers)()
    vectors = (_IoVec * subscribers)()
    for k in range(subscribers):
        messages[k].header.name = ctypes.cast(names[k], ctypes.c_void_p)
        messages[k].header.namelen = 16
        messages[k].header.iov = ctypes.pointer(vectors[k])
        messages[k].header.iovlen = 1
    descriptor = shared.fileno()

    def sendmmsg_one_socket() -> None:
        # one packet for every subscriber: the same buffer, N destinations, one call
        pointer = ctypes.cast(ctypes.c_char_p(payload), ctypes.c_void_p).value
        for k in range(subscribers):
            vectors[k].base = pointer
            vectors[k].length = size
        sent = libc.sendmmsg(descriptor, messages, subscribers, 0)
        if sent != subscribers:
            raise OSError(ctypes.get_errno(), f"sendmmsg sent {sent} of {subscribers}")

    ways = {
        "sendto_per_socket": sendto_per_socket,
        "sendto_one_socket": sendto_one_socket,
        "sendmmsg_one_socket": sendmmsg_one_socket,
    }
    try:
        return {
            name: _timed(rounds, way, receivers) / (rounds * subscribers) * 1e6
            for name, way in ways.items()
        }
    finally:
        for s in (*receivers, *per_subscriber, shared):
            s.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1000 rounds")
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--size", type=int, default=1200, help="bytes per packet")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("sendmmsg is Linux's: nothing to measure here", file=sys.stderr)
        return 2
    rounds = 1000 if args.quick else 4000
    repeats = 1 if args.quick else 3
    best: dict[str, float] = {}
    for _ in range(repeats):  # the quietest repeat of each way (CPU time inflates under load)
        for name, us in measure(args.subscribers, rounds, args.size).items():
            best[name] = min(best.get(name, us), us)
    baseline = best["sendto_per_socket"]
    for name, us in best.items():
        print(f"{name:22} {us:6.2f} µs per packet   x{baseline / us:.2f} against per-socket")
    result = {
        "bench": "sendmmsg",
        "quick": args.quick,
        "subscribers": args.subscribers,
        "bytes": args.size,
        "rounds": rounds,
        "us_per_packet": {k: round(v, 3) for k, v in best.items()},
        "speedup_vs_per_socket": {k: round(baseline / v, 3) for k, v in best.items()},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
