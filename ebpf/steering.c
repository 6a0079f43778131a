// SPDX-License-Identifier: GPL-2.0
/* Which worker takes each packet, both for the TUN device (attached with TUNSETSTEERINGEBPF:
 * the device takes the result modulo its number of queues) and for an uplink's data sockets
 * (a PACKET_FANOUT_EBPF group: the result modulo its number of sockets). Each worker owns one
 * queue and one socket per uplink and runs on the CPUs of its number (src/io/cpu.rs).
 *
 * A flow goes to the worker of the CPU its first packet arrived on, and stays with it: waking
 * that worker for a new flow's first packet needs no other CPU woken (an interrupt to a
 * sleeping virtual CPU costs tens of microseconds), and a flow whose sender later moves to
 * another CPU is still taken by one worker, in order. The flows are remembered in an LRU map
 * of bounded size: a flow forgotten there (the least recently used, when the map is full) is
 * steered anew by the CPU its next packet arrives on. The loader sets the map's size. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

struct flow_key {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, __u32);
} wanlb_flow_workers SEC(".maps");

/* The flow of the IP packet at the start of `skb` (a TUN device's packets, and frames on an
 * uplink once past the link header, both start there); 0 if it is not one. Fragments are
 * keyed without ports, so every piece of a datagram goes the same way. */
static __always_inline int flow_of(struct __sk_buff *skb, struct flow_key *key)
{
	__u8 first;
	__u32 ports_at;

	if (bpf_skb_load_bytes(skb, 0, &first, 1) < 0)
		return 0;
	if (first >> 4 == 4) {
		__u8 ip[20];
		__u16 frag;

		if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)) < 0)
			return 0;
		key->proto = ip[9];
		__builtin_memcpy(&key->src[0], &ip[12], 4);
		__builtin_memcpy(&key->dst[0], &ip[16], 4);
		frag = ((__u16)ip[6] << 8 | ip[7]) & 0x3fff; /* MF and the offset */
		if (frag)
			return 1;
		ports_at = (ip[0] & 0x0f) * 4;
	} else if (first >> 4 == 6) {
		__u8 ip[40];

		if (bpf_skb_load_bytes(skb, 0, ip, sizeof(ip)) < 0)
			return 0;
		key->proto = ip[6];
		__builtin_memcpy(key->src, &ip[8], 16);
		__builtin_memcpy(key->dst, &ip[24], 16);
		ports_at = 40;
	} else {
		return 0;
	}
	if (key->proto == IPPROTO_TCP || key->proto == IPPROTO_UDP) {
		__u16 ports[2];

		if (bpf_skb_load_bytes(skb, ports_at, ports, sizeof(ports)) == 0) {
			key->sport = ports[0];
			key->dport = ports[1];
		}
	}
	return 1;
}

SEC("socket")
int wanlb_worker_of_flow(struct __sk_buff *skb)
{
	struct flow_key key = {};
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 *worker;

	if (!flow_of(skb, &key))
		return cpu;
	worker = bpf_map_lookup_elem(&wanlb_flow_workers, &key);
	if (worker)
		return *worker;
	/* another CPU may have taken the flow meanwhile: then its choice stands */
	if (bpf_map_update_elem(&wanlb_flow_workers, &key, &cpu, BPF_NOEXIST) != 0) {
		worker = bpf_map_lookup_elem(&wanlb_flow_workers, &key);
		if (worker)
			return *worker;
	}
	return cpu;
}

char LICENSE[] SEC("license") = "GPL";
