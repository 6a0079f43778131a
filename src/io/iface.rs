//! What the system knows about an interface: index, MAC, hardware type, MTU and IPv4
//! addresses.

use std::ffi::CStr;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::fd::{check, own};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// All zero if it has none (a point-to-point link).
    pub mac: [u8; 6],
    /// ARPHRD_* (1: Ethernet), as in /sys/class/net/NAME/type.
    pub hardware_type: u16,
    /// It has the POINTOPOINT flag: one peer at the other end.
    pub point_to_point: bool,
    pub mtu: u32,
    /// Addresses with their prefix length, in the order the kernel lists them.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

/// All interfaces of the current network namespace.
pub fn list() -> io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    check(unsafe { libc::getifaddrs(&mut head) })?;
    let mut out: Vec<Interface> = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let idx = match out.iter().position(|i| i.name == name) {
            Some(i) => i,
            None => {
                out.push(Interface {
                    name,
                    index: 0,
                    mac: [0; 6],
                    hardware_type: 0,
                    point_to_point: false,
                    mtu: 0,
                    ipv4: Vec::new(),
                });
                out.len() - 1
            }
        };
        let entry = &mut out[idx];
        entry.point_to_point |= ifa.ifa_flags & libc::IFF_POINTOPOINT as libc::c_uint != 0;
        // a link without a hardware address (TUN, PPP) is listed with none
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr whose family tells its type.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_PACKET {
            // SAFETY: an AF_PACKET entry carries a sockaddr_ll.
            let ll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
            if ll.sll_halen == 6 {
                entry.mac.copy_from_slice(&ll.sll_addr[..6]);
            }
        } else if family == libc::AF_INET && !ifa.ifa_netmask.is_null() {
            // SAFETY: AF_INET entries carry sockaddr_in for the address and the netmask.
            let (addr, mask) = unsafe {
                (
                    &*(ifa.ifa_addr as *const libc::sockaddr_in),
                    &*(ifa.ifa_netmask as *const libc::sockaddr_in),
                )
            };
            let prefix = u32::from_be(mask.sin_addr.s_addr).leading_ones() as u8;
            entry
                .ipv4
                .push((Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)), prefix));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    // SAFETY: socket() with integer arguments.
    let sock =
        own(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    for iface in &mut out {
        // SAFETY: SIOCGIFMTU sets the mtu member of the union.
        iface.mtu = ask(&sock, &iface.name, libc::SIOCGIFMTU)
            .map_or(1500, |r| unsafe { r.ifr_ifru.ifru_mtu } as u32);
        // SAFETY: SIOCGIFINDEX sets the ifindex member of the union.
        iface.index = ask(&sock, &iface.name, libc::SIOCGIFINDEX)
            .map_or(0, |r| unsafe { r.ifr_ifru.ifru_ifindex } as u32);
        // SAFETY: SIOCGIFHWADDR sets the hwaddr member, whose family is the hardware type.
        iface.hardware_type = ask(&sock, &iface.name, libc::SIOCGIFHWADDR)
            .map_or(0, |r| unsafe { r.ifr_ifru.ifru_hwaddr.sa_family });
    }
    Ok(out)
}

/// The answer to `request`, a SIOCGIF* ioctl, about interface `name`.
fn ask(sock: &OwnedFd, name: &str, request: libc::Ioctl) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    // SAFETY: a SIOCGIF* request fills the ifreq we pass, which lives on our stack.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req) })?;
    Ok(req)
}

/// The name of interface `ifindex`.
pub fn name_of(ifindex: u32) -> io::Result<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes, NUL included, into `buf`.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if name.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success `buf` holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// The interface called `name`, if it exists.
/// Packets the kernel dropped on their way out of interface `name` (its `tx_dropped`): for
/// wanlb's TUN device, those its queue had no room for while the workers fell behind.
pub fn tx_dropped(name: &str) -> io::Result<u64> {
    let path = format!("/sys/class/net/{name}/statistics/tx_dropped");
    std::fs::read_to_string(path)?
        .trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "tx_dropped is not a number"))
}

pub fn find(name: &str) -> io::Result<Option<Interface>> {
    Ok(list()?.into_iter().find(|i| i.name == name))
}
