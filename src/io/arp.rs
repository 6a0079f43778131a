//! Learning each uplink gateway's MAC address by ARP over the uplink's own packet socket,
//! and keeping it fresh.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::fd::Poller;
use super::packet::{ETH_P_ARP, PacketSocket};
use super::worker::Shared;

pub const FRAME_LEN: usize = 42;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

/// A broadcast "who has `target`? tell `sender_ip`" frame.
pub fn request(sender_mac: [u8; 6], sender_ip: u32, target: u32) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
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

pub fn mac_to_u64(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))
}

pub fn u64_to_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// What the resolver needs of one uplink.
#[derive(Debug)]
pub struct ArpTarget {
    pub socket: PacketSocket,
    pub mac: [u8; 6],
    pub addr: u32,
    pub gateway: u32,
}

/// How often a known gateway is asked again, and how soon an unknown one.
const REFRESH: Duration = Duration::from_secs(30);
const RETRY: Duration = Duration::from_millis(500);

/// Resolves every uplink's gateway until `shared.stop` is set, marking an uplink up in the
/// engine once its gateway answers.
pub fn run(shared: &Shared, targets: &[ArpTarget]) -> io::Result<()> {
    let mut next_ask = vec![Instant::now(); targets.len()];
    let fds: Vec<_> = targets.iter().map(|t| t.socket.raw_fd()).collect();
    let mut poller = Poller::new(&fds);
    let mut buf = [0u8; 128];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (i, t) in targets.iter().enumerate() {
            if now >= next_ask[i] {
                let known = shared.uplinks[i].gateway_mac.load(Ordering::Relaxed) != 0;
                next_ask[i] = now + if known { REFRESH } else { RETRY };
                if let Err(e) = t.socket.send(&request(t.mac, t.addr, t.gateway)) {
                    tracing::warn!(uplink = %shared.uplinks[i].name, error = %e, "ARP request not sent");
                }
            }
        }
        poller.wait(100)?;
        for (i, t) in targets.iter().enumerate() {
            if !poller.is_ready(i) {
                continue;
            }
            while let Ok(n) = t.socket.recv(&mut buf) {
                let Some(mac) = sender_mac(&buf[..n], t.gateway) else {
                    continue;
                };
                let path = &shared.uplinks[i];
                let old = path.gateway_mac.swap(mac_to_u64(mac), Ordering::Relaxed);
                if old != mac_to_u64(mac) {
                    tracing::info!(uplink = %path.name, mac = %format_mac(mac), "gateway resolved");
                    shared.engine.set_uplink_up(i as u8, true);
                    if let Some(fast) = &shared.fast_path
                        && let Err(e) = fast.set_gateway(i as u8, Some(mac))
                    {
                        tracing::warn!(uplink = %path.name, error = %e,
                            "the kernel fast path cannot reach this gateway; its flows stay in userspace");
                    }
                }
            }
        }
    }
    Ok(())
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: u32 = u32::from_be_bytes([198, 18, 1, 254]);

    #[test]
    fn request_bytes() {
        let f = request([2, 0, 0, 0, 0, 1], u32::from_be_bytes([198, 18, 1, 1]), GW);
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06, // ethernet
            0, 1, 8, 0, 6, 4, 0, 1, // htype, ptype, hlen, plen, op
            2, 0, 0, 0, 0, 1, 198, 18, 1, 1, // sender
            0, 0, 0, 0, 0, 0, 198, 18, 1, 254, // target
        ];
        assert_eq!(f, expected);
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

    #[test]
    fn mac_packs_into_u64_and_back() {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
        assert_eq!(u64_to_mac(mac_to_u64(mac)), mac);
        assert_eq!(format_mac(mac), "02:42:ac:11:00:02");
    }
}
