#!/usr/bin/python3
"""Sends malformed and misdirected DHCPv6 messages to a server and reports what came back.

Run in the client namespace. Each case sends one datagram, then listens `--wait` seconds
for an answer on the socket it sent from; the result is one JSON object
{case: {"sent": bytes, "reply": null | {...}}} that tests/bad_input.rs checks against
RFC 8415 (§16 validation, §18.4 unicast, relay nesting). Packets are built by hand (not
scapy) so they can be broken exactly where intended. Valid control messages go first and
last: they prove the server is up and answering, so a missing answer to a bad message
means it was dropped, not that nobody was listening.
"""
import argparse
import ipaddress
import json
import socket
import struct
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--iface", default="cli0")
ap.add_argument("--server", default="2001:db8:1::1")
ap.add_argument("--client-ll", default="fe80::2")
ap.add_argument("--client-gua", default="2001:db8:1::2")
ap.add_argument("--wait", type=float, default=0.6)
a = ap.parse_args()

IFINDEX = socket.if_nametoindex(a.iface)
ALL_SERVERS = "ff02::1:2"
SOLICIT, ADVERTISE, REQUEST, REPLY, INFO_REQ, RELAY_FORW, RELAY_REPL = 1, 2, 3, 7, 11, 12, 13


def opt(code, val, length=None):
    return struct.pack("!HH", code, len(val) if length is None else length) + val


def msg(mtype, trid, *opts):
    return bytes([mtype]) + trid.to_bytes(3, "big") + b"".join(opts)


def ip(text):
    return ipaddress.IPv6Address(text).packed


def relay(inner, hop, link="2001:db8:1::2", peer="fe80::2"):
    return bytes([RELAY_FORW, hop]) + ip(link) + ip(peer) + opt(9, inner)


def client_id(n):
    # DUID-LL (type 3), hardware type 1 (Ethernet), a MAC unique per case
    return opt(1, struct.pack("!HH", 3, 1) + bytes([2, 0, 0, 0xbd, 0, n]))


ELAPSED = opt(8, b"\x00\x00")
IA_NA = opt(3, struct.pack("!III", 1, 0, 0))


def tlvs(buf):
    out, i = [], 0
    while i + 4 <= len(buf):
        code, length = struct.unpack_from("!HH", buf, i)
        out.append((code, buf[i + 4:i + 4 + length]))
        i += 4 + length
    return out


def describe(data):
    d = {"len": len(data), "layers": 0}
    while data and data[0] == RELAY_REPL and len(data) >= 34:
        d["layers"] += 1
        inner = [v for c, v in tlvs(data[34:]) if c == 9]
        data = inner[0] if inner else b""
    if not data:
        return d
    opts = tlvs(data[4:])
    d["type"] = data[0]
    d["options"] = [c for c, _ in opts]
    status = [v for c, v in opts if c == 13]
    d["status"] = int.from_bytes(status[0][:2], "big") if status else None
    sid = [v for c, v in opts if c == 2]
    d["server_id"] = sid[0].hex() if sid else None
    return d


def sock(addr, port, scope=0):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port, 0, scope))
    s.settimeout(a.wait)
    return s


multicast = sock(a.client_ll, 546, IFINDEX)    # a client on the link
unicast = sock(a.client_gua, 546)               # a client that unicasts to the server
relay_sock = sock(a.client_gua, 547)            # a relay agent
TO_ALL = (ALL_SERVERS, 547, 0, IFINDEX)
TO_SERVER = (a.server, 547)
results = {}


def case(name, payload, via=multicast, dest=TO_ALL):
    via.setblocking(False)
    try:  # drop anything a previous case left behind
        while True:
            via.recv(65535)
    except BlockingIOError:
        pass
    via.settimeout(a.wait)
    via.sendto(payload, dest)
    try:
        data = via.recv(65535)
        reply = describe(data)
    except socket.timeout:
        reply = None
    results[name] = {"sent": len(payload), "reply": reply}
    return reply


# Control: a well-formed Solicit is answered; it also tells us the server's DUID.
adv = case("valid_solicit_before", msg(SOLICIT, 1, client_id(1), ELAPSED, IA_NA))
server_duid = bytes.fromhex(adv["server_id"]) if adv and adv.get("server_id") else b"\x00\x03\x00\x01\x02\x00\x00\x00\x00\x01"

# Truncated: shorter than the 4-octet message header (RFC 8415 §8).
case("truncated_header", b"\x01\x00\x00")
case("empty_payload", b"")
# An option whose length runs past the end of the message.
case("option_length_past_end", msg(SOLICIT, 2, opt(1, b"\x00\x03\x00\x01\x02\x00", length=200)))
# An IAADDR inside IA_NA whose length runs past the end of the IA_NA.
bad_ia = opt(3, struct.pack("!III", 1, 0, 0) + opt(5, b"\x20\x01" + b"\x00" * 22, length=60))
case("nested_length_past_end", msg(SOLICIT, 3, client_id(3), ELAPSED, bad_ia))
# A half option header at the end.
case("trailing_half_option", msg(SOLICIT, 4, client_id(4), ELAPSED, IA_NA) + b"\x00\x03")
# §16.2: Solicit without CLIENTID, or with a SERVERID, MUST be discarded.
case("solicit_missing_clientid", msg(SOLICIT, 5, ELAPSED, IA_NA))
case("solicit_with_serverid", msg(SOLICIT, 6, client_id(6), opt(2, server_duid), ELAPSED, IA_NA))
# §16.12: an Information-request carrying an IA option MUST be discarded.
case("info_request_with_ia", msg(INFO_REQ, 7, client_id(7), ELAPSED, IA_NA))
# §16.4: a Request without SERVERID (or with another server's) MUST be discarded.
case("request_missing_serverid", msg(REQUEST, 8, client_id(8), ELAPSED, IA_NA))
case("request_other_serverid",
     msg(REQUEST, 9, client_id(9), opt(2, b"\x00\x03\x00\x01\x0a\x0b\x0c\x0d\x0e\x0f"), ELAPSED, IA_NA))
# §16: servers discard Advertise/Reply/Relay-reply, and unknown message types.
case("reply_sent_to_server", msg(REPLY, 10, client_id(10), opt(2, server_duid)))
case("relay_repl_sent_to_server",
     bytes([RELAY_REPL, 0]) + ip("::") + ip("fe80::2") + opt(9, msg(REPLY, 11, client_id(11))),
     via=relay_sock, dest=TO_SERVER)
case("unknown_message_type", msg(200, 12, client_id(12), ELAPSED))
# §18.4: Solicit via unicast is never allowed; Request via unicast without the Server
# Unicast option gets a Reply with UseMulticast (and nothing but SERVERID/CLIENTID).
case("solicit_to_unicast", msg(SOLICIT, 13, client_id(13), ELAPSED, IA_NA), via=unicast, dest=TO_SERVER)
case("request_to_unicast", msg(REQUEST, 14, client_id(14), opt(2, server_duid), ELAPSED, IA_NA),
     via=unicast, dest=TO_SERVER)
# Relays: a Relay-forw shorter than its 34-octet header, one without RELAY_MSG, and
# nesting deeper than the 32 layers the server supports; 32 layers is still served.
case("relay_truncated", bytes([RELAY_FORW, 0]) + ip("2001:db8:1::2")[:10], via=relay_sock, dest=TO_SERVER)
case("relay_without_relay_msg",
     bytes([RELAY_FORW, 0]) + ip("2001:db8:1::2") + ip("fe80::2") + opt(18, b"port-9"),
     via=relay_sock, dest=TO_SERVER)


def nest(inner, layers):
    for hop in range(layers):
        inner = relay(inner, hop if hop == 0 else min(hop, 255),
                      link="2001:db8:1::2" if hop == 0 else "::",
                      peer="fe80::2" if hop == 0 else "2001:db8:1::2")
    return inner


case("relay_nesting_33", nest(msg(SOLICIT, 15, client_id(15), ELAPSED, IA_NA), 33),
     via=relay_sock, dest=TO_SERVER)
case("relay_nesting_32", nest(msg(SOLICIT, 16, client_id(16), ELAPSED, IA_NA), 32),
     via=relay_sock, dest=TO_SERVER)
# Control: still alive and answering after all of the above.
case("valid_solicit_after", msg(SOLICIT, 17, client_id(17), ELAPSED, IA_NA))

json.dump(results, sys.stdout, indent=1)
print()
