#!/usr/bin/python3
"""DHCPv6 clients for the lease store's crash test (tests/store_kill.rs), standard library only.

  grant  --duration S --seed N     Solicit + Rapid Commit (IA_NA + IA_PD) from a new DUID per
                                   exchange, a window of them at a time, for S seconds; prints
                                   every lease a Reply granted: {duid, server_id, address, prefix}.
                                   Servers that are down simply do not answer (no retries).
  renew  --leases FILE             Renews each lease of FILE (the grant output) with its DUID and
                                   prints, per lease, what the Reply said for its address/prefix.
  hint   --leases FILE --count N   New DUIDs ask for N of FILE's addresses/prefixes as hints
                                   (Solicit + Rapid Commit); prints what they were given.

  ip netns exec <client-ns> /usr/bin/python3 store_clients.py --interface cli0 grant --duration 8
"""
import argparse
import json
import select
import socket
import struct
import time

ap = argparse.ArgumentParser()
ap.add_argument("--interface", required=True)
ap.add_argument("mode", choices=["grant", "renew", "hint"])
ap.add_argument("--duration", type=float, default=8.0)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--window", type=int, default=32)
ap.add_argument("--leases")
ap.add_argument("--count", type=int, default=50)
a = ap.parse_args()

idx = socket.if_nametoindex(a.interface)
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
s.bind(("::", 546, 0, idx))
DEST = ("ff02::1:2", 547, 0, idx)

SOLICIT, REQUEST, RENEW, REPLY = 1, 3, 5, 7


def option(code, body):
    return struct.pack("!HH", code, len(body)) + body


def options(data):
    i = 0
    while i + 4 <= len(data):
        code, length = struct.unpack_from("!HH", data, i)
        yield code, data[i + 4:i + 4 + length]
        i += 4 + length


def duid_for(seed, n):
    # DUID-LLT-sized (14 octets): type 1, hw 1, time = seed, MAC from n.
    return struct.pack("!HHI", 1, 1, seed) + struct.pack("!HI", 0x0200, n)


def ia_na(addr=None):
    sub = b""
    if addr:
        sub = option(5, socket.inet_pton(socket.AF_INET6, addr) + struct.pack("!II", 0, 0))
    return option(3, struct.pack("!III", 1, 0, 0) + sub)


def ia_pd(prefix=None):
    sub = b""
    if prefix:
        p, plen = prefix.split("/")
        sub = option(26, struct.pack("!IIB", 0, 0, int(plen)) + socket.inet_pton(socket.AF_INET6, p))
    return option(25, struct.pack("!III", 1, 0, 0) + sub)


def message(mtype, xid, duid, server_id=None, addr=None, prefix=None, rapid=True):
    body = option(1, duid) + option(8, b"\x00\x00")
    if server_id:
        body += option(2, bytes.fromhex(server_id))
    if rapid:
        body += option(14, b"")
    body += ia_na(addr) + ia_pd(prefix)
    return bytes([mtype]) + xid + body


def parse_reply(data):
    """(type, server_id, address, prefix) with only bindings whose valid lifetime > 0."""
    out = {"type": data[0], "server_id": None, "address": None, "prefix": None, "status": []}
    for code, body in options(data[4:]):
        if code == 2:
            out["server_id"] = body.hex()
        elif code == 3 and len(body) >= 12:
            for c, b in options(body[12:]):
                if c == 5 and len(b) >= 24 and struct.unpack_from("!I", b, 20)[0] > 0:
                    out["address"] = socket.inet_ntop(socket.AF_INET6, b[:16])
                elif c == 13 and len(b) >= 2:
                    out["status"].append(struct.unpack_from("!H", b, 0)[0])
        elif code == 25 and len(body) >= 12:
            for c, b in options(body[12:]):
                if c == 26 and len(b) >= 25 and struct.unpack_from("!I", b, 4)[0] > 0:
                    out["prefix"] = "%s/%d" % (socket.inet_ntop(socket.AF_INET6, b[9:25]), b[8])
                elif c == 13 and len(b) >= 2:
                    out["status"].append(struct.unpack_from("!H", b, 0)[0])
    return out


def exchange(batch, timeout=0.5):
    """Sends (xid, payload, key) tuples, collects Replies by xid until all answered or timeout."""
    pending = {}
    for xid, payload, key in batch:
        pending[xid] = key
        s.sendto(payload, DEST)
    got = {}
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([s], [], [], left)
        if not r:
            break
        data, _ = s.recvfrom(4096)
        if len(data) < 4 or data[0] != REPLY:
            continue
        key = pending.pop(data[1:4], None)
        if key is not None:
            got[key] = parse_reply(data)
    return got


counter = [0]


def next_xid():
    counter[0] += 1
    return struct.pack("!I", (a.seed << 20 | counter[0]) & 0xFFFFFF)[1:]


if a.mode == "grant":
    granted = []
    n = 0
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        batch = []
        for _ in range(a.window):
            duid = duid_for(a.seed, n)
            n += 1
            xid = next_xid()
            batch.append((xid, message(SOLICIT, xid, duid), duid.hex()))
        for duid, r in exchange(batch).items():
            if r["address"] or r["prefix"]:
                granted.append({"duid": duid, "server_id": r["server_id"],
                                "address": r["address"], "prefix": r["prefix"]})
    print(json.dumps({"asked": n, "granted": granted}))
else:
    leases = json.load(open(a.leases))["granted"]
    results = []
    if a.mode == "renew":
        for i in range(0, len(leases), a.window):
            batch = []
            for l in leases[i:i + a.window]:
                p = message(RENEW, next_xid(), bytes.fromhex(l["duid"]), l["server_id"],
                            l["address"], l["prefix"], rapid=False)
                batch.append((p[1:4], p, l["duid"]))
            got = exchange(batch, timeout=2.0)
            for l in leases[i:i + a.window]:
                r = got.get(l["duid"])
                results.append({"duid": l["duid"], "want_address": l["address"],
                                "want_prefix": l["prefix"], "reply": r})
    else:
        for i, l in enumerate(leases[:a.count]):
            duid = duid_for(a.seed + 7777, i)
            p = message(SOLICIT, next_xid(), duid, None, l["address"], l["prefix"])
            got = exchange([(p[1:4], p, duid.hex())], timeout=2.0)
            results.append({"hint_address": l["address"], "hint_prefix": l["prefix"],
                            "reply": got.get(duid.hex())})
    print(json.dumps({"results": results}))
