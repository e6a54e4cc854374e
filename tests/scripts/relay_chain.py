#!/usr/bin/python3
"""Two relay agents in front of one client, built with scapy (Debian python3-scapy).

Sends Relay-forw(Relay-forw(Solicit)) from [relay]:547 to the server's unicast address,
then Relay-forw(Relay-forw(Request)) built from the Advertise, and prints one JSON object
describing every Relay-repl layer and the client message inside, for the Rust test to
check (tests/relay.rs). The inner relay (hop 0, closest to the client) carries the client
link's link-address, an Interface-ID and a Remote-ID (RFC 4649); the outer relay (hop 1,
an aggregation router) uses link-address :: (RFC 8415 §19.1.1 allows it) and its own
Interface-ID.

  ip netns exec <client-ns> /usr/bin/python3 relay_chain.py --remote-id cpe-0001 ...
"""
import argparse
import ipaddress
import json
import socket
import struct
import sys

from scapy.layers.dhcp6 import (
    DHCP6_RelayForward, DHCP6_RelayReply, DHCP6_Request,
    DHCP6_Solicit, DHCP6OptClientId, DHCP6OptElapsedTime, DHCP6OptIA_NA, DHCP6OptIA_PD,
    DHCP6OptIfaceId, DHCP6OptOptReq, DHCP6OptRelayMsg,
    DHCP6OptRemoteID, DHCP6OptServerId, DHCP6OptUnknown, DUID_LL)

ap = argparse.ArgumentParser()
ap.add_argument("--server", default="2001:db8:1::1")
ap.add_argument("--relay", default="2001:db8:1::2", help="outer relay's own address")
ap.add_argument("--link", default="2001:db8:2::1", help="link-address of the client link")
ap.add_argument("--mac", default="02:00:00:00:aa:01")
ap.add_argument("--remote-id", default="cpe-0001")
ap.add_argument("--enterprise", type=int, default=3561)
ap.add_argument("--inner-ifid", default="port-1/1/7")
ap.add_argument("--outer-ifid", default="agg-uplink-3")
ap.add_argument("--timeout", type=float, default=3.0)
ap.add_argument("--source-port", type=int, default=547,
                help="UDP port the outer relay sends from (RFC 8357 when not 547)")
ap.add_argument("--downstream-port", type=int, default=None,
                help="RFC 8357: the inner relay also used a non-547 port, this one; both "
                     "layers then carry a Relay Source Port option")
a = ap.parse_args()

duid = DUID_LL(lladdr=a.mac)
client_ll = "fe80::" + a.mac.replace(":", "")[-4:]
inner_relay = "2001:db8:2::1"  # the access relay's own address, on the client link


def relay_port(port):
    """RFC 8357 §4.2 OPTION_RELAY_PORT (135) with the downstream source port."""
    return DHCP6OptUnknown(optcode=135, data=struct.pack("!H", port))


def wrap(msg):
    inner = DHCP6_RelayForward(hopcount=0, linkaddr=a.link, peeraddr=client_ll)
    if a.downstream_port is not None:
        inner = inner / relay_port(0)  # the inner relay's own non-547 port (§5.2 case 1)
    inner = (inner / DHCP6OptIfaceId(ifaceid=a.inner_ifid.encode())
             / DHCP6OptRemoteID(enterprisenum=a.enterprise, remoteid=a.remote_id.encode())
             / DHCP6OptRelayMsg(message=msg))
    outer = DHCP6_RelayForward(hopcount=1, linkaddr="::", peeraddr=inner_relay)
    if a.downstream_port is not None:
        outer = outer / relay_port(a.downstream_port)  # §5.2 cases 2/3
    elif a.source_port != 547:
        outer = outer / relay_port(0)  # §5.2 case 1
    return (outer / DHCP6OptIfaceId(ifaceid=a.outer_ifid.encode())
            / DHCP6OptRelayMsg(message=inner))


def tlvs(buf):
    """(code, value) pairs of an option area; raises ValueError on a length past the end."""
    out, i = [], 0
    while i < len(buf):
        if i + 4 > len(buf):
            raise ValueError("truncated option header")
        code, length = struct.unpack_from("!HH", buf, i)
        if i + 4 + length > len(buf):
            raise ValueError(f"option {code} length {length} past the end")
        out.append((code, buf[i + 4:i + 4 + length]))
        i += 4 + length
    return out


def ip6(b):
    return str(ipaddress.IPv6Address(bytes(b)))


def describe_client(msg):
    """Raw decode of a server's client message: IAs with their leases, status codes."""
    d = {"type": msg[0], "trid": int.from_bytes(msg[1:4], "big"), "ia_na": [], "ia_pd": [],
         "ia_status": [], "status": None, "server_id": None, "options": []}
    for code, val in tlvs(msg[4:]):
        d["options"].append(code)
        if code == 2:
            d["server_id"] = val.hex()
        elif code == 13:
            d["status"] = int.from_bytes(val[:2], "big")
        elif code in (3, 25):
            for sub, sval in tlvs(val[12:]):
                if sub == 5:
                    d["ia_na"].append(ip6(sval[:16]))
                elif sub == 26:
                    d["ia_pd"].append(f"{ip6(sval[9:25])}/{sval[8]}")
                elif sub == 13:
                    d["ia_status"].append(int.from_bytes(sval[:2], "big"))
    return d


def describe(data, src):
    out = {"src": src[0], "sport": src[1], "layers": [], "inner": None}
    cur = data
    while cur and cur[0] == 13:
        if len(cur) < 34:
            raise ValueError("truncated Relay-repl")
        layer = {"type": 13, "hopcount": cur[1], "linkaddr": ip6(cur[2:18]),
                 "peeraddr": ip6(cur[18:34]), "interface_id": None, "relay_port": None,
                 "options": []}
        nxt = None
        for code, val in tlvs(cur[34:]):
            layer["options"].append(code)
            if code == 18:
                layer["interface_id"] = val.decode(errors="replace")
            elif code == 135 and len(val) == 2:
                layer["relay_port"] = struct.unpack("!H", val)[0]
            elif code == 9:
                nxt = val
        out["layers"].append(layer)
        cur = nxt
    if cur:
        out["inner"] = describe_client(cur)
    return out


sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
# Relays talk to servers from and to port 547 (RFC 8415 §7.2), or from another port with
# the Relay Source Port option (RFC 8357), and then expect the reply on that port.
sock.bind((a.relay, a.source_port))
sock.settimeout(a.timeout)
result = {"exchanges": []}


def exchange(label, msg):
    sock.sendto(bytes(wrap(msg)), (a.server, 547))
    try:
        data, src = sock.recvfrom(65535)
    except socket.timeout:
        result["exchanges"].append({"label": label, "reply": None})
        return None, None
    desc = describe(data, src)
    desc["label"] = label
    result["exchanges"].append(desc)
    return data, desc


base = [DHCP6OptClientId(duid=duid), DHCP6OptElapsedTime(), DHCP6OptOptReq(reqopts=[23, 24]),
        DHCP6OptIA_NA(iaid=1), DHCP6OptIA_PD(iaid=2)]
sol = DHCP6_Solicit(trid=0x1a2b3c)
for o in base:
    sol = sol / o
data, desc = exchange("solicit", sol)
if data is not None and desc["inner"] and desc["inner"]["type"] == 2:
    # Unwrap to the Advertise and copy its SERVERID and IAs into the Request (§18.2.2).
    cur = DHCP6_RelayReply(data)
    while isinstance(cur, DHCP6_RelayReply):
        cur = cur.getlayer(DHCP6OptRelayMsg).message
    adv = cur
    req = (DHCP6_Request(trid=0x1a2b3d) / DHCP6OptClientId(duid=duid)
           / DHCP6OptServerId(duid=adv[DHCP6OptServerId].duid)
           / DHCP6OptElapsedTime() / DHCP6OptOptReq(reqopts=[23, 24]))
    for cls in (DHCP6OptIA_NA, DHCP6OptIA_PD):
        if adv.haslayer(cls):
            ia = adv[cls].copy()
            ia.remove_payload()  # the IA alone, not the options that follow it
            req = req / ia
    exchange("request", req)

json.dump(result, sys.stdout, indent=1)
print()
