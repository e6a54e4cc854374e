# Sourced by compare.sh and store-vs-kea.sh: one server/client namespace pair joined by a
# veth, unique to the calling run, removed on exit whatever happens, and the lifecycle of the
# one server under test at a time (wait for its port, start Kea, stop it).
#
#   [SNS] SIF fe80::1 2001:db8:1::1  <-veth->  CIF fe80::2 2001:db8:1::2 [CNS]
#   SNS routes 2001:db8:2::/64 (the relayed link the rig emulates) via the client.
#
# The caller sets TAG (unique per run), OUT and HARNESS; SERVER_PID is the running server.
# DAD and RA are off before any interface exists: servers must bind the link-local address
# at once, and nothing but the rig may configure addresses.
SNS=$TAG-s; CNS=$TAG-c; SIF=${TAG}s0; CIF=${TAG}c0
SERVER_PID=""
cleanup() {
    set +e
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID"; sleep 0.5; kill -9 "$SERVER_PID" 2>/dev/null
    fi
    for ns in "$SNS" "$CNS"; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
}
trap cleanup EXIT

netns_pair_up() {
    for ns in "$SNS" "$CNS"; do
        ip netns add "$ns"
        for k in all default; do
            ip netns exec "$ns" sysctl -qw net.ipv6.conf.$k.accept_dad=0
            ip netns exec "$ns" sysctl -qw net.ipv6.conf.$k.accept_ra=0
        done
        ip -n "$ns" link set lo up
    done
    ip -n "$SNS" link add "$SIF" type veth peer name "$CIF" netns "$CNS"
    ip netns exec "$SNS" sysctl -qw net.ipv6.conf.$SIF.addr_gen_mode=1
    ip netns exec "$CNS" sysctl -qw net.ipv6.conf.$CIF.addr_gen_mode=1
    ip -n "$SNS" addr add fe80::1/64 dev "$SIF" nodad
    ip -n "$SNS" addr add 2001:db8:1::1/64 dev "$SIF" nodad
    ip -n "$CNS" addr add fe80::2/64 dev "$CIF" nodad
    ip -n "$CNS" addr add 2001:db8:1::2/64 dev "$CIF" nodad
    ip -n "$SNS" link set "$SIF" up
    ip -n "$CNS" link set "$CIF" up
    ip -n "$SNS" -6 route add 2001:db8:2::/64 via 2001:db8:1::2 dev "$SIF"
}

# Wait until something in SNS listens on UDP 547 (the server under test is up).
wait_port() {
    for _ in $(seq 1 200); do
        ip netns exec "$SNS" ss -H -uln 'sport = :547' | grep -q . && return 0
        sleep 0.05
    done
    echo "server did not bind port 547"; return 1
}

# start_kea NAME WORKDIR: Kea 2.2 through the harness, memfile with persist=true; NAME kea-mt
# turns multi-threading on (2 threads).
start_kea() {
    local mt=false; [ "$1" = kea-mt ] && mt=true
    HARNESS_WORK=$2 SRV_NS=$SNS SRV_IF=$SIF PERSIST=true MT=$mt THREADS=2 \
        LOGLEVEL=WARN "$HARNESS/run-kea.sh" start > "$OUT/$1.log" 2>&1
    SERVER_PID=$(cat "$2/run/kea-dhcp6.pid")
}

# SIGTERM, up to 10 s to exit (a server flushing its store), then SIGKILL.
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
