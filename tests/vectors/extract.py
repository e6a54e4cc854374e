#!/usr/bin/python3
"""Cuts the DHCPv6 UDP payloads out of the pcaps written by capture.sh.

  extract.py PCAP_DIR OUT_DIR

For every capture (one per client run) it keeps the first packet of each kind, where the
kind is the sender (client side or server) plus the chain of message types (relay layers
and the inner message), and writes it as OUT_DIR/<capture>-<nn>-<kind>.bin. It then
rewrites the capture table in OUT_DIR/README.md between the marker lines.
Only the standard library: pcap (not pcapng), Ethernet, IPv6 without extension headers, UDP.
"""
import os, struct, sys

NAMES = {1: "solicit", 2: "advertise", 3: "request", 4: "confirm", 5: "renew", 6: "rebind",
         7: "reply", 8: "release", 9: "decline", 10: "reconfigure", 11: "information-request",
         12: "relay-forw", 13: "relay-repl"}
ORDER = ["dhclient-na", "dhclient-pd", "dhclient-napd", "dhcpcd", "perfdhcp-sarr",
         "perfdhcp-pd", "perfdhcp-relay", "scapy-relay"]
SOURCES = {
    "dhclient-na": "ISC dhclient 4.4.3 `-6` (IA_NA): SARR, Renew after T1, Rebind after T2 with "
                   "Kea stopped, Confirm on restart, Release (`-r`), Information-request (`-S`)",
    "dhclient-pd": "ISC dhclient 4.4.3 `-6 -P` (IA_PD), released",
    "dhclient-napd": "ISC dhclient 4.4.3 `-6 -N -P` (IA_NA + IA_PD), released",
    "dhcpcd": "dhcpcd 9.4.1 `-6` (IA_NA iaid 1 + IA_PD iaid 2, Rapid Commit), released",
    "perfdhcp-sarr": "perfdhcp 2.2 `-6` SARR (IA_NA), 2 clients",
    "perfdhcp-pd": "perfdhcp 2.2 `-6 -e address-and-prefix -o 6,00170043`: the Solicit carries a second ORO (23, 67) after perfdhcp's own; Kea reads the first, so its Advertise has no PD_EXCLUDE",
    "perfdhcp-relay": "perfdhcp 2.2 `-6 -A 1` (one Relay-forw layer) to 2001:db8:1::1",
    "scapy-relay": "harness relay-scapy.py `--hops 2` (Interface-ID, Remote-ID) and "
                   "rfc-examples.py relayed frames (ERO, Subscriber-ID, link-layer, relay port)",
}
SERVER_ADDRS = {bytes.fromhex("fe800000000000000000000000000001"),
                bytes.fromhex("20010db8000100000000000000000001")}


def packets(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    pos = 24
    while pos + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        if linktype == 1:        # Ethernet
            if len(frame) < 14 or frame[12:14] != b"\x86\xdd":
                continue
            ip = frame[14:]
        elif linktype == 113:    # Linux cooked (SLL)
            if len(frame) < 16 or frame[14:16] != b"\x86\xdd":
                continue
            ip = frame[16:]
        else:
            continue
        if len(ip) < 48 or ip[6] != 17:
            continue
        src = ip[8:24]
        udp = ip[40:]
        sport, dport, ulen = struct.unpack("!HHH", udp[:6])
        if 546 not in (sport, dport) and 547 not in (sport, dport):
            continue
        yield src, sport, udp[8:ulen]


def kind(payload):
    """(chain of message type names, inner transaction-id)"""
    parts = []
    cur = payload
    while cur and cur[0] in (12, 13) and len(cur) >= 34:
        parts.append(NAMES[cur[0]])
        opts, cur = cur[34:], b""
        while len(opts) >= 4:
            code, length = struct.unpack("!HH", opts[:4])
            if code == 9:
                cur = opts[4:4 + length]
                break
            opts = opts[4 + length:]
    xid = None
    if cur:
        parts.append(NAMES.get(cur[0], "type%d" % cur[0]))
        xid = bytes(cur[1:4])
    return ("-".join(parts) if parts else "empty"), xid


def main():
    pcap_dir, out = sys.argv[1], sys.argv[2]
    rows = []
    tags = [t for t in ORDER if os.path.exists(os.path.join(pcap_dir, t + ".pcap"))]
    for tag in tags:
        seen = set()
        asked = {}  # transaction-id -> the client message kind it belongs to
        n = 0
        for src, sport, payload in packets(os.path.join(pcap_dir, tag + ".pcap")):
            who = "server" if src in SERVER_ADDRS and sport == 547 else "client"
            k, xid = kind(payload)
            if who == "client":
                asked[xid] = k.split("-")[-1] if "information-request" not in k else "information-request"
            elif xid in asked:
                # Name a server message after the client message it answers.
                k = "%s-to-%s" % (k, asked[xid])
            if (who, k) in seen:
                continue
            seen.add((who, k))
            n += 1
            name = "%s-%02d-%s.bin" % (tag, n, k)
            with open(os.path.join(out, name), "wb") as f:
                f.write(payload)
            sender = "Kea 2.2" if who == "server" else tag.split("-")[0]
            rows.append("| `%s` | %d | %s | %s |" % (name, len(payload), sender, k))
    readme = os.path.join(out, "README.md")
    text = open(readme).read() if os.path.exists(readme) else ""
    begin, end = "<!-- captures begin -->", "<!-- captures end -->"
    table = [begin, "", "| file | bytes | sent by | message |", "|---|---:|---|---|"] + rows
    table += ["", "Capture runs:", ""] + ["* `%s`: %s" % (t, SOURCES[t]) for t in tags] + ["", end]
    if begin in text and end in text:
        text = text[:text.index(begin)] + "\n".join(table) + text[text.index(end) + len(end):]
    else:
        text += "\n" + "\n".join(table) + "\n"
    with open(readme, "w") as f:
        f.write(text)
    print("%d vectors from %d captures" % (len(rows), len(tags)))


if __name__ == "__main__":
    main()
