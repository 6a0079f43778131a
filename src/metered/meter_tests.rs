use super::*;

fn d(s: &str) -> Date {
    s.parse().unwrap()
}

const GB: u64 = 1_000_000_000;

fn lte() -> CapSettings {
    CapSettings {
        cap: Some(20 * GB),
        reset: CapReset::Day(5),
        on_cap: OnCap::Backup,
        warn_pct: 80,
    }
}

fn started(on: &str) -> Meter {
    let mut m = Meter::default();
    assert_eq!(m.tick(d(on), &lte()), None);
    m
}

#[test]
fn each_crossing_is_said_once() {
    let s = lte();
    let mut m = started("2026-03-05");
    assert_eq!(m.count(15 * GB, &s), []);
    assert_eq!(m.count(GB, &s), [CapEvent::Warn]);
    assert_eq!(m.count(GB, &s), []);
    assert_eq!(m.effect(&s), CapEffect::None);
    assert_eq!(m.count(3 * GB, &s), [CapEvent::Reached]);
    assert_eq!(m.count(5 * GB, &s), []);
    assert_eq!(m.effect(&s), CapEffect::Backup);
    let off = CapSettings {
        on_cap: OnCap::Off,
        ..s
    };
    assert_eq!(m.effect(&off), CapEffect::Off);
    let warn = CapSettings {
        on_cap: OnCap::Warn,
        ..s
    };
    assert_eq!(m.effect(&warn), CapEffect::None);
    // one interval's bytes past both: both said, in order
    let mut m = started("2026-03-05");
    assert_eq!(m.count(21 * GB, &s), [CapEvent::Warn, CapEvent::Reached]);
}

#[test]
fn a_count_set_or_a_cap_raised_below_may_cross_again() {
    let s = lte();
    let mut m = started("2026-03-05");
    assert_eq!(m.set(20 * GB, &s), [CapEvent::Warn, CapEvent::Reached]);
    assert_eq!(m.set(10 * GB, &s), []);
    assert_eq!(m.effect(&s), CapEffect::None);
    assert_eq!(m.count(6 * GB, &s), [CapEvent::Warn]);
    let raised = CapSettings {
        cap: Some(30 * GB),
        ..s
    };
    assert_eq!(m.count(5 * GB, &s), [CapEvent::Reached]);
    assert_eq!(m.crossings(&raised), [], "21 GB of 30: warned, not reached");
    assert_eq!(m.effect(&raised), CapEffect::None);
    let uncapped = CapSettings { cap: None, ..s };
    assert_eq!(m.crossings(&uncapped), []);
    assert_eq!(m.effect(&uncapped), CapEffect::None);
}

#[test]
fn the_period_starts_again_on_its_day_once() {
    let s = lte();
    let mut m = started("2026-03-09");
    assert_eq!(m.period_start, Some(d("2026-03-05")));
    assert_eq!(m.resets_on(&s), Some(d("2026-04-05")));
    m.count(21 * GB, &s);
    assert_eq!(m.tick(d("2026-04-04"), &s), None);
    assert_eq!(
        m.tick(d("2026-04-05"), &s),
        Some(CapEvent::Reset { ended: 21 * GB })
    );
    assert_eq!((m.bytes, m.warned, m.reached), (0, false, false));
    assert_eq!(m.period_start, Some(d("2026-04-05")));
    assert_eq!(m.tick(d("2026-04-05"), &s), None);
    assert_eq!(m.tick(d("2026-05-04"), &s), None);
}

#[test]
fn a_clock_that_jumps_neither_resets_nor_loses_a_period() {
    let s = lte();
    // a board that boots in 1970: counted, no period yet, nothing reset
    let mut m = Meter::default();
    assert_eq!(m.tick(d("1970-01-01"), &s), None);
    m.count(3 * GB, &s);
    assert_eq!(m.period_start, None);
    // NTP sets the clock: the count so far belongs to today's period
    assert_eq!(m.tick(d("2026-03-20"), &s), None);
    assert_eq!((m.bytes, m.period_start), (3 * GB, Some(d("2026-03-05"))));
    // back to 1970 (a reboot without NTP) and to a day before the period: not believed
    for wrong in ["1970-01-01", "2025-12-31", "2026-03-04", "2026-01-10"] {
        assert_eq!(m.tick(d(wrong), &s), None, "{wrong}");
        assert_eq!(m.bytes, 3 * GB);
    }
    // forward by months: one reset, to the period today is in
    assert_eq!(
        m.tick(d("2026-09-02"), &s),
        Some(CapEvent::Reset { ended: 3 * GB })
    );
    assert_eq!(m.period_start, Some(d("2026-08-05")));
    assert_eq!(m.tick(d("2026-09-02"), &s), None);
    assert_eq!(
        m.tick(d("2026-09-05"), &s),
        Some(CapEvent::Reset { ended: 0 })
    );
}

#[test]
fn a_prepaid_bucket_starts_again_only_when_told() {
    let s = CapSettings {
        reset: CapReset::Never,
        ..lte()
    };
    let mut m = Meter::default();
    assert_eq!(m.tick(d("2026-03-09"), &s), None);
    assert_eq!(m.period_start, Some(d("2026-03-09")));
    m.count(20 * GB, &s);
    assert_eq!(m.tick(d("2030-01-01"), &s), None);
    assert_eq!(m.resets_on(&s), None);
    assert_eq!(
        m.start_again(Some(d("2026-04-01")), &s),
        CapEvent::Reset { ended: 20 * GB }
    );
    assert_eq!((m.bytes, m.period_start), (0, Some(d("2026-04-01"))));
    // told while the clock is not set: the first day stays
    m.start_again(Some(d("1970-01-02")), &s);
    assert_eq!(m.period_start, Some(d("2026-04-01")));
}

#[test]
fn a_meter_is_kept_as_json_and_read_back() {
    let s = lte();
    let mut m = started("2026-03-09");
    m.count(17 * GB, &s);
    let text = serde_json::to_string(&m).unwrap();
    assert_eq!(
        text,
        r#"{"bytes":17000000000,"period_start":"2026-03-05","warned":true,"reached":false}"#
    );
    assert_eq!(serde_json::from_str::<Meter>(&text).unwrap(), m);
    assert!(
        serde_json::from_str::<Meter>(
            r#"{"bytes":1,"period_start":"2026-02-30","warned":false,"reached":false}"#
        )
        .is_err()
    );
}
