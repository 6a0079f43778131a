// SPDX-License-Identifier: GPL-2.0
/* wanlb's kernel fast path: once the engine has seen a flow settle, these programs carry its
 * packets without copying them to userspace. `wanlb_outbound` runs at the ingress of the LAN
 * interfaces, `wanlb_inbound` at the ingress of the Ethernet uplinks and `wanlb_inbound_l3` at
 * that of the point-to-point ones, whose packets have no link-layer header. They translate
 * exactly as the
 * engine does (address, port or echo identifier, TTL, checksums through the kernel's helpers,
 * which keep partial checksums and GSO packets intact) and leave everything they do not know,
 * or should not handle, to the normal path, which leads to wanlb's userspace data path: SYN,
 * FIN and RST; IP options, fragments, a bad header checksum, TTL below 2; packets too big for
 * the next link; ICMP other than echo; VLAN-tagged frames; malformed headers; unknown flows.
 * The engine remains the only one that decides. */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "wanlb.h"

#define ETH_LEN 14
/* Where the transport header starts once committed: every packet then has an Ethernet header
 * (one from a point-to-point uplink is given one). */
#define L4_OFF (ETH_LEN + 20)
#define ICMP_ECHO_REPLY 0
#define ICMP_ECHO_REQUEST 8
#define TCP_FIN_SYN_RST 0x07
#define TCP_ACK 0x10
#define AF_INET 2
#define AF_INET6 10
#define IPV6_LEN 40
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define EINVAL 22

/* The flows handed over, one map per direction; entries are allocated as flows are added. */
struct flow_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} outbound_flows SEC(".maps"), inbound_flows SEC(".maps");

/* The IPv6 flows handed over, as sized and allocated as the IPv4 ones. */
struct flow_map6 {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_FLOWS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct flow_key6);
	__type(value, struct flow_value6);
} outbound_flows6 SEC(".maps"), inbound_flows6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_UPLINKS);
	__type(key, __u32);
	__type(value, struct uplink_info);
} wanlb_uplinks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * MAX_UPLINKS);
	__type(key, __u32);
	__type(value, struct counter);
} wanlb_counters SEC(".maps");

/* Makes the first `len` bytes directly readable; false if the packet is shorter. */
static __always_inline int linear(struct __sk_buff *skb, __u32 len)
{
	if ((long)skb->data + len <= (long)skb->data_end)
		return 1;
	bpf_skb_pull_data(skb, len);
	return (long)skb->data + len <= (long)skb->data_end;
}

/* Whether the IPv4 header (20 bytes, no options) sums to all ones. */
static __always_inline int header_checksum_ok(const struct iphdr *ip)
{
	const __u16 *word = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += word[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/* Carries one packet of a flow the engine handed over, in `dir`; TC_ACT_UNSPEC leaves it to
 * the normal path. `l2` is the length of the link-layer header it arrived with: ETH_LEN, or 0
 * from a point-to-point uplink (a constant: each entry point gets its own copy). */
static __always_inline int carry(struct __sk_buff *skb, enum direction dir, const __u32 l2)
{
	const __u32 l4_at = l2 + 20;
	/* only frames sent to this host, without a VLAN tag the NIC took off (it would be put
	 * back on the way out, on the wrong link) */
	if (skb->pkt_type != 0 || skb->vlan_present)
		return TC_ACT_UNSPEC;
	if (!linear(skb, l4_at + 8))
		return TC_ACT_UNSPEC;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + l2;
	if ((void *)(ip + 1) + 8 > data_end)
		return TC_ACT_UNSPEC;

	/* IPv4 (as the link layer said: on Ethernet, the ethertype) without options, not a
	 * fragment, a TTL left to forward with, a header that checks out, and a total length
	 * that fits what arrived (Ethernet may pad, never cut) */
	if (skb->protocol != bpf_htons(ETH_P_IP) || *(__u8 *)ip != 0x45)
		return TC_ACT_UNSPEC;
	if (ip->frag_off & bpf_htons(0x3fff) || ip->ttl < 2 || !header_checksum_ok(ip))
		return TC_ACT_UNSPEC;
	__u32 total = bpf_ntohs(ip->tot_len);
	if (total < 28 || total > skb->len - l2)
		return TC_ACT_UNSPEC;

	struct flow_key key = {
		.saddr = ip->saddr,
		.daddr = ip->daddr,
		.proto = ip->protocol,
		.ifindex = dir == INBOUND ? skb->ingress_ifindex : 0,
	};
	__u8 proto = ip->protocol;
	/* the IP and transport headers, which each segment of a GSO packet has of its own */
	__u32 headers = 20 + 8;
	/* TCP: what the segment acknowledges, and its window, for the engine */
	__u32 ack = 0;
	__u16 window = 0;
	__u8 acked = 0;
	if (proto == IPPROTO_TCP) {
		if (!linear(skb, l4_at + 20))
			return TC_ACT_UNSPEC;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		ip = data + l2;
		__u8 *tcp = data + l4_at;
		if ((void *)(tcp + 20) > data_end)
			return TC_ACT_UNSPEC;
		/* a whole TCP header, as the engine requires; SYN, FIN and RST change a
		 * connection's state: the engine must see them */
		if (total < 40 || tcp[12] < 0x50 || tcp[13] & TCP_FIN_SYN_RST)
			return TC_ACT_UNSPEC;
		key.sport = *(__be16 *)tcp;
		key.dport = *(__be16 *)(tcp + 2);
		acked = tcp[13] & TCP_ACK;
		headers = 20 + (tcp[12] >> 4) * 4;
		ack = bpf_ntohl(*(__be32 *)(tcp + 8));
		window = bpf_ntohs(*(__be16 *)(tcp + 14));
	} else if (proto == IPPROTO_UDP) {
		__be16 *udp = data + l4_at;
		key.sport = udp[0];
		key.dport = udp[1];
	} else if (proto == IPPROTO_ICMP) {
		/* echo requests out, echo replies back; errors and the rest are the engine's. The
		 * identifier is the flow's port: the LAN end's out, the translated one back. */
		__u8 *icmp = data + l4_at;
		__u8 echo = dir == OUTBOUND ? ICMP_ECHO_REQUEST : ICMP_ECHO_REPLY;
		if (icmp[0] != echo || icmp[1] != 0)
			return TC_ACT_UNSPEC;
		if (dir == OUTBOUND)
			key.sport = *(__be16 *)(icmp + 4);
		else
			key.dport = *(__be16 *)(icmp + 4);
	} else {
		return TC_ACT_UNSPEC;
	}

	struct flow_value *flow =
		bpf_map_lookup_elem(dir == OUTBOUND ? (void *)&outbound_flows : (void *)&inbound_flows,
				    &key);
	if (!flow)
		return TC_ACT_UNSPEC;
	struct uplink_info *uplink = 0;
	__u32 out_ifindex;
	if (dir == OUTBOUND) {
		__u32 index = flow->uplink;
		uplink = bpf_map_lookup_elem(&wanlb_uplinks, &index);
		if (!uplink)
			return TC_ACT_UNSPEC;
		out_ifindex = uplink->ifindex;
	} else {
		out_ifindex = flow->ifindex;
	}
	/* 0 while the uplink's gateway is unknown or the line is down. A packet too big for the
	 * next link, or a GSO packet whose segments would be, takes the normal path, which
	 * answers with the ICMP error. The IP packet's length is what must fit, whatever
	 * link-layer header it has here and will have there; the segments of a GSO packet only
	 * the kernel can measure. */
	if (out_ifindex == 0)
		return TC_ACT_UNSPEC;
	__u32 mtu = skb->gso_size ? 0 : total;
	if (bpf_check_mtu(skb, out_ifindex, &mtu, 0, skb->gso_size ? BPF_MTU_CHK_SEGS : 0) != 0)
		return TC_ACT_UNSPEC;

	/* Committed. The LAN host is reached through its neighbour entry, which takes the place
	 * of a link-layer header the packet must have (bpf_redirect_neigh drops one without): a
	 * packet from a point-to-point uplink gets an empty one. */
	if (dir == INBOUND && l2 == 0 && bpf_skb_change_head(skb, ETH_LEN, 0))
		return TC_ACT_UNSPEC;
	/* Rewrite in place, remembering old and new values for the checksums. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	ip = data + ETH_LEN;
	__u8 *l4 = data + L4_OFF;
	if ((void *)(l4 + 8) > data_end)
		return TC_ACT_UNSPEC;
	__be32 *addr_field = dir == OUTBOUND ? &ip->saddr : &ip->daddr;
	__be16 *port_field = proto == IPPROTO_ICMP ? (__be16 *)(l4 + 4)
			     : dir == OUTBOUND	   ? (__be16 *)l4
						   : (__be16 *)(l4 + 2);
	__be32 old_addr = *addr_field, new_addr = flow->addr;
	__be16 old_port = *port_field, new_port = flow->port;
	*addr_field = new_addr;
	*port_field = new_port;
	/* TTL and protocol as one 16-bit word; TTL >= 2, so no borrow into the protocol */
	__u16 *ttl_word = (__u16 *)&ip->ttl;
	__u16 old_ttl = *ttl_word;
	ip->ttl--;
	__u16 new_ttl = *ttl_word;
	/* to a point-to-point uplink the kernel takes the Ethernet header off */
	if (dir == OUTBOUND && !uplink->point_to_point) {
		__builtin_memcpy(eth->h_dest, uplink->dst_mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, uplink->src_mac, ETH_ALEN);
	}
	flow->last_seen = bpf_ktime_get_ns();
	if (acked) {
		flow->ack = ack;
		flow->window = window;
		flow->acked = 1;
	}

	/* The helpers update a complete checksum, or only the pseudo-header part of a partial
	 * one (the port is summed with the data later). A UDP checksum of 0 (none) stays 0.
	 * ICMP has no pseudo header: only the identifier is in its checksum. */
	__u32 csum_at, csum_flags = 0;
	if (proto == IPPROTO_TCP) {
		csum_at = L4_OFF + 16;
	} else if (proto == IPPROTO_UDP) {
		csum_at = L4_OFF + 6;
		csum_flags = BPF_F_MARK_MANGLED_0;
	} else {
		csum_at = L4_OFF + 2;
	}
	if (bpf_l3_csum_replace(skb, ETH_LEN + 10, old_addr, new_addr, 4) ||
	    bpf_l3_csum_replace(skb, ETH_LEN + 10, old_ttl, new_ttl, 2))
		return TC_ACT_SHOT;
	if (proto != IPPROTO_ICMP &&
	    bpf_l4_csum_replace(skb, csum_at, old_addr, new_addr, csum_flags | BPF_F_PSEUDO_HDR | 4))
		return TC_ACT_SHOT;
	if (bpf_l4_csum_replace(skb, csum_at, old_port, new_port, csum_flags | 2))
		return TC_ACT_SHOT;

	/* what the line carries, and the ISP counts: a GSO packet's segments each with its own
	 * headers */
	__u32 segments = skb->gso_segs ? skb->gso_segs : 1;
	__u64 bytes = skb->len - ETH_LEN + (__u64)(segments - 1) * headers;
	__u32 index = 2 * (__u32)flow->uplink + dir;
	struct counter *count = bpf_map_lookup_elem(&wanlb_counters, &index);
	if (count) {
		count->packets += segments;
		count->bytes += bytes;
	}
	flow->bytes += bytes;

	if (dir == OUTBOUND)
		return bpf_redirect(out_ifindex, 0);
	/* The LAN host is on the link (the engine offers only such flows), so it is its own
	 * next hop: the kernel only looks up its neighbour entry, not a route. */
	struct bpf_redir_neigh next_hop;
	/* all 20 bytes: the kernel reads them, and the verifier lets only CAP_PERFMON read an
	 * uninitialised stack */
	__builtin_memset(&next_hop, 0, sizeof(next_hop));
	next_hop.nh_family = AF_INET;
	next_hop.ipv4_nh = flow->addr;
	return bpf_redirect_neigh(out_ifindex, &next_hop, sizeof(next_hop), 0);
}

/* Adds `diff` (a bpf_csum_diff of the pseudo-header's addresses) to the transport checksum at
 * `at`. BPF_F_IPV6 tells kernels that know it (6.16 on) that IPv6 has no header checksum, so a
 * CHECKSUM_COMPLETE packet's sum is left alone; older kernels refuse the flag and get the call
 * without it. */
static __always_inline long pseudo_header_replace(struct __sk_buff *skb, __u32 at, __s64 diff,
						  __u64 flags)
{
	long r = bpf_l4_csum_replace(skb, at, 0, diff, flags | BPF_F_PSEUDO_HDR | BPF_F_IPV6);
	if (r == -EINVAL)
		r = bpf_l4_csum_replace(skb, at, 0, diff, flags | BPF_F_PSEUDO_HDR);
	return r;
}

/* `carry` for IPv6: the fixed header only (an extension header, a fragment's above all, goes
 * up), a hop limit of 2 or more, TCP without SYN, FIN or RST, UDP with a checksum (0 is none,
 * which IPv6 forbids: the engine drops it), ICMPv6 echo requests out and replies back. The
 * address rewritten is 16 bytes: its change enters the transport checksum through the
 * pseudo-header (ICMPv6's too, unlike ICMP's). */
static __always_inline int carry6(struct __sk_buff *skb, enum direction dir, const __u32 l2)
{
	const __u32 l4_at = l2 + IPV6_LEN;
	if (skb->pkt_type != 0 || skb->vlan_present)
		return TC_ACT_UNSPEC;
	if (!linear(skb, l4_at + 8))
		return TC_ACT_UNSPEC;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip = data + l2;
	if ((void *)(ip + 1) + 8 > data_end)
		return TC_ACT_UNSPEC;
	if (skb->protocol != bpf_htons(ETH_P_IPV6) || ip->version != 6 || ip->hop_limit < 2)
		return TC_ACT_UNSPEC;
	__u32 total = IPV6_LEN + bpf_ntohs(ip->payload_len);
	if (total < IPV6_LEN + 8 || total > skb->len - l2)
		return TC_ACT_UNSPEC;

	struct flow_key6 key = {
		.proto = ip->nexthdr,
		.ifindex = dir == INBOUND ? skb->ingress_ifindex : 0,
	};
	__builtin_memcpy(key.saddr, &ip->saddr, 16);
	__builtin_memcpy(key.daddr, &ip->daddr, 16);
	__u8 proto = ip->nexthdr;
	__u32 headers = IPV6_LEN + 8;
	__u32 ack = 0;
	__u16 window = 0;
	__u8 acked = 0;
	if (proto == IPPROTO_TCP) {
		if (!linear(skb, l4_at + 20))
			return TC_ACT_UNSPEC;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		__u8 *tcp = data + l4_at;
		if ((void *)(tcp + 20) > data_end)
			return TC_ACT_UNSPEC;
		if (total < IPV6_LEN + 20 || tcp[12] < 0x50 || tcp[13] & TCP_FIN_SYN_RST)
			return TC_ACT_UNSPEC;
		key.sport = *(__be16 *)tcp;
		key.dport = *(__be16 *)(tcp + 2);
		acked = tcp[13] & TCP_ACK;
		headers = IPV6_LEN + (tcp[12] >> 4) * 4;
		ack = bpf_ntohl(*(__be32 *)(tcp + 8));
		window = bpf_ntohs(*(__be16 *)(tcp + 14));
	} else if (proto == IPPROTO_UDP) {
		__be16 *udp = data + l4_at;
		if (udp[3] == 0)
			return TC_ACT_UNSPEC;
		key.sport = udp[0];
		key.dport = udp[1];
	} else if (proto == IPPROTO_ICMPV6) {
		__u8 *icmp = data + l4_at;
		__u8 echo = dir == OUTBOUND ? ICMPV6_ECHO_REQUEST : ICMPV6_ECHO_REPLY;
		if (icmp[0] != echo || icmp[1] != 0)
			return TC_ACT_UNSPEC;
		if (dir == OUTBOUND)
			key.sport = *(__be16 *)(icmp + 4);
		else
			key.dport = *(__be16 *)(icmp + 4);
	} else {
		return TC_ACT_UNSPEC;
	}

	struct flow_value6 *flow = bpf_map_lookup_elem(
		dir == OUTBOUND ? (void *)&outbound_flows6 : (void *)&inbound_flows6, &key);
	if (!flow)
		return TC_ACT_UNSPEC;
	struct uplink_info *uplink = 0;
	__u32 out_ifindex;
	if (dir == OUTBOUND) {
		__u32 index = flow->uplink;
		uplink = bpf_map_lookup_elem(&wanlb_uplinks, &index);
		if (!uplink)
			return TC_ACT_UNSPEC;
		out_ifindex = uplink->ifindex6;
	} else {
		out_ifindex = flow->ifindex;
	}
	if (out_ifindex == 0)
		return TC_ACT_UNSPEC;
	__u32 mtu = skb->gso_size ? 0 : total;
	if (bpf_check_mtu(skb, out_ifindex, &mtu, 0, skb->gso_size ? BPF_MTU_CHK_SEGS : 0) != 0)
		return TC_ACT_UNSPEC;

	/* Committed. */
	if (dir == INBOUND && l2 == 0 && bpf_skb_change_head(skb, ETH_LEN, 0))
		return TC_ACT_UNSPEC;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	ip = data + ETH_LEN;
	__u8 *l4 = data + ETH_LEN + IPV6_LEN;
	if ((void *)(l4 + 8) > data_end)
		return TC_ACT_UNSPEC;
	__u8 *addr_field = dir == OUTBOUND ? (__u8 *)&ip->saddr : (__u8 *)&ip->daddr;
	__be16 *port_field = proto == IPPROTO_ICMPV6 ? (__be16 *)(l4 + 4)
			     : dir == OUTBOUND	     ? (__be16 *)l4
						     : (__be16 *)(l4 + 2);
	__u32 old_addr[4], new_addr[4];
	__builtin_memcpy(old_addr, addr_field, 16);
	__builtin_memcpy(new_addr, flow->addr, 16);
	__be16 old_port = *port_field, new_port = flow->port;
	__builtin_memcpy(addr_field, new_addr, 16);
	*port_field = new_port;
	/* no header checksum in IPv6: the hop limit is in no sum */
	ip->hop_limit--;
	if (dir == OUTBOUND && !uplink->point_to_point) {
		__builtin_memcpy(eth->h_dest, uplink->dst_mac6, ETH_ALEN);
		__builtin_memcpy(eth->h_source, uplink->src_mac, ETH_ALEN);
	}
	flow->last_seen = bpf_ktime_get_ns();
	if (acked) {
		flow->ack = ack;
		flow->window = window;
		flow->acked = 1;
	}

	__u32 csum_at, csum_flags = 0;
	if (proto == IPPROTO_TCP) {
		csum_at = ETH_LEN + IPV6_LEN + 16;
	} else if (proto == IPPROTO_UDP) {
		csum_at = ETH_LEN + IPV6_LEN + 6;
		csum_flags = BPF_F_MARK_MANGLED_0;
	} else {
		csum_at = ETH_LEN + IPV6_LEN + 2;
	}
	__s64 diff = bpf_csum_diff(old_addr, 16, new_addr, 16, 0);
	if (diff < 0 || pseudo_header_replace(skb, csum_at, diff, csum_flags))
		return TC_ACT_SHOT;
	if (bpf_l4_csum_replace(skb, csum_at, old_port, new_port, csum_flags | 2))
		return TC_ACT_SHOT;

	__u32 segments = skb->gso_segs ? skb->gso_segs : 1;
	__u64 bytes = skb->len - ETH_LEN + (__u64)(segments - 1) * headers;
	__u32 index = 2 * (__u32)flow->uplink + dir;
	struct counter *count = bpf_map_lookup_elem(&wanlb_counters, &index);
	if (count) {
		count->packets += segments;
		count->bytes += bytes;
	}
	flow->bytes += bytes;

	if (dir == OUTBOUND)
		return bpf_redirect(out_ifindex, 0);
	struct bpf_redir_neigh next_hop;
	__builtin_memset(&next_hop, 0, sizeof(next_hop));
	next_hop.nh_family = AF_INET6;
	__builtin_memcpy(next_hop.ipv6_nh, flow->addr, 16);
	return bpf_redirect_neigh(out_ifindex, &next_hop, sizeof(next_hop), 0);
}

/* By the link layer's protocol: IPv6 to `carry6`, the rest to `carry`. */
static __always_inline int carry_either(struct __sk_buff *skb, enum direction dir, const __u32 l2)
{
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return carry6(skb, dir, l2);
	return carry(skb, dir, l2);
}

SEC("classifier")
int wanlb_outbound(struct __sk_buff *skb)
{
	return carry_either(skb, OUTBOUND, ETH_LEN);
}

SEC("classifier")
int wanlb_inbound(struct __sk_buff *skb)
{
	return carry_either(skb, INBOUND, ETH_LEN);
}

SEC("classifier")
int wanlb_inbound_l3(struct __sk_buff *skb)
{
	return carry_either(skb, INBOUND, 0);
}

char LICENSE[] SEC("license") = "GPL";
