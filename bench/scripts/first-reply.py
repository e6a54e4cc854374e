#!/usr/bin/python3
"""Restart to first Reply: time from starting a DHCPv6 server to its first Advertise.

Run inside the client's network namespace:

    first-reply.py IFACE TIMEOUT_S -- SERVER COMMAND...

Sends a Solicit (fresh DUID-LL, IA_NA) to ff02::1:2 on IFACE every 50 ms from t=0, starts
the server command at t=0 (it may enter another namespace itself, e.g. `ip netns exec`),
and prints the seconds until the first Advertise answering one of the Solicits, then stops
the server with SIGTERM. Plain sockets: no scapy needed.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import time


def solicit(xid: int, mac: bytes) -> bytes:
    duid = struct.pack("!HH", 3, 1) + mac  # DUID-LL, Ethernet (RFC 8415 §11.4)
    opts = struct.pack("!HH", 1, len(duid)) + duid  # OPTION_CLIENTID
    opts += struct.pack("!HHIII", 3, 12, 1, 0, 0)  # OPTION_IA_NA, IAID 1, T1/T2 0
    opts += struct.pack("!HHH", 8, 2, 0)  # OPTION_ELAPSED_TIME
    return bytes([1]) + xid.to_bytes(3, "big") + opts  # Solicit


def main() -> int:
    if len(sys.argv) < 5 or sys.argv[3] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    iface, timeout, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[4:]
    ifindex = socket.if_nametoindex(iface)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    s.bind(("::", 546, 0, 0))
    s.settimeout(0.01)
    mac = os.urandom(6)
    sent: set[int] = set()
    t0 = time.monotonic()
    srv = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=None)
    next_send = t0
    got = None
    try:
        while time.monotonic() - t0 < timeout:
            now = time.monotonic()
            if now >= next_send:
                xid = (len(sent) * 7919 + 1) & 0xFFFFFF
                sent.add(xid)
                s.sendto(solicit(xid, mac), ("ff02::1:2", 547, 0, ifindex))
                next_send += 0.05
            if srv.poll() is not None:
                print(f"server exited with {srv.returncode} before answering", file=sys.stderr)
                return 1
            try:
                data, _ = s.recvfrom(2048)
            except socket.timeout:
                continue
            if len(data) >= 4 and data[0] == 2 and int.from_bytes(data[1:4], "big") in sent:
                got = time.monotonic() - t0
                break
    finally:
        if srv.poll() is None:
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(timeout=60)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()
    if got is None:
        print(f"no Advertise within {timeout} s ({len(sent)} Solicits sent)", file=sys.stderr)
        return 1
    print(f"first Advertise after {got:.3f} s ({len(sent)} Solicits sent)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
