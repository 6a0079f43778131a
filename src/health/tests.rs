//! The health state machine, round by round.

use super::*;

const MS: u64 = 1000;

/// Drives a line round by round: `answers(round)` says whether round number `i` is
/// answered (after 1 ms) by every target. Returns the changes with the round at which
/// they happened.
fn drive(
    uplink: &mut UplinkHealth,
    start_round: usize,
    rounds: usize,
    answers: impl Fn(usize) -> bool,
) -> Vec<(usize, Transition)> {
    let interval = uplink.settings.interval_us();
    let mut changes = Vec::new();
    for i in start_round..start_round + rounds {
        let t = i as u64 * interval;
        let seq = uplink.start_round(t);
        if answers(i) {
            for target in 0..uplink.targets.max(1) {
                uplink.answer(seq, target, t + MS);
            }
            uplink.arp_answer(t + MS);
        }
        // look every 10 ms until the next round starts
        let mut at = t + MS;
        while at < t + interval {
            changes.extend(uplink.tick(at).into_iter().map(|c| (i, c)));
            at += 10 * MS;
        }
    }
    changes
}

fn uplink(targets: usize) -> UplinkHealth {
    UplinkHealth::new(HealthSettings::default(), targets)
}

#[test]
fn an_interface_without_its_address_is_down_until_answered_again() {
    let mut l = uplink(1);
    drive(&mut l, 0, 3, |_| true);
    assert_eq!(l.state(), State::Up);
    let c = l.address(false).expect("change");
    assert_eq!((c.state, c.reason), (State::Down, Reason::NoAddress));
    // answers (from the old address's last packets) while it has none do not count
    assert!(drive(&mut l, 3, 20, |_| true).is_empty());
    assert_eq!(l.address(true), None);
    let up = drive(&mut l, 23, 20, |_| true);
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].1.state, State::Up);
}

#[test]
fn a_reload_keeps_the_state_and_applies_the_new_settings() {
    let mut l = uplink(2);
    drive(&mut l, 0, 10, |_| true);
    assert_eq!(l.state(), State::Up);
    // one target instead of two, rounds a second apart, down after 2
    let settings = HealthSettings {
        interval: std::time::Duration::from_secs(1),
        down_after: 2,
        ..HealthSettings::default()
    };
    l.reconfigure(settings, Some(1));
    assert_eq!(l.state(), State::Up, "no change of state by itself");
    let changes = drive(&mut l, 10, 5, |_| true);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(l.stats().loss(), 0.0, "the new window, no old round lost");
    let last = l.last_start_us.unwrap();
    assert_eq!(l.next_round_at(last), last + 1_000_000);
    let changes = drive(&mut l, 15, 4, |_| false);
    let down: Vec<_> = changes
        .iter()
        .filter(|(_, c)| c.state == State::Down)
        .collect();
    assert_eq!(down.len(), 1, "{changes:?}");
    assert_eq!(down[0].1.reason, Reason::NoAnswer { rounds: 2 });
}

#[test]
fn starts_up_on_the_first_answer_and_goes_down_after_three_silent_rounds() {
    let mut l = uplink(2);
    let changes = drive(&mut l, 0, 10, |_| true);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, 0, "all targets answered: decided at once");
    assert_eq!(changes[0].1.state, State::Up);
    // the line dies at round 10; its rounds time out 600 ms after they start
    let changes = drive(&mut l, 10, 10, |_| false);
    assert_eq!(changes.len(), 1, "{changes:?}");
    let (round, c) = &changes[0];
    assert_eq!(c.state, State::Down);
    assert_eq!(c.reason, Reason::NoAnswer { rounds: 3 });
    // round 12 (sent at 2.4 s) is decided at 3.0 s, during round 15
    assert_eq!(*round, 15);
}

#[test]
fn comes_back_only_after_ten_good_rounds_in_a_row() {
    let mut l = uplink(1);
    drive(&mut l, 0, 1, |_| true);
    drive(&mut l, 1, 10, |_| false);
    assert_eq!(l.state(), State::Down);
    // every fifth round lost: never ten in a row, never up
    let changes = drive(&mut l, 11, 60, |i| i % 5 != 0);
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(l.state(), State::Down);
    let changes = drive(&mut l, 71, 20, |_| true);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, 80, "tenth good round after 71");
    assert_eq!(changes[0].1.reason, Reason::Answered { rounds: 10 });
}

#[test]
fn flapping_every_300_ms_never_brings_a_down_line_up() {
    let mut l = uplink(1);
    drive(&mut l, 0, 1, |_| true);
    drive(&mut l, 1, 10, |_| false);
    // 300 ms up, 300 ms down, as times of the 200 ms rounds
    let changes = drive(&mut l, 11, 25, |i| (i as u64 * 200 / 300).is_multiple_of(2));
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(l.state(), State::Down);
}

#[test]
fn one_answering_target_is_enough() {
    let mut l = uplink(3);
    drive(&mut l, 0, 1, |_| true);
    let interval = l.settings.interval_us();
    for i in 1..30u64 {
        let seq = l.start_round(i * interval);
        l.answer(seq, 2, i * interval + MS);
        l.arp_answer(i * interval + MS);
        assert_eq!(l.tick(i * interval + 700 * MS), []);
    }
    assert_eq!(l.state(), State::Up);
    // the figures are the answering target's: two silent ones do not make it look lossy
    let stats = l.stats();
    assert_eq!((stats.sent, stats.answered), (30, 30), "{stats:?}");
}

#[test]
fn carrier_loss_is_down_at_once_and_up_needs_answers_after_it_returns() {
    let mut l = uplink(1);
    drive(&mut l, 0, 1, |_| true);
    let c = l.carrier(false).expect("change");
    assert_eq!((c.state, c.reason), (State::Down, Reason::CarrierLost));
    // probes answered (another path?) while carrier is gone do not count
    assert!(drive(&mut l, 2, 15, |_| true).is_empty());
    l.carrier(true);
    let changes = drive(&mut l, 17, 12, |_| true);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0, 26);
}

#[test]
fn without_targets_the_gateway_arp_answers_are_the_probe() {
    let mut l = uplink(0);
    let changes = drive(&mut l, 0, 3, |_| true);
    assert_eq!(changes[0].1.state, State::Up);
    let changes = drive(&mut l, 3, 10, |_| false);
    assert_eq!(changes[0].1.state, State::Down);
    assert_eq!(changes[0].1.reason, Reason::NoAnswer { rounds: 3 });
}

#[test]
fn a_gateway_silent_on_arp_takes_a_probed_line_down_at_once() {
    let mut l = uplink(1);
    drive(&mut l, 0, 1, |_| true);
    let interval = l.settings.interval_us();
    let mut down_at = None;
    // targets answer (the frames still go out to the old MAC), ARP does not
    for i in 1..20u64 {
        let seq = l.start_round(i * interval);
        l.answer(seq, 0, i * interval + MS);
        for c in l.tick(i * interval + 2 * MS) {
            assert_eq!(c.reason, Reason::ArpLost);
            down_at.get_or_insert(i);
        }
    }
    // unanswered since round 1 (0.2 s): lost once 3 rounds and a timeout (1.2 s) passed
    assert_eq!(down_at, Some(7));
}

#[test]
fn a_point_to_point_line_without_targets_follows_its_carrier() {
    let mut l = uplink(0).without_arp();
    // nothing answers, and nothing needs to: the line has carrier
    let changes = drive(&mut l, 0, 20, |_| false);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].1.state, State::Up);
    assert_eq!(changes[0].1.reason, Reason::Carrier { rounds: 1 });
    assert_eq!(l.stats(), Stats::default(), "no RTT or loss to show");
    let c = l.carrier(false).expect("change");
    assert_eq!((c.state, c.reason), (State::Down, Reason::CarrierLost));
    assert!(drive(&mut l, 20, 15, |_| false).is_empty());
    // back after ten rounds with carrier, as a probed line after ten answered ones
    l.carrier(true);
    let changes = drive(&mut l, 35, 12, |_| false);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].0, 44);
    assert_eq!(changes[0].1.reason, Reason::Carrier { rounds: 10 });
    assert_eq!(
        changes[0].1.reason.to_string(),
        "carrier present 10 rounds in a row"
    );
}

#[test]
fn a_point_to_point_line_with_targets_waits_for_no_arp() {
    let mut l = uplink(1).without_arp();
    let interval = l.settings.interval_us();
    // the targets answer; no ARP ever comes, nor is it asked for
    for i in 0..20u64 {
        let seq = l.start_round(i * interval);
        l.answer(seq, 0, i * interval + MS);
        let changes = l.tick(i * interval + 2 * MS);
        if i == 0 {
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].state, State::Up);
        } else {
            assert!(changes.is_empty(), "round {i}: {changes:?}");
        }
    }
    // and a line dead beyond its far end goes down as any other
    let changes = drive(&mut l, 20, 10, |_| false);
    assert_eq!(changes[0].1.state, State::Down);
    assert_eq!(changes[0].1.reason, Reason::NoAnswer { rounds: 3 });
}

#[test]
fn brownout_by_loss_goes_down_only_when_a_limit_is_set() {
    // 40 % of rounds lost at random, but never three in a row
    let lossy = |i: usize| !matches!(i % 5, 1 | 3);
    let mut plain = uplink(1);
    drive(&mut plain, 0, 100, lossy);
    assert_eq!(plain.state(), State::Up);
    let stats = plain.stats();
    assert!((stats.loss() - 0.4).abs() < 0.05, "{stats:?}");

    let mut strict = UplinkHealth::new(
        HealthSettings {
            max_loss_pct: Some(20),
            ..HealthSettings::default()
        },
        1,
    );
    let changes = drive(&mut strict, 0, 100, lossy);
    let down: Vec<_> = changes
        .iter()
        .filter(|(_, c)| c.state == State::Down)
        .collect();
    assert_eq!(down.len(), 1, "{changes:?}");
    assert!(matches!(down[0].1.reason, Reason::Loss { limit: 20, .. }));
    assert_eq!(
        strict.state(),
        State::Down,
        "stays down while the loss lasts"
    );
    // loss stops: up once the window is below the limit and ten rounds were good
    let changes = drive(&mut strict, 100, 60, |_| true);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].1.state, State::Up);
}

#[test]
fn brownout_by_rtt() {
    let mut l = UplinkHealth::new(
        HealthSettings {
            max_rtt: Some(Duration::from_millis(100)),
            ..HealthSettings::default()
        },
        1,
    );
    let interval = l.settings.interval_us();
    let mut changes = Vec::new();
    for i in 0..40u64 {
        let t = i * interval;
        let seq = l.start_round(t);
        // 1 ms at first, then 300 ms from round 10
        let rtt = if i < 10 { MS } else { 300 * MS };
        l.answer(seq, 0, t + rtt);
        l.arp_answer(t + MS);
        changes.extend(l.tick(t + 199 * MS));
    }
    let states: Vec<_> = changes.iter().map(|c| c.state).collect();
    assert_eq!(states, [State::Up, State::Down]);
    assert!(matches!(changes[1].reason, Reason::Rtt { .. }));
}

/// Runs a line as the monitor does, starting rounds when `next_round_at` says; every
/// target answers after 1 ms, except between `dies_at` and `revives_at`. Returns when it
/// went down, if it did within 5 s.
fn run_with_outage(uplink: &mut UplinkHealth, dies_at: u64, revives_at: u64) -> Option<u64> {
    let mut now = 0;
    let mut answers: Vec<(u64, u32)> = Vec::new();
    while now < dies_at + 5_000 * MS {
        if now >= uplink.next_round_at(now) {
            let seq = uplink.start_round(now);
            if now < dies_at || now >= revives_at {
                answers.push((now + MS, seq));
            }
        }
        for &(at, seq) in answers.iter().filter(|(at, _)| *at == now) {
            uplink.answer(seq, 0, at);
            uplink.arp_answer(at);
        }
        if uplink.tick(now).iter().any(|c| c.state == State::Down) {
            return Some(now);
        }
        now += MS;
    }
    None
}

#[test]
fn a_blip_shorter_than_two_intervals_never_takes_a_line_down() {
    for phase in (0..200).step_by(5) {
        let mut l = uplink(1);
        let dies_at = 2_000 * MS + phase * MS;
        assert_eq!(run_with_outage(&mut l, dies_at, dies_at + 150 * MS), None);
    }
}

#[test]
fn a_silent_line_is_probed_faster_and_goes_down_within_a_second() {
    let mut worst = 0;
    // whatever the phase of the cut against the rounds
    for phase in (0..200).step_by(10) {
        let mut l = uplink(1);
        let dies_at = 2_000 * MS + phase * MS;
        let took = run_with_outage(&mut l, dies_at, u64::MAX).expect("down") - dies_at;
        worst = worst.max(took);
        // three failed rounds, each waiting out its 600 ms timeout
        assert!(took >= 600 * MS, "{took}");
    }
    // the first overdue round (at most 200 ms + 20 ms after the cut), two more 100 ms
    // apart, and the third one's timeout
    assert!(worst <= 200 * MS + 20 * MS + 200 * MS + 600 * MS, "{worst}");
}

#[test]
fn an_answering_line_never_hurries() {
    let mut l = uplink(1);
    let mut starts = Vec::new();
    let mut now = 0;
    while now < 3_000 * MS {
        if now >= l.next_round_at(now) {
            let seq = l.start_round(now);
            starts.push(now);
            l.answer(seq, 0, now + MS);
            l.arp_answer(now + MS);
        }
        l.tick(now + MS);
        now += MS;
    }
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|&g| g == 200 * MS), "{gaps:?}");
}

#[test]
fn rounds_that_could_not_be_sent_fail_at_once_and_count_in_no_loss() {
    let mut l = uplink(1);
    l.unsent_round(0);
    l.unsent_round(200 * MS);
    assert_eq!(l.tick(200 * MS), [], "two bad rounds, not three");
    l.unsent_round(400 * MS);
    let c = l
        .tick(400 * MS)
        .pop()
        .expect("decided without waiting for a timeout");
    assert_eq!(c.state, State::Down);
    assert_eq!(l.stats().sent, 0);
}

#[test]
fn late_and_unknown_answers_are_ignored() {
    let mut l = uplink(1);
    let seq = l.start_round(0);
    l.answer(seq, 0, 700 * MS); // after the timeout
    l.answer(seq.wrapping_add(5), 0, MS); // a round never sent
    l.answer(seq, 9, MS); // a target that does not exist
    assert_eq!(l.tick(601 * MS), []);
    assert_eq!(l.unanswered(), [0]);
    assert_eq!(l.stats().answered, 0);
    assert_eq!(l.stats().sent, 1);
}
