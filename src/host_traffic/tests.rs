//! The choice of the host's uplink, and the route's steps.

use super::*;

const NAMES: [&str; 3] = ["isp1", "isp2", "lte"];

fn rank(state: State, tier: u8, weight: u32) -> UplinkRank {
    UplinkRank {
        state,
        tier,
        weight,
    }
}

#[test]
fn the_best_uplink_is_up_of_the_lowest_tier_and_the_highest_weight() {
    use State::{Down, Unknown, Up};
    let cases: [(&[UplinkRank], Option<UplinkId>); 8] = [
        (&[rank(Up, 1, 2), rank(Up, 1, 1)], Some(0)),
        (&[rank(Up, 1, 1), rank(Up, 1, 2)], Some(1)),
        (&[rank(Down, 1, 2), rank(Up, 1, 1)], Some(1)),
        (&[rank(Unknown, 1, 2), rank(Up, 1, 1)], Some(1)),
        (&[rank(Up, 2, 9), rank(Up, 1, 1)], Some(1)),
        (&[rank(Up, 1, 1), rank(Up, 1, 1), rank(Up, 1, 1)], Some(0)),
        (&[rank(Down, 1, 1), rank(Up, 2, 1), rank(Up, 2, 1)], Some(1)),
        (
            &[rank(Down, 1, 1), rank(Unknown, 1, 1), rank(Down, 2, 1)],
            None,
        ),
    ];
    for (uplinks, best) in cases {
        assert_eq!(best_uplink(uplinks), best, "{uplinks:?}");
    }
}

/// Steps `route` through `uplinks`, as the control loop does, and returns the step made.
fn step(route: &mut HostRoute, follow: bool, uplinks: &[UplinkRank]) -> Option<Step> {
    let step = route.next(follow, uplinks, &NAMES[..uplinks.len()]);
    if let Some(s) = &step {
        route.done(s);
    }
    step
}

#[test]
fn the_route_follows_the_best_uplink_and_changes_only_when_it_does() {
    use State::{Down, Unknown, Up};
    let mut route = HostRoute::default();
    // no verdict yet: the system's own route stays
    assert_eq!(
        step(
            &mut route,
            true,
            &[rank(Unknown, 1, 2), rank(Unknown, 1, 1)]
        ),
        None
    );
    let first = step(&mut route, true, &[rank(Up, 1, 2), rank(Up, 1, 1)]);
    assert_eq!(
        first,
        Some(Step::Use {
            to: 0,
            why: "isp1 is the best line up".into()
        })
    );
    assert_eq!(
        step(&mut route, true, &[rank(Up, 1, 2), rank(Up, 1, 1)]),
        None,
        "the same choice changes nothing"
    );
    assert_eq!(
        step(&mut route, true, &[rank(Down, 1, 2), rank(Up, 1, 1)]),
        Some(Step::Use {
            to: 1,
            why: "isp1 is down".into()
        })
    );
    // every uplink down: the route stays on the last uplink chosen
    assert_eq!(
        step(&mut route, true, &[rank(Down, 1, 2), rank(Down, 1, 1)]),
        None
    );
    assert_eq!(
        step(&mut route, true, &[rank(Up, 1, 2), rank(Down, 1, 1)]),
        Some(Step::Use {
            to: 0,
            why: "isp2 is down".into()
        })
    );
    assert_eq!(
        step(&mut route, true, &[rank(Up, 1, 2), rank(Up, 1, 3)]),
        Some(Step::Use {
            to: 1,
            why: "isp2 is preferred to isp1 (tier 1, weight 3 against tier 1, weight 2)".into()
        }),
        "a reload that changes the weights moves it"
    );
}

#[test]
fn switching_off_puts_the_system_route_back_once() {
    use State::Up;
    let uplinks = [rank(Up, 1, 1), rank(Up, 2, 1)];
    let mut route = HostRoute::default();
    assert_eq!(
        step(&mut route, false, &uplinks),
        None,
        "off: never touched"
    );
    assert!(matches!(
        step(&mut route, true, &uplinks),
        Some(Step::Use { to: 0, .. })
    ));
    assert_eq!(step(&mut route, false, &uplinks), Some(Step::Restore));
    assert_eq!(step(&mut route, false, &uplinks), None);
    assert!(
        matches!(
            step(&mut route, true, &uplinks),
            Some(Step::Use { to: 0, .. })
        ),
        "switched on again, it takes over again"
    );
}
