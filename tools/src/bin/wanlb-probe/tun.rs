//! TUN devices: a packet written into wanlb's own, and a point-to-point line made of two.

use super::*;

/// Attaches to the existing TUN device `name` of the current network namespace: IP packets
/// without any header of their own, read without blocking.
pub(crate) fn open_tun(name: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun: {e}"))?;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("{name:?} is no interface name"));
    }
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we pass, which lives on our stack.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(format!("TUN {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(tun)
}

pub(crate) fn tun_inject(dev: &str, src: Ipv4Addr, dst: Ipv4Addr, count: u32) -> Result<()> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun: {e}"))?;
    if dev.is_empty() || dev.len() >= libc::IFNAMSIZ {
        return Err(format!("{dev:?} is no interface name"));
    }
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(dev.bytes()) {
        *d = s as libc::c_char;
    }
    // the device's own flags: a queue that joins with others would change them for all
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE)
            as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we pass, which lives on our stack.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(format!("TUN {dev}: {}", std::io::Error::last_os_error()));
    }
    let mut written = 0;
    for i in 0..count {
        let sport = 40000 + (i % 1000) as u16;
        // a virtio-net header of zeros (no offload, checksum complete), then the datagram
        let mut frame = vec![0u8; 10];
        frame.extend(Ipv4Packet::udp(src, dst, sport, 7, b"from the TUN device").build());
        (&tun)
            .write_all(&frame)
            .map_err(|e| format!("writing to {dev}: {e}"))?;
        written += 1;
    }
    println!("written {written}");
    Ok(())
}

/// Moves this thread into network namespace `name`, as `ip netns exec` would.
pub(crate) fn enter_netns(name: &str) -> Result<()> {
    if name.contains('/') {
        return Err(format!("{name:?} is no namespace name"));
    }
    let ns = std::fs::File::open(format!("/run/netns/{name}"))
        .map_err(|e| format!("namespace {name}: {e}"))?;
    // SAFETY: setns with a descriptor we own and a constant; it changes only this thread's
    // network namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(format!(
            "entering {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

pub(crate) fn tun_wire(dev: &str, peer_netns: &str, peer_dev: &str) -> Result<()> {
    use std::sync::atomic::Ordering;
    let here = open_tun(dev)?;
    // the TUN device a descriptor reaches is looked up in the namespace it was opened in
    enter_netns(peer_netns)?;
    let there = open_tun(peer_dev)?;
    let stop = stop_flag()?;
    println!("wired");
    let _ = std::io::stdout().flush();
    let mut poller = wanlb::io::Poller::new(&[here.as_raw_fd(), there.as_raw_fd()]);
    let mut buf = vec![0u8; 65536];
    // packets carried each way, and those the receiving side refused (a line drops them)
    let (mut out, mut back, mut lost) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        poller.wait(100).map_err(|e| e.to_string())?;
        for (mut from, mut to, count) in [(&here, &there, &mut out), (&there, &here, &mut back)] {
            loop {
                match from.read(&mut buf) {
                    Ok(n) => match to.write(&buf[..n]) {
                        Ok(_) => *count += 1,
                        Err(_) => lost += 1,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("reading a TUN device: {e}")),
                }
            }
        }
    }
    println!("carried {out} out {back} back, {lost} lost");
    Ok(())
}
