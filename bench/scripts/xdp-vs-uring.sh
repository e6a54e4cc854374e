#!/usr/bin/env bash
# AF_XDP backend vs io_uring backend vs a minimal AF_XDP reflector, one shard each, same
# veth, same run (docs/benchmarks.md). Run as root from the repository root after
#   cargo build --release --bins -p tandem -p tandem-bench
# Usage: bench/scripts/xdp-vs-uring.sh [rounds] [seconds]
# GEN=xdp (default): load from `xdp-rig run`, the rig's driver over AF_XDP on cli0, so the
#   generator costs less per exchange than any server measured; GEN=uring: `tandem-bench
#   run` (io_uring UDP sockets), the generator of the first measurement.
# SERVERS: any of uring, xdp, xdp-null (tandem --null-reflector on AF_XDP), xdp-reflect
#   (bench/src/bin/xdp-rig.rs reflect: the minimal AF_XDP reflector), uring-null,
#   uring-nooffload (io_uring with [io] udp_gro/udp_gso off: one send per reply).
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
SERVERS=${SERVERS:-"uring xdp xdp-reflect xdp-null"}
GEN=${GEN:-xdp}
WINDOW=${WINDOW:-1024}
# RT=1: run server and generator SCHED_FIFO (chrt -f 1) so that on a machine shared with
# niced background jobs their wake-ups are not delayed behind them (see docs/benchmarks.md).
if [ -n "${RT:-}" ]; then PRIO=(chrt -f 1); else PRIO=(); fi
BIN=target/release
S=xdpbench-s-$$; C=xdpbench-c-$$
WORK=$(mktemp -d)
cleanup() {
    [ -n "${SRV_PID:-}" ] && kill "$SRV_PID" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
    ip netns del "$C" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$S"; ip netns add "$C"
for ns in "$S" "$C"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$ns" link set lo up
done
# One queue on each end: one shard.
ip -n "$S" link add srv0 type veth peer name cli0 netns "$C"
for side in "$S srv0 1" "$C cli0 2"; do
    set -- $side
    ip netns exec "$1" sysctl -qw "net.ipv6.conf.$2.addr_gen_mode=1"
    ip -n "$1" addr add "fe80::$3/64" dev "$2" nodad
    ip -n "$1" addr add "2001:db8:1::$3/64" dev "$2" nodad
    ip netns exec "$1" ethtool -K "$2" tx off >/dev/null
    ip -n "$1" link set "$2" up
done
ip -n "$S" -6 route add 2001:db8:2::/64 via 2001:db8:1::2 dev srv0
sleep 1

cat > "$WORK/tandem.toml" <<'TOML'
[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["srv0"]
pool = [{ start = "2001:db8:1::1:0", end = "2001:db8:1::ffff:ffff" }]
preferred_lifetime = 3600
valid_lifetime = 7200

[[subnet]]
prefix = "2001:db8:2::/64"
pool = [{ start = "2001:db8:2::1:0", end = "2001:db8:2::ffff:ffff" }]
pd_pool = [{ prefix = "2001:db8:100::/40", delegated_length = 56 }]
preferred_lifetime = 3600
valid_lifetime = 7200

[io]
counters_interval = 0

[store]
durability = "memory"
TOML
# PERF=DIR: `perf record -g` the server during each run into DIR/perf-SERVER-ROUND.data.
# XDP_BATCH=N: [io.xdp] batch (frames per receive batch; default 64).
if [ -n "${XDP_BATCH:-}" ]; then
    sed -i "s/^counters_interval = 0$/counters_interval = 0\n\n[io.xdp]\nbatch = $XDP_BATCH/" "$WORK/tandem.toml"
fi

# The io_uring backend without UDP GRO/GSO (one send per reply), for reference.
sed "s/^counters_interval = 0$/counters_interval = 0\nudp_gro = false\nudp_gso = false/" \
    "$WORK/tandem.toml" > "$WORK/tandem-nooffload.toml"

start_server() {
    local config="$WORK/tandem.toml"
    [ "$1" = uring-nooffload ] && config="$WORK/tandem-nooffload.toml"
    local args=(serve --config "$config" --data-dir "$WORK/data-$1" --shards 1)
    case "$1" in
        uring|uring-nooffload) args+=(--backend uring) ;;
        uring-null) args+=(--backend uring --null-reflector) ;;
        xdp) args+=(--backend xdp --interface srv0) ;;
        xdp-null) args+=(--backend xdp --interface srv0 --null-reflector) ;;
    esac
    rm -rf "$WORK/data-$1"
    if [ "$1" = xdp-reflect ]; then
        ip netns exec "$S" "${PRIO[@]}" taskset -c 0 "$BIN/xdp-rig" reflect --interface srv0 >"$WORK/$1.log" 2>&1 &
    else
        ip netns exec "$S" "${PRIO[@]}" taskset -c 0 "$BIN/tandem" "${args[@]}" >"$WORK/$1.log" 2>&1 &
    fi
    SRV_PID=$!
    for _ in $(seq 50); do
        grep -q 'server: ready\|"ready"\|READY' "$WORK/$1.log" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "server $1 did not start:"; cat "$WORK/$1.log"; exit 1
}

stop_server() {
    kill -TERM "$SRV_PID"; wait "$SRV_PID" || true; SRV_PID=
}

SERVER_MAC=$(ip netns exec "$S" cat /sys/class/net/srv0/address)
generate() {
    if [ "$GEN" = xdp ]; then
        ip netns exec "$C" "${PRIO[@]}" taskset -c 1 timeout $((SECS + 60)) "$BIN/xdp-rig" run \
            --interface cli0 --server-mac "$SERVER_MAC" --target '[2001:db8:1::1]:547' \
            --scenario sarr --subscribers 20000 --duration "$SECS" --window "$WINDOW" \
            --link-base 2001:db8:2:: 2>&1
    else
        ip netns exec "$C" "${PRIO[@]}" taskset -c 1 timeout $((SECS + 60)) "$BIN/tandem-bench" run \
            --target '[2001:db8:1::1]:547' --scenario sarr --subscribers 20000 \
            --duration "$SECS" --rate max --window "$WINDOW" --link-base 2001:db8:2:: --quiet 2>&1
    fi
}

echo "generator $GEN (window $WINDOW); $(uptime)"
echo "SARR exchanges/s / drops / server CPU µs per exchange / generator CPU µs per exchange; one shard, server on CPU 0, generator on CPU 1, ${SECS} s runs"
printf '%-6s' round; for s in $SERVERS; do printf ' %26s' "$s"; done; echo
for round in $(seq "$ROUNDS"); do
    printf '%-6s' "$round"
    for s in $SERVERS; do
        start_server "$s"
        stat0=$(grep -E '^cpu[01] ' /proc/stat)
        if [ -n "${PERF:-}" ]; then
            # PERF=DIR: profile the server (call graphs) over the generator run.
            perf record -q -F 999 --call-graph dwarf,16384 -o "$PERF/perf-$s-$round.data" -p "$SRV_PID" 2>/dev/null &
            PERF_PID=$!
        fi
        out=$(generate) || true
        if [ -n "${PERF:-}" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi
        stat1=$(grep -E '^cpu[01] ' /proc/stat)
        if [ -n "${CPUSTAT:-}" ]; then
            # Per-CPU split over the generator run: user nice system idle iowait irq softirq.
            paste <(echo "$stat0") <(echo "$stat1") | awk -v s="$s" '{t=0; for(i=2;i<=11;i++){d[i]=$(i+11)-$i; t+=d[i]} printf "  %s %s: user %.0f%% nice %.0f%% sys %.0f%% idle %.0f%% softirq %.0f%%\n", s, $1, 100*d[2]/t, 100*d[3]/t, 100*d[4]/t, 100*d[5]/t, 100*d[8]/t}' >&2
        fi
        # Server CPU (user + system, clock ticks) over start-up and the run.
        ticks=$(awk '{print $14 + $15}' "/proc/$SRV_PID/stat")
        stop_server
        completed=$(echo "$out" | awk '/^completed/ {print $2; exit}')
        cpu_us=$(echo "scale=1; $ticks * 1000000 / $(getconf CLK_TCK) / ${completed:-1}" | bc)
        rate=$(echo "$out" | awk '/^exchanges\/s/ {print $2; exit}')
        drops=$(echo "$out" | awk '/^drops/ {print $2; exit}')
        gen_us=$(echo "$out" | awk '/^rig cost/ {print $3; exit}')
        printf ' %26s' "${rate:-?}/${drops:-?}/${cpu_us}us/${gen_us:-?}us"
        echo "$out" > "$WORK/bench-$s-$round.txt"
        cp "$WORK/bench-$s-$round.txt" "/tmp/xdp-bench-$s-$round.txt"
        cp "$WORK/$s.log" "/tmp/xdp-bench-server-$s-$round.log"
    done
    echo
done
