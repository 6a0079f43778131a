//! What becomes of a packet: a [`Verdict`], and for a drop its [`DropReason`], under which
//! every drop is counted.

use super::hosts::Refusal;
use super::{UplinkId, answer, wire};

/// Why a packet was not forwarded. Every drop is counted under one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Too short, or a length field that does not fit.
    Malformed,
    /// Neither IPv4 nor IPv6 (the version nibble says another); the name predates IPv6.
    NotIpv4,
    /// A fragment that cannot be translated: an IPv4 one from an uplink (the packet sockets
    /// reassemble what arrives there, so none should get here), a fragmented ICMPv6 error
    /// from an uplink, or an ICMP error quoting a non-first fragment (it quotes no
    /// ports). Other fragments have the reasons below.
    Fragment,
    /// An IP protocol other than TCP, UDP and ICMP.
    UnsupportedProtocol,
    /// An ICMP message that is neither echo nor an error about a known flow.
    UnsupportedIcmp,
    /// No uplink is up.
    NoUplink,
    /// A strict pin's uplink is down.
    PinnedUplinkDown,
    /// A packet from the LAN whose source is in no LAN network: spoofed or misconfigured.
    NotFromLan,
    /// A packet from an uplink whose source is in a LAN network: forged.
    LanSourceFromUplink,
    /// An ICMP error whose checksum is wrong (RFC 5508 REQ-3): the rewrite would repair it.
    BadIcmpChecksum,
    /// The uplink's port pool for the protocol is used up.
    PortsExhausted,
    /// The LAN host holds as many ports of the pool as one host may (--max-ports-per-host).
    HostPortLimit,
    /// A packet from an uplink that matches no flow and goes to no forwarded port (or a TCP
    /// reset opening one).
    NoFlow,
    /// A TCP segment to a forwarded port that belongs to no connection and is not a SYN (without
    /// ACK) opening one.
    ForwardNotSyn,
    /// A packet to a forwarded port from a remote end that the forward's LAN host already
    /// exchanges packets with, from the same port, through a flow it opened itself (with a port
    /// of the pool): one flow per LAN end and remote end.
    ForwardClash,
    /// A connection to a forwarded port of an uplink that is out of service for its data cap
    /// (`on_cap=off`): it would cost what the cap is there to stop.
    ForwardUplinkOff,
    /// A packet on an uplink not addressed to that uplink's address.
    NotForUplink,
    /// A later piece of a fragmented datagram whose first piece (the one with the transport
    /// header, hence the mapping) was not seen: it came first, or was dropped, or came more than
    /// 30 s ago.
    FragmentWithoutFirst,
    /// A fragment that overlaps bytes of its datagram already sent (a duplicate included): the
    /// far end would reassemble bytes wanlb never translated (RFC 1858).
    FragmentOverlap,
    /// A fragment that contradicts itself or its datagram: no data, a length not a multiple of 8
    /// before the last piece, past 64 KiB or past the datagram's end, a first piece too short
    /// to hold the whole transport header.
    FragmentMalformed,
    /// No room to remember a fragmented datagram: its shard's table of datagrams in flight is
    /// full (a first piece), or its pieces came in more separate runs than an entry tracks.
    FragmentTableFull,
    /// A fragment marked for checksum offload (CHECKSUM_PARTIAL): the device would sum this piece
    /// alone, so its transport checksum could never be right.
    FragmentPartialChecksum,
    /// An ICMP error from the LAN that answers no packet wanlb delivered: it quotes no packet
    /// of a live flow (one the remote end sent to the LAN host), or it is not addressed to
    /// that packet's sender. Translated, it would leave from an uplink's address to anyone.
    ForgedIcmpError,
    /// A LAN host's packet to a NAT port of an uplink's address (hairpinning) that the mapping
    /// there does not take, as if it came from outside: no mapping holds the port, or its LAN
    /// host has not sent to the sender's external address and port.
    HairpinNoFlow,
    /// A packet from an uplink that names one of the uplinks' own addresses as its remote end
    /// (its source, or the destination of the packet an ICMP error quotes): forged, since only
    /// hairpinned packets, which never leave the gateway, have such an end.
    OwnAddressFromUplink,
    /// The flow table holds as many flows as it may (--max-flows), and none that never
    /// completed was found to end for the new one (see [`super::limits`]).
    FlowTableFull,
    /// The LAN host has as many flows open as one host may (--max-flows-per-host).
    HostFlowLimit,
    /// The addresses of the LAN host's network that never completed a TCP handshake have as
    /// many flows open, together, as one host may: made-up sources share one host's share
    /// (see [`super::hosts`]).
    UnverifiedFlowLimit,
    /// Those addresses hold as many ports of the pool, together, as one host may
    /// (--max-ports-per-host).
    UnverifiedPortLimit,
    /// A port forward has as many connections as one LAN host may have flows
    /// (--max-flows-per-host), and none of them that never completed was found to end for the
    /// new one (see [`super::limits`]).
    ForwardFlowLimit,
    /// A port forward has as many connections from the new one's source (its /24) as one
    /// source may ([`super::Limits::max_flows_per_forward_source`]).
    ForwardSourceLimit,
    /// An IPv6 packet with an extension header the engine does not walk (a routing header
    /// with segments left, ESP, AH, mobility, more headers than a host sends): see
    /// [`super::wire::ipv6`].
    Ipv6ExtensionHeader,
    /// An IPv6 packet NPTv6 cannot translate: the 16-bit word its checksum-neutral adjustment
    /// goes into reads 0xffff (RFC 6296 3.5 and 3.6), or its address is outside the LAN
    /// prefix the uplink's prefix maps.
    Nptv6Untranslatable,
    /// An IPv6 packet from the LAN while no uplink has IPv6 (no address, no prefix, or its
    /// IPv6 down), or no LAN prefix is given (IPv6 not set up): [`DropReason::NoUplink`] is
    /// for lines that are down altogether. Answered with ICMPv6 no route.
    NoIpv6Uplink,
    /// An IPv6 packet that never leaves its link: from a link-local or the unspecified
    /// address, or to a multicast group (the TUN device's own neighbour discovery and
    /// multicast listener reports, say). Not translated, and not counted as spoofed.
    Ipv6LinkScope,
    /// A packet from an uplink whose TTL (IPv6: hop limit) is 1 or less: the gateway's own
    /// hop would end it, and the kernel, forwarding it from the TUN device to the LAN, would
    /// answer the internet with a time exceeded quoting the LAN host's internal address and
    /// port.
    TtlExceeded,
}

impl DropReason {
    pub const ALL: [DropReason; 36] = [
        DropReason::Malformed,
        DropReason::NotIpv4,
        DropReason::Fragment,
        DropReason::UnsupportedProtocol,
        DropReason::UnsupportedIcmp,
        DropReason::NoUplink,
        DropReason::PinnedUplinkDown,
        DropReason::NotFromLan,
        DropReason::LanSourceFromUplink,
        DropReason::BadIcmpChecksum,
        DropReason::PortsExhausted,
        DropReason::HostPortLimit,
        DropReason::NoFlow,
        DropReason::ForwardNotSyn,
        DropReason::ForwardClash,
        DropReason::ForwardUplinkOff,
        DropReason::NotForUplink,
        DropReason::FragmentWithoutFirst,
        DropReason::FragmentOverlap,
        DropReason::FragmentMalformed,
        DropReason::FragmentTableFull,
        DropReason::FragmentPartialChecksum,
        DropReason::ForgedIcmpError,
        DropReason::HairpinNoFlow,
        DropReason::OwnAddressFromUplink,
        DropReason::FlowTableFull,
        DropReason::HostFlowLimit,
        DropReason::UnverifiedFlowLimit,
        DropReason::UnverifiedPortLimit,
        DropReason::ForwardFlowLimit,
        DropReason::ForwardSourceLimit,
        DropReason::Ipv6ExtensionHeader,
        DropReason::Nptv6Untranslatable,
        DropReason::NoIpv6Uplink,
        DropReason::Ipv6LinkScope,
        DropReason::TtlExceeded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::Fragment => "fragment",
            DropReason::UnsupportedProtocol => "unsupported_protocol",
            DropReason::UnsupportedIcmp => "unsupported_icmp",
            DropReason::NoUplink => "no_uplink",
            DropReason::PinnedUplinkDown => "pinned_uplink_down",
            DropReason::NotFromLan => "not_from_lan",
            DropReason::LanSourceFromUplink => "lan_source_from_uplink",
            DropReason::BadIcmpChecksum => "bad_icmp_checksum",
            DropReason::PortsExhausted => "ports_exhausted",
            DropReason::HostPortLimit => "host_port_limit",
            DropReason::NoFlow => "no_flow",
            DropReason::ForwardNotSyn => "forward_not_syn",
            DropReason::ForwardClash => "forward_clash",
            DropReason::ForwardUplinkOff => "forward_uplink_off",
            DropReason::NotForUplink => "not_for_uplink",
            DropReason::FragmentWithoutFirst => "fragment_without_first",
            DropReason::FragmentOverlap => "fragment_overlap",
            DropReason::FragmentMalformed => "fragment_malformed",
            DropReason::FragmentTableFull => "fragment_table_full",
            DropReason::FragmentPartialChecksum => "fragment_partial_checksum",
            DropReason::ForgedIcmpError => "forged_icmp_error",
            DropReason::HairpinNoFlow => "hairpin_no_flow",
            DropReason::OwnAddressFromUplink => "own_address_from_uplink",
            DropReason::FlowTableFull => "flow_table_full",
            DropReason::HostFlowLimit => "host_flow_limit",
            DropReason::UnverifiedFlowLimit => "unverified_flow_limit",
            DropReason::UnverifiedPortLimit => "unverified_port_limit",
            DropReason::ForwardFlowLimit => "forward_flow_limit",
            DropReason::ForwardSourceLimit => "forward_source_limit",
            DropReason::Ipv6ExtensionHeader => "ipv6_extension_header",
            DropReason::Nptv6Untranslatable => "nptv6_untranslatable",
            DropReason::NoIpv6Uplink => "no_ipv6_uplink",
            DropReason::Ipv6LinkScope => "ipv6_link_scope",
            DropReason::TtlExceeded => "ttl_exceeded",
        }
    }

    /// Drops the LAN host is told about with ICMP destination unreachable, so its stack
    /// fails fast instead of waiting for a time-out ([`DropReason::NotFromLan`]: of IPv6
    /// only).
    pub fn is_unreachable(self) -> bool {
        self.unreachable_code().is_some()
    }

    /// The ICMP destination-unreachable code a drop is answered with: "network unreachable"
    /// when no uplink can carry it, "administratively prohibited" when the ports, the table or
    /// the host's share run out (RFC 5508 REQ-8).
    pub(super) fn unreachable_code(self) -> Option<u8> {
        match self {
            DropReason::NoUplink | DropReason::PinnedUplinkDown | DropReason::NoIpv6Uplink => {
                Some(answer::NET_UNREACHABLE)
            }
            DropReason::PortsExhausted
            | DropReason::HostPortLimit
            | DropReason::FlowTableFull
            | DropReason::HostFlowLimit
            | DropReason::UnverifiedFlowLimit
            | DropReason::UnverifiedPortLimit => Some(answer::ADMIN_PROHIBITED),
            DropReason::NotFromLan => Some(answer::SOURCE_POLICY),
            _ => None,
        }
    }

    /// The drop for a host's share refused.
    pub(super) fn of_refusal(refusal: Refusal) -> DropReason {
        match refusal {
            Refusal::HostFlows => DropReason::HostFlowLimit,
            Refusal::UnverifiedFlows => DropReason::UnverifiedFlowLimit,
            Refusal::HostPorts => DropReason::HostPortLimit,
            Refusal::UnverifiedPorts => DropReason::UnverifiedPortLimit,
        }
    }
}

/// What to do with a packet the engine has seen (and rewritten, unless dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it out on this uplink, to its gateway.
    Uplink(UplinkId),
    /// Write it to the TUN device, towards the LAN. From [`super::Engine::outbound`]: the packet
    /// was replaced, in place, by the engine's answer to its sender (a TCP reset for a
    /// connection whose uplink died), as long as its IPv4 total length says.
    Tun,
    /// From [`super::Engine::outbound`], for a LAN host's packet to an uplink's address: write it back
    /// to the TUN device as it now is, its offloads (GSO, a partial checksum) kept. Either it
    /// was hairpinned (translated to another LAN host's mapping, see `hairpin.rs`), or it is
    /// left as it was for the gateway's own stack: an echo or an ICMP error that no mapping
    /// takes, which the kernel answers as it answers the internet.
    Hairpin,
    Drop(DropReason),
}

impl From<wire::Error> for DropReason {
    /// Bytes that are not a packet of the kind the engine reads: too short, fields that
    /// contradict each other, or another IP version.
    fn from(e: wire::Error) -> DropReason {
        match e {
            wire::Error::Truncated | wire::Error::Malformed => DropReason::Malformed,
            wire::Error::Version => DropReason::NotIpv4,
            wire::Error::ExtensionHeader => DropReason::Ipv6ExtensionHeader,
        }
    }
}
