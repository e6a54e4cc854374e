#!/bin/bash
# End-to-end durable SARR leases/s: tandem (durability fsync) vs Kea 2.2 (memfile,
# persist=true), same load generator, same namespace pair, one run (issue 3 §7). Results go
# to docs/benchmarks.md ("Lease store benchmarks").
#
# usage (root, from the repo root, after `cargo build --release --bin tandem --bin tandem-bench`):
#   bench/scripts/store-vs-kea.sh [--duration S] [--subscribers N] [--window W]
#                                 [--servers "kea-st kea-mt tandem-fsync-1 tandem-fsync-2 tandem-fsync-2-plain"]
#
# The load generator is the bench rig (`tandem-bench run`, UDP GSO), not perfdhcp: perfdhcp
# is one thread and saturates at a few thousand exchanges/s on this machine, which bounded
# the ratio the last time. Every subscriber does one 4-message exchange (Solicit, Advertise,
# Request, Reply) with an IA_NA, relayed through 64 emulated relays, closed loop (`--rate
# max`, `--window` outstanding). A completed exchange = one lease committed before its Reply:
# tandem `fsync` fdatasyncs the WAL batch before the Reply leaves; Kea's memfile appends to
# its CSV with no fsync at all (its strongest memfile setting), so the comparison favours Kea.
# tandem-fsync-N runs N shards (UDP GRO/GSO on, the default); tandem-fsync-N-plain turns
# both off (`[io] udp_gro = false, udp_gso = false`: one datagram per receive and per send),
# the same-run baseline for what the offloads buy. Afterwards the leases each server holds
# are counted.
#
# The window matters for a durable server: each transaction waits for its batch's fdatasync,
# so a closed loop of W outstanding transactions cannot exceed W / (2 x fsync latency)
# exchanges/s (Little's law; 2 transactions per exchange). With a ~4 ms fdatasync on a
# virtio disk, --window 512 caps tandem near 64k/s whatever its CPU cost; an avalanche of
# millions of subscribers has far more than 512 in flight.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HARNESS=${HARNESS:-/work/shared/harness}
DURATION=10
SUBS=2000000
WINDOW=512
SERVERS="kea-st tandem-fsync-1 tandem-fsync-2"
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION=$2; shift 2 ;;
        --subscribers) SUBS=$2; shift 2 ;;
        --window) WINDOW=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        *) echo "unknown argument $1"; exit 2 ;;
    esac
done
OUT=${OUT:-$ROOT/target/store-vs-kea/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
TANDEM=$ROOT/target/release/tandem
BENCH=$ROOT/target/release/tandem-bench

TAG=skea$$
. "$(dirname "$0")/server-pair.sh"
netns_pair_up

tandem_config() {  # $1 = durability, $2 = offloads (true/false), $3 = file
cat > "$3" <<EOF
[store]
durability = "$1"
[io]
counters_interval = 0
udp_gro = $2
udp_gso = $2
[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["$SIF"]
preferred_lifetime = 3000
valid_lifetime = 4000
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1:0:ffff:ffff:ffff:ffff" }]
[[subnet]]
prefix = "2001:db8:2::/64"
preferred_lifetime = 3000
valid_lifetime = 4000
pool = [{ start = "2001:db8:2::1000", end = "2001:db8:2:0:ffff:ffff:ffff:ffff" }]
EOF
}

count_leases() {  # $1 = server
    case "$1" in
        tandem-*) "$TANDEM" leases --data-dir "$OUT/data-$1" count 2>/dev/null | tr -dc '0-9' ;;
        kea-*) # memfile is a log: count distinct addresses whose last row has a lifetime
            awk -F, 'NR>1 {v[$1]=$3} END {n=0; for (a in v) if (v[a] > 0) n++; print n}' \
                "$OUT/kea-$1/run/kea-leases6.csv" ;;
    esac
}

start_server() {  # $1 = name
    case "$1" in
        tandem-*)
            # tandem-<durability>-<shards>[-plain]
            local offload=true rest=${1#tandem-}
            case "$rest" in *-plain) offload=false; rest=${rest%-plain} ;; esac
            local d=${rest%-*} shards=${rest##*-}
            tandem_config "$d" "$offload" "$OUT/$1.toml"
            rm -rf "$OUT/data-$1"
            ip netns exec "$SNS" "$TANDEM" serve --config "$OUT/$1.toml" \
                --data-dir "$OUT/data-$1" --shards "$shards" --log-level warn > "$OUT/$1.log" 2>&1 &
            SERVER_PID=$! ;;
        kea-st|kea-mt)
            start_kea "$1" "$OUT/kea-$1" ;;
        *) echo "unknown server $1"; exit 2 ;;
    esac
    wait_port
    sleep 0.3
}

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u), window $WINDOW" | tee "$OUT/machine.txt"
SEED=20
for server in $SERVERS; do
    SEED=$((SEED + 1))
    start_server "$server"
    timeout $((DURATION * 3 + 120)) ip netns exec "$CNS" "$BENCH" run \
        --target "[2001:db8:1::1]:547" --relays 64 --scenario sarr --subscribers "$SUBS" \
        --rate max --window "$WINDOW" --duration "$DURATION" --seed "$SEED" --gso --quiet \
        --json "$OUT/$server.json" > "$OUT/$server.txt" 2>&1 || echo "rig against $server failed"
    stop_server
    leases=$(count_leases "$server")
    /usr/bin/python3 - "$OUT/$server.json" "$server" "$leases" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:>16}: {r['exchanges_per_sec']:>9.0f} SARR exchanges/s, completed "
      f"{r['completed']}, drops {r['drops']}, NoAddrsAvail {r['no_addrs_avail']}, "
      f"p50 {r['latency_us']['p50']} us, p99 {r['latency_us']['p99']} us; leases held {sys.argv[3]}")
EOF
    sleep 1
done | tee "$OUT/results.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/results.txt"
echo "results in $OUT"
