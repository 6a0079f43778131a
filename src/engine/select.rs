//! Uplink choice for a new destination: pins, then a smooth weighted round-robin.

use super::UplinkId;
use super::family::{Family, V4};

/// A prefix, `addr/len`, stored with the host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix<F: Family = V4> {
    addr: F::Addr,
    len: u8,
}

impl Prefix<V4> {
    /// An IPv4 prefix (see [`Prefix::masked`]); `None` when `len` exceeds 32.
    pub fn new(addr: u32, len: u8) -> Option<Prefix<V4>> {
        Prefix::masked(addr, len)
    }
}

impl<F: Family> Prefix<F> {
    /// The prefix of `len` bits of `addr`, its host bits cleared; `None` when `len` exceeds
    /// the family's address length.
    pub fn masked(addr: F::Addr, len: u8) -> Option<Prefix<F>> {
        (len <= F::BITS).then(|| Prefix {
            addr: F::mask(addr, len),
            len,
        })
    }

    pub fn contains(&self, addr: F::Addr) -> bool {
        F::mask(addr, self.len) == self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn addr(&self) -> F::Addr {
        self.addr
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin<F: Family = V4> {
    pub prefix: Prefix<F>,
    pub uplink: UplinkId,
    /// While the uplink is down its destinations are refused rather than sent elsewhere.
    pub strict: bool,
}

/// The pins, longest prefix first. A reload replaces them whole (the engine swaps them
/// atomically), so the packet path reads them without a lock.
#[derive(Debug)]
pub struct Pins<F: Family = V4>(Vec<Pin<F>>);

impl<F: Family> Default for Pins<F> {
    fn default() -> Pins<F> {
        Pins(Vec::new())
    }
}

impl<F: Family> Pins<F> {
    pub fn new(mut pins: Vec<Pin<F>>) -> Pins<F> {
        // Longest prefix first, so the first match is the one that wins.
        pins.sort_by_key(|p| std::cmp::Reverse(p.prefix.len));
        Pins(pins)
    }

    /// The longest pin covering `dst`, whether or not its uplink is up.
    pub fn lookup(&self, dst: F::Addr) -> Option<Pin<F>> {
        self.0.iter().find(|p| p.prefix.contains(dst)).copied()
    }
}

/// Weights, tiers and health of the uplinks.
///
/// New flows use the healthy uplinks of the lowest tier that has one (the active tier); a
/// backup uplink of tier 2 carries traffic only while every tier-1 uplink is down. Within the
/// tier the pick is nginx's smooth weighted round-robin: every pick adds each eligible
/// uplink's weight to its credit, takes the uplink with the most credit and charges it the
/// total. Over any run of picks each uplink's share stays within one pick of its weight share,
/// and the picks interleave (2:1 gives a, b, a, a, b, a ...) rather than bunching.
#[derive(Debug)]
pub struct Selector {
    weights: Vec<u32>,
    tiers: Vec<u8>,
    credit: Vec<i64>,
    up: Vec<bool>,
}

impl Selector {
    pub fn new(weights: Vec<u32>, tiers: Vec<u8>) -> Selector {
        let n = weights.len();
        assert_eq!(tiers.len(), n, "one tier per uplink");
        Selector {
            weights,
            tiers,
            credit: vec![0; n],
            up: vec![true; n],
        }
    }

    /// New weights and tiers (a reload), one per uplink as before. If they differ, the
    /// credits start over, so the new weights hold from the next pick.
    pub fn set_policy(&mut self, weights: Vec<u32>, tiers: Vec<u8>) {
        assert_eq!(weights.len(), self.weights.len(), "the same uplinks");
        assert_eq!(tiers.len(), self.weights.len(), "one tier per uplink");
        if (&weights, &tiers) != (&self.weights, &self.tiers) {
            self.weights = weights;
            self.tiers = tiers;
            self.credit.fill(0);
        }
    }

    pub fn set_up(&mut self, uplink: UplinkId, up: bool) {
        if let Some(slot) = self.up.get_mut(usize::from(uplink)) {
            *slot = up;
        }
    }

    fn is_up(&self, uplink: UplinkId) -> bool {
        self.up.get(usize::from(uplink)).copied().unwrap_or(false)
    }

    /// Uplinks that are down, one bit each.
    pub fn down(&self) -> u32 {
        (0..self.up.len())
            .filter(|&i| !self.up[i])
            .fold(0, |mask, i| mask | 1 << i)
    }

    /// The lowest tier with a healthy uplink.
    fn active_tier(&self) -> Option<u8> {
        (0..self.up.len())
            .filter(|&i| self.up[i])
            .map(|i| self.tiers[i])
            .min()
    }

    /// Whether new flows may use `uplink`: healthy and in the active tier.
    pub fn is_eligible(&self, uplink: UplinkId) -> bool {
        self.is_up(uplink) && Some(self.tiers[usize::from(uplink)]) == self.active_tier()
    }

    /// Uplinks whose flows should move elsewhere (down, or a backup whose better tier is
    /// back), one bit each.
    pub fn leaving(&self) -> u32 {
        (0..self.up.len())
            .filter(|&i| !self.is_eligible(super::uplink_id(i)))
            .fold(0, |mask, i| mask | 1 << i)
    }

    /// The next uplink by weight among the eligible ones; `None` when none is up.
    pub fn weighted(&mut self) -> Option<UplinkId> {
        let active = self.active_tier()?;
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..self.weights.len() {
            if !self.up[i] || self.tiers[i] != active {
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
        Some(super::uplink_id(best))
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
        let mut s = Selector::new(vec![2, 1], vec![1, 1]);
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
        let mut s = Selector::new(vec![2, 1, 1], vec![1, 1, 1]);
        s.set_up(0, false);
        let picks: Vec<_> = (0..4).map(|_| s.weighted().unwrap()).collect();
        assert_eq!(picks, [1, 2, 1, 2]);
        assert_eq!(s.leaving(), 0b001);
        s.set_up(1, false);
        s.set_up(2, false);
        assert_eq!(s.weighted(), None);
        assert_eq!(s.leaving(), 0b111);
    }

    #[test]
    fn a_backup_tier_is_used_only_while_every_better_uplink_is_down() {
        let mut s = Selector::new(vec![2, 1, 5], vec![1, 1, 2]);
        assert!((0..30).all(|_| s.weighted() != Some(2)));
        assert_eq!(s.leaving(), 0b100);
        assert!(!s.is_eligible(2));
        s.set_up(0, false);
        assert!((0..30).all(|_| s.weighted() == Some(1)));
        s.set_up(1, false);
        assert!((0..30).all(|_| s.weighted() == Some(2)));
        assert_eq!(s.leaving(), 0b011);
        s.set_up(1, true);
        assert_eq!(s.weighted(), Some(1));
        assert_eq!(s.leaving(), 0b101);
    }

    #[test]
    fn longest_pin_wins() {
        let pins = vec![
            Pin {
                prefix: prefix([198, 19, 0, 0], 16),
                uplink: 0,
                strict: false,
            },
            Pin {
                prefix: prefix([198, 19, 200, 91], 32),
                uplink: 1,
                strict: false,
            },
            Pin {
                prefix: prefix([198, 19, 200, 0], 24),
                uplink: 2,
                strict: true,
            },
        ];
        let pins = Pins::new(pins);
        let pinned = |a| pins.lookup(u32::from_be_bytes(a)).map(|p| p.uplink);
        assert_eq!(pinned([198, 19, 200, 91]), Some(1));
        assert_eq!(pinned([198, 19, 200, 92]), Some(2));
        assert_eq!(pinned([198, 19, 1, 1]), Some(0));
        assert_eq!(pinned([198, 18, 1, 1]), None);
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
