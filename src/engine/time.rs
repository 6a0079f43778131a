//! The engine's clock: milliseconds passed in by the caller, never read here.

/// Milliseconds on a monotonic clock of the caller's choosing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms)
    }

    pub fn as_millis(self) -> u64 {
        self.0
    }

    pub fn after_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0 + ms)
    }

    /// The compact form kept in table entries.
    #[expect(
        clippy::cast_possible_truncation,
        reason = "a stamp is the low 32 bits"
    )]
    pub fn stamp(self) -> Stamp {
        Stamp(self.0 as u32)
    }

    /// Milliseconds from `earlier` to `self`; 0 if `earlier` is the later one. That happens:
    /// the expiry sweep reads its clock, then the fast path's maps, then each shard in turn,
    /// while workers stamp the flows they see with their own, later, clock readings; such a
    /// flow was just used, not idle for 49 days. Correct for ages under 24 days, far beyond
    /// any timeout (at most 7 days; expiry removes entries long before).
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        reason = "compared in the low 32 bits, as stamps are kept, as a signed distance"
    )]
    pub fn since_stamp(self, earlier: Stamp) -> u64 {
        let age = (self.0 as u32).wrapping_sub(earlier.0) as i32;
        u64::try_from(age).unwrap_or(0)
    }
}

/// The low 32 bits of a [`Timestamp`]: 4 bytes per table entry instead of 8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp(u32);

impl Stamp {
    /// The later of two stamps less than 24 days apart.
    pub fn later(self, other: Stamp) -> Stamp {
        if (other.0.wrapping_sub(self.0) as i32) > 0 {
            other
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_taken_after_now_is_no_age() {
        let now = Timestamp::from_millis(10_000);
        assert_eq!(
            now.since_stamp(Timestamp::from_millis(9_000).stamp()),
            1_000
        );
        assert_eq!(now.since_stamp(Timestamp::from_millis(10_001).stamp()), 0);
        // across the low 32 bits' wrap, both ways
        let wrap = 1u64 << 32;
        let now = Timestamp::from_millis(wrap + 5);
        assert_eq!(
            now.since_stamp(Timestamp::from_millis(wrap - 5).stamp()),
            10
        );
        assert_eq!(now.since_stamp(Timestamp::from_millis(wrap + 6).stamp()), 0);
    }
}
