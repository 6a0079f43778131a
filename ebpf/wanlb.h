/* Map keys and values shared by wanlb's kernel programs and its loader (src/io/fastpath.rs
 * mirrors each struct with #[repr(C)], and a test checks their sizes and offsets). Addresses
 * and ports are kept as they appear in packets (network byte order); everything else is in the
 * machine's order. */
#ifndef WANLB_H
#define WANLB_H

#include <linux/types.h>

/* Uplinks wanlb handles at most (the configuration refuses more). */
#define MAX_UPLINKS 32
/* Flows the fast path carries at once; more stay in userspace until room frees up. */
#define MAX_FLOWS 262144

/* A flow as a packet names it: its own addresses, ports (for ICMP echo, the identifier as the
 * LAN end's port, 0 as the remote's) and protocol, and for inbound packets the interface they
 * must arrive on (two uplinks may share an address); 0 outbound. */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
	__u32 ifindex;
};

/* What a flow's packets are translated to: the address and port that replace the source
 * (outbound) or the destination (inbound); the uplink it uses; for inbound packets the LAN
 * interface they leave by; and when the fast path last carried one of its packets
 * (bpf_ktime_get_ns), so the engine does not expire a flow it no longer sees. For TCP, the
 * acknowledgement number and window field of the last segment with ACK it carried this way
 * (acked: 1 once there was one): the engine sees only a carried flow's SYN, FIN and RST, and
 * judges a reset by the receiver's window. And the IP bytes carried this way, for the status's
 * busiest destinations (one direction per entry, so one CPU at a time in practice; an update
 * lost to a race costs a statistic, not a packet). */
struct flow_value {
	__be32 addr;
	__be16 port;
	__u16 uplink;
	__u32 ifindex;
	__u32 ack;
	__u64 last_seen;
	__u16 window;
	__u8 acked;
	__u8 pad[5];
	__u64 bytes;
};

/* An IPv6 flow as a packet names it, as struct flow_key does an IPv4 one. */
struct flow_key6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
	__u32 ifindex;
};

/* What an IPv6 flow's packets are translated to, as struct flow_value says of an IPv4 one:
 * the address (the line's for NAT66, the LAN address's by prefix for NPTv6) and port (the
 * pool's, or the flow's own by prefix) that replace the source (outbound) or destination
 * (inbound). */
struct flow_value6 {
	__u8 addr[16];
	__be16 port;
	__u16 uplink;
	__u32 ifindex;
	__u32 ack;
	__u16 window;
	__u8 acked;
	__u8 pad[1];
	__u64 last_seen;
	__u64 bytes;
};

/* Where an uplink's frames go: its interface (0: the fast path does not carry its IPv4 flows,
 * its gateway is unknown or the line is down) and the Ethernet addresses to put on them, or
 * point_to_point 1: the link has no link-layer header (PPP, TUN, WireGuard...), packets leave
 * bare and the MACs are unused. Its IPv6 the same way: ifindex6 0 while the line's IPv6 router
 * is unknown or its IPv6 is down, and that router's MAC (which may not be the IPv4 gateway's). */
struct uplink_info {
	__u32 ifindex;
	__u32 point_to_point;
	__u8 dst_mac[6];
	__u8 src_mac[6];
	__u8 dst_mac6[6];
	__u8 pad[2];
	__u32 ifindex6;
};

/* What the fast path carried, per CPU, uplink and direction (index 2 * uplink + direction):
 * packets (segments of a GSO packet counted one by one) and IP bytes. */
struct counter {
	__u64 packets;
	__u64 bytes;
};

enum direction {
	OUTBOUND = 0,
	INBOUND = 1,
};

#endif
