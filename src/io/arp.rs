//! ARP frames: asking for an uplink gateway's MAC address and reading its answers. The
//! monitor asks every probe round, so a gateway that stops answering is noticed.

use super::packet_socket::ETH_P_ARP;

pub const FRAME_LEN: usize = 42;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

/// A "who has `target`? tell `sender_ip`" frame, to `to` (the MAC last known, as the
/// kernel's own reachability probes do) or broadcast.
pub fn request(
    sender_mac: [u8; 6],
    sender_ip: u32,
    target: u32,
    to: Option<[u8; 6]>,
) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&to.unwrap_or([0xff; 6]));
    f[6..12].copy_from_slice(&sender_mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, OP_REQUEST as u8]);
    f[22..28].copy_from_slice(&sender_mac);
    f[28..32].copy_from_slice(&sender_ip.to_be_bytes());
    f[38..42].copy_from_slice(&target.to_be_bytes());
    f
}

/// The MAC of `ip` if `frame` is an ARP reply or request sent by `ip` (Ethernet, IPv4).
pub fn sender_mac(frame: &[u8], ip: u32) -> Option<[u8; 6]> {
    let f = frame.get(..FRAME_LEN)?;
    let op = u16::from_be_bytes([f[20], f[21]]);
    let valid = f[12..14] == ETH_P_ARP.to_be_bytes()
        && f[14..20] == [0, 1, 8, 0, 6, 4]
        && (op == OP_REPLY || op == OP_REQUEST)
        && f[28..32] == ip.to_be_bytes();
    let mac: [u8; 6] = f[22..28].try_into().ok()?;
    (valid && mac != [0; 6] && mac[0] & 1 == 0).then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: u32 = u32::from_be_bytes([198, 18, 1, 254]);

    #[test]
    fn request_bytes() {
        let f = request(
            [2, 0, 0, 0, 0, 1],
            u32::from_be_bytes([198, 18, 1, 1]),
            GW,
            None,
        );
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06, // ethernet
            0, 1, 8, 0, 6, 4, 0, 1, // htype, ptype, hlen, plen, op
            2, 0, 0, 0, 0, 1, 198, 18, 1, 1, // sender
            0, 0, 0, 0, 0, 0, 198, 18, 1, 254, // target
        ];
        assert_eq!(f, expected);
        let unicast = request(
            [2, 0, 0, 0, 0, 1],
            u32::from_be_bytes([198, 18, 1, 1]),
            GW,
            Some([2, 0, 0, 0, 0, 0xfe]),
        );
        assert_eq!(unicast[..6], [2, 0, 0, 0, 0, 0xfe]);
        assert_eq!(unicast[6..], expected[6..]);
    }

    #[test]
    fn reply_from_the_gateway_gives_its_mac_and_nothing_else_does() {
        let mut reply: [u8; 42] = [
            2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0xfe, 0x08, 0x06, //
            0, 1, 8, 0, 6, 4, 0, 2, //
            2, 0, 0, 0, 0, 0xfe, 198, 18, 1, 254, //
            2, 0, 0, 0, 0, 1, 198, 18, 1, 1,
        ];
        assert_eq!(sender_mac(&reply, GW), Some([2, 0, 0, 0, 0, 0xfe]));
        assert_eq!(sender_mac(&reply, GW + 1), None);
        assert_eq!(sender_mac(&reply[..41], GW), None);
        reply[22] = 0xff; // multicast sender MAC
        assert_eq!(sender_mac(&reply, GW), None);
    }
}
