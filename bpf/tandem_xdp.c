// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
//
// tandem's XDP program: steer DHCPv6 server traffic into the AF_XDP socket of the receiving
// queue, leave everything else to the kernel.
//
// Redirected: IPv6 UDP to destination port 547 (RFC 8415 §7.2: servers and relay agents
// listen on 547; clients send there, relays send Relay-forward there), untagged, 802.1Q or
// QinQ (802.1ad outer + 802.1Q inner). The redirect target is the XSKMAP slot of the
// receiving queue (`ctx->rx_queue_index`): each shard owns one queue's socket.
//
// Passed to the kernel: neighbour discovery, ICMPv6 (echo, errors), TCP, other UDP, IPv4,
// ARP, frames with more than two VLAN tags, IPv6 with extension headers before UDP
// (fragments or hop-by-hop; rare for DHCPv6, and the kernel's view of them is still
// correct), truncated frames, and port-547 traffic arriving on a queue that has no socket
// bound. Each outcome is counted in a per-CPU array the server sums and logs.
//
// Self-contained on purpose: only the kernel UAPI headers (linux-libc-dev) are needed, not
// libbpf's headers, so `cargo build` needs clang and nothing else from the BPF toolchain.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define be16(x) __builtin_bswap16(x)
#else
#define be16(x) (x)
#endif

// Helper ids from the kernel UAPI (enum bpf_func_id); stable ABI.
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

#define MAX_QUEUES 256

// The UDP port redirected: 547 (RFC 8415 §7.2) unless the server is configured otherwise
// ([io] port, for labs). Set by the loader before the program is verified (.rodata).
volatile const __u16 tandem_server_port = 547;

// Counter slots; src/io/xdp/program.rs mirrors this list (XdpCounter).
enum tandem_counter {
	C_REDIRECTED = 0,
	C_PASS_NOT_IPV6 = 1,
	C_PASS_NOT_UDP = 2,
	C_PASS_OTHER_PORT = 3,
	C_PASS_NO_SOCKET = 4,
	C_PASS_TRUNCATED = 5,
	C_PASS_TOO_MANY_VLANS = 6,
	C_COUNT = 7,
};

struct vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} tandem_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} tandem_counters SEC(".maps");

static __attribute__((always_inline)) void count(__u32 slot)
{
	__u64 *value = bpf_map_lookup_elem(&tandem_counters, &slot);
	// Per-CPU slot: no other writer, a plain increment is exact.
	if (value)
		*value += 1;
}

static __attribute__((always_inline)) int pass(__u32 slot)
{
	count(slot);
	return XDP_PASS;
}

static __attribute__((always_inline)) int is_vlan(__be16 proto)
{
	return proto == be16(ETH_P_8021Q) || proto == be16(ETH_P_8021AD);
}

SEC("xdp")
int tandem_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return pass(C_PASS_TRUNCATED);

	__be16 proto = eth->h_proto;
	void *cursor = eth + 1;

	// Outer tag (802.1ad or 802.1Q), then inner tag: at most two, like the reply framing.
	if (is_vlan(proto)) {
		struct vlan_hdr *outer = cursor;
		if ((void *)(outer + 1) > data_end)
			return pass(C_PASS_TRUNCATED);
		proto = outer->encapsulated_proto;
		cursor = outer + 1;
		if (is_vlan(proto)) {
			struct vlan_hdr *inner = cursor;
			if ((void *)(inner + 1) > data_end)
				return pass(C_PASS_TRUNCATED);
			proto = inner->encapsulated_proto;
			cursor = inner + 1;
			if (is_vlan(proto))
				return pass(C_PASS_TOO_MANY_VLANS);
		}
	}

	if (proto != be16(ETH_P_IPV6))
		return pass(C_PASS_NOT_IPV6);

	struct ipv6hdr *ip6 = cursor;
	if ((void *)(ip6 + 1) > data_end)
		return pass(C_PASS_TRUNCATED);
	// Only UDP directly after the fixed header; see the file comment for extension headers.
	if (ip6->nexthdr != IPPROTO_UDP)
		return pass(C_PASS_NOT_UDP);

	struct udphdr *udp = (void *)(ip6 + 1);
	if ((void *)(udp + 1) > data_end)
		return pass(C_PASS_TRUNCATED);
	if (udp->dest != be16(tandem_server_port))
		return pass(C_PASS_OTHER_PORT);

	__u32 queue = ctx->rx_queue_index;
	// The lookup tells "no socket on this queue" apart from a redirect; the redirect's own
	// fallback (XDP_PASS in the flags) still covers a socket closed between the two calls.
	if (!bpf_map_lookup_elem(&tandem_xsks, &queue))
		return pass(C_PASS_NO_SOCKET);
	count(C_REDIRECTED);
	return bpf_redirect_map(&tandem_xsks, queue, XDP_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
