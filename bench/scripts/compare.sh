#!/usr/bin/env bash
# Side-by-side comparison, in one run on this machine: tandem, Kea 2.2 (memfile, persist on;
# multi-threading off and on) and the reflector (the transport ceiling), each measured by
# the rig (tandem-bench) and by ISC perfdhcp. Writes a markdown table of absolute figures and
# ratios, the rig's JSON results and SVG plots, and the perfdhcp outputs to a results folder.
#
# usage (root): bench/scripts/compare.sh [--out DIR] [--duration SECS] [--subscribers N]
#                                         [--servers "reflector tandem-fsync tandem-write kea-st kea-mt"]
#                                         [--no-build]
# The rig and the reflector use UDP GSO/GRO (--gso); servers see ordinary datagrams.
# Needs: kea-dhcp6-server, kea-admin (perfdhcp), iproute2, ethtool. Takes ~1 minute per
# server with the defaults. Not part of CI (docs/benchmarks.md records its latest table).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/harness}
[ -d "$HARNESS" ] || HARNESS=/work/shared/harness
OUT=""
DURATION=10
SUBS=200000
SERVERS="reflector tandem-fsync tandem-write kea-st kea-mt"
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --subscribers) SUBS=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        *) echo "unknown argument $1"; exit 2 ;;
    esac
done
OUT=${OUT:-$ROOT/target/compare/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Namespaces unique to this run; removed on exit whatever happens.
TAG=cmp$$
. "$(dirname "$0")/server-pair.sh"
if [ "$BUILD" = 1 ]; then
    (cd "$ROOT" && cargo build --release --bin tandem --bin tandem-bench)
fi
TANDEM=$ROOT/target/release/tandem
BENCH=$ROOT/target/release/tandem-bench

netns_pair_up

# --- servers
tandem_config() {  # $1 = durability
cat > "$OUT/tandem-$1.toml" <<EOF
[server]
preference = 255
[options]
dns_servers = ["2001:db8:1::53"]
[store]
durability = "$1"
[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["$SIF"]
preferred_lifetime = 3000
valid_lifetime = 4000
rapid_commit = true
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1:0:ffff:ffff:ffff:ffff" }]
pd_pool = [{ prefix = "2001:db8:8000::/40", delegated_length = 56 }]
[[subnet]]
prefix = "2001:db8:2::/64"
preferred_lifetime = 3000
valid_lifetime = 4000
rapid_commit = true
pool = [{ start = "2001:db8:2::1000", end = "2001:db8:2:0:ffff:ffff:ffff:ffff" }]
pd_pool = [{ prefix = "2001:db8:9000::/40", delegated_length = 56 }]
EOF
}

start_server() {  # $1 = name
    case "$1" in
        reflector)
            ip netns exec "$SNS" "$BENCH" reflect --interface "$SIF" --gso > "$OUT/$1.log" 2>&1 &
            SERVER_PID=$! ;;
        tandem-fsync|tandem-write)
            local d=${1#tandem-}
            tandem_config "$d"
            rm -rf "$OUT/data-$d"
            # One shard: the other core runs the load generator.
            ip netns exec "$SNS" "$TANDEM" serve --config "$OUT/tandem-$d.toml" \
                --data-dir "$OUT/data-$d" --shards 1 --log-level warn > "$OUT/$1.log" 2>&1 &
            SERVER_PID=$! ;;
        kea-st|kea-mt)
            start_kea "$1" "$OUT/kea" ;;
        *) echo "unknown server $1"; exit 2 ;;
    esac
    wait_port
    sleep 0.3
}

# --- load generators
SEED=10
rig() {  # $1 server, $2 label, rest: rig args
    local server=$1 label=$2; shift 2
    SEED=$((SEED + 1))
    timeout $((DURATION * 3 + 120)) ip netns exec "$CNS" "$BENCH" run "$@" --seed "$SEED" --gso \
        --duration "$DURATION" --quiet --json "$OUT/$server-$label.json" \
        > "$OUT/$server-$label.txt" 2>&1 || echo "rig $server $label failed (see $OUT/$server-$label.txt)"
}

perfdhcp_run() {  # $1 server, $2 label, rest: perfdhcp args
    local server=$1 label=$2; shift 2
    timeout $((DURATION + 30)) ip netns exec "$CNS" perfdhcp -6 -l "$CIF" -r 100000 \
        -R "$SUBS" -p "$DURATION" -W 500000 "$@" all > "$OUT/$server-$label.txt" 2>&1 || true
}

for server in $SERVERS; do
    echo "== $server"
    start_server "$server"
    rig "$server" rig-sarr --target "[2001:db8:1::1]:547" --relays 64 --scenario sarr \
        --subscribers "$SUBS" --rate max --window 256
    rig "$server" rig-rapid --interface "$CIF" --scenario rapid --subscribers "$SUBS" \
        --rate max --window 256
    perfdhcp_run "$server" perfdhcp-sa -i
    if [ "$server" != reflector ]; then
        perfdhcp_run "$server" perfdhcp-sarr
    fi
    stop_server
    sleep 1
done

# --- the table
/usr/bin/python3 - "$OUT" "$SERVERS" "$DURATION" <<'EOF'
import json, os, re, sys
out, servers, duration = sys.argv[1], sys.argv[2].split(), float(sys.argv[3])

def rig(server, label):
    try:
        r = json.load(open(f"{out}/{server}-{label}.json"))
    except (OSError, ValueError):
        return None
    return {"rate": r["exchanges_per_sec"], "req": r["transactions_per_sec"],
            "drops": r["drops"], "p50": r["latency_us"]["p50"], "p99": r["latency_us"]["p99"],
            "noaddr": r["no_addrs_avail"]}

def perfdhcp(server, label):
    try:
        text = open(f"{out}/{server}-{label}.txt").read()
    except OSError:
        return None
    m = re.search(r"^Rate: ([0-9.]+)", text, re.M)
    recv = sum(int(x) for x in re.findall(r"^received packets: (\d+)", text, re.M))
    sent = sum(int(x) for x in re.findall(r"^sent packets: (\d+)", text, re.M))
    drops = sum(int(x) for x in re.findall(r"^drops: (\d+)", text, re.M))
    avg = re.findall(r"^avg delay: ([0-9.]+) ms", text, re.M)
    if m is None and recv == 0:
        return None
    return {"rate": float(m.group(1)) if m else 0.0, "req": recv / duration, "drops": drops,
            "p50": None, "p99": None, "avg_ms": avg[-1] if avg else "n/a", "sent": sent}

rows = []
modes = [("rig-sarr", rig, "rig --gso, 4-message, relayed (64 relays), max"),
         ("rig-rapid", rig, "rig --gso, rapid commit, direct, max"),
         ("perfdhcp-sa", perfdhcp, "perfdhcp -i (Solicit/Advertise), -r 100000"),
         ("perfdhcp-sarr", perfdhcp, "perfdhcp 4-message, -r 100000")]
res = {(s, m): f(s, m) for s in servers for (m, f, _) in modes}
lines = ["| server | load | exchanges/s | answered requests/s | × reflector (requests/s) | drops | p50 µs | p99 µs |",
         "|---|---|---:|---:|---:|---:|---:|---:|"]
for (m, _, desc) in modes:
    base = res.get(("reflector", m)) or res.get(("reflector", "perfdhcp-sa" if m.startswith("perfdhcp") else m))
    for s in servers:
        r = res.get((s, m))
        if r is None:
            continue
        ratio = f"{r['req'] / base['req']:.3f}" if base and base["req"] else "n/a"
        p50 = r["p50"] if r["p50"] is not None else f"avg {r.get('avg_ms')} ms"
        p99 = r["p99"] if r["p99"] is not None else ""
        lines.append(f"| {s} | {desc} | {r['rate']:.0f} | {r['req']:.0f} | {ratio} | {r['drops']} | {p50} | {p99} |")
rs, ps = res.get(("reflector", "rig-rapid")), res.get(("reflector", "perfdhcp-sa"))
summary = []
if rs and ps and ps["req"]:
    summary.append(f"Rig vs perfdhcp against the reflector (2-message exchanges): "
                   f"{rs['req']:.0f} vs {ps['req']:.0f} answered requests/s = **{rs['req']/ps['req']:.1f}×**.")
uname = os.uname()
md = [f"# Side-by-side comparison ({os.path.basename(out)})", "",
      f"Machine: {os.cpu_count()} CPUs, kernel {uname.release}; every figure from this one run.",
      f"Command: `bench/scripts/compare.sh --duration {duration:g}` (see the script header).", "",
      *lines, "", *summary, "",
      "Plots: `*-rate.svg`, `*-latency.svg` beside this file; raw outputs: `*.json`, `*.txt`."]
open(f"{out}/results.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
echo "results in $OUT"
