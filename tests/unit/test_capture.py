"""The cluster's capture reader (tests/cluster/capture.py) on pcap files written here: each flow's bytes
are in stream order even where its sequence numbers wrap past 2**32, and a SYN sent again after the
connection began neither opens a new flow nor forgets the bytes already seen, and a later connection
between the same ports is a flow of its own, the earlier one kept."""

from __future__ import annotations

import socket
from pathlib import Path

import dpkt

from tests.cluster import capture

CLIENT, SERVER = ("198.18.0.11", 40000), ("198.18.0.10", 6379)
CLIENT_HELLO, SERVER_HELLO = b"\x16\x03\x01\x00\x05hello", b"\x16\x03\x03\x00\x05hello"
APPLICATION_DATA = b"\x17\x03\x03\x00\x04data"


def segment(sender: tuple[str, int], receiver: tuple[str, int], seq: int, flags: int, payload: bytes = b"") -> bytes:
    tcp = dpkt.tcp.TCP(sport=sender[1], dport=receiver[1], seq=seq, flags=flags, data=payload)
    ip = dpkt.ip.IP(src=socket.inet_aton(sender[0]), dst=socket.inet_aton(receiver[0]), p=dpkt.ip.IP_PROTO_TCP,
                    data=tcp)
    ip.len = len(bytes(ip))
    return bytes(dpkt.sll2.SLL2(data=ip))


def handshake_then_data(client_isn: int, server_isn: int, resent_syn: bool = False) -> list[bytes]:
    """A TLS connection's first packets: SYN, SYN-ACK, the ClientHello, (the SYN again,) the ServerHello
    and the client's next record, whose sequence number lies past the ClientHello's."""
    syn = segment(CLIENT, SERVER, client_isn, dpkt.tcp.TH_SYN)
    after_hello = (client_isn + 1 + len(CLIENT_HELLO)) % capture.SEQUENCE_SPACE
    return [
        syn,
        segment(SERVER, CLIENT, server_isn, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK),
        segment(CLIENT, SERVER, (client_isn + 1) % capture.SEQUENCE_SPACE, dpkt.tcp.TH_ACK, CLIENT_HELLO),
        *([syn] if resent_syn else []),
        segment(SERVER, CLIENT, (server_isn + 1) % capture.SEQUENCE_SPACE, dpkt.tcp.TH_ACK, SERVER_HELLO),
        segment(CLIENT, SERVER, after_hello, dpkt.tcp.TH_ACK, APPLICATION_DATA),
    ]


def read(tmp_path: Path, frames: list[bytes]) -> capture.Traffic:
    path = tmp_path / "bridge.pcap"
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_LINUX_SLL2)
        for frame in frames:
            writer.writepkt(frame)
    return capture.read(path, {CLIENT[0], SERVER[0]})


def test_a_flow_whose_sequence_numbers_wrap_still_starts_with_its_client_hello(tmp_path):
    # The ClientHello ends 3 bytes before 2**32: the next record's sequence number is 3.
    traffic = read(tmp_path, handshake_then_data(capture.SEQUENCE_SPACE - len(CLIENT_HELLO) - 4, 7))
    (flow,) = traffic.flows
    assert flow.stream(True) == CLIENT_HELLO + APPLICATION_DATA
    assert flow.starts_with_tls


def test_a_syn_sent_again_after_the_client_hello_keeps_the_flow(tmp_path):
    traffic = read(tmp_path, handshake_then_data(1000, 2000, resent_syn=True))
    (flow,) = traffic.flows
    assert flow.stream(True) == CLIENT_HELLO + APPLICATION_DATA
    assert flow.stream(False) == SERVER_HELLO
    assert flow.starts_with_tls


def test_a_new_connection_on_the_same_ports_is_a_flow_of_its_own(tmp_path):
    traffic = read(tmp_path, handshake_then_data(1000, 2000) + handshake_then_data(900_000, 5))
    assert [flow.stream(True) for flow in traffic.flows] == [CLIENT_HELLO + APPLICATION_DATA] * 2
    assert traffic.packets == 10
