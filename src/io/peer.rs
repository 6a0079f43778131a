//! Who is at the other end of a loopback TCP connection to the control port: the kernel's
//! socket table of wanlb's network namespace (`/proc/self/net/tcp` and `tcp6`) names the
//! owner of the client's socket, as identd reads it. Without a token, only wanlb's own user
//! (root) may change wanlb through the port; other local users may read its status.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;

/// Whether the client at `client`, connected to wanlb's `server` address, runs as root or as
/// wanlb's own user. False when that cannot be told (not a loopback connection, the table
/// unreadable or without it).
pub fn is_own_user(client: SocketAddr, server: SocketAddr) -> bool {
    if !client.ip().to_canonical().is_loopback() {
        return false;
    }
    let Ok(own) = fs::metadata("/proc/self").map(|m| m.uid()) else {
        return false;
    };
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .find_map(|text| owner(&text, client, server))
        .is_some_and(|uid| uid == 0 || uid == own)
}

/// The owner of the socket at `client` connected to `server`, from the text of a kernel TCP
/// table (`sl local_address rem_address st queues tr retrnsmt uid timeout inode ...`).
///
/// Only a live, open socket counts: established, with an inode. Once its owner has closed
/// it, the kernel prints it with uid 0 (a timewait socket) or keeps it orphaned without an
/// inode, so a client that sent its request and closed at once would pass for root.
fn owner(table: &str, client: SocketAddr, server: SocketAddr) -> Option<u32> {
    let same = |a: SocketAddr, b: SocketAddr| {
        a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, state) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        let (uid, inode) = (fields.get(7)?, fields.get(9)?);
        if !(same(endpoint(local)?, client) && same(endpoint(remote)?, server)) {
            return None;
        }
        let open = *state == ESTABLISHED && *inode != "0";
        open.then(|| uid.parse().ok()).flatten()
    })
}

/// The `st` column of an established connection.
const ESTABLISHED: &str = "01";

/// `ADDR:PORT` as the kernel prints it: the address as 32-bit words in the machine's byte
/// order, in hex, then the port in hex.
fn endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for i in (0..addr.len()).step_by(8) {
        let word = u32::from_str_radix(addr.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_owner_of_a_loopback_client_is_read_from_the_kernels_table() {
        let own = fs::metadata("/proc/self").unwrap().uid();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let table = fs::read_to_string("/proc/self/net/tcp").unwrap();
        assert_eq!(owner(&table, peer, server), Some(own));
        assert!(is_own_user(peer, server));
        // the server's own socket is not the client's; nor is a port nobody holds
        assert_eq!(owner(&table, server, peer), Some(own), "the server's end");
        let nobody = SocketAddr::new(peer.ip(), 1);
        assert_eq!(owner(&table, nobody, server), None);
        assert!(!is_own_user(nobody, server));
    }

    #[test]
    fn a_closed_or_orphaned_client_socket_is_nobodys() {
        // the same client as a timewait socket (printed as root's, without an inode), an
        // orphan still sending its FIN (its user's, without an inode), and one that shut
        // its sending side down (FIN_WAIT2, its user's, with an inode)
        let rows = [
            "0100007F:A1B2 0100007F:26B7 06 00000000:00000000 03:00000D2D 00000000     0        0 0 3 0000000000000000",
            "0100007F:A1B2 0100007F:26B7 05 00000000:00000000 03:00000D2D 00000000     0        0 0 3 0000000000000000",
            "0100007F:A1B2 0100007F:26B7 04 00000000:00000000 01:00000014 00000000 65534        0 0 2 0000000000000000",
            "0100007F:A1B2 0100007F:26B7 05 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000",
        ];
        if cfg!(target_endian = "little") {
            let server: SocketAddr = "127.0.0.1:9911".parse().unwrap();
            let client = SocketAddr::new(server.ip(), 0xA1B2);
            for row in rows {
                let table = format!("  sl  local_address rem_address   st\n   0: {row}\n");
                assert_eq!(owner(&table, client, server), None, "{row}");
            }
        }
    }

    #[test]
    fn a_table_names_its_sockets_owners() {
        // two clients of 127.0.0.1:9911, as Linux prints them on a little-endian machine:
        // one of user 65534, one of root; and an IPv6 one of user 1000
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:A1B2 0100007F:26B7 01 00000000:00000000 00:00000000 00000000 65534        0 1 1 0000000000000000 20 4 0 10 -1\n   \
            1: 0100007F:A1B3 0100007F:26B7 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 0 10 -1\n";
        if cfg!(target_endian = "little") {
            let server: SocketAddr = "127.0.0.1:9911".parse().unwrap();
            let of = |port: u16| owner(v4, SocketAddr::new(server.ip(), port), server);
            assert_eq!(
                (of(0xA1B2), of(0xA1B3), of(0xA1B4)),
                (Some(65534), Some(0), None)
            );
            // a v4 client seen by a v6 listener, as ::ffff:127.0.0.1
            let mapped: SocketAddr = "[::ffff:127.0.0.1]:41394".parse().unwrap();
            assert_eq!(owner(v4, mapped, server), Some(65534));
            let v6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
                0: 00000000000000000000000001000000:C350 00000000000000000000000001000000:26B7 01 00000000:00000000 00:00000000 00000000  1000        0 3 1\n";
            let client: SocketAddr = "[::1]:50000".parse().unwrap();
            let server6: SocketAddr = "[::1]:9911".parse().unwrap();
            assert_eq!(owner(v6, client, server6), Some(1000));
        }
        assert_eq!(endpoint("0100007F"), None);
        assert_eq!(endpoint("0100007:26B7"), None);
        assert_eq!(endpoint("zz00007F:26B7"), None);
    }
}
