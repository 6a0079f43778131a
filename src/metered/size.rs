//! Amounts of data as people write them: `500MB`, `30GB`, `1.5TB` (SI: powers of 1000, as
//! carriers sell them) or `20GiB` (powers of 1024), or a number of bytes.

/// The units, longest first so that `GiB` is not read as `G` then `iB`.
const UNITS: [(&str, u64); 10] = [
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("b", 1),
    ("", 1),
];

/// The most a size may be: a petabyte is far beyond any plan, and well within u64.
pub const MAX_SIZE: u64 = 1_000_000_000_000_000;

/// Bytes in `text` (`500MB`, `1.5GB`, `20GiB`, `123456`); the error says what is wrong.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let expected = "a size such as 500MB, 30GB, 1TB or 20GiB";
    let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(format!("unknown unit in {text:?}: expected {expected}"));
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not {expected}"));
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) || fraction.len() > 9 {
        return Err(format!("{text:?} is not {expected}"));
    }
    let too_large = || format!("{text:?} is more than a petabyte");
    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole * u128::from(scale);
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().map_err(|_| too_large())?;
        let tenths = 10u128.pow(fraction.len() as u32);
        bytes += digits * u128::from(scale) / tenths;
    }
    u64::try_from(bytes)
        .ok()
        .filter(|&b| b <= MAX_SIZE)
        .ok_or_else(too_large)
}

/// `bytes` as the settings would write it, exactly: the largest unit that divides it
/// (`20GB`, `512MiB`), else the bytes.
pub fn written_size(bytes: u64) -> String {
    let units = [
        ("TB", 1_000_000_000_000u64),
        ("TiB", 1 << 40),
        ("GB", 1_000_000_000),
        ("GiB", 1 << 30),
        ("MB", 1_000_000),
        ("MiB", 1 << 20),
        ("kB", 1_000),
        ("KiB", 1 << 10),
    ];
    for (name, scale) in units {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{name}", bytes / scale);
        }
    }
    bytes.to_string()
}

/// `bytes` for a person, in SI units with three significant digits: `1.23 GB`, `980 MB`.
pub fn human_size(bytes: u64) -> String {
    let units = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)];
    let b = bytes as f64;
    for (name, scale) in units {
        if b >= scale {
            let v = b / scale;
            let decimals = if v >= 100.0 {
                0
            } else if v >= 10.0 {
                1
            } else {
                2
            };
            return format!("{v:.decimals$} {name}");
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_si_and_binary_units() {
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("30GB"), Ok(30_000_000_000));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_size("20GiB"), Ok(20 << 30));
        assert_eq!(parse_size("4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1.5gb"), Ok(1_500_000_000));
        assert_eq!(parse_size("2KiB"), Ok(2048));
        assert_eq!(parse_size("123456"), Ok(123_456));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in [
            "", "GB", "5XB", "-1GB", "1.2.3GB", "1e9", "2PB", "1001TB", ".5GB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes_are_written_back_exactly() {
        for text in ["20GB", "512MiB", "1TB", "3kB", "1000001"] {
            let bytes = parse_size(text).unwrap();
            assert_eq!(written_size(bytes), text);
            assert_eq!(parse_size(&written_size(bytes)), Ok(bytes));
        }
        assert_eq!(human_size(20_000_000_000), "20.0 GB");
        assert_eq!(human_size(1_234_567_890), "1.23 GB");
        assert_eq!(human_size(999), "999 B");
    }
}
