//! The fast path's map types against the compiled programs, and its keys and values.

use super::family::Mapped;
use super::*;
use std::mem::{offset_of, size_of};

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn u64_at(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

/// The `.BTF` section of an ELF object (little-endian ELF64, as clang writes for bpf).
fn btf_section(elf: &[u8]) -> &[u8] {
    let (shoff, shentsize) = (u64_at(elf, 0x28), u16_at(elf, 0x3a));
    let (shnum, shstrndx) = (u16_at(elf, 0x3c), u16_at(elf, 0x3e));
    let section = |i: usize| {
        let h = &elf[shoff + i * shentsize..];
        (u32_at(h, 0), u64_at(h, 0x18), u64_at(h, 0x20))
    };
    let (_, names, _) = section(shstrndx);
    (0..shnum)
        .map(section)
        .find(|&(name, _, _)| elf[names + name..].starts_with(b".BTF\0"))
        .map(|(_, off, size)| &elf[off..off + size])
        .expect("a .BTF section")
}

/// A struct's size, and its members' names and byte offsets.
type Layout = (usize, Vec<(String, usize)>);

/// Every struct the BTF describes, by name.
fn btf_structs(btf: &[u8]) -> Vec<(String, Layout)> {
    assert_eq!(u16_at(btf, 0), 0xeb9f, "BTF magic");
    let hdr = u32_at(btf, 4);
    let types = &btf[hdr + u32_at(btf, 8)..][..u32_at(btf, 12)];
    let strings = &btf[hdr + u32_at(btf, 16)..][..u32_at(btf, 20)];
    let name = |off: usize| {
        let s = &strings[off..];
        String::from_utf8_lossy(&s[..s.iter().position(|&c| c == 0).unwrap()]).into_owned()
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < types.len() {
        let info = u32_at(types, at + 4);
        let (vlen, kind) = (info & 0xffff, (info >> 24) & 0x1f);
        let extra = match kind {
            1 | 14 | 17 => 4,
            3 => 12,
            4 | 5 | 15 | 19 => 12 * vlen,
            6 | 13 => 8 * vlen,
            _ => 0,
        };
        if kind == 4 {
            let members = (0..vlen)
                .map(|m| {
                    let mm = &types[at + 12 + 12 * m..];
                    (name(u32_at(mm, 0)), (u32_at(mm, 8) & 0xff_ffff) / 8)
                })
                .collect();
            out.push((name(u32_at(types, at)), (u32_at(types, at + 8), members)));
        }
        at += 12 + extra;
    }
    out
}

macro_rules! layout {
    ($t:ty, $($field:ident),+) => {
        (size_of::<$t>(), vec![$((stringify!($field).to_string(), offset_of!($t, $field))),+])
    };
}

#[test]
fn map_types_are_laid_out_as_the_header_says() {
    let structs = btf_structs(btf_section(OBJECT));
    let header = |name: &str| -> Layout {
        structs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("struct {name} in ebpf/fastpath.o"))
            .1
            .clone()
    };
    assert_eq!(
        header("flow_key"),
        layout!(FlowMapKey, saddr, daddr, sport, dport, proto, pad, ifindex)
    );
    assert_eq!(
        header("flow_value"),
        layout!(
            FlowMapValue,
            addr,
            port,
            uplink,
            ifindex,
            ack,
            last_seen,
            window,
            acked,
            pad,
            bytes
        )
    );
    assert_eq!(
        header("flow_key6"),
        layout!(FlowMapKey6, saddr, daddr, sport, dport, proto, pad, ifindex)
    );
    assert_eq!(
        header("flow_value6"),
        layout!(
            FlowMapValue6,
            addr,
            port,
            uplink,
            ifindex,
            ack,
            window,
            acked,
            pad,
            last_seen,
            bytes
        )
    );
    assert_eq!(
        header("uplink_info"),
        layout!(
            UplinkInfo,
            ifindex,
            point_to_point,
            dst_mac,
            src_mac,
            dst_mac6,
            pad,
            ifindex6
        )
    );
    assert_eq!(header("counter"), layout!(Counter, packets, bytes));
}

#[test]
fn keys_and_values_hold_addresses_and_ports_as_packets_do() {
    let k = V4::key(
        u32::from_be_bytes([198, 19, 0, 1]),
        u32::from_be_bytes([198, 18, 1, 1]),
        (443, 61000),
        6,
        3,
    );
    assert_eq!(k.saddr, [198, 19, 0, 1]);
    assert_eq!(k.daddr, [198, 18, 1, 1]);
    assert_eq!((k.sport, k.dport), ([0x01, 0xbb], [0xee, 0x48]));
    assert_eq!((k.proto, k.ifindex), (6, 3));
    let v = V4::value(u32::from_be_bytes([198, 18, 3, 10]), 40000, 1, 7);
    assert_eq!((v.addr, v.port), ([198, 18, 3, 10], [0x9c, 0x40]));
    assert_eq!((v.uplink, v.ifindex, v.last_seen), (1, 7, 0));
    assert_eq!(
        V4::key_parts(&k),
        (0xc613_0001, 0xc612_0101, (443, 61000), 6, 3)
    );
}

#[test]
fn ipv6_keys_and_values_hold_addresses_and_ports_as_packets_do() {
    let remote: u128 = 0x2001_0002_00ff_0000_0000_0000_0000_0001;
    let ext: u128 = 0x2001_0002_0000_0100_0000_0000_0000_000a;
    let k = V6::key(remote, ext, (443, 40000), 17, 3);
    assert_eq!(k.saddr[..4], [0x20, 0x01, 0x00, 0x02]);
    assert_eq!((k.saddr[15], k.daddr[15], k.daddr[7]), (1, 0x0a, 0x00));
    assert_eq!((k.sport, k.dport), ([0x01, 0xbb], [0x9c, 0x40]));
    assert_eq!((k.proto, k.ifindex), (17, 3));
    assert_eq!(V6::key_parts(&k), (remote, ext, (443, 40000), 17, 3));
    let lan: u128 = 0xfd00_0001_0002_0005_0000_0000_0000_000a;
    let v = V6::value(lan, 40000, 1, 7);
    assert_eq!((v.addr, v.port), (lan.to_be_bytes(), [0x9c, 0x40]));
    let (addr, port, r) = V6::value_parts(&v);
    assert_eq!(
        (addr, port, r.uplink, r.ifindex, r.last_seen),
        (lan, 40000, 1, 7, 0)
    );
}

#[test]
fn lan_links_hold_their_subnet_only() {
    let lan = LanLink {
        ifindex: 3,
        addr: Ipv4Addr::new(198, 18, 3, 100),
        prefix_len: 24,
    };
    assert!(lan.holds(u32::from(Ipv4Addr::new(198, 18, 3, 10))));
    assert!(!lan.holds(u32::from(Ipv4Addr::new(198, 18, 4, 10))));
}
