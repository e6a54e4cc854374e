#!/usr/bin/python3
"""Sends N Solicits from N different DUIDs to ff02::1:2 on one interface (standard library
only) and prints, as JSON, every answer received within the timeout: its transaction id,
message type, source address and SERVERID. tests/serve.rs checks that with several shards
each Solicit is answered exactly once (SO_REUSEPORT delivers multicast to every member
socket, so a server that got this wrong would answer some of them twice).

  ip netns exec <client-ns> /usr/bin/python3 multicast_solicits.py --interface cli0 --count 64
"""
import argparse
import json
import select
import socket
import struct
import time

ap = argparse.ArgumentParser()
ap.add_argument("--interface", required=True)
ap.add_argument("--count", type=int, default=64)
ap.add_argument("--timeout", type=float, default=3.0)
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()

idx = socket.if_nametoindex(a.interface)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
s.bind(("::", 546, 0, idx))


def option(code, body):
    return struct.pack("!HH", code, len(body)) + body


for i in range(a.count):
    xid = struct.pack("!I", (a.seed << 16) | i)[1:]
    # DUID-LL (type 3, hw type 1) with a MAC derived from the index.
    duid = struct.pack("!HH", 3, 1) + bytes([2, a.seed & 0xff, 0, 0, i >> 8, i & 0xff])
    msg = (bytes([1]) + xid
           + option(1, duid)                               # CLIENTID
           + option(8, b"\x00\x00")                        # ELAPSED_TIME
           + option(3, struct.pack("!III", 1, 0, 0)))      # IA_NA, IAID 1
    s.sendto(msg, ("ff02::1:2", 547, 0, idx))

answers = []
deadline = time.monotonic() + a.timeout
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        break
    r, _, _ = select.select([s], [], [], left)
    if not r:
        break
    data, src = s.recvfrom(4096)
    if len(data) < 4:
        continue
    server_id = None
    i = 4
    while i + 4 <= len(data):
        code, length = struct.unpack_from("!HH", data, i)
        if code == 2:
            server_id = data[i + 4:i + 4 + length].hex()
        i += 4 + length
    answers.append({"xid": data[1:4].hex(), "type": data[0], "src": src[0].split("%")[0],
                    "server_id": server_id})

print(json.dumps({"sent": a.count, "answers": answers}))
