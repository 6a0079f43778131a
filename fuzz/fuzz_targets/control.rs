//! What the control port reads from a request's headers itself (hyper parses the request):
//! the Host it names, where a POST comes from, the token. None may panic.
#![no_main]

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wanlb::control::access::{Access, same_origin};

fuzz_target!(|data: &[u8]| {
    // one header value a line, in this order
    let mut headers = HeaderMap::new();
    let lines = data.split(|&b| b == b'\n');
    for (name, value) in ["host", "origin", "sec-fetch-site", "authorization"]
        .into_iter()
        .zip(lines)
    {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let listed = ["gw.example.net".to_string(), "2001:2::1".to_string()];
    let access = Access::new(Some("token".into()), &listed);
    let _ = access.host(&headers, IpAddr::from([198, 18, 4, 1]));
    let _ = access.host(&headers, IpAddr::from([0x2001, 2, 0, 0, 0, 0, 0, 1]));
    let _ = access.token(&headers);
    let _ = same_origin(&headers);
});
