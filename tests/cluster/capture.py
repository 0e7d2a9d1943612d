"""Every packet the cluster's hosts send each other, captured for the whole suite, and what it shows.

Debian's tcpdump records each packet once, as it enters the bridge from its sender's link (`-i any
-Q in` in the root namespace, where the hosts' links are), into a pcap file; dpkt reads it back.
The capture starts before site.yml, so every connection's first bytes are in it. A flow is one
TCP connection between two hosts (the controller's SSH and the tests' own clients are not between
hosts), keyed by its client and server; each direction's bytes are reassembled in sequence order
from the direction's SYN (across the wrap of sequence numbers past 2**32), so a secret split over
two segments is still found, and so is one in a gzip-encoded HTTP body.
"""

from __future__ import annotations

import base64
import re
import signal
import subprocess
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from . import netns

# A TLS record of the handshake, protocol major version 3 (TLS 1.0 to 1.3 all say 3).
TLS_HANDSHAKE = b"\x16\x03"
# PostgreSQL's SSLRequest (length 8, code 80877103): libpq and asyncpg ask for TLS first, the server
# answers `S`, and the client's TLS handshake follows.
POSTGRES_SSL_REQUEST = bytes.fromhex("0000000804d2162f")
# A JSON Web Token, such as the task tokens the execution API takes: base64url JSON header and payload.
JWT = re.compile(rb"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.")


@dataclass
class Capture:
    path: Path
    process: subprocess.Popen

    def stop(self) -> str:
        """Stop tcpdump (it writes what it buffered) and return its summary: packets captured, dropped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        _, err = self.process.communicate(timeout=60)
        return err.decode(errors="replace").strip()


def start(path: Path) -> Capture:
    """tcpdump of every packet the hosts send into the bridge, until stopped."""
    process = subprocess.Popen(
        ["tcpdump", "-i", "any", "-Q", "in", "-n", "-s", "0", "-B", "16384", "-U", "-w", str(path),
         f"net {netns.NETWORK}.0/24"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not path.exists() or path.stat().st_size == 0:  # -U: the file header is written on listening
        assert process.poll() is None, f"tcpdump failed: {process.stderr.read().decode()}"
        assert time.monotonic() < deadline, "tcpdump did not start listening"
        time.sleep(0.1)
    return Capture(path, process)


# TCP's sequence numbers count modulo 2**32: a connection's bytes may wrap past 0.
SEQUENCE_SPACE = 2 ** 32


@dataclass
class Flow:
    client: tuple[str, int]
    server: tuple[str, int]
    # Each direction's first sequence number, from its SYN: True is client to server.
    initial: dict[bool, int] = field(default_factory=dict)
    # Each direction's payload by its offset from that first sequence number.
    segments: dict[bool, dict[int, bytes]] = field(default_factory=lambda: {True: {}, False: {}})

    def add(self, from_client: bool, seq: int, payload: bytes) -> None:
        """A segment's payload at its place in the stream (a retransmission adds nothing)."""
        start = self.initial.setdefault(from_client, (seq - 1) % SEQUENCE_SPACE)
        self.segments[from_client].setdefault((seq - start - 1) % SEQUENCE_SPACE, payload)

    def stream(self, from_client: bool) -> bytes:
        return b"".join(payload for _, payload in sorted(self.segments[from_client].items()))

    @property
    def carried_data(self) -> bool:
        """False for a connection that ended before either side sent a byte (refused, or a port probe)."""
        return any(self.segments.values())

    def describe(self) -> str:
        sent, answered = self.stream(True), self.stream(False)
        return f"{len(sent)} bytes sent, starting {sent[:12]!r}; {len(answered)} answered, starting {answered[:12]!r}"

    @property
    def starts_with_tls(self) -> bool:
        first = self.stream(True)
        if first.startswith(POSTGRES_SSL_REQUEST):
            first = first[len(POSTGRES_SSL_REQUEST):]
        return first.startswith(TLS_HANDSHAKE)


@dataclass
class Traffic:
    packets: int
    flows: list[Flow]  # TCP connections between two hosts, each opened inside the capture
    udp: dict[tuple[str, str, int], bytes]  # (source, destination, port) -> its datagrams' payloads


def read(path: Path, hosts: set[str]) -> Traffic:
    """The packets between `hosts` (addresses), as TCP flows and UDP payloads."""
    packets = 0
    flows: list[Flow] = []
    opened: dict[tuple, Flow] = {}  # (client, server) -> its latest flow, from its SYN
    udp: dict[tuple[str, str, int], list[bytes]] = defaultdict(list)
    with path.open("rb") as f:
        for _, frame in dpkt.pcap.Reader(f):
            ip = dpkt.sll2.SLL2(frame).data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            source, destination = _address(ip.src), _address(ip.dst)
            if source not in hosts or destination not in hosts:
                continue
            packets += 1
            segment = ip.data
            if isinstance(segment, dpkt.udp.UDP):
                udp[(source, destination, segment.dport)].append(bytes(segment.data))
                continue
            if not isinstance(segment, dpkt.tcp.TCP):
                continue
            ends = ((source, segment.sport), (destination, segment.dport))
            if segment.flags & dpkt.tcp.TH_SYN and not segment.flags & dpkt.tcp.TH_ACK:
                # A new connection, unless this is its SYN sent again (same first sequence number).
                if opened.get(ends) is None or opened[ends].initial.get(True) != segment.seq:
                    opened[ends] = Flow(*ends, initial={True: segment.seq})
                    flows.append(opened[ends])
                continue
            flow, from_client = opened.get(ends), True
            if flow is None:
                flow, from_client = opened.get(ends[::-1]), False
            if flow is None:
                continue
            if segment.flags & dpkt.tcp.TH_SYN:  # the server's SYN-ACK: its first sequence number
                flow.initial.setdefault(False, segment.seq)
            elif segment.data:
                flow.add(from_client, segment.seq, bytes(segment.data))
    return Traffic(packets, flows, {key: b"".join(data) for key, data in udp.items()})


def _address(packed: bytes) -> str:
    return ".".join(str(octet) for octet in packed)


def forms(secret: str) -> list[bytes]:
    """How a secret may travel: as itself, and inside base64 (HTTP basic auth, at any alignment: the
    part of each encoding that does not depend on the bytes around it)."""
    raw = secret.encode()
    found = [raw]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw + b"\0\0")
        # Skip the characters the prefix's bytes share, and the last group's, which the suffix's do.
        found.append(encoded[(offset * 4 + 2) // 3 + 1: (len(raw) + offset) * 4 // 3 - 1])
    return found


# An HTTP/1.1 message's head: its request or status line and its headers.
HTTP_HEAD = re.compile(rb"(?:HTTP/1\.[01] \d{3}|[A-Z]+ \S+ HTTP/1\.[01])[^\r\n]*\r\n(.*?)\r\n\r\n", re.DOTALL)
HEADER = re.compile(rb"^([\w-]+):[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def http_bodies(stream: bytes) -> list[bytes]:
    """The gzip bodies of the HTTP/1.1 messages in a plain stream, decompressed: a secret compressed is
    still in the clear, and the api-server's GZipMiddleware compresses its answers (chunked)."""
    bodies = []
    for head in HTTP_HEAD.finditer(stream):
        headers = {name.lower(): value.lower() for name, value in HEADER.findall(head[1].replace(b"\r\n", b"\n"))}
        if headers.get(b"content-encoding") != b"gzip":
            continue
        body = stream[head.end():]
        if headers.get(b"transfer-encoding") == b"chunked":
            body = _dechunk(body)
        elif headers.get(b"content-length", b"").isdigit():
            body = body[:int(headers[b"content-length"])]
        try:
            bodies.append(zlib.decompressobj(wbits=31).decompress(body))
        except zlib.error:
            continue
    return bodies


def _dechunk(data: bytes) -> bytes:
    """A chunked body's data (RFC 9112 7.1), up to its last chunk or the end of what was captured."""
    chunks, at = [], 0
    while (line_end := data.find(b"\r\n", at)) >= 0:
        try:
            size = int(data[at:line_end].split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        chunks.append(data[line_end + 2: line_end + 2 + size])
        at = line_end + 2 + size + 2
    return b"".join(chunks)


def cleartext(traffic: Traffic, secrets: dict[str, str]) -> set[tuple[str, str, str, str]]:
    """(secret's name, sender, receiver, server port) for each secret found in the clear, and
    ('task token', ...) for a JWT; the port ends in /udp for a datagram."""
    streams = [(flow.client[0], flow.server[0], str(flow.server[1]), flow.stream(True)) for flow in traffic.flows]
    streams += [(flow.server[0], flow.client[0], str(flow.server[1]), flow.stream(False)) for flow in traffic.flows]
    streams += [(source, destination, f"{port}/udp", data) for (source, destination, port), data in traffic.udp.items()]
    found = set()
    for sender, receiver, port, stream in streams:
        for data in (stream, *http_bodies(stream)):
            found |= {(name, sender, receiver, port) for name, value in secrets.items()
                      if any(form in data for form in forms(value))}
            if JWT.search(data):
                found.add(("task token", sender, receiver, port))
    return found
