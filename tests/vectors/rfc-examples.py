#!/usr/bin/python3
"""Golden vectors built with scapy (an independent DHCPv6 encoder) after the message layouts
in the RFC figures: RFC 8415 §8/§9/§21 (every option a server reads or writes), RFC 4649
Remote-ID, RFC 4580 Subscriber-ID, RFC 4704 Client FQDN, RFC 4994 ERO, RFC 6603
PD_EXCLUDE, RFC 6939 client link-layer address, RFC 8357 relay source port.

  rfc-examples.py --out DIR            write rfc-*.bin into DIR
  rfc-examples.py --send SERVER ...    also send the relayed client messages to SERVER:547
                                       from [relay]:547 (run in the client netns, so the
                                       server's answers land in the capture)
Options scapy 2.5 lacks (SOL_MAX_RT, INF_MAX_RT, PD_EXCLUDE, RELAY_PORT) are built with
DHCP6OptUnknown from their RFC layouts.
"""
import argparse, os, socket, struct
from scapy.layers.dhcp6 import (
    DHCP6_Solicit, DHCP6_Advertise, DHCP6_Request, DHCP6_Confirm, DHCP6_Renew, DHCP6_Rebind,
    DHCP6_Reply, DHCP6_Release, DHCP6_Decline, DHCP6_Reconf, DHCP6_InfoRequest,
    DHCP6_RelayForward, DHCP6_RelayReply,
    DHCP6OptClientId, DHCP6OptServerId, DHCP6OptIA_NA, DHCP6OptIA_TA, DHCP6OptIA_PD,
    DHCP6OptIAAddress, DHCP6OptIAPrefix, DHCP6OptOptReq, DHCP6OptPref, DHCP6OptElapsedTime,
    DHCP6OptRelayMsg, DHCP6OptAuth, DHCP6OptServerUnicast, DHCP6OptStatusCode,
    DHCP6OptRapidCommit, DHCP6OptUserClass, DHCP6OptVendorClass, DHCP6OptVendorSpecificInfo,
    DHCP6OptIfaceId, DHCP6OptReconfMsg, DHCP6OptReconfAccept, DHCP6OptDNSServers,
    DHCP6OptDNSDomains, DHCP6OptInfoRefreshTime, DHCP6OptRemoteID, DHCP6OptSubscriberID,
    DHCP6OptClientFQDN, DHCP6OptRelayAgentERO, DHCP6OptClientLinkLayerAddr, DHCP6OptUnknown,
    DUID_LLT, DUID_EN, DUID_LL, DUID_UUID)
from scapy.layers.dhcp6 import USER_CLASS_DATA, VENDOR_CLASS_DATA, VENDOR_SPECIFIC_OPTION

LLT = DUID_LLT(hwtype=1, timeval=0x2d8ab2a1, lladdr="02:00:00:00:00:01")
EN = DUID_EN(enterprisenum=2495, id=bytes.fromhex("0a0b0c0d0e0f"))
LL = DUID_LL(hwtype=1, lladdr="02:00:00:00:00:02")
UUID = DUID_UUID(uuid="f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
LINK = "2001:db8:2::1"
PEER = "fe80::200:ff:fe00:1"


def u32opt(code, value):
    return DHCP6OptUnknown(optcode=code, data=struct.pack("!I", value))


def sol_max_rt(v):            # RFC 8415 §21.24
    return u32opt(82, v)


def inf_max_rt(v):            # RFC 8415 §21.25
    return u32opt(83, v)


def relay_port(port):         # RFC 8357 §5
    return DHCP6OptUnknown(optcode=135, data=struct.pack("!H", port))


def pd_exclude(prefix_len, subnet_id):   # RFC 6603 §4.2
    return DHCP6OptUnknown(optcode=67, data=bytes([prefix_len]) + subnet_id)


def fqdn(flags, name):
    # RFC 4704 §4: flags + DNS wire-format name (fully qualified here).
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return DHCP6OptUnknown(optcode=39, data=bytes([flags]) + wire)


def chain(msg, *opts):
    for o in opts:
        msg = msg / o
    return msg


def solicit():
    # RFC 8415 §18.2.1: everything a CPE router typically puts in a Solicit.
    return chain(
        DHCP6_Solicit(trid=0x0a1b2c),
        DHCP6OptClientId(duid=LLT), DHCP6OptElapsedTime(elapsedtime=0),
        DHCP6OptOptReq(reqopts=[23, 24, 32, 82]),
        DHCP6OptIA_NA(iaid=1, T1=0, T2=0, ianaopts=[
            DHCP6OptIAAddress(addr="2001:db8:2::1234", preflft=0, validlft=0)]),
        DHCP6OptIA_PD(iaid=2, T1=0, T2=0, iapdopt=[
            DHCP6OptIAPrefix(preflft=0, validlft=0, plen=56, prefix="::")]),
        DHCP6OptReconfAccept(),
        DHCP6OptUserClass(userclassdata=[USER_CLASS_DATA(data=b"cpe-router")]),
        DHCP6OptVendorClass(enterprisenum=4491, vcdata=[VENDOR_CLASS_DATA(data=b"docsis3.1")]),
        DHCP6OptVendorSpecificInfo(enterprisenum=4491, vso=[
            VENDOR_SPECIFIC_OPTION(optcode=1, optdata=b"\x00\x20")]),
        fqdn(0x01, "cpe1.example.com"))


def relayed_solicit():
    # RFC 8415 §9 + §19.1.1, two relay agents: the access node (Interface-ID, Remote-ID,
    # Subscriber-ID, client link-layer address, ERO asking for Remote-ID and Subscriber-ID
    # back, RFC 8357 relay port) inside an aggregation relay.
    inner = chain(
        DHCP6_RelayForward(hopcount=0, linkaddr=LINK, peeraddr=PEER),
        DHCP6OptIfaceId(ifaceid=b"ge-0/0/1.100:4094"),
        DHCP6OptRemoteID(enterprisenum=3561, remoteid=b"CPE-0001"),
        DHCP6OptSubscriberID(subscriberid=b"sub-42"),
        DHCP6OptClientLinkLayerAddr(lltype=1, clladdr="02:00:00:00:00:01"),
        DHCP6OptRelayAgentERO(reqopts=[37, 38]),
        relay_port(0),
        DHCP6OptRelayMsg(message=chain(solicit(), DHCP6OptRapidCommit())))
    return chain(
        DHCP6_RelayForward(hopcount=1, linkaddr="::", peeraddr="2001:db8:1::2"),
        DHCP6OptIfaceId(ifaceid=b"agg-1"),
        DHCP6OptRelayMsg(message=inner))


def relayed_info_request():
    msg = chain(DHCP6_InfoRequest(trid=0x000102), DHCP6OptClientId(duid=EN),
                DHCP6OptElapsedTime(elapsedtime=100), DHCP6OptOptReq(reqopts=[23, 24, 32, 83]))
    return chain(DHCP6_RelayForward(hopcount=0, linkaddr=LINK, peeraddr=PEER),
                 DHCP6OptIfaceId(ifaceid=b"port-7"), DHCP6OptRelayMsg(message=msg))


def server_reply():
    # RFC 8415 §18.3.10 Reply with every server-written option, and an RFC 6603 exclude:
    # delegated 2001:db8:8000:100::/56, excluded 2001:db8:8000:1ff::/64 (subnet ID 0xff).
    return chain(
        DHCP6_Reply(trid=0x0a1b2c),
        DHCP6OptServerId(duid=EN), DHCP6OptClientId(duid=LLT),
        DHCP6OptIA_NA(iaid=1, T1=1800, T2=2880, ianaopts=[
            DHCP6OptIAAddress(addr="2001:db8:2::1234", preflft=3600, validlft=7200)]),
        DHCP6OptIA_PD(iaid=2, T1=1800, T2=2880, iapdopt=[
            DHCP6OptIAPrefix(preflft=3600, validlft=7200, plen=56,
                             prefix="2001:db8:8000:100::", iaprefopts=[pd_exclude(64, b"\xff")])]),
        DHCP6OptStatusCode(statuscode=0, statusmsg="All good."),
        DHCP6OptPref(prefval=255), DHCP6OptServerUnicast(srvaddr="2001:db8:1::1"),
        DHCP6OptRapidCommit(), DHCP6OptReconfAccept(),
        DHCP6OptDNSServers(dnsservers=["2001:db8:1::53", "2001:db8:1::54"]),
        DHCP6OptDNSDomains(dnsdomains=["example.com.", "isp.example.net."]),
        fqdn(0x01, "cpe1.example.com"),
        sol_max_rt(3600), inf_max_rt(3600))


def no_binding_reply():
    # RFC 8415 §18.3.4/§18.3.5: per-IA status codes, IA_TA answered NoAddrsAvail.
    return chain(
        DHCP6_Reply(trid=0x777777), DHCP6OptServerId(duid=EN), DHCP6OptClientId(duid=UUID),
        DHCP6OptIA_NA(iaid=9, T1=0, T2=0, ianaopts=[
            DHCP6OptStatusCode(statuscode=3, statusmsg="NoBinding")]),
        DHCP6OptIA_PD(iaid=10, T1=0, T2=0, iapdopt=[
            DHCP6OptStatusCode(statuscode=6, statusmsg="no prefixes")]),
        DHCP6OptIA_TA(iaid=11, iataopts=[DHCP6OptStatusCode(statuscode=2, statusmsg="")]),
        DHCP6OptInfoRefreshTime(reftime=86400))


def relay_reply():
    # RFC 8415 §19.3: the server mirrors each layer, Interface-ID echoed (§21.18), relay
    # port copied (RFC 8357 §5.2), ERO-requested Remote-ID and Subscriber-ID copied
    # (RFC 4994 §5).
    inner = chain(DHCP6_RelayReply(hopcount=0, linkaddr=LINK, peeraddr=PEER),
                  DHCP6OptIfaceId(ifaceid=b"ge-0/0/1.100:4094"), relay_port(0),
                  DHCP6OptRemoteID(enterprisenum=3561, remoteid=b"CPE-0001"),
                  DHCP6OptSubscriberID(subscriberid=b"sub-42"),
                  DHCP6OptRelayMsg(message=server_reply()))
    return chain(DHCP6_RelayReply(hopcount=1, linkaddr="::", peeraddr="2001:db8:1::2"),
                 DHCP6OptIfaceId(ifaceid=b"agg-1"), DHCP6OptRelayMsg(message=inner))


def client_messages():
    cid = DHCP6OptClientId(duid=LL)
    sid = DHCP6OptServerId(duid=EN)
    ia = DHCP6OptIA_NA(iaid=1, T1=0, T2=0, ianaopts=[
        DHCP6OptIAAddress(addr="2001:db8:2::1234", preflft=0, validlft=0)])
    pd = DHCP6OptIA_PD(iaid=2, T1=0, T2=0, iapdopt=[
        DHCP6OptIAPrefix(preflft=0, validlft=0, plen=56, prefix="2001:db8:8000:100::")])
    et = DHCP6OptElapsedTime(elapsedtime=0)
    return {
        "request": chain(DHCP6_Request(trid=1), cid, sid, et, ia, pd),
        "confirm": chain(DHCP6_Confirm(trid=2), cid, et, ia),
        "renew": chain(DHCP6_Renew(trid=3), cid, sid, et, ia, pd),
        "rebind": chain(DHCP6_Rebind(trid=4), cid, et, ia, pd),
        "release": chain(DHCP6_Release(trid=5), cid, sid, et, ia, pd),
        "decline": chain(DHCP6_Decline(trid=6), cid, sid, et, ia),
        "solicit-ia-ta": chain(DHCP6_Solicit(trid=7), cid, et,
                               DHCP6OptIA_TA(iaid=3), DHCP6OptRapidCommit()),
    }


def reconfigure():
    # RFC 8415 §18.3.11 / §20.4.2: Reconfigure with RECONF_MSG and a Reconfigure Key AUTH.
    return chain(DHCP6_Reconf(trid=0), DHCP6OptServerId(duid=EN), DHCP6OptClientId(duid=LLT),
                 DHCP6OptReconfMsg(msgtype=5),
                 DHCP6OptAuth(proto=3, alg=1, rdm=0, replay=b"\0" * 7 + b"\x01",
                              authinfo=b"\x02" + b"\x11" * 16))


def vectors():
    v = {
        "rfc8415-solicit": solicit(),
        "rfc8415-relay-forw-2hop-solicit": relayed_solicit(),
        "rfc8415-relay-forw-information-request": relayed_info_request(),
        "rfc8415-reply-all-options": server_reply(),
        "rfc8415-reply-status-codes": no_binding_reply(),
        "rfc8415-relay-repl-2hop-reply": relay_reply(),
        "rfc8415-reconfigure": reconfigure(),
    }
    for name, msg in client_messages().items():
        v["rfc8415-" + name] = msg
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--send", help="server address to send the relayed client messages to")
    ap.add_argument("--relay", default="2001:db8:1::2")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    all_v = vectors()
    for name, msg in all_v.items():
        with open(os.path.join(a.out, name + ".bin"), "wb") as f:
            f.write(bytes(msg))
    if a.send:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((a.relay, 547))
        sock.settimeout(2)
        for name in ["rfc8415-relay-forw-2hop-solicit", "rfc8415-relay-forw-information-request"]:
            sock.sendto(bytes(all_v[name]), (a.send, 547))
            try:
                data, _ = sock.recvfrom(4096)
                print(name, "->", len(data), "bytes")
            except socket.timeout:
                print(name, "-> no answer")


if __name__ == "__main__":
    main()
