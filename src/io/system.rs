//! Routes, rules and sysctls wanlb changes (each journaled first: see [`super::journal`]), and
//! what it reads of the system: sysctls, the memory, the local services. Changes go through
//! `ip` with fixed arguments; its output is never parsed. wanlb's nftables table is in
//! [`super::nftables`].

use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{program}`: {source} (is it installed?)")]
    Spawn { program: String, source: io::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(
        "another wanlb is running in this network namespace (it holds {0}); stop it first (one wanlb runs per network namespace)"
    )]
    Busy(PathBuf),
    #[error(
        "{count} change(s) could not be undone (see the log above); kept in {journal}, one command a line: `wanlb cleanup` tries them again"
    )]
    UndoKept { count: usize, journal: PathBuf },
    #[error(
        "the state directory {dir} is not safe for undo journals, which hold commands wanlb runs as root: {why}; use a directory only the user running wanlb can write (--state-dir; the default /run/wanlb)"
    )]
    StateDir { dir: PathBuf, why: String },
}

impl SystemError {
    /// Whether an undo failed only because what it removes is not there any more: it went
    /// with the TUN device, or someone removed it. `ip` and `nft` then print the kernel's
    /// ENOENT, ESRCH or ENODEV (or, with extended errors, that the table "does not exist");
    /// a sysctl file of an interface that is gone is not found.
    pub fn is_already_gone(&self) -> bool {
        match self {
            SystemError::Command { stderr, .. } => [
                "No such file or directory",
                "No such process",
                "No such device",
                "Cannot find device",
                "does not exist",
            ]
            .iter()
            .any(|gone| stderr.contains(gone)),
            SystemError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SystemError {
    let what = what.into();
    move |source| SystemError::Io { what, source }
}

/// Runs `program args...`, feeding `stdin` if given.
pub fn run(program: &str, args: &[String], stdin: Option<&str>) -> Result<(), SystemError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SystemError::Spawn {
            program: program.into(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(io_err(format!("writing to `{command}`")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err(format!("waiting for `{command}`")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SystemError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The words of a command line with fixed arguments, none with a space in it.
pub fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The file of sysctl `key`, written as sysctl(8) takes it: with dots between the parts
/// (`net.ipv4.ip_forward`), or, when a part holds a dot (an interface named `wan.0`), with
/// slashes (`net/ipv4/conf/wan.0/rp_filter`, see [`interface_sysctl`]).
pub fn sysctl_path(key: &str) -> PathBuf {
    if key.contains('/') {
        Path::new("/proc/sys").join(key)
    } else {
        Path::new("/proc/sys").join(key.replace('.', "/"))
    }
}

/// The key of sysctl `name` of interface `dev` for IPv4 (`net.ipv4.conf.DEV.NAME`), with
/// slashes, which an interface name with a dot needs.
pub fn interface_sysctl(dev: &str, name: &str) -> String {
    format!("net/ipv4/conf/{dev}/{name}")
}

pub fn read_sysctl(key: &str) -> Result<String, SystemError> {
    fs::read_to_string(sysctl_path(key))
        .map(|s| s.trim().to_string())
        .map_err(io_err(format!("reading sysctl {key}")))
}

/// The machine's memory in bytes (MemTotal in /proc/meminfo), which sizes the flow table
/// unless it is given.
pub fn total_memory() -> Result<u64, SystemError> {
    let meminfo = fs::read_to_string("/proc/meminfo").map_err(io_err("reading /proc/meminfo"))?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| {
            io_err("reading /proc/meminfo")(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no MemTotal line in kB",
            ))
        })
}

/// The link-local IPv6 address of interface `ifindex` (not tentative, not failed duplicate
/// address detection), from /proc/net/if_inet6.
pub fn link_local6(ifindex: u32) -> Option<std::net::Ipv6Addr> {
    link_local6_in(&fs::read_to_string("/proc/net/if_inet6").ok()?, ifindex)
}

/// [`link_local6`] from the text of /proc/net/if_inet6: per line the address (32 hex
/// digits), the interface index, the prefix length, the scope and the flags (hex), the name.
fn link_local6_in(text: &str, ifindex: u32) -> Option<std::net::Ipv6Addr> {
    const SCOPE_LINK: u32 = 0x20;
    const TENTATIVE_OR_FAILED: u32 = 0x40 | 0x08;
    text.lines().find_map(|line| {
        let w: Vec<&str> = line.split_whitespace().collect();
        let hex = |i: usize| u32::from_str_radix(w.get(i)?, 16).ok();
        let fine =
            hex(1)? == ifindex && hex(3)? == SCOPE_LINK && hex(4)? & TENTATIVE_OR_FAILED == 0;
        let addr = u128::from_str_radix(w.first().filter(|a| a.len() == 32)?, 16).ok()?;
        fine.then(|| std::net::Ipv6Addr::from(addr))
    })
}

/// The names under /proc/sys/net/ipv6/conf: every interface with IPv6, `all` and `default`.
pub fn ipv6_conf_names() -> Result<Vec<String>, SystemError> {
    let dir = "/proc/sys/net/ipv6/conf";
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(format!("reading {dir}")))? {
        let entry = entry.map_err(io_err(format!("reading {dir}")))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

pub fn write_sysctl(key: &str, value: &str) -> Result<(), SystemError> {
    fs::write(sysctl_path(key), value).map_err(io_err(format!("setting sysctl {key}={value}")))
}

/// A TCP listener or bound UDP socket of this host, on one of the addresses asked about or on
/// every address (`addr` unspecified).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalService {
    /// `tcp` or `udp`.
    pub proto: String,
    pub port: u16,
    pub addr: Ipv4Addr,
}

/// TCP listeners and bound UDP sockets on `addrs` or the wildcard address, from
/// /proc/net/{tcp,udp}: the gateway's own services, which NAT must never take (CVE-2021-3773)
/// and a forward must not cut off.
pub fn local_services(addrs: &[Ipv4Addr]) -> Result<Vec<LocalService>, SystemError> {
    let mut out = Vec::new();
    for (file, proto) in [
        ("/proc/net/tcp", "tcp"),
        ("/proc/net/udp", "udp"),
        ("/proc/net/tcp6", "tcp"),
        ("/proc/net/udp6", "udp"),
    ] {
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            // a kernel without IPv6 has no tcp6/udp6
            Err(e) if e.kind() == io::ErrorKind::NotFound && file.ends_with('6') => continue,
            Err(e) => return Err(io_err(format!("reading {file}"))(e)),
        };
        out.extend(services(&text, proto, addrs));
    }
    Ok(out)
}

/// The listeners (TCP) or bound sockets (UDP) in one /proc/net/{tcp,udp}[6] listing on
/// `addrs`, on the wildcard address, or (IPv6) on `::` or an IPv4-mapped `addrs`.
fn services(text: &str, proto: &str, addrs: &[Ipv4Addr]) -> Vec<LocalService> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (f.get(1), f.get(3)) else {
            continue;
        };
        // TCP: only listeners (0A); UDP: every bound socket (07 = unconnected)
        if proto == "tcp" && *state != "0A" {
            continue;
        }
        let Some((a, p)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(p, 16) else {
            continue;
        };
        // the kernel prints each network-order 32-bit word as a native-endian integer;
        // IPv6: all zero is `::`, and ::ffff:a.b.c.d has 0000ffff as its third word
        let word = |hex: &str| u32::from_str_radix(hex, 16).map(u32::to_ne_bytes);
        let v4 = match a.len() {
            8 => word(a).ok(),
            32 if a.bytes().all(|b| b == b'0') => Some([0; 4]),
            32 if a[..16].bytes().all(|b| b == b'0')
                && word(&a[16..24]).is_ok_and(|w| w == [0, 0, 0xff, 0xff]) =>
            {
                word(&a[24..]).ok()
            }
            _ => None,
        };
        if let Some(v4) = v4.map(Ipv4Addr::from)
            && (v4.is_unspecified() || addrs.contains(&v4))
        {
            out.push(LocalService {
                proto: proto.to_string(),
                port,
                addr: v4,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_local_address_is_the_settled_one_of_link_scope_on_the_interface() {
        let text = "\
20010002000000010000000000000001 03 40 00 80     eth1
fe800000000000000000000000000007 03 40 20 c0     eth1
fe8000000000000000000000000000aa 04 40 20 80     eth2
fe800000000000000000000000000002 03 40 20 80     eth1
";
        // the global one is not link-local; the first link-local one is tentative (0x40)
        assert_eq!(link_local6_in(text, 3), Some("fe80::2".parse().unwrap()));
        assert_eq!(link_local6_in(text, 4), Some("fe80::aa".parse().unwrap()));
        assert_eq!(link_local6_in(text, 5), None);
        assert_eq!(
            link_local6_in("fe80 03 40 20 80 eth1\n", 3),
            None,
            "cut short"
        );
    }

    #[test]
    fn services_on_the_uplinks_the_wildcard_and_ipv6_wildcard_are_found() {
        let me = Ipv4Addr::new(198, 18, 1, 1);
        // 198.18.1.1 (C6 12 01 01) read as a little-endian word and printed: 010112C6
        let tcp = "  sl  local_address rem_address   st\n\
            0: 010112C6:0050 00000000:0000 0A\n\
            1: 00000000:1F90 00000000:0000 0A\n\
            2: 010112C6:C350 0A000002:01BB 01\n\
            3: 0100007F:0035 00000000:0000 0A\n";
        let found: Vec<(Ipv4Addr, u16)> = services(tcp, "tcp", &[me])
            .iter()
            .map(|s| (s.addr, s.port))
            .collect();
        assert_eq!(
            found,
            [(me, 80), (Ipv4Addr::UNSPECIFIED, 8080)],
            "not the connection, not loopback"
        );
        // IPv6: `::` and ::ffff:198.18.1.1, not ::1
        let tcp6 = "  sl  local_address                         remote_address st\n\
            0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A\n\
            1: 0000000000000000FFFF0000010112C6:0BB9 00000000000000000000000000000000:0000 0A\n\
            2: 00000000000000000000000001000000:0BBA 00000000000000000000000000000000:0000 0A\n";
        let found: Vec<(Ipv4Addr, u16)> = services(tcp6, "tcp", &[me])
            .iter()
            .map(|s| (s.addr, s.port))
            .collect();
        assert_eq!(found, [(Ipv4Addr::UNSPECIFIED, 3000), (me, 3001)]);
    }
}
