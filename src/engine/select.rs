//! Uplink choice for a new destination: pins, then a smooth weighted round-robin.

use super::UplinkId;

/// An IPv4 prefix, `addr/len`, stored with the host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    addr: u32,
    len: u8,
}

impl Prefix {
    /// `None` when `len` exceeds 32.
    pub fn new(addr: u32, len: u8) -> Option<Prefix> {
        (len <= 32).then(|| Prefix {
            addr: addr & Self::mask(len),
            len,
        })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    pub fn contains(&self, addr: u32) -> bool {
        addr & Self::mask(self.len) == self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn addr(&self) -> u32 {
        self.addr
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    pub prefix: Prefix,
    pub uplink: UplinkId,
}

/// Weights, health and pins of the uplinks.
///
/// The weighted pick is nginx's smooth weighted round-robin: every pick adds each healthy
/// uplink's weight to its credit, takes the uplink with the most credit and charges it the
/// total. Over any run of picks each uplink's share stays within one pick of its weight share,
/// and the picks interleave (2:1 gives a, b, a, a, b, a ...) rather than bunching.
#[derive(Debug)]
pub struct Selector {
    weights: Vec<u32>,
    credit: Vec<i64>,
    up: Vec<bool>,
    pins: Vec<Pin>,
}

impl Selector {
    pub fn new(weights: Vec<u32>, mut pins: Vec<Pin>) -> Selector {
        // Longest prefix first, so the first match is the one that wins.
        pins.sort_by_key(|p| std::cmp::Reverse(p.prefix.len));
        let n = weights.len();
        Selector {
            weights,
            credit: vec![0; n],
            up: vec![true; n],
            pins,
        }
    }

    pub fn set_up(&mut self, uplink: UplinkId, up: bool) {
        if let Some(slot) = self.up.get_mut(usize::from(uplink)) {
            *slot = up;
        }
    }

    pub fn is_up(&self, uplink: UplinkId) -> bool {
        self.up.get(usize::from(uplink)).copied().unwrap_or(false)
    }

    /// The uplink of the longest pin covering `dst`, whether or not it is up.
    pub fn pinned(&self, dst: u32) -> Option<UplinkId> {
        self.pins
            .iter()
            .find(|p| p.prefix.contains(dst))
            .map(|p| p.uplink)
    }

    /// The next uplink by weight among the healthy ones; `None` when none is up.
    pub fn weighted(&mut self) -> Option<UplinkId> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !self.up[i] {
                continue;
            }
            let w = i64::from(self.weights[i]);
            self.credit[i] += w;
            total += w;
            if best.is_none_or(|b| self.credit[i] > self.credit[b]) {
                best = Some(i);
            }
        }
        let best = best?;
        self.credit[best] -= total;
        Some(best as UplinkId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(a: [u8; 4], len: u8) -> Prefix {
        Prefix::new(u32::from_be_bytes(a), len).unwrap()
    }

    #[test]
    fn two_to_one_interleaves_and_keeps_shares() {
        let mut s = Selector::new(vec![2, 1], vec![]);
        let picks: Vec<_> = (0..9).map(|_| s.weighted().unwrap()).collect();
        assert_eq!(picks, [0, 1, 0, 0, 1, 0, 0, 1, 0]);
        let mut counts = [0i64; 2];
        for n in 1..=300 {
            counts[usize::from(s.weighted().unwrap())] += 1;
            // within one pick of the exact share after every pick
            let total = n;
            assert!(
                (counts[0] * 3 - 2 * total).abs() <= 3,
                "after {n}: {counts:?}"
            );
        }
    }

    #[test]
    fn down_uplinks_are_skipped_and_none_when_all_down() {
        let mut s = Selector::new(vec![2, 1, 1], vec![]);
        s.set_up(0, false);
        let picks: Vec<_> = (0..4).map(|_| s.weighted().unwrap()).collect();
        assert_eq!(picks, [1, 2, 1, 2]);
        s.set_up(1, false);
        s.set_up(2, false);
        assert_eq!(s.weighted(), None);
    }

    #[test]
    fn longest_pin_wins() {
        let pins = vec![
            Pin {
                prefix: prefix([198, 19, 0, 0], 16),
                uplink: 0,
            },
            Pin {
                prefix: prefix([198, 19, 200, 91], 32),
                uplink: 1,
            },
            Pin {
                prefix: prefix([198, 19, 200, 0], 24),
                uplink: 2,
            },
        ];
        let s = Selector::new(vec![1, 1, 1], pins);
        assert_eq!(s.pinned(u32::from_be_bytes([198, 19, 200, 91])), Some(1));
        assert_eq!(s.pinned(u32::from_be_bytes([198, 19, 200, 92])), Some(2));
        assert_eq!(s.pinned(u32::from_be_bytes([198, 19, 1, 1])), Some(0));
        assert_eq!(s.pinned(u32::from_be_bytes([198, 18, 1, 1])), None);
    }

    #[test]
    fn prefix_clears_host_bits_and_rejects_long_lengths() {
        assert_eq!(
            prefix([10, 1, 2, 3], 8).addr(),
            u32::from_be_bytes([10, 0, 0, 0])
        );
        assert!(prefix([0, 0, 0, 0], 0).contains(0xffff_ffff));
        assert_eq!(Prefix::new(0, 33), None);
    }
}
