// SPDX-License-Identifier: GPL-2.0
/* The TUN device's choice of queue for each packet the kernel routes to it (attached with
 * TUNSETSTEERINGEBPF; the device takes the result modulo its number of queues): the queue of
 * the CPU the packet is on. Each worker owns one queue and runs on the CPU of the same number,
 * so waking it for a new flow's first packet never needs another CPU woken (an interrupt to a
 * sleeping virtual CPU costs tens of microseconds). Loaded only when wanlb pins its workers so
 * (src/io/steering.rs). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("socket")
int wanlb_queue_of_cpu(struct __sk_buff *skb)
{
	return bpf_get_smp_processor_id();
}

char LICENSE[] SEC("license") = "GPL";
