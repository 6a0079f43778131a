//! Routes, rules, sysctls and the nftables table wanlb adds, and undoing them.
//!
//! Every change is recorded in a journal file *before* it is made, as the command that undoes
//! it. A clean exit replays the journal backwards and deletes it; a start after a crash finds
//! it and does the same first. Changes go through `ip` and `nft -j` with fixed arguments; their
//! output is never parsed.

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::MetadataExt;
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
        "another wanlb is running with this TUN name in this network namespace (it holds {0}); stop it first or choose another --tun"
    )]
    Busy(PathBuf),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SystemError {
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

pub fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Packets the forward rule of wanlb's table `table` dropped from the uplinks so far, read
/// from `nft -j` (JSON, not the text meant for people).
pub fn uplink_forward_drops(table: &str) -> Result<u64, SystemError> {
    let command = format!("nft -j list chain ip {table} forward");
    let out = Command::new("nft")
        .args(["-j", "list", "chain", "ip", table, "forward"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SystemError::Spawn {
            program: "nft".into(),
            source,
        })?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| SystemError::Command {
            command: command.clone(),
            stderr: format!("{e}: {}", String::from_utf8_lossy(&out.stderr)),
        })?;
    let packets = parsed["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["rule"]["comment"] == "from an uplink")
        .flat_map(|item| item["rule"]["expr"].as_array().cloned().unwrap_or_default())
        .find_map(|expr| expr["counter"]["packets"].as_u64());
    packets.ok_or(SystemError::Command {
        command,
        stderr: "no counter on the uplink forward rule".into(),
    })
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

pub fn write_sysctl(key: &str, value: &str) -> Result<(), SystemError> {
    fs::write(sysctl_path(key), value).map_err(io_err(format!("setting sysctl {key}={value}")))
}

/// One recorded change, as the line that undoes it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Undo {
    /// `ip ARGS...`
    Ip(Vec<String>),
    /// `nft ARGS...`
    Nft(Vec<String>),
    /// restore a sysctl to its old value
    Sysctl(String, String),
}

impl Undo {
    fn to_line(&self) -> String {
        match self {
            Undo::Ip(a) => format!("ip {}", a.join(" ")),
            Undo::Nft(a) => format!("nft {}", a.join(" ")),
            Undo::Sysctl(k, v) => format!("sysctl {k} {v}"),
        }
    }

    fn from_line(line: &str) -> Option<Undo> {
        let mut w = words(line);
        if w.is_empty() {
            return None;
        }
        let kind = w.remove(0);
        match kind.as_str() {
            "ip" => Some(Undo::Ip(w)),
            "nft" => Some(Undo::Nft(w)),
            "sysctl" if w.len() == 2 => Some(Undo::Sysctl(w[0].clone(), w[1].clone())),
            _ => None,
        }
    }

    fn apply(&self) -> Result<(), SystemError> {
        match self {
            Undo::Ip(a) => run("ip", a, None),
            Undo::Nft(a) => run("nft", a, None),
            Undo::Sysctl(k, v) => write_sysctl(k, v),
        }
    }
}

/// The journal of changes made to this network namespace.
#[derive(Debug)]
pub struct Plumbing {
    journal: PathBuf,
    undo: Vec<Undo>,
    /// Held while this process runs (the kernel drops it when the process dies, however it
    /// dies): a second wanlb for the same TUN and namespace must not "clean up" a live one.
    _lock: fs::File,
}

/// A change in the journal, to undo before teardown ([`Plumbing::undo_now`]).
pub struct Recorded(Undo);

/// `dir/NAME-NETNS.undo`: one journal per TUN name and network namespace, so gateways in
/// different namespaces (the test beds) never share one.
pub fn journal_path(dir: &Path, tun: &str) -> Result<PathBuf, SystemError> {
    let ns = fs::metadata("/proc/self/ns/net")
        .map_err(io_err("reading /proc/self/ns/net"))?
        .ino();
    Ok(dir.join(format!("{tun}-{ns}.undo")))
}

impl Plumbing {
    /// Undoes what a previous run left behind (after a crash or SIGKILL), then starts a new
    /// journal. Returns the plumbing and how many leftover changes were undone.
    pub fn start(journal: PathBuf) -> Result<(Plumbing, usize), SystemError> {
        if let Some(dir) = journal.parent() {
            fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let lock_path = journal.with_extension("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        if !super::fd::try_lock_exclusive(&lock)
            .map_err(io_err(format!("locking {}", lock_path.display())))?
        {
            return Err(SystemError::Busy(lock_path));
        }
        let mut leftovers = 0;
        if let Ok(text) = fs::read_to_string(&journal) {
            let undo: Vec<Undo> = text.lines().filter_map(Undo::from_line).collect();
            leftovers = undo.len();
            for u in undo.iter().rev() {
                if let Err(e) = u.apply() {
                    // Things that went away with the TUN device are already gone.
                    tracing::debug!(undo = %u.to_line(), error = %e, "leftover already gone");
                }
            }
            fs::remove_file(&journal).map_err(io_err(format!("removing {}", journal.display())))?;
        }
        fs::write(&journal, "").map_err(io_err(format!("creating {}", journal.display())))?;
        Ok((
            Plumbing {
                journal,
                undo: Vec::new(),
                _lock: lock,
            },
            leftovers,
        ))
    }

    fn record(&mut self, undo: Undo) -> Result<(), SystemError> {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(&self.journal)
            .map_err(io_err(format!("opening {}", self.journal.display())))?;
        writeln!(f, "{}", undo.to_line())
            .and_then(|_| f.sync_data())
            .map_err(io_err("writing the undo journal"))?;
        self.undo.push(undo);
        Ok(())
    }

    /// `ip ARGS` now, `ip UNDO_ARGS` at teardown.
    pub fn ip(&mut self, args: &str, undo: &str) -> Result<(), SystemError> {
        self.record(Undo::Ip(words(undo)))?;
        run("ip", &words(args), None)
    }

    /// Records `undo`, an `ip` command, for a change the caller makes itself (maybe again and
    /// again, all undone by that one command): nothing runs now.
    pub fn journal_ip(&mut self, undo: &str) -> Result<Recorded, SystemError> {
        let undo = Undo::Ip(words(undo));
        self.record(undo.clone())?;
        Ok(Recorded(undo))
    }

    /// Undoes a change recorded with [`Plumbing::journal_ip`] now, then takes it out of the
    /// journal: a crash in between runs it again at the next start, so it must be an undo
    /// that can run twice.
    pub fn undo_now(&mut self, recorded: &Recorded) -> Result<(), SystemError> {
        recorded.0.apply()?;
        if let Some(at) = self.undo.iter().rposition(|u| *u == recorded.0) {
            self.undo.remove(at);
        }
        let text: String = self.undo.iter().map(|u| u.to_line() + "\n").collect();
        let new = self.journal.with_extension("undo.new");
        fs::write(&new, text)
            .and_then(|()| fs::File::open(&new)?.sync_all())
            .and_then(|()| fs::rename(&new, &self.journal))
            .map_err(io_err(format!("rewriting {}", self.journal.display())))
    }

    /// Sets a sysctl, restoring the old value at teardown. Nothing is recorded when the value
    /// is already right.
    pub fn sysctl(&mut self, key: &str, value: &str) -> Result<(), SystemError> {
        let old = read_sysctl(key)?;
        if old == value {
            return Ok(());
        }
        self.record(Undo::Sysctl(key.into(), old))?;
        write_sysctl(key, value)
    }

    /// Loads an nftables JSON batch that creates table `ip NAME`, deleting it at teardown.
    pub fn nft_table(&mut self, name: &str, batch_json: &str) -> Result<(), SystemError> {
        self.record(Undo::Nft(words(&format!("delete table ip {name}"))))?;
        run("nft", &words("-j -f -"), Some(batch_json))
    }

    /// Undoes everything, newest first, and removes the journal. Keeps going past failures and
    /// reports the first.
    pub fn teardown(mut self) -> Result<(), SystemError> {
        let mut first_error = None;
        while let Some(u) = self.undo.pop() {
            if let Err(e) = u.apply() {
                tracing::warn!(undo = %u.to_line(), error = %e, "undo failed");
                first_error.get_or_insert(e);
            }
        }
        fs::remove_file(&self.journal)
            .map_err(io_err(format!("removing {}", self.journal.display())))?;
        // Leave nothing behind: the lock file (still held until we return) and, if no other
        // gateway uses it, the state directory.
        let _ = fs::remove_file(self.journal.with_extension("lock"));
        if let Some(dir) = self.journal.parent() {
            let _ = fs::remove_dir(dir);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Replaces wanlb's table `name`, made with [`Plumbing::nft_table`] (whose undo still
/// removes it), by `batch_json`, in one transaction: no packet sees it half made. Its
/// counters start again from 0.
pub fn replace_nft_table(name: &str, batch_json: &str) -> Result<(), SystemError> {
    let mut batch: serde_json::Value = serde_json::from_str(batch_json)
        .map_err(|e| io_err("wanlb's own nftables batch".to_string())(io::Error::other(e)))?;
    if let Some(items) = batch["nftables"].as_array_mut() {
        items.insert(
            0,
            serde_json::json!({"delete": {"table": {"family": "ip", "name": name}}}),
        );
    }
    run("nft", &words("-j -f -"), Some(&batch.to_string()))
}

/// The mark wanlb's nftables table puts on what wanlb writes to its TUN device, so that the
/// reverse-path check of those packets takes the route back through the TUN device (an ip
/// rule for the mark; `src_valid_mark` on the device).
pub const TUN_MARK: u32 = 0x7100;

/// A port forward as wanlb's table sees it: `proto` (`tcp` or `udp`) `port` of the address of
/// uplink `uplink` (an index into the uplinks), whose connections go to `to` in the LAN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableForward {
    pub uplink: usize,
    pub proto: &'static str,
    pub port: u16,
    pub to: SocketAddrV4,
}

/// nftables JSON for wanlb's table:
/// - prerouting, before conntrack: what arrives on an uplink for a forwarded port, or for
///   wanlb's NAT ports, is dropped (wanlb reads those frames from its packet sockets, and the
///   kernel must not answer them with a reset or a port unreachable), for NAT ports unless a
///   socket of this host has the port (its own resolver's answers, a service started later);
///   what arrives from the TUN device is marked (see [`TUN_MARK`]); wanlb's own traffic, from
///   the LAN to anywhere the kernel does not route itself (`kernel_routed`: the subnets of
///   this host's interfaces) and from the TUN device, stays out of conntrack, which wanlb does
///   the work of;
/// - hairpinning (RFC 4787 REQ-9), with `forwards` only: a LAN host's connection to a
///   forwarded port of an uplink's address, which the kernel would deliver to itself, is sent
///   on to the forward's LAN host (DNAT) from that uplink's address (SNAT), so the server
///   sees the address the internet sees and its answers come back through the gateway to be
///   translated back. The kernel routes and tracks these: they are LAN to LAN, and the uplink
///   addresses are among `kernel_routed`;
/// - forward: what an uplink sends to be forwarded is dropped, and counted, unless it answers
///   a connection the LAN opened through the kernel on an uplink (to the modem's own subnet):
///   the front door. Replies to wanlb's flows, and connections to forwarded ports, reach the
///   LAN through the TUN device or the fast path, never forwarded from an uplink.
pub fn guard_table_json(
    table: &str,
    tun: &str,
    lans: &[String],
    kernel_routed: &[(Ipv4Addr, u8)],
    uplinks: &[(String, Ipv4Addr)],
    ports: (u16, u16),
    forwards: &[TableForward],
) -> String {
    use serde_json::{Value, json};
    let devs: Vec<&str> = uplinks.iter().map(|(d, _)| d.as_str()).collect();
    let lan_names: Vec<&str> = lans.iter().map(String::as_str).collect();
    let iifname = |names: &[&str]| json!({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": {"set": names}}});
    let rule = |chain: &str, expr: Value| json!({"add": {"rule": {"family": "ip", "table": table, "chain": chain, "expr": expr}}});
    let typed_chain = |kind: &str, name: &str, hook: &str, prio: i32| {
        json!({"add": {"chain": {"family": "ip", "table": table, "name": name, "type": kind,
            "hook": hook, "prio": prio, "policy": "accept"}}})
    };
    let chain = |name: &str, hook: &str, prio: i32| typed_chain("filter", name, hook, prio);
    let daddr = |addr: &Ipv4Addr| {
        json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
            "right": addr.to_string()}})
    };
    let l4proto = |proto: Value| json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": proto}});
    let dport = |port: Value| {
        json!({"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},
            "right": port}})
    };
    let routed: Vec<Value> = kernel_routed
        .iter()
        .map(|(addr, len)| json!({"prefix": {"addr": addr.to_string(), "len": len}}))
        .collect();
    let mut items = vec![
        json!({"add": {"table": {"family": "ip", "name": table}}}),
        json!({"add": {"set": {"family": "ip", "table": table, "name": "kernel_routed",
            "type": "ipv4_addr", "flags": ["interval"], "elem": routed}}}),
        chain("prerouting", "prerouting", -300),
    ];
    for (i, (dev, addr)) in uplinks.iter().enumerate() {
        // a forwarded port is the LAN host's, whatever socket the gateway has on it
        for proto in ["tcp", "udp"] {
            let forwarded: Vec<u16> = forwards
                .iter()
                .filter(|f| f.uplink == i && f.proto == proto)
                .map(|f| f.port)
                .collect();
            if !forwarded.is_empty() {
                items.push(rule(
                    "prerouting",
                    json!([iifname(&[dev.as_str()]), daddr(addr), l4proto(json!(proto)),
                        dport(json!({"set": forwarded})), {"drop": null}]),
                ));
            }
        }
        let nat_port = vec![
            iifname(&[dev.as_str()]),
            daddr(addr),
            l4proto(json!({"set": ["tcp", "udp"]})),
            dport(json!({"range": [ports.0, ports.1]})),
        ];
        let mut host_socket = nat_port.clone();
        host_socket.push(
            json!({"match": {"op": "==", "left": {"socket": {"key": "transparent"}}, "right": 0}}),
        );
        host_socket.push(json!({"accept": null}));
        items.push(rule("prerouting", Value::Array(host_socket)));
        let mut drop = nat_port;
        drop.push(json!({"drop": null}));
        items.push(rule("prerouting", Value::Array(drop)));
    }
    items.push(rule(
        "prerouting",
        json!([iifname(&[tun]),
            {"mangle": {"key": {"meta": {"key": "mark"}}, "value": TUN_MARK}},
            {"notrack": null}]),
    ));
    items.push(rule(
        "prerouting",
        json!([iifname(&lan_names),
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                "right": "@kernel_routed"}},
            {"notrack": null}]),
    ));
    if !forwards.is_empty() {
        items.push(typed_chain("nat", "hairpin", "prerouting", -100));
        for f in forwards {
            let (_, addr) = &uplinks[f.uplink];
            items.push(rule(
                "hairpin",
                json!([iifname(&lan_names), daddr(addr), l4proto(json!(f.proto)),
                    dport(json!(f.port)),
                    {"dnat": {"addr": f.to.ip().to_string(), "port": f.to.port()}}]),
            ));
        }
        items.push(typed_chain("nat", "hairpin_source", "postrouting", 100));
        let mut hairpinned: Vec<usize> = forwards.iter().map(|f| f.uplink).collect();
        hairpinned.sort_unstable();
        hairpinned.dedup();
        for i in hairpinned {
            let (_, addr) = &uplinks[i];
            items.push(rule(
                "hairpin_source",
                json!([iifname(&lan_names),
                    {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": {"set": lan_names}}},
                    {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                    {"match": {"op": "==", "left": {"ct": {"key": "ip daddr", "dir": "original"}},
                        "right": addr.to_string()}},
                    {"snat": {"addr": addr.to_string()}}]),
            ));
        }
    }
    items.push(chain("forward", "forward", 0));
    items.push(rule(
        "forward",
        json!([iifname(&lan_names),
            {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": {"set": devs}}},
            {"mangle": {"key": {"ct": {"key": "mark"}}, "value": TUN_MARK}}]),
    ));
    items.push(rule(
        "forward",
        json!([iifname(&devs),
            {"match": {"op": "==", "left": {"ct": {"key": "mark"}}, "right": TUN_MARK}},
            {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
            {"accept": null}]),
    ));
    let mut from_uplink = rule(
        "forward",
        json!([iifname(&devs), {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]),
    );
    from_uplink["add"]["rule"]["comment"] = json!("from an uplink");
    items.push(from_uplink);
    json!({"nftables": items}).to_string()
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

    #[test]
    fn undo_lines_round_trip() {
        for u in [
            Undo::Ip(words("rule del iif eth0 lookup 7100 priority 7101")),
            Undo::Nft(words("delete table ip wanlb_wanlb0")),
            Undo::Sysctl("net.ipv4.ip_forward".into(), "0".into()),
        ] {
            assert_eq!(Undo::from_line(&u.to_line()), Some(u));
        }
        assert_eq!(Undo::from_line("rm -rf /"), None);
    }

    #[test]
    fn guard_table_is_one_batch_with_a_rule_per_uplink() {
        let json = guard_table_json(
            "wanlb_t",
            "wanlb0",
            &["eth0".into()],
            &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
            &[
                ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
                ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
            ],
            (61000, 65535),
            &[],
        );
        assert!(
            json.starts_with(r#"{"nftables":[{"add":{"table":{"family":"ip","name":"wanlb_t"}}}"#)
        );
        // a NAT-port rule per uplink, and the forward rule for both
        assert_eq!(json.matches(r#""drop":null"#).count(), 3);
        assert!(json.contains(r#""elem":[{"prefix":{"addr":"198.18.3.0","len":24}}]"#));
        assert!(json.contains(r#""right":{"set":["eth1","eth2"]}"#));
        assert!(json.contains(r#""value":28928"#));
        assert!(json.contains(r#""right":"198.18.2.1""#));
        assert!(json.contains(r#""range":[61000,65535]"#));
        assert!(!json.contains("nat"), "no NAT chains without forwards");
    }

    #[test]
    fn forwarded_ports_are_kept_from_the_kernel_and_hairpinned() {
        let forward = |uplink, proto, port, to: &str| TableForward {
            uplink,
            proto,
            port,
            to: to.parse().unwrap(),
        };
        let json = guard_table_json(
            "wanlb_t",
            "wanlb0",
            &["eth0".into()],
            &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
            &[
                ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
                ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
            ],
            (61000, 65535),
            &[
                forward(1, "tcp", 8080, "198.18.3.10:80"),
                forward(0, "udp", 5060, "198.18.3.20:5060"),
                forward(1, "tcp", 8443, "198.18.3.10:443"),
            ],
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let rules: Vec<String> = parsed["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["add"]["rule"].as_object())
            .map(|r| format!("{} {}", r["chain"].as_str().unwrap(), r["expr"]))
            .collect();
        let has = |chain: &str, parts: &[&str]| {
            rules
                .iter()
                .any(|r| r.starts_with(chain) && parts.iter().all(|p| r.contains(p)))
        };
        // dropped on their uplink, before the NAT ports' rules let a host socket have them
        let isp2_tcp = [
            r#""right":{"set":["eth2"]}"#,
            r#""right":"198.18.2.1""#,
            r#""right":"tcp""#,
            r#""right":{"set":[8080,8443]}"#,
            r#"{"drop":null}"#,
        ];
        assert!(has("prerouting", &isp2_tcp), "{rules:#?}");
        let at = |parts: &[&str]| {
            rules
                .iter()
                .position(|r| parts.iter().all(|p| r.contains(p)))
        };
        assert!(
            at(&["eth2", "8080"]) < at(&["eth2", "socket"]),
            "{rules:#?}"
        );
        assert!(has(
            "prerouting",
            &[
                r#""right":{"set":["eth1"]}"#,
                r#""right":"udp""#,
                r#""right":{"set":[5060]}"#
            ]
        ));
        // from the LAN to a forwarded port of an uplink's address: to the LAN host...
        assert!(has(
            "hairpin ",
            &[
                r#""right":{"set":["eth0"]}"#,
                r#""right":"198.18.2.1""#,
                r#""right":8443"#,
                r#"{"dnat":{"addr":"198.18.3.10","port":443}}"#
            ]
        ));
        // ...from that uplink's address, one rule per uplink
        assert!(has(
            "hairpin_source",
            &[r#""dir":"original""#, r#"{"snat":{"addr":"198.18.2.1"}}"#]
        ));
        assert_eq!(
            rules
                .iter()
                .filter(|r| r.starts_with("hairpin_source"))
                .count(),
            2
        );
        // in NAT chains at the usual priorities (dstnat, srcnat)
        let chains: Vec<String> = parsed["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["add"]["chain"].as_object())
            .map(|c| format!("{} {} {} {}", c["name"], c["type"], c["hook"], c["prio"]))
            .collect();
        assert!(chains.contains(&r#""hairpin" "nat" "prerouting" -100"#.to_string()));
        assert!(chains.contains(&r#""hairpin_source" "nat" "postrouting" 100"#.to_string()));
    }
}
