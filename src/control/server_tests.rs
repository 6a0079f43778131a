//! The server against a client that opens connections faster than they are served: the
//! requests of others are still read and answered.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::access::Access;
use super::history::HistoryReport;
use super::server::{Server, serve};
use super::{Gateway, ReloadReport, Snapshot};

struct Fake;

impl Gateway for Fake {
    fn snapshot(&self, _: bool) -> Snapshot {
        Snapshot::default()
    }
    fn history(&self) -> HistoryReport {
        HistoryReport::default()
    }
    fn reload(&self) -> Result<ReloadReport, String> {
        Ok(ReloadReport::default())
    }
    fn set_count(&self, _: &str, _: Option<u64>) -> Result<(), String> {
        Ok(())
    }
    fn is_own_user(&self, _: std::net::SocketAddr, _: std::net::SocketAddr) -> bool {
        true
    }
}

#[test]
fn a_request_queued_among_a_flood_of_connections_is_answered() {
    let server = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = server.local_addr().unwrap();
    // before the server runs, the kernel's accept queue holds a few of a flood's connections,
    // then one with a request, then many more of the flood (none of which ever sends a byte):
    // all of them ready at once, as when connections arrive faster than they are served
    let flood = |n: usize| -> Vec<TcpStream> {
        (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
    };
    let before = flood(10);
    let mut asking = TcpStream::connect(addr).unwrap();
    asking
        .write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let after = flood(100);
    let stop = AtomicBool::new(false);
    let access = Access::new(None, &[]);
    let answer = std::thread::scope(|s| {
        s.spawn(|| serve(server, &access, &Fake, &stop).unwrap());
        asking
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut answer = String::new();
        let read = asking.read_to_string(&mut answer);
        stop.store(true, Ordering::Relaxed);
        read.map(|_| answer)
    });
    drop((before, after));
    let answer = answer.expect("an answer, not a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}
