#!/usr/bin/env python3
"""Writes the RFC 8156 failover golden vectors in this directory, field by field from the
RFCs' figures (see README.md for which figure each field comes from).

Independent of tandem's codec on purpose: every octet is laid out here from the figures,
so tests/failover_vectors.rs checks the Rust codec against the RFC, not against itself.
Re-run with `python3 tests/vectors/failover/make_vectors.py`; the output is deterministic.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# sent-time of every vector: 2027-01-15 08:00:00 UTC in seconds since 2000-01-01 UTC
# (RFC 8156 §5.2). It equals the clock of tests/fuzz/fuzz_targets/failover_parse.rs
# (Unix 1_800_000_000 s), so the vectors seed that fuzz target past the §7.1 skew check.
SENT = 1_800_000_000 - 946_684_800


def u8(v):
    return struct.pack("!B", v)


def u16(v):
    return struct.pack("!H", v)


def u32(v):
    return struct.pack("!I", v)


def opt(code, body):
    """RFC 8415 §21.1: option-code (2), option-len (2), option-data."""
    return u16(code) + u16(len(body)) + body


def frame(message):
    """RFC 5460 §5.1: message-size (2) then the message."""
    return u16(len(message)) + message


def failover(msg_type, xid, options=b""):
    """RFC 8156 §5.2: msg-type (1), transaction-id (3), sent-time (4), options."""
    return frame(u8(msg_type) + u32(xid)[1:] + u32(SENT) + options)


def dhcpv6(msg_type, xid, options=b""):
    """RFC 8415 §8 (RFC 3315 §6): msg-type (1), transaction-id (3), options. RFC 7653
    STARTTLS and REPLY use this header inside RFC 5460 framing."""
    return frame(u8(msg_type) + u32(xid)[1:] + options)


def ipv6(text):
    import ipaddress

    return ipaddress.IPv6Address(text).packed


def status(code, message=b""):
    """RFC 8415 §21.13 OPTION_STATUS_CODE (13): status-code (2), status-message."""
    return opt(13, u16(code) + message)


# Message types (RFC 8156 §5.3/§11, RFC 7653 §6.2.2, RFC 8415 §7.3).
REPLY, STARTTLS = 7, 23
BNDUPD, BNDREPLY, POOLREQ, POOLRESP, UPDREQ, UPDREQALL, UPDDONE = range(24, 31)
CONNECT, CONNECTREPLY, DISCONNECT, STATE, CONTACT = range(31, 36)

# Options (RFC 8156 §5.5 / §11, RFC 8415 §21, RFC 5007 §4.1.2, RFC 7653 §6.3.1).
CLIENTID, IA_NA, IAADDR, IA_PD, IAPREFIX = 1, 3, 5, 25, 26
CLIENT_DATA, CLT_TIME, LQ_BASE_TIME = 45, 46, 100
F_BINDING_STATUS, F_CONNECT_FLAGS = 114, 115
F_EXPIRATION_TIME, F_MAX_UNACKED_BNDUPD, F_MCLT = 120, 121, 122
F_PARTNER_LIFETIME, F_PARTNER_LIFETIME_SENT, F_PARTNER_DOWN_TIME = 123, 124, 125
F_PARTNER_RAW_CLT_TIME, F_PROTOCOL_VERSION, F_KEEPALIVE_TIME = 126, 127, 128
F_RELATIONSHIP_NAME, F_SERVER_FLAGS, F_SERVER_STATE = 130, 131, 132
F_START_TIME_OF_STATE, F_STATE_EXPIRATION_TIME = 133, 134

# Example values used throughout (absolute times in seconds since 2000).
BASE = SENT - 1  # LQ_BASE_TIME: when the BNDUPD was built
START = SENT - 600  # start-time-of-state: the lease became ACTIVE 10 minutes ago
VALID, PREF = 3600, 3000
MCLT = 3600
# RFC 8415 §11.2 DUID-LLT: type 1, hardware type 1 (Ethernet), time, MAC 00:16:3e:2a:2b:2c.
DUID = u16(1) + u16(1) + u32(0x2A2B2C2D) + bytes.fromhex("00163e2a2b2c")


def connect_options(keepalive, max_unacked):
    # RFC 8156 §6.1.1 lists the CONNECT options; §5.5.11 PROTOCOL_VERSION is major (2) and
    # minor (2); §5.5.2 CONNECT_FLAGS bit 15 (value 0x0001) is FIXED_PD_LENGTH; §5.5.14
    # RELATIONSHIP_NAME is UTF-8 without a NUL.
    return (
        opt(F_PROTOCOL_VERSION, u16(1) + u16(0))
        + opt(F_MCLT, u32(MCLT))
        + opt(F_KEEPALIVE_TIME, u32(keepalive))
        + opt(F_MAX_UNACKED_BNDUPD, u32(max_unacked))
        + opt(F_CONNECT_FLAGS, u16(0x0001))
        + opt(F_RELATIONSHIP_NAME, "isp-site-a".encode())
    )


def lease_options():
    # RFC 8156 §7.4, inside IAaddr-options / IAprefix-options, in the order listed there.
    return (
        opt(F_BINDING_STATUS, u8(1))  # §5.5.1: 1 = ACTIVE
        + opt(F_START_TIME_OF_STATE, u32(START))
        + opt(F_STATE_EXPIRATION_TIME, u32(START + VALID))
        + opt(CLT_TIME, u32(BASE - START))  # RFC 5007 §4.1.2.3: seconds before base-time
        + opt(F_PARTNER_LIFETIME, u32(START + VALID + MCLT))
        + opt(F_PARTNER_RAW_CLT_TIME, u32(START - 1800))
        + opt(F_EXPIRATION_TIME, u32(START + VALID))
    )


def iaaddr(addr, body):
    # RFC 8415 §21.6: IPv6-address (16), preferred-lifetime (4), valid-lifetime (4), options.
    return opt(IAADDR, ipv6(addr) + u32(PREF) + u32(VALID) + body)


def iaprefix(prefix, plen, body, pref=PREF, valid=VALID):
    # RFC 8415 §21.22: preferred-lifetime (4), valid-lifetime (4), prefix-length (1),
    # IPv6-prefix (16), options.
    return opt(IAPREFIX, u32(pref) + u32(valid) + u8(plen) + ipv6(prefix) + body)


def ia(code, iaid, body):
    # RFC 8415 §21.4 (IA_NA) / §21.21 (IA_PD): IAID (4), T1 (4), T2 (4), options. T1/T2 as
    # sent to the client: 0.5 and 0.8 of the preferred lifetime (§21.4 recommendation).
    return opt(code, u32(iaid) + u32(PREF // 2) + u32(PREF * 4 // 5) + body)


def reply_lease_options(code=None):
    # RFC 8156 §7.6: STATUS_CODE only on error, BINDING_STATUS and STATE_EXPIRATION_TIME as
    # received, the received PARTNER_LIFETIME echoed as PARTNER_LIFETIME_SENT.
    s = status(code) if code is not None else b""
    return (
        s
        + opt(F_BINDING_STATUS, u8(1))
        + opt(F_STATE_EXPIRATION_TIME, u32(START + VALID))
        + opt(F_PARTNER_LIFETIME_SENT, u32(START + VALID + MCLT))
    )


VECTORS = {
    # header only
    "contact.bin": failover(CONTACT, 0x00002A),
    "updreq.bin": failover(UPDREQ, 0x000101),
    "updreqall.bin": failover(UPDREQALL, 0x000102),
    "upddone.bin": failover(UPDDONE, 0x000102),
    "poolreq.bin": failover(POOLREQ, 0x000103),
    "poolresp.bin": failover(POOLRESP, 0x000103),
    # connection management (§6.1)
    "connect.bin": failover(CONNECT, 0x000001, connect_options(60, 100)),
    "connectreply-accept.bin": failover(CONNECTREPLY, 0x000001, connect_options(60, 100)),
    # §6.1.2: sent-time more than 5 s from the secondary's clock; status 22.
    "connectreply-excessive-skew.bin": failover(CONNECTREPLY, 0x000001, status(22)),
    # §5.6 ServerShuttingDown (20)
    "disconnect.bin": failover(DISCONNECT, 0x000004, status(20)),
    # STATE (§6.3): §5.5.16 SERVER_STATE, §5.5.15 SERVER_FLAGS (C = 0x01, S = 0x02,
    # A = 0x04, bits counted from the MSB), §5.5.17 START_TIME_OF_STATE,
    # §5.5.9 PARTNER_DOWN_TIME.
    "state-normal.bin": failover(
        STATE,
        0x000002,
        opt(F_SERVER_STATE, u8(2)) + opt(F_SERVER_FLAGS, u8(0x01)) + opt(F_START_TIME_OF_STATE, u32(START)),
    ),
    "state-startup.bin": failover(
        STATE,
        0x000003,
        opt(F_SERVER_STATE, u8(2)) + opt(F_SERVER_FLAGS, u8(0x03)) + opt(F_START_TIME_OF_STATE, u32(START)),
    ),
    "state-partner-down.bin": failover(
        STATE,
        0x000005,
        opt(F_SERVER_STATE, u8(4))
        + opt(F_SERVER_FLAGS, u8(0x05))
        + opt(F_START_TIME_OF_STATE, u32(SENT - 60))
        + opt(F_PARTNER_DOWN_TIME, u32(SENT - 60)),
    ),
    # BNDUPD for one client (§7.4): RFC 5007 §4.1.2.2 OPTION_CLIENT_DATA holding CLIENTID,
    # RFC 7653 §6.3.1 LQ_BASE_TIME, an IA_NA with one IAADDR and an IA_PD with one IAPREFIX.
    "bndupd-client.bin": failover(
        BNDUPD,
        0x000010,
        opt(
            CLIENT_DATA,
            opt(CLIENTID, DUID)
            + opt(LQ_BASE_TIME, u32(BASE))
            + ia(IA_NA, 1, iaaddr("2001:db8:1::1001", lease_options()))
            + ia(IA_PD, 2, iaprefix("2001:db8:100:1200::", 56, lease_options())),
        ),
    ),
    # BNDUPD for a free delegable prefix moving to the secondary (§7.4 stand-alone IAPREFIX,
    # §4.2.2): LQ_BASE_TIME, BINDING_STATUS 6 = FREE-BACKUP, START_TIME_OF_STATE.
    "bndupd-free-prefix.bin": failover(
        BNDUPD,
        0x000011,
        iaprefix(
            "2001:db8:200:3400::",
            56,
            opt(LQ_BASE_TIME, u32(BASE)) + opt(F_BINDING_STATUS, u8(6)) + opt(F_START_TIME_OF_STATE, u32(BASE)),
            pref=0,
            valid=0,
        ),
    ),
    # BNDREPLY accepting bndupd-client.bin (§7.6): same xid, no LQ_BASE_TIME.
    "bndreply-client.bin": failover(
        BNDREPLY,
        0x000010,
        opt(
            CLIENT_DATA,
            opt(CLIENTID, DUID)
            + ia(IA_NA, 1, iaaddr("2001:db8:1::1001", reply_lease_options()))
            + ia(IA_PD, 2, iaprefix("2001:db8:100:1200::", 56, reply_lease_options())),
        ),
    ),
    # BNDREPLY rejecting the address with OutdatedBindingInformation (19) at the lease
    # level (§7.6 item 2) and accepting the prefix.
    "bndreply-outdated.bin": failover(
        BNDREPLY,
        0x000010,
        opt(
            CLIENT_DATA,
            opt(CLIENTID, DUID)
            + ia(IA_NA, 1, iaaddr("2001:db8:1::1001", reply_lease_options(19)))
            + ia(IA_PD, 2, iaprefix("2001:db8:100:1200::", 56, reply_lease_options())),
        ),
    ),
    # RFC 7653 §8.2 / §9.1 TLS negotiation on the failover connection (RFC 8156 §6.1):
    # STARTTLS without options (§6.2.2), REPLY without status (go ahead) and REPLY with
    # TLSConnectionRefused (15).
    "starttls.bin": dhcpv6(STARTTLS, 0x000007),
    "reply-starttls-accept.bin": dhcpv6(REPLY, 0x000007),
    "reply-starttls-refused.bin": dhcpv6(REPLY, 0x000007, status(15)),
}


def main():
    for name, data in sorted(VECTORS.items()):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} octets")


if __name__ == "__main__":
    main()
