// closebench's xdp-drop and tc-drop: drop the SYNs of banned source addresses to one TCP port.
//
// Compiled at run time by closebench/defender/bpf_drop.py (clang -O2 -target bpf -DPORT=N) into
// the trial's scratch directory; never shipped prebuilt. The same verdict runs as an XDP program
// (section "xdp", generic mode on a veth) or as a tc classifier in direct-action mode (section
// "tc", ingress). The server's ban thread writes ban4/ban6 (address -> expiry); the program
// counts what it drops, per address and in total (stats[0]). Only TCP SYNs without ACK to PORT
// are looked at: everything else passes, ICMPv6 neighbour discovery included.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef PORT
#error "compile with -DPORT=the server's port"
#endif

struct ban {
    __u64 expires_ns;  // CLOCK_MONOTONIC, as bpf_ktime_get_ns() reads it
    __u64 drops;       // SYNs dropped for this address
};

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u32);  // IPv4 address, network order
    __type(value, struct ban);
} ban4 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct in6_addr);
    __type(value, struct ban);
} ban6 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);  // SYNs dropped in all
} stats SEC(".maps");

static __always_inline int is_syn_to_port(struct tcphdr *tcp, void *end) {
    if ((void *)(tcp + 1) > end)
        return 0;
    return tcp->syn && !tcp->ack && tcp->dest == bpf_htons(PORT);
}

static __always_inline int banned(struct ban *ban) {
    if (!ban || ban->expires_ns <= bpf_ktime_get_ns())
        return 0;
    __sync_fetch_and_add(&ban->drops, 1);
    __u32 zero = 0;
    __u64 *total = bpf_map_lookup_elem(&stats, &zero);
    if (total)
        __sync_fetch_and_add(total, 1);
    return 1;
}

// 1: drop the packet that starts at `data`.
static __always_inline int verdict(void *data, void *end) {
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return 0;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
            return 0;
        if (!is_syn_to_port((void *)ip + ip->ihl * 4, end))
            return 0;
        __u32 source = ip->saddr;
        return banned(bpf_map_lookup_elem(&ban4, &source));
    }
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        // TCP right after the fixed header only: ICMPv6 (neighbour discovery) always passes.
        if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
            return 0;
        if (!is_syn_to_port((void *)(ip6 + 1), end))
            return 0;
        struct in6_addr source = ip6->saddr;
        return banned(bpf_map_lookup_elem(&ban6, &source));
    }
    return 0;
}

SEC("xdp")
int xdp_ban_drop(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    return verdict(data, end) ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int tc_ban_drop(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    return verdict(data, end) ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
