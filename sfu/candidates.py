"""A peer's ICE candidates screened before the server checks any of them.

Every remote candidate makes the server send STUN to the address it names, so an offer is
a list of addresses the server will probe for whoever wrote it: a scanner of the county
network, or a reflector towards a victim. Before the SDP reaches aiortc, each media
section keeps at most `max_per_section` candidates, and none at an address no real peer
is reached at (loopback, link-local, multicast, broadcast, reserved, unspecified) or
given as a DNS name other than an mDNS `.local` one (a browser's hidden host address).

Trimming keeps first the highest-priority candidate of each type offered (host,
server-reflexive, peer-reflexive, relay), so a client behind a strict firewall that can
only be reached through TURN is never cut off, then the rest by priority. The protocol
has no trickle: the SDP is the only place candidates come from.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

_PREFIX = "a=candidate:"


@dataclass(frozen=True)
class CandidatePolicy:
    max_per_section: int = 10
    # loopback candidates are refused unless allowed (tests in a loopback-only namespace)
    allow_loopback: bool = False


@dataclass
class Screened:
    sdp: str
    kept: int = 0
    blocked: list[str] = field(default_factory=list)  # the addresses refused
    trimmed: int = 0  # good candidates over the limit
    malformed: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.blocked or self.trimmed or self.malformed)


@dataclass(frozen=True)
class _Candidate:
    index: int  # its line in the SDP
    type: str
    priority: int
    address: str


def _parse(index: int, line: str) -> _Candidate | None:
    # foundation component transport priority address port "typ" type ...
    bits = line[len(_PREFIX) :].split()
    if len(bits) < 8 or bits[6] != "typ" or not bits[3].isdigit() or not bits[5].isdigit():
        return None
    return _Candidate(index, bits[7], int(bits[3]), bits[4])


def address_allowed(address: str, policy: CandidatePolicy) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a name: only a browser's mDNS name, never one for DNS to look up
        return address.lower().endswith(".local") and len(address) <= 255
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return policy.allow_loopback
    return not (ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved)


def _keep(candidates: list[_Candidate], most: int) -> set[int]:
    by_priority = sorted(candidates, key=lambda c: -c.priority)
    kept: list[_Candidate] = []
    for candidate in by_priority:  # the best of each type first
        if len(kept) < most and all(k.type != candidate.type for k in kept):
            kept.append(candidate)
    for candidate in by_priority:
        if len(kept) < most and candidate not in kept:
            kept.append(candidate)
    return {c.index for c in kept}


def screen_candidates(sdp: str, policy: CandidatePolicy) -> Screened:
    """The SDP with its candidates screened (other lines untouched, in order)."""
    lines = sdp.splitlines()
    result = Screened(sdp)
    dropped: set[int] = set()
    sections: list[list[_Candidate]] = [[]]
    for index, line in enumerate(lines):
        if line.startswith("m="):
            sections.append([])
        elif line.startswith(_PREFIX):
            candidate = _parse(index, line)
            if candidate is None:
                result.malformed += 1
                dropped.add(index)
            elif not address_allowed(candidate.address, policy):
                result.blocked.append(candidate.address)
                dropped.add(index)
            else:
                sections[-1].append(candidate)
    for candidates in sections:
        kept = _keep(candidates, policy.max_per_section)
        result.kept += len(kept)
        result.trimmed += len(candidates) - len(kept)
        dropped.update(c.index for c in candidates if c.index not in kept)
    if dropped:
        result.sdp = "\r\n".join(line for i, line in enumerate(lines) if i not in dropped)
        result.sdp += "\r\n"
    return result


@dataclass
class Held:
    sdp: str
    # mDNS names set aside: the peer is learnt from its own checks (peer-reflexive)
    names: int = 0


def hold_mdns_candidates(sdp: str) -> Held:
    """The SDP without its mDNS (`<uuid>.local`) candidates, and without end-of-candidates
    in the sections that had them.

    A browser hides its host addresses behind mDNS names (Firefox always, Chromium on a
    page without camera permission); the server, across the internet, can never resolve
    them, yet aioice spends about a second on each and then, end-of-candidates given,
    drops the component and fails. The server is on a public address: the peer reaches
    it, and its checks tell the server where it is (RFC 8445 section 7.3.1.3), as an
    ICE-lite server would rely on. So the names are set aside, and end-of-candidates is
    held back until the peer has had time to check (`signal_end_of_candidates`)."""
    lines = sdp.splitlines()
    kept: list[str] = []
    section: list[str] = []
    held = Held(sdp)
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append(section)
            section = []
        section.append(line)
    sections.append(section)
    for part in sections:
        names = 0
        for line in part:
            if line.startswith(_PREFIX):
                candidate = _parse(0, line)
                if candidate is not None and candidate.address.lower().endswith(".local"):
                    names += 1
        held.names += names
        for line in part:
            if names and line.startswith(_PREFIX):
                candidate = _parse(0, line)
                if candidate is not None and candidate.address.lower().endswith(".local"):
                    continue
            if names and line.strip() == "a=end-of-candidates":
                continue
            kept.append(line)
    if held.names:
        held.sdp = "\r\n".join(kept) + "\r\n"
    return held
