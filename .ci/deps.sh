#!/usr/bin/env bash
# Installs what building and testing tandem needs on Debian 12, as root. Idempotent: it
# only calls apt-get when a package is missing, so `make run` / `make test` can always call it.
#
#   kea-admin          perfdhcp (load generator for the perfdhcp tests and benchmarks)
#   kea-dhcp6-server   Kea, the reference server for benchmarks and store import samples
#   isc-dhcp-client    dhclient -6 (integration tests)
#   dhcpcd-base        dhcpcd (integration tests)
#   python3-scapy      relay-chain and bad-input packet scripts (/usr/bin/python3)
#   tshark             dumpcap + tshark: captures and Wireshark's malformed-packet verdict
#   iproute2 ethtool   network namespaces, veth pairs, checksum offload off
#   iputils-ping       ICMPv6 echo checks (link up; the kernel still answers beside AF_XDP)
#   util-linux mount   unshare -m / private mounts for the clients
#   clang llvm libelf-dev zlib1g-dev pkg-config m4 libpcap-dev
#                      the XDP program (bpf/) and AF_XDP bindings
#   bc hyperfine linux-perf   benchmark scripts
#   build-essential    cc/c++ for -sys crates and libFuzzer (fuzz targets)
set -euo pipefail

PACKAGES=(
    kea-admin kea-dhcp6-server isc-dhcp-client dhcpcd-base python3-scapy tshark
    iproute2 ethtool iputils-ping util-linux mount procps
    clang llvm libelf-dev zlib1g-dev pkg-config m4 libpcap-dev
    bc hyperfine linux-perf build-essential make
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: missing ${missing[*]}; run as root (or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; the default answer (no) is fine.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "deps: all ${#PACKAGES[@]} Debian packages present"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        rustup component add "$component"
    fi
done
