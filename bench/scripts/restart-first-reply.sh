#!/bin/bash
# Restart to first Reply through the real server (issue 3 §7), results in docs/benchmarks.md.
# Run from the repo root after building the release binaries:
#   cargo build --release --bin tandem && cargo build --release -p tandem-bench --bin store-bench
#   target/release/store-bench build --dir /var/tmp/store-bench-10m --leases 10000000 --shards 2
# and, once, the harness's
#   SRV_NS=store-srv CLI_NS=store-cli SRV_IF=sts0 CLI_IF=stc0 /work/shared/harness/setup-netns.sh
# Then: bench/scripts/restart-first-reply.sh [DATA_DIR]   (COLD=1 also drops the page cache
# of the data directory's files first.)
# `tandem serve --shards 2` starts on DATA_DIR (10M leases) and on an empty directory (the
# baseline, same run); a client in the other namespace sends a Solicit every 50 ms from t=0
# and the time to the first Advertise is printed, with the server's own log timestamps.
set -eu
T=$(realpath "${TANDEM:-target/release/tandem}")
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${1:-/var/tmp/store-bench-10m}
WORK=${WORK:-/tmp/restart-first-reply}
RUNS=${RUNS:-3}
mkdir -p "$WORK"
# The store-bench population: NA in 2001:db8:1::/48, /56 prefixes in 2001:db8::/32. The pd
# pool covers them so the allocator's startup pass has every prefix to mark; the address
# pool is elsewhere (the NA leases are still looked up by the foreign-resource pass).
cat > "$WORK/tandem.toml" <<EOC
[[subnet]]
prefix = "2001:db9:1::/64"
interfaces = ["sts0"]
pool = [{ start = "2001:db9:1::1000", end = "2001:db9:1::ffff:ffff" }]
pd_pool = [{ prefix = "2001:db8::/32", delegated_length = 56 }]
[io]
interfaces = ["sts0"]
counters_interval = 0
EOC
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u)"
echo "data: $DATA ($(du -sb "$DATA" | cut -f1) bytes)"
run() {
  local dir=$1 tag=$2
  if [ "${COLD:-0}" = 1 ]; then
    for f in "$dir"/*; do dd if="$f" iflag=nocache count=0 status=none 2>/dev/null || true; done
  fi
  ip netns exec store-cli "$HERE/first-reply.py" stc0 120 -- \
    ip netns exec store-srv "$T" serve --config "$WORK/tandem.toml" --data-dir "$dir" --shards 2 \
    2> "$WORK/srv-$tag.log" | sed "s/^/$tag: /"
  grep -E "lease store open|\"ready\"| ready" "$WORK/srv-$tag.log" | sed "s/^/  $tag log: /" | cut -c1-200
}
for i in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/empty"
  run "$WORK/empty" "empty#$i"
  run "$DATA" "10M#$i"
done
