//! Calendar dates, and the day of the month a data plan starts again. Only what the periods
//! need: the day count of a date (proleptic Gregorian, as `date` and cron use), the date of a
//! day count, and months.

use std::fmt;
use std::str::FromStr;

/// A calendar date in the gateway's local time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

/// The earliest date a wall clock is believed at: this version's release. A clock before it
/// has not been set (a board without a battery-backed clock starts in 1970 until NTP answers).
pub const NOT_BEFORE: Date = Date {
    year: 2026,
    month: 1,
    day: 1,
};

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Date {
    /// None unless it is a date (years 1 to 9999).
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        ((1..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month))
        .then_some(Date { year, month, day })
    }

    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before), by Howard Hinnant's `days_from_civil`.
    pub fn days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days after 1970-01-01 (`civil_from_days`); None outside years 1 to
    /// 9999.
    pub fn from_days(days: i64) -> Option<Date> {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date::new(
            i32::try_from(year).ok()?,
            u8::try_from(month).ok()?,
            u8::try_from(day).ok()?,
        )
    }

    /// The date on day `day` (1 to 28) of this date's month, `months` months later.
    fn on_day(self, months: i32, day: u8) -> Date {
        let index = self.year * 12 + i32::from(self.month) - 1 + months;
        let (year, month) = (index.div_euclid(12), index.rem_euclid(12) as u8 + 1);
        Date::new(year, month, day).unwrap_or(self)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = String;

    /// `YYYY-MM-DD`.
    fn from_str(s: &str) -> Result<Date, String> {
        let bad = || format!("{s:?} is not a date (YYYY-MM-DD)");
        let mut parts = s.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let (y, m, d) = (y.parse().ok(), m.parse().ok(), d.parse().ok());
        match (y, m, d) {
            (Some(y), Some(m), Some(d)) => Date::new(y, m, d).ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// When a data plan's count starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapReset {
    /// At local midnight starting this day of every month (1 to 28, so every month has it).
    Day(u8),
    /// Never by itself (prepaid): `wanlb cap reset` starts a new bucket.
    Never,
}

impl CapReset {
    /// The first day after `start` on which the count starts again.
    pub fn next_after(self, start: Date) -> Option<Date> {
        let CapReset::Day(day) = self else {
            return None;
        };
        Some(if start.day < day {
            start.on_day(0, day)
        } else {
            start.on_day(1, day)
        })
    }

    /// The first day of the period `today` is in: the last reset day on or before it (for a
    /// prepaid plan, `today` itself: its bucket starts now).
    pub fn period_of(self, today: Date) -> Date {
        match self {
            CapReset::Day(day) if today.day >= day => today.on_day(0, day),
            CapReset::Day(day) => today.on_day(-1, day),
            CapReset::Never => today,
        }
    }
}

impl serde::Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn day_counts_go_both_ways() {
        assert_eq!(d("1970-01-01").days(), 0);
        assert_eq!(d("2000-03-01").days(), 11_017);
        assert_eq!(d("1969-12-31").days(), -1);
        for days in (-700_000..2_900_000).step_by(997) {
            let date = Date::from_days(days).unwrap();
            assert_eq!(date.days(), days, "{date}");
        }
        assert_eq!(
            Date::from_days(d("2028-02-28").days() + 1),
            Some(d("2028-02-29"))
        );
        assert!(Date::new(2027, 2, 29).is_none());
        assert!("2026-13-01".parse::<Date>().is_err());
        assert!("2026-1-1x".parse::<Date>().is_err());
    }

    #[test]
    fn a_monthly_plan_starts_again_on_its_day() {
        let on_5th = CapReset::Day(5);
        assert_eq!(on_5th.next_after(d("2026-03-05")), Some(d("2026-04-05")));
        assert_eq!(on_5th.next_after(d("2026-03-04")), Some(d("2026-03-05")));
        assert_eq!(on_5th.next_after(d("2026-12-20")), Some(d("2027-01-05")));
        assert_eq!(on_5th.period_of(d("2026-03-05")), d("2026-03-05"));
        assert_eq!(on_5th.period_of(d("2026-03-04")), d("2026-02-05"));
        assert_eq!(on_5th.period_of(d("2026-01-01")), d("2025-12-05"));
        assert_eq!(
            CapReset::Day(28).next_after(d("2026-01-30")),
            Some(d("2026-02-28"))
        );
        assert_eq!(CapReset::Never.next_after(d("2026-03-05")), None);
        assert_eq!(CapReset::Never.period_of(d("2026-03-09")), d("2026-03-09"));
    }
}
