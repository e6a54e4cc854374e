#!/bin/bash
# Run from the repo root after `cargo build --release --bin tandem` and, once, the harness's
# `SRV_NS=store-srv CLI_NS=store-cli SRV_IF=sts0 CLI_IF=stc0 setup-netns.sh`. Results: docs/benchmarks.md.
# Durable SARR leases/s: Kea 2.2 (memfile, persist=true) vs tandem (fsync and write), same
# perfdhcp load, same netns pair, one run. Uses /work/shared/harness.
set -u
export HARNESS_WORK=/tmp/store-kea SRV_NS=store-srv CLI_NS=store-cli SRV_IF=sts0 CLI_IF=stc0
H=${HARNESS:-/work/shared/harness}   # the DHCPv6 test harness (setup-netns.sh, run-kea.sh, run-perfdhcp.sh)
T=${TANDEM:-target/release/tandem}; T=$(realpath "$T")
RATE=${RATE:-40000}; CLIENTS=${CLIENTS:-2000000}; PERIOD=${PERIOD:-10}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u)"
cd $H
PERSIST=true LOGLEVEL=WARN ./run-kea.sh start >/dev/null
RATE=$RATE CLIENTS=$CLIENTS PERIOD=$PERIOD TAG=store-kea-sarr ./run-perfdhcp.sh sarr
./run-kea.sh stop >/dev/null
echo "kea lease file: $(wc -l < /tmp/store-kea/run/kea-leases6.csv) rows"
for mode in fsync write; do
  D=${WORK:-/tmp/store-e2e}/bench-$mode; rm -rf $D; mkdir -p $D
  cat > $D/tandem.toml <<EOC
[[subnet]]
prefix = "2001:db8:1::/64"
interfaces = ["sts0"]
preferred_lifetime = 3000
valid_lifetime = 4000
pool = [{ start = "2001:db8:1::1000", end = "2001:db8:1:0:ffff:ffff:ffff:ffff" }]
pd_pool = [{ prefix = "2001:db8:8000::/40", delegated_length = 56 }]
[io]
interfaces = ["sts0"]
[store]
durability = "$mode"
EOC
  ip netns exec store-srv timeout 120 $T serve --config $D/tandem.toml --data-dir $D/data --shards 2 > $D/srv.log 2>&1 &
  pid=$!
  for i in $(seq 1 100); do ip netns exec store-srv ss -H -uln 'sport = :547' | grep -q . && break; sleep 0.1; done
  sleep 0.5
  RATE=$RATE CLIENTS=$CLIENTS PERIOD=$PERIOD TAG=store-tandem-$mode-sarr ./run-perfdhcp.sh sarr
  kill $pid; wait $pid
  echo "tandem $mode leases: $($T leases --data-dir $D/data count 2>/dev/null)"
done
