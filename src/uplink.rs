//! What each uplink is at run time: where it leads, its place in the policy, the gateway's MAC
//! as learned, and its health as last decided. This is the one owner of that state: the
//! monitor thread writes it, the workers, the fast path and the status reports read it.
//! Plain data and atomics; the sockets a line has live in io/.

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::health::{State, Stats};

/// Health as the status reports show it.
#[derive(Clone, Debug)]
pub struct Status {
    pub state: State,
    pub since: SystemTime,
    /// Why it is in this state (empty at start).
    pub reason: String,
    pub carrier: bool,
    pub stats: Stats,
    /// State changes so far.
    pub changes: u64,
}

/// An uplink: where it leads, from the settings and the system, and `live`, what the
/// monitor learns while running. Its place in the policy (weight, tier, health targets) is
/// in the settings, which a reload may change.
#[derive(Debug)]
pub struct Uplink {
    pub name: String,
    pub dev: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The address its traffic leaves from.
    pub addr: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub live: Live,
}

/// What is learned at run time, starting unknown.
#[derive(Debug)]
pub struct Live {
    /// The gateway's MAC in the low 48 bits; 0 while unknown.
    gateway_mac: AtomicU64,
    status: Mutex<Status>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            gateway_mac: AtomicU64::new(0),
            status: Mutex::new(Status {
                state: State::Unknown,
                since: SystemTime::now(),
                reason: String::new(),
                carrier: true,
                stats: Stats::default(),
                changes: 0,
            }),
        }
    }
}

fn mac_to_u64(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))
}

fn u64_to_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Uplink {
    pub fn gateway_mac(&self) -> Option<[u8; 6]> {
        match self.live.gateway_mac.load(Ordering::Relaxed) {
            0 => None,
            v => Some(u64_to_mac(v)),
        }
    }

    /// Records the gateway's MAC; true if it changed.
    pub fn set_gateway_mac(&self, mac: [u8; 6]) -> bool {
        self.live
            .gateway_mac
            .swap(mac_to_u64(mac), Ordering::Relaxed)
            != mac_to_u64(mac)
    }

    pub fn status(&self) -> Status {
        self.lock().clone()
    }

    pub fn is_up(&self) -> bool {
        self.lock().state == State::Up
    }

    /// Updates the health shown; `change` records a new state and why.
    pub fn update(&self, carrier: bool, stats: Stats, change: Option<(State, String)>) {
        let mut s = self.lock();
        s.carrier = carrier;
        s.stats = stats;
        if let Some((state, reason)) = change {
            s.state = state;
            s.reason = reason;
            s.since = SystemTime::now();
            s.changes += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.live.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_packs_into_u64_and_back() {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
        assert_eq!(u64_to_mac(mac_to_u64(mac)), mac);
        assert_eq!(format_mac(mac), "02:42:ac:11:00:02");
    }
}
