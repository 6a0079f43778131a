// SPDX-License-Identifier: GPL-2.0
/* Socket filters for an uplink's packet sockets: the kernel keeps every frame that is not
 * wanlb's. Loaded once per uplink, with the length of its link-layer header, wanlb's NAT port
 * range and the uplink's forwarded ports set before loading, and the uplink's address in a
 * map, which wanlb updates when the interface's address changes. A socket filter returns how
 * many bytes of the frame to queue: 0 drops it. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define KEEP 0xffffffff
#define ICMP_ECHO_REPLY 0

/* The uplink's address (network byte order), in entry 0 (a DHCP renewal may change it). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __be32);
} wanlb_uplink_addr SEC(".maps");

/* The uplink's IPv6, in entry 0, as wanlb follows it: the address NAT66 translates to, and the
 * prefix it delegated (NPTv6) with its mask, every byte in packet order; a flag says which are
 * set. */
struct uplink_ipv6 {
	__u32 addr[4];
	__u32 prefix[4];
	__u32 mask[4];
	__u32 has_addr;
	__u32 has_prefix;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct uplink_ipv6);
} wanlb_uplink_ipv6 SEC(".maps");

#define IPPROTO_ICMPV6_ 58
#define ICMPV6_ECHO_REPLY 129

/* The NAT port range (ports and echo identifiers wanlb translates to), and the identifier of
 * wanlb's own health probes. */
const volatile __u16 first_port = 0;
const volatile __u16 last_port = 0;
const volatile __u16 probe_id = 0;
/* Bytes before the IP header: 14 on Ethernet, 0 on a point-to-point link (PPP, TUN, WireGuard:
 * a packet socket sees its frames from the IP header on). */
const volatile __u32 link_header = 0;

/* The ports of the uplink's address forwarded to LAN hosts, a bit each: port p is bit p % 8
 * of byte p / 8. */
const volatile __u8 forwarded_tcp[8192] = {0};
const volatile __u8 forwarded_udp[8192] = {0};

/* An IPv4 frame to the uplink's address: its protocol and where its transport header starts.
 * The frame's protocol is the skb's, as the link layer said it (on Ethernet, the ethertype). */
static __always_inline int ipv4_to_uplink(struct __sk_buff *skb, __u8 *proto, __u32 *l4)
{
	__be32 daddr;
	__u8 version_ihl;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	__u32 entry = 0;
	__be32 *uplink_addr = bpf_map_lookup_elem(&wanlb_uplink_addr, &entry);
	if (!uplink_addr || bpf_skb_load_bytes(skb, link_header + 16, &daddr, 4) ||
	    daddr != *uplink_addr)
		return 0;
	if (bpf_skb_load_bytes(skb, link_header, &version_ihl, 1) ||
	    bpf_skb_load_bytes(skb, link_header + 9, proto, 1))
		return 0;
	*l4 = link_header + (version_ihl & 0x0f) * 4;
	return 1;
}

static __always_inline int in_pool(__be16 port)
{
	__u16 p = bpf_ntohs(port);
	return p >= first_port && p <= last_port;
}

static __always_inline int is_forwarded(__u8 proto, __be16 port)
{
	__u16 p = bpf_ntohs(port);
	if (proto == IPPROTO_TCP)
		return forwarded_tcp[p >> 3] & (1 << (p & 7));
	return forwarded_udp[p >> 3] & (1 << (p & 7));
}

/* Where a frame for wanlb goes: an uplink's data sockets take the replies to the NAT pool (and
 * everything else of wanlb's), and, on an uplink with port forwards, a socket of their own per
 * worker takes what comes to a forwarded port, so a flood of it fills that socket's ring and
 * not the one the LAN's replies arrive in. */
#define NOT_WANLBS 0
#define FOR_REPLIES 1
#define FOR_FORWARDS 2

/* TCP or UDP to port `dport` of the uplink's address: a forward's, the pool's, or neither. */
static __always_inline int by_port(__u8 proto, __be16 dport)
{
	if (is_forwarded(proto, dport))
		return FOR_FORWARDS;
	return in_pool(dport) ? FOR_REPLIES : NOT_WANLBS;
}

/* An IPv6 frame for wanlb: anything to the delegated prefix (NPTv6: the engine filters it,
 * statefully); to the NAT66 address, TCP and UDP to a NAT port or a forwarded one, ICMPv6 echo
 * replies to a NAT identifier, ICMPv6 errors (types below 128), and whatever comes behind an
 * extension header (the engine walks them, and drops what it does not); never neighbour
 * discovery, router advertisements or other informational ICMPv6, nor echo replies outside
 * the pool (the IPv6 health probes', read by a socket of their own), all the kernel's. */
static __always_inline int ipv6_class(struct __sk_buff *skb)
{
	__u32 entry = 0;
	struct uplink_ipv6 *v6 = bpf_map_lookup_elem(&wanlb_uplink_ipv6, &entry);
	__u32 daddr[4];
	__u8 next;
	if (!v6 || bpf_skb_load_bytes(skb, link_header + 24, daddr, 16) ||
	    bpf_skb_load_bytes(skb, link_header + 6, &next, 1))
		return NOT_WANLBS;
	if (v6->has_prefix && (daddr[0] & v6->mask[0]) == v6->prefix[0] &&
	    (daddr[1] & v6->mask[1]) == v6->prefix[1] &&
	    (daddr[2] & v6->mask[2]) == v6->prefix[2] &&
	    (daddr[3] & v6->mask[3]) == v6->prefix[3])
		return FOR_REPLIES;
	if (!v6->has_addr || daddr[0] != v6->addr[0] || daddr[1] != v6->addr[1] ||
	    daddr[2] != v6->addr[2] || daddr[3] != v6->addr[3])
		return NOT_WANLBS;
	__u32 l4 = link_header + 40;
	if (next == IPPROTO_TCP || next == IPPROTO_UDP) {
		__be16 dport;
		if (bpf_skb_load_bytes(skb, l4 + 2, &dport, 2))
			return NOT_WANLBS;
		return by_port(next, dport);
	}
	if (next != IPPROTO_ICMPV6_)
		return FOR_REPLIES;
	__u8 type;
	__be16 id;
	if (bpf_skb_load_bytes(skb, l4, &type, 1))
		return NOT_WANLBS;
	if (type < 128)
		return FOR_REPLIES;
	if (type != ICMPV6_ECHO_REPLY || bpf_skb_load_bytes(skb, l4 + 4, &id, 2))
		return NOT_WANLBS;
	return in_pool(id) ? FOR_REPLIES : NOT_WANLBS;
}

/* What is wanlb's: TCP and UDP to a NAT port or a forwarded one, ICMP echo replies to a NAT
 * identifier, and other ICMP (errors, whatever they quote: the engine matches them to flows).
 * Echo replies outside the pool are the health probes', which have a socket of their own.
 * IPv6 as ipv6_class says, on a line with IPv6 (whose sockets are bound to every protocol). */
static __always_inline int frame_class(struct __sk_buff *skb)
{
	__u8 proto;
	__u32 l4;
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return ipv6_class(skb);
	if (!ipv4_to_uplink(skb, &proto, &l4))
		return NOT_WANLBS;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
		__be16 dport;
		if (bpf_skb_load_bytes(skb, l4 + 2, &dport, 2))
			return NOT_WANLBS;
		return by_port(proto, dport);
	}
	if (proto != IPPROTO_ICMP)
		return NOT_WANLBS;
	__u8 type;
	__be16 id;
	if (bpf_skb_load_bytes(skb, l4, &type, 1))
		return NOT_WANLBS;
	if (type != ICMP_ECHO_REPLY)
		return FOR_REPLIES;
	if (bpf_skb_load_bytes(skb, l4 + 4, &id, 2))
		return NOT_WANLBS;
	return in_pool(id) ? FOR_REPLIES : NOT_WANLBS;
}

/* The data sockets: what is wanlb's, but what comes to a forwarded port. */
SEC("socket")
int wanlb_replies(struct __sk_buff *skb)
{
	return frame_class(skb) == FOR_REPLIES ? KEEP : 0;
}

/* The forwarded ports' sockets: TCP and UDP to a forwarded port of the uplink's address. */
SEC("socket")
int wanlb_forwards(struct __sk_buff *skb)
{
	return frame_class(skb) == FOR_FORWARDS ? KEEP : 0;
}

/* The health probes' socket: echo replies with the probes' identifier, nothing else. */
SEC("socket")
int wanlb_probes(struct __sk_buff *skb)
{
	__u8 proto, type;
	__u32 l4;
	__be16 id;
	if (!ipv4_to_uplink(skb, &proto, &l4) || proto != IPPROTO_ICMP)
		return 0;
	if (bpf_skb_load_bytes(skb, l4, &type, 1) || type != ICMP_ECHO_REPLY)
		return 0;
	if (bpf_skb_load_bytes(skb, l4 + 4, &id, 2))
		return 0;
	return bpf_ntohs(id) == probe_id ? KEEP : 0;
}

char LICENSE[] SEC("license") = "GPL";
