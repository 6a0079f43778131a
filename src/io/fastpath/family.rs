//! The flow maps of each address family, as the code that writes and reads them sees them:
//! IPv4's `outbound_flows`/`inbound_flows` and IPv6's `outbound_flows6`/`inbound_flows6`,
//! keyed and valued by the structs of ebpf/wanlb.h, one code for both.

use aya::Pod;

use super::{FlowMap, FlowMapKey, FlowMapKey6, FlowMapValue, FlowMapValue6, TcFastPath};
use crate::engine::family::{Family, V4, V6};
use crate::engine::{FastPathWork, UplinkId};

/// What a map entry's value holds besides the address and port it translates to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Recorded {
    pub uplink: u16,
    pub ifindex: u32,
    pub ack: u32,
    pub window: u16,
    pub acked: u8,
    pub last_seen: u64,
    pub bytes: u64,
}

/// A family whose flows the programs carry.
pub(super) trait Mapped: Family {
    type Key: Pod + Copy + Default + std::fmt::Debug + PartialEq;
    type Value: Pod + Copy + Default + std::fmt::Debug;

    /// Its maps: outbound (keyed by the LAN end) and inbound (by the remote end and the
    /// translated one, and the interface).
    fn maps(fast: &TcFastPath) -> (&FlowMap<Self>, &FlowMap<Self>);
    /// The queue of its work being carried out.
    fn carrying(work: &mut super::Carrying) -> &mut Vec<FastPathWork<Self>>;
    /// The LAN interface whose subnet holds `host`, if the fast path reaches it.
    fn lan_of(fast: &TcFastPath, host: Self::Addr) -> Option<u32>;

    fn key(
        src: Self::Addr,
        dst: Self::Addr,
        ports: (u16, u16),
        proto: u8,
        ifindex: u32,
    ) -> Self::Key;
    /// The key's addresses, ports, protocol and interface.
    fn key_parts(k: &Self::Key) -> (Self::Addr, Self::Addr, (u16, u16), u8, u32);
    fn value(addr: Self::Addr, port: u16, uplink: UplinkId, ifindex: u32) -> Self::Value;
    /// The address and port a value translates to, and what else it holds.
    fn value_parts(v: &Self::Value) -> (Self::Addr, u16, Recorded);
    fn with_key_ifindex(k: Self::Key, ifindex: u32) -> Self::Key;
}

impl Mapped for V4 {
    type Key = FlowMapKey;
    type Value = FlowMapValue;

    fn maps(fast: &TcFastPath) -> (&FlowMap<V4>, &FlowMap<V4>) {
        (&fast.outbound, &fast.inbound)
    }

    fn carrying(work: &mut super::Carrying) -> &mut Vec<FastPathWork<V4>> {
        &mut work.work
    }

    fn lan_of(fast: &TcFastPath, host: u32) -> Option<u32> {
        fast.lans.iter().find(|l| l.holds(host)).map(|l| l.ifindex)
    }

    fn key(src: u32, dst: u32, ports: (u16, u16), proto: u8, ifindex: u32) -> FlowMapKey {
        FlowMapKey {
            saddr: src.to_be_bytes(),
            daddr: dst.to_be_bytes(),
            sport: ports.0.to_be_bytes(),
            dport: ports.1.to_be_bytes(),
            proto,
            pad: [0; 3],
            ifindex,
        }
    }

    fn key_parts(k: &FlowMapKey) -> (u32, u32, (u16, u16), u8, u32) {
        (
            u32::from_be_bytes(k.saddr),
            u32::from_be_bytes(k.daddr),
            (u16::from_be_bytes(k.sport), u16::from_be_bytes(k.dport)),
            k.proto,
            k.ifindex,
        )
    }

    fn value(addr: u32, port: u16, uplink: UplinkId, ifindex: u32) -> FlowMapValue {
        FlowMapValue {
            addr: addr.to_be_bytes(),
            port: port.to_be_bytes(),
            uplink: u16::from(uplink),
            ifindex,
            ..FlowMapValue::default()
        }
    }

    fn value_parts(v: &FlowMapValue) -> (u32, u16, Recorded) {
        (
            u32::from_be_bytes(v.addr),
            u16::from_be_bytes(v.port),
            Recorded {
                uplink: v.uplink,
                ifindex: v.ifindex,
                ack: v.ack,
                window: v.window,
                acked: v.acked,
                last_seen: v.last_seen,
                bytes: v.bytes,
            },
        )
    }

    fn with_key_ifindex(k: FlowMapKey, ifindex: u32) -> FlowMapKey {
        FlowMapKey { ifindex, ..k }
    }
}

impl Mapped for V6 {
    type Key = FlowMapKey6;
    type Value = FlowMapValue6;

    fn maps(fast: &TcFastPath) -> (&FlowMap<V6>, &FlowMap<V6>) {
        (&fast.outbound6, &fast.inbound6)
    }

    fn carrying(work: &mut super::Carrying) -> &mut Vec<FastPathWork<V6>> {
        &mut work.work6
    }

    fn lan_of(fast: &TcFastPath, host: u128) -> Option<u32> {
        fast.lans6.iter().find(|l| l.holds(host)).map(|l| l.ifindex)
    }

    fn key(src: u128, dst: u128, ports: (u16, u16), proto: u8, ifindex: u32) -> FlowMapKey6 {
        FlowMapKey6 {
            saddr: src.to_be_bytes(),
            daddr: dst.to_be_bytes(),
            sport: ports.0.to_be_bytes(),
            dport: ports.1.to_be_bytes(),
            proto,
            pad: [0; 3],
            ifindex,
        }
    }

    fn key_parts(k: &FlowMapKey6) -> (u128, u128, (u16, u16), u8, u32) {
        (
            u128::from_be_bytes(k.saddr),
            u128::from_be_bytes(k.daddr),
            (u16::from_be_bytes(k.sport), u16::from_be_bytes(k.dport)),
            k.proto,
            k.ifindex,
        )
    }

    fn value(addr: u128, port: u16, uplink: UplinkId, ifindex: u32) -> FlowMapValue6 {
        FlowMapValue6 {
            addr: addr.to_be_bytes(),
            port: port.to_be_bytes(),
            uplink: u16::from(uplink),
            ifindex,
            ..FlowMapValue6::default()
        }
    }

    fn value_parts(v: &FlowMapValue6) -> (u128, u16, Recorded) {
        (
            u128::from_be_bytes(v.addr),
            u16::from_be_bytes(v.port),
            Recorded {
                uplink: v.uplink,
                ifindex: v.ifindex,
                ack: v.ack,
                window: v.window,
                acked: v.acked,
                last_seen: v.last_seen,
                bytes: v.bytes,
            },
        )
    }

    fn with_key_ifindex(k: FlowMapKey6, ifindex: u32) -> FlowMapKey6 {
        FlowMapKey6 { ifindex, ..k }
    }
}
