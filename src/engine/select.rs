//! Uplink choice for a new destination: pins, then a smooth weighted round-robin.

use super::UplinkId;
use super::family::{Family, V4};
use crate::metered::CapEffect;

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
pub struct Pin {
    pub prefix: Prefix,
    pub uplink: UplinkId,
    /// While the uplink is down its destinations are refused rather than sent elsewhere.
    pub strict: bool,
}

/// The pins, longest prefix first. A reload replaces them whole (the engine swaps them
/// atomically), so the packet path reads them without a lock.
#[derive(Debug, Default)]
pub struct Pins(Vec<Pin>);

impl Pins {
    pub fn new(mut pins: Vec<Pin>) -> Pins {
        // Longest prefix first, so the first match is the one that wins.
        pins.sort_by_key(|p| std::cmp::Reverse(p.prefix.len));
        Pins(pins)
    }

    /// The longest pin covering `dst`, whether or not its uplink is up.
    pub fn lookup(&self, dst: u32) -> Option<Pin> {
        self.0.iter().find(|p| p.prefix.contains(dst)).copied()
    }
}

/// How new destinations are spread over the lines of the active tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balance {
    /// By count of destinations: 2:1 sends two of every three new destinations to the first.
    #[default]
    Destinations,
    /// By bytes: each new destination goes to the line furthest below its weight's share of
    /// the bytes carried over the recent window.
    Bytes,
}

/// Weights, tiers, caps and health of the uplinks.
///
/// New flows use the healthy uplinks of the best rank that has one (the active rank). A
/// line's rank is its tier, below every line whose cap is not reached once its own is (with
/// `on_cap=backup`); a line whose cap is reached with `on_cap=off` counts as down. So a
/// backup line of tier 2 carries traffic only while every tier-1 line is down or capped.
/// Within the rank the pick is, by destinations, nginx's smooth weighted round-robin: every
/// pick adds each eligible uplink's weight to its credit, takes the uplink with the most
/// credit and charges it the total. Over any run of picks each uplink's share stays within
/// one pick of its weight share, and the picks interleave (2:1 gives a, b, a, a, b, a ...)
/// rather than bunching. By bytes, the pick is the line furthest below its weight's share of
/// the recent bytes (round-robin while none were carried).
#[derive(Debug)]
pub struct Selector {
    weights: Vec<u32>,
    tiers: Vec<u8>,
    credit: Vec<i64>,
    up: Vec<bool>,
    caps: Vec<CapEffect>,
    balance: Balance,
    /// Each line's bytes over the recent window, for [`Balance::Bytes`].
    recent: Vec<u64>,
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
            caps: vec![CapEffect::None; n],
            balance: Balance::Destinations,
            recent: vec![0; n],
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

    /// What `uplink`'s cap does to it now.
    pub fn set_cap(&mut self, uplink: UplinkId, effect: CapEffect) {
        if let Some(slot) = self.caps.get_mut(usize::from(uplink)) {
            *slot = effect;
        }
    }

    pub fn set_balance(&mut self, balance: Balance) {
        self.balance = balance;
    }

    /// Each line's bytes over the recent window (one per uplink).
    pub fn set_recent_bytes(&mut self, bytes: &[u64]) {
        for (r, b) in self.recent.iter_mut().zip(bytes) {
            *r = *b;
        }
    }

    /// Healthy, and not off for its cap.
    fn serves(&self, i: usize) -> bool {
        self.up[i] && self.caps[i] != CapEffect::Off
    }

    /// Lower is better: a line whose cap is reached comes after every other, then by tier.
    fn rank(&self, i: usize) -> (bool, u8) {
        (self.caps[i] == CapEffect::Backup, self.tiers[i])
    }

    /// Uplinks that are down (or off for their cap), one bit each.
    pub fn down(&self) -> u32 {
        (0..self.up.len())
            .filter(|&i| !self.serves(i))
            .fold(0, |mask, i| mask | 1 << i)
    }

    /// The best rank with a healthy uplink.
    fn active_rank(&self) -> Option<(bool, u8)> {
        (0..self.up.len())
            .filter(|&i| self.serves(i))
            .map(|i| self.rank(i))
            .min()
    }

    /// Whether new flows may use `uplink`: serving and of the active rank.
    pub fn is_eligible(&self, uplink: UplinkId) -> bool {
        let i = usize::from(uplink);
        i < self.up.len() && self.serves(i) && Some(self.rank(i)) == self.active_rank()
    }

    /// Uplinks new flows may not use, one bit each.
    pub fn ineligible(&self) -> u32 {
        (0..self.up.len())
            .filter(|&i| !self.is_eligible(super::uplink_id(i)))
            .fold(0, |mask, i| mask | 1 << i)
    }

    /// Uplinks whose flows should move elsewhere, one bit each: down, or a backup whose
    /// better tier is back. A line that is only ranked lower for its cap keeps what runs on
    /// it (unless a line of a better tier is back as well).
    pub fn leaving(&self) -> u32 {
        let serving: Vec<usize> = (0..self.up.len()).filter(|&i| self.serves(i)).collect();
        (0..self.up.len())
            .filter(|&i| {
                !self.serves(i)
                    || serving
                        .iter()
                        .any(|&j| self.tiers[j] < self.tiers[i] && self.rank(j) < self.rank(i))
            })
            .fold(0, |mask, i| mask | 1 << i)
    }

    /// The next uplink among the eligible ones, by the balance in force; `None` when none is
    /// up.
    pub fn weighted(&mut self) -> Option<UplinkId> {
        let active = self.active_rank()?;
        let eligible: Vec<usize> = (0..self.weights.len())
            .filter(|&i| self.serves(i) && self.rank(i) == active)
            .collect();
        if self.balance == Balance::Bytes
            && let Some(i) = self.furthest_below_share(&eligible)
        {
            return Some(super::uplink_id(i));
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for &i in &eligible {
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

    /// Of `lines`, the one furthest below its weight's share of their recent bytes; None
    /// while they carried nothing.
    fn furthest_below_share(&self, lines: &[usize]) -> Option<usize> {
        let bytes: u128 = lines.iter().map(|&i| u128::from(self.recent[i])).sum();
        let weights: u128 = lines.iter().map(|&i| u128::from(self.weights[i])).sum();
        if bytes == 0 || weights == 0 {
            return None;
        }
        // weight share minus byte share, scaled by bytes * weights to stay in integers
        let below = |i: usize| {
            let w = u128::from(self.weights[i]) * bytes;
            let b = u128::from(self.recent[i]) * weights;
            w as i128 - b as i128
        };
        lines
            .iter()
            .copied()
            .min_by_key(|&i| std::cmp::Reverse(below(i)))
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
    fn a_capped_line_ranks_below_every_line_under_its_cap_whatever_their_tiers() {
        // a tier-1 line at its cap, a tier-1 line and a tier-2 backup
        let mut s = Selector::new(vec![1, 1, 1], vec![1, 1, 2]);
        s.set_cap(0, CapEffect::Backup);
        assert!((0..10).all(|_| s.weighted() == Some(1)));
        assert_eq!(s.ineligible(), 0b101);
        // what runs on it keeps running; the backup is still leaving
        assert_eq!(s.leaving(), 0b100);
        assert_eq!(s.down(), 0);
        // the other tier-1 line down: the tier-2 line under its cap before the capped one
        s.set_up(1, false);
        assert!((0..10).all(|_| s.weighted() == Some(2)));
        assert_eq!(s.leaving(), 0b010);
        // and only with none of them up does the capped line take new flows
        s.set_up(2, false);
        assert!((0..10).all(|_| s.weighted() == Some(0)));
        assert!(s.is_eligible(0));
        // its cap off again: it is the better tier, the backup leaves
        s.set_up(2, true);
        s.set_cap(0, CapEffect::None);
        assert_eq!(s.weighted(), Some(0));
        assert_eq!(s.leaving(), 0b110);
    }

    #[test]
    fn a_capped_backup_fails_back_to_a_better_tier_and_off_is_down() {
        // fibre, and an LTE backup whose cap is reached while the fibre is down
        let mut s = Selector::new(vec![1, 1], vec![1, 2]);
        s.set_up(0, false);
        s.set_cap(1, CapEffect::Backup);
        assert_eq!(s.weighted(), Some(1));
        assert_eq!(s.leaving(), 0b01);
        s.set_up(0, true);
        assert_eq!(s.leaving(), 0b10, "the fibre is back: its flows move");
        s.set_cap(1, CapEffect::Off);
        assert_eq!(s.down(), 0b10);
        s.set_up(0, false);
        assert_eq!(s.weighted(), None, "off is as if down");
    }

    #[test]
    fn by_bytes_a_new_destination_goes_to_the_line_furthest_below_its_share() {
        let mut s = Selector::new(vec![2, 1, 1], vec![1, 1, 2]);
        s.set_balance(Balance::Bytes);
        // nothing carried yet: by weight
        let picks: Vec<_> = (0..3).map(|_| s.weighted().unwrap()).collect();
        assert_eq!(picks, [0, 1, 0]);
        // 2:1 of weight, 1:1 of bytes: the first is below its share
        s.set_recent_bytes(&[50, 50, 0]);
        assert!((0..5).all(|_| s.weighted() == Some(0)));
        // one destination pulled a lot through the first: the second until it catches up
        s.set_recent_bytes(&[90_000_000, 1_000_000, 7]);
        assert!((0..5).all(|_| s.weighted() == Some(1)));
        s.set_recent_bytes(&[60, 30, 1_000]);
        assert_eq!(s.weighted(), Some(0), "2:1 held: the first of the tied");
        // the backup tier's bytes count for nothing while it is not in use
        s.set_up(0, false);
        s.set_recent_bytes(&[0, 10, 1_000_000]);
        assert_eq!(s.weighted(), Some(1));
        s.set_balance(Balance::Destinations);
        s.set_up(0, true);
        s.set_recent_bytes(&[90_000_000, 0, 0]);
        let picks: Vec<_> = (0..3).map(|_| s.weighted().unwrap()).collect();
        assert_eq!(
            picks.iter().filter(|&&u| u == 0).count(),
            2,
            "by destinations"
        );
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
