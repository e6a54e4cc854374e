#!/bin/bash
# Regenerates the golden vectors in this directory from real DHCPv6 traffic on this machine:
# ISC dhclient, dhcpcd, perfdhcp and a scapy relay agent talking to Kea 2.2 (all Debian 12
# packages), captured with dumpcap on the server's veth, plus frames built by scapy from RFC
# figures (rfc-examples.py). Each .bin file is one raw UDP payload; README.md lists them.
#
# usage (root): tests/vectors/capture.sh [OUT_DIR]    (default: this directory)
# needs: kea-dhcp6-server kea-admin (perfdhcp) isc-dhcp-client dhcpcd-base tshark python3-scapy
# and the harness scripts in $HARNESS (default /work/shared/harness: run-clients.sh, relay-scapy.py, clients/). Creates its own namespaces (wire-srv-PID /
# wire-cli-PID) and removes them on exit; touches nothing else.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(cd "${1:-$HERE}" && pwd)
H=${HARNESS:-/work/shared/harness}
PY=/usr/bin/python3     # Debian's python3 has scapy; a pyenv python3 on PATH may not
export HARNESS_WORK; HARNESS_WORK=$(mktemp -d /tmp/wire-capture.XXXXXX)
export SRV_NS=wire-srv-$$ CLI_NS=wire-cli-$$ SRV_IF=wvs$$ CLI_IF=wvc$$
RUN=$HARNESS_WORK/run PCAPS=$HARNESS_WORK/pcap STATE=$HARNESS_WORK/state
mkdir -p "$RUN" "$PCAPS" "$STATE"
PIDS=()

cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for f in "$RUN"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    sleep 0.3
    for ns in "$SRV_NS" "$CLI_NS"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
}
trap cleanup EXIT

# Topology as in the harness's setup-netns.sh (without its ping check):
# [SRV_NS] SRV_IF fe80::1, 2001:db8:1::1 <-veth-> CLI_IF fe80::2, 2001:db8:1::2 [CLI_NS].
# DAD and RAs are off before the links come up so servers can bind at once.
for ns in "$SRV_NS" "$CLI_NS"; do
    ip netns add "$ns"
    for k in all default; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.$k.accept_dad=0
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.$k.accept_ra=0
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.$k.router_solicitations=0
    done
    ip -n "$ns" link set lo up
done
ip -n "$SRV_NS" link add "$SRV_IF" type veth peer name "$CLI_IF" netns "$CLI_NS"
ip netns exec "$SRV_NS" sysctl -qw net.ipv6.conf.$SRV_IF.addr_gen_mode=1
ip netns exec "$CLI_NS" sysctl -qw net.ipv6.conf.$CLI_IF.addr_gen_mode=1
ip -n "$SRV_NS" addr add fe80::1/64 dev "$SRV_IF" nodad
ip -n "$SRV_NS" addr add 2001:db8:1::1/64 dev "$SRV_IF" nodad
ip -n "$CLI_NS" addr add fe80::2/64 dev "$CLI_IF" nodad
ip -n "$CLI_NS" addr add 2001:db8:1::2/64 dev "$CLI_IF" nodad
ip -n "$SRV_NS" link set "$SRV_IF" up
ip -n "$CLI_NS" link set "$CLI_IF" up
ip -n "$SRV_NS" -6 route add 2001:db8:2::/64 via 2001:db8:1::2 dev "$SRV_IF"

# Kea: the harness subnets, with short T1/T2 so dhclient renews and rebinds within seconds,
# DNS servers + domain search list (options 23, 24) and a PD pool with an RFC 6603 excluded
# prefix (sent when a client asks for option 67).
cat > "$RUN/kea.json" <<JSON
{ "Dhcp6": {
  "interfaces-config": { "interfaces": [ "$SRV_IF/2001:db8:1::1" ] },
  "control-socket": { "socket-type": "unix", "socket-name": "$RUN/kea.sock" },
  "data-directory": "$RUN",
  "server-id": { "type": "EN", "enterprise-id": 2495, "identifier": "0a0b0c0d0e0f", "persist": false },
  "lease-database": { "type": "memfile", "persist": true, "name": "$RUN/leases6.csv", "lfc-interval": 0 },
  "renew-timer": 3, "rebind-timer": 5, "preferred-lifetime": 20, "valid-lifetime": 30,
  "option-data": [ { "name": "dns-servers", "data": "2001:db8:1::53, 2001:db8:1::54" },
                   { "name": "domain-search", "data": "example.com, isp.example.net" } ],
  "subnet6": [
    { "id": 1, "subnet": "2001:db8:1::/64", "interface": "$SRV_IF", "rapid-commit": true,
      "pools": [ { "pool": "2001:db8:1::1000-2001:db8:1::1fff" } ],
      "pd-pools": [ { "prefix": "2001:db8:8000::", "prefix-len": 40, "delegated-len": 56,
                      "excluded-prefix": "2001:db8:8000:ff::", "excluded-prefix-len": 64 } ] },
    { "id": 2, "subnet": "2001:db8:2::/64", "rapid-commit": true,
      "pools": [ { "pool": "2001:db8:2::1000-2001:db8:2::1fff" } ],
      "pd-pools": [ { "prefix": "2001:db8:9000::", "prefix-len": 40, "delegated-len": 56 } ] } ],
  "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "$RUN/kea.log" } ],
                 "severity": "INFO" } ] } }
JSON
KEA_PID=
kea_start() {
    ip netns exec "$SRV_NS" env KEA_PIDFILE_DIR="$RUN" KEA_LOCKFILE_DIR="$RUN" \
        kea-dhcp6 -c "$RUN/kea.json" > "$RUN/kea.stdout" 2>&1 &
    KEA_PID=$!; PIDS+=("$KEA_PID")
    for _ in $(seq 1 100); do
        ip netns exec "$SRV_NS" ss -H -uln 'sport = :547' | grep -q . && return 0
        sleep 0.05
    done
    echo "kea did not start"; cat "$RUN/kea.stdout"; exit 1
}
kea_stop() { kill "$KEA_PID"; wait "$KEA_PID" 2>/dev/null || true; }

CAP_PID=
cap_start() {  # cap_start TAG
    ip netns exec "$SRV_NS" dumpcap -q -P -i "$SRV_IF" -f 'udp port 546 or udp port 547' \
        -w "$PCAPS/$1.pcap" 2>"$RUN/dumpcap-$1.log" &
    CAP_PID=$!; PIDS+=("$CAP_PID")
    for _ in $(seq 1 50); do [ -s "$PCAPS/$1.pcap" ] && break; sleep 0.1; done
    sleep 0.3
}
cap_stop() { sleep 0.5; kill -INT "$CAP_PID"; wait "$CAP_PID" 2>/dev/null || true; }

DHCLIENT=(ip netns exec "$CLI_NS" timeout 20 dhclient -6 -v -e "HARNESS_WORK=$HARNESS_WORK" -sf "$H/clients/dhclient-script-hz")
dhclient_pid_stop() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null; sleep 0.3; rm -f "$1"; }

kea_start

# 1. dhclient IA_NA: Solicit/Advertise/Request/Reply, Renew/Reply after T1; then Kea stops,
#    so the next Renew goes unanswered and the client Rebinds at T2; restart with the kept
#    lease file sends Confirm; -r sends Release. -S sends Information-request.
cap_start dhclient-na
lf=$STATE/na.leases pf=$RUN/dhclient-na.pid
"${DHCLIENT[@]}" -1 -lf "$lf" -pf "$pf" "$CLI_IF" >"$RUN/dhclient-na.out" 2>&1
sleep 4.5; kea_stop; sleep 5; dhclient_pid_stop "$pf"
kea_start
"${DHCLIENT[@]}" -1 -lf "$lf" -pf "$pf" "$CLI_IF" >>"$RUN/dhclient-na.out" 2>&1 || true
"${DHCLIENT[@]}" -r -lf "$lf" -pf "$pf" "$CLI_IF" >>"$RUN/dhclient-na.out" 2>&1 || true
dhclient_pid_stop "$pf"
"${DHCLIENT[@]}" -S -1 -lf "$STATE/info.leases" -pf "$pf" "$CLI_IF" >>"$RUN/dhclient-na.out" 2>&1 || true
dhclient_pid_stop "$pf"
cap_stop

# 2. dhclient IA_PD (-P) and IA_NA + IA_PD (-N -P), each released.
for mode in pd napd; do
    cap_start "dhclient-$mode"
    flags=(-P); [ "$mode" = napd ] && flags=(-N -P)
    lf=$STATE/$mode.leases pf=$RUN/dhclient-$mode.pid
    "${DHCLIENT[@]}" "${flags[@]}" -1 -lf "$lf" -pf "$pf" "$CLI_IF" >"$RUN/dhclient-$mode.out" 2>&1
    "${DHCLIENT[@]}" "${flags[@]}" -r -lf "$lf" -pf "$pf" "$CLI_IF" >>"$RUN/dhclient-$mode.out" 2>&1 || true
    dhclient_pid_stop "$pf"
    cap_stop
done

# 3. dhcpcd in IPv6 mode (IA_NA + IA_PD, Rapid Commit), through the harness runner.
cap_start dhcpcd
TMO=15 "$H/run-clients.sh" dhcpcd >"$RUN/dhcpcd-run.out" 2>&1 || true
cap_stop

# 4. perfdhcp: SARR (IA_NA), -e address-and-prefix (also asking for PD_EXCLUDE), relayed -A 1.
perf() {  # perf TAG [args]
    local tag=$1; shift
    cap_start "$tag"
    ip netns exec "$CLI_NS" timeout 20 perfdhcp -6 -l "$CLI_IF" -r 2 -R 2 -n 2 -p 3 -t 1 "$@" \
        >"$RUN/$tag.out" 2>&1 || true
    cap_stop
}
perf perfdhcp-sarr all
perf perfdhcp-pd -e address-and-prefix -o 6,00170043 all
perf perfdhcp-relay -A 1 2001:db8:1::1

# 5. A two-hop relay (Interface-ID, Remote-ID) with scapy, and the RFC-figure frames sent to
#    Kea through a relay with ERO, Subscriber-ID, client link-layer address and relay port.
cap_start scapy-relay
ip netns exec "$CLI_NS" timeout 20 "$PY" "$H/relay-scapy.py" --hops 2 >"$RUN/relay.out" 2>&1 || true
ip netns exec "$CLI_NS" timeout 20 "$PY" "$HERE/rfc-examples.py" --send 2001:db8:1::1 \
    --out "$HARNESS_WORK/rfc" >"$RUN/rfc.out" 2>&1 || true
cap_stop

kea_stop
"$PY" "$HERE/extract.py" "$PCAPS" "$OUT"
mkdir -p "$HARNESS_WORK/rfc"
"$PY" "$HERE/rfc-examples.py" --out "$OUT"
echo "vectors written to $OUT (work files in $HARNESS_WORK)"
