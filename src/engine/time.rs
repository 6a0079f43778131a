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

    /// Milliseconds from `earlier` to `self`; correct for ages under 49 days, far beyond any
    /// timeout (expiry removes entries long before).
    #[expect(
        clippy::cast_possible_truncation,
        reason = "compared in the low 32 bits, as stamps are kept"
    )]
    pub fn since_stamp(self, earlier: Stamp) -> u64 {
        u64::from((self.0 as u32).wrapping_sub(earlier.0))
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
