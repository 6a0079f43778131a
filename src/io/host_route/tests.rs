//! wanlb's default route, as `ip` is told it.

use super::*;

#[test]
fn the_route_leaves_from_the_uplink_and_its_removal_takes_only_wanlbs() {
    let uplink = |link, dev: &str, gateway: Option<&str>| {
        Uplink::new(1, "isp2", dev, link)
            .on_interface(4, [2, 0, 0, 0, 0, 2])
            .with_address(
                "198.18.2.1".parse().unwrap(),
                gateway.map(|g| g.parse().unwrap()),
            )
    };
    assert_eq!(
        route_args(&uplink(LinkKind::Ethernet, "eth2", Some("198.18.2.254"))),
        "route prepend default via 198.18.2.254 dev eth2 src 198.18.2.1 metric 0 proto 113 table main"
    );
    assert_eq!(
        route_args(&uplink(LinkKind::PointToPoint, "ppp0", None)),
        "route prepend default dev ppp0 src 198.18.2.1 metric 0 proto 113 table main"
    );
    assert_eq!(
        remove_args(),
        "route flush exact 0.0.0.0/0 proto 113 table main"
    );
}
