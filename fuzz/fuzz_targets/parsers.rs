//! The other parsers of untrusted input: flags and config values, ARP frames, virtio-net
//! headers. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wanlb::config::{parse_duration, parse_pin_flag, parse_ports, parse_prefix, parse_uplink_flag};
use wanlb::io::{arp, vnet};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_uplink_flag(text);
        let _ = parse_pin_flag(text);
        let _ = parse_duration(text, "x");
        let _ = parse_ports(text, "x");
        let _ = parse_prefix(text, "x");
    }
    let _ = arp::sender_mac(data, u32::from_be_bytes([198, 18, 1, 254]));
    if let Some(h) = data.get(..vnet::LEN) {
        let h = vnet::VnetHeader::read(h.try_into().expect("10 bytes"));
        let _ = h.shifted(14).shifted(-14);
    }
});
