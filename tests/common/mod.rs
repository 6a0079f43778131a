//! Network-namespace test beds for the integration tests: the example network from
//! scripts/testbed.sh under a per-test prefix, removed when the guard drops (even on panic).
//! All addresses are in 198.18.0.0/15 inside namespaces the test made.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use wanlb_testkit::EXAMPLE_FLAGS;

pub const WANLB: &str = env!("CARGO_BIN_EXE_wanlb");
pub const UPLINK_1: &str = "198.18.1.1";
pub const UPLINK_2: &str = "198.18.2.1";
/// The gateway's end of the point-to-point line (testbed.sh p2p).
pub const UPLINK_3: &str = "198.18.5.1";
pub const PINNED: &str = "198.19.200.91";

/// The flags of the example network, as owned strings.
pub fn example_args() -> Vec<String> {
    EXAMPLE_FLAGS.iter().map(|s| s.to_string()).collect()
}

/// The test and demo peer, wanlb-probe (package wanlb-tools), from the target directory this
/// test was built in: the test runs as target/<profile>/deps/<test>, the probe is
/// target/<profile>/wanlb-probe. Cargo builds it only for its own package's tests, so
/// scripts/test.sh builds it first.
pub fn probe() -> &'static str {
    static PROBE: OnceLock<String> = OnceLock::new();
    PROBE.get_or_init(|| {
        let test = std::env::current_exe().expect("the test's own path");
        let profile_dir = test
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps");
        let probe = profile_dir.join("wanlb-probe");
        assert!(
            probe.is_file(),
            "{} is missing: build it with `cargo build -p wanlb-tools` (add --release for \
             release tests), or run scripts/test.sh, which does",
            probe.display()
        );
        probe.into_os_string().into_string().expect("a UTF-8 path")
    })
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed.sh")
}

/// Where the `web` namespace reaches the gateway (testbed.sh web).
pub const GW_WEB: &str = "198.18.4.1";

/// Panics, with a message saying what is missing, unless this can run netns tests.
pub fn require_root_and_tools() {
    let uid = Command::new("id").arg("-u").output().expect("running id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "netns tests need root (CI runs them as root)"
    );
    for tool in ["ip", "nft", "ping", "sysctl", "kill"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .expect("sh");
        assert!(
            found.status.success(),
            "netns tests need `{tool}`: run scripts/test.sh, which installs it"
        );
    }
}

pub struct Testbed {
    pub prefix: String,
    /// The LAN host's next source port for [`Testbed::spread`]: every flow of a test gets one
    /// of its own, below the ephemeral ports.
    next_port: AtomicU32,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Testbed {
    pub fn up() -> Testbed {
        require_root_and_tools();
        let prefix = format!(
            "wt{}n{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(script())
            .args(["up", &prefix])
            .output()
            .expect("running testbed.sh");
        let tb = Testbed {
            prefix,
            next_port: AtomicU32::new(20000),
        };
        assert!(
            out.status.success(),
            "testbed up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tb
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    /// Adds the namespace `web` (testbed.sh web): a host on gw's eth3 ([`GW_WEB`]) with no
    /// route beyond that subnet, for a browser. The guard removes it with the rest.
    pub fn add_web(&self) {
        let out = Command::new(script())
            .args(["web", &self.prefix])
            .output()
            .expect("running testbed.sh");
        assert!(
            out.status.success(),
            "testbed web failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds the namespace `link2` (testbed.sh link2): a host, 198.18.6.10, on a second LAN
    /// link (gw's eth4, 198.18.6.100/24) with a network of its own. The guard removes it with
    /// the rest.
    pub fn add_second_link(&self) {
        let out = Command::new(script())
            .args(["link2", &self.prefix])
            .output()
            .expect("running testbed.sh");
        assert!(
            out.status.success(),
            "testbed link2 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds the namespace `lan2` (testbed.sh lan2): a second host, 198.18.3.11, on the LAN's
    /// segment with a MAC of its own. The guard removes it with the rest.
    pub fn add_lan2(&self) {
        let out = Command::new(script())
            .args(["lan2", &self.prefix])
            .output()
            .expect("running testbed.sh");
        assert!(
            out.status.success(),
            "testbed lan2 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds the point-to-point line to router `r3` (testbed.sh p2p: TUN device tun3 on gw,
    /// no MAC, no ARP) and joins its two ends: returns the process that does, which the guard
    /// stops with the rest. Stopping it earlier takes the line's carrier away.
    pub fn add_point_to_point(&self) -> Process {
        let out = Command::new(script())
            .args(["p2p", &self.prefix])
            .output()
            .expect("running testbed.sh");
        assert!(
            out.status.success(),
            "testbed p2p failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wire_point_to_point()
    }

    /// Deletes gw's end of the point-to-point line, tun3, and makes it anew with the same
    /// name and address (testbed.sh redial), as pppd's redial does: a new interface index.
    /// Stop the process joining the line's ends first, and join them again after
    /// ([`Testbed::wire_point_to_point`]).
    pub fn redial_point_to_point(&self) {
        self.testbed("redial");
    }

    /// Deletes the link between gw's eth1 (isp1) and r1 and makes it anew with the same names
    /// and addresses (testbed.sh replug): new interface indexes and MACs at both ends.
    pub fn replug_uplink_1(&self) {
        self.testbed("replug");
    }

    /// [`Testbed::up`] with IPv6 on both lines (`testbed.sh ipv6lines`): isp1 delegates a
    /// prefix, isp2 gives the gateway an address, the LAN is fd00:3::/64.
    pub fn up_ipv6() -> Testbed {
        let tb = Testbed::up();
        tb.testbed("ipv6lines");
        tb
    }

    /// Runs `testbed.sh WHAT PREFIX`, which must succeed.
    pub fn testbed(&self, what: &str) {
        let out = Command::new(script())
            .args([what, &self.prefix])
            .output()
            .expect("running testbed.sh");
        assert!(
            out.status.success(),
            "testbed {what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Joins the two ends of the point-to-point line (again): its carrier comes (back).
    pub fn wire_point_to_point(&self) -> Process {
        let r3 = self.ns("r3");
        let wire = Process::start(self.spawn(
            "gw",
            &[
                probe(),
                "tun-wire",
                "--dev",
                "tun3",
                "--peer-netns",
                &r3,
                "--peer-dev",
                "tun0",
            ],
        ));
        wire.wait_for("wired", "tun-wire");
        wire
    }

    /// Loads `url` in Debian's headless Chromium in the `web` namespace (scripts/browse.sh,
    /// which refuses to run it anywhere it could reach beyond the test network) with
    /// `args`, and returns what it printed.
    pub fn browse(&self, url: &str, args: &[&str]) -> String {
        let browse = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/browse.sh");
        let out = Command::new(browse)
            .arg(self.ns("web"))
            .arg(url)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running browse.sh");
        assert!(
            out.status.success(),
            "the browser failed (scripts/test.sh installs chromium): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command in namespace `name` and returns its output.
    pub fn run(&self, name: &str, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(name)])
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .expect("running ip netns exec")
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, name: &str, cmd: &[&str]) -> String {
        let out = self.run(name, cmd);
        assert!(
            out.status.success(),
            "{cmd:?} in {name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a process in namespace `name`.
    pub fn spawn(&self, name: &str, cmd: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(name)])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning in namespace")
    }

    /// The probe server in the simulated internet: UDP on 198.19.0.0/24 and the pinned
    /// address, TCP echo on port 9000 of every internet address.
    pub fn start_internet(&self) -> Process {
        let p = Process::start(self.spawn(
            "inet",
            &[
                probe(),
                "serve",
                "--udp",
                "198.19.0.0/24",
                "--udp",
                "198.19.200.91/32",
                "--tcp",
                "0.0.0.0:9000",
            ],
        ));
        p.wait_for("listening", "probe server");
        p
    }

    /// Pings `dst` `count` times, `interval` seconds apart, from namespace `name`, and asserts
    /// every echo was answered.
    pub fn assert_pings(&self, name: &str, dst: &str, count: u32, interval: &str) {
        let count = count.to_string();
        let out = self.ok(
            name,
            &["ping", "-c", &count, "-i", interval, "-W", "2", dst],
        );
        assert!(out.contains(&format!("{count} received")), "{out}");
    }

    /// Sends `bytes` pseudo-random bytes from namespace `name` through the TCP echo at `dst`
    /// and asserts every byte came back.
    pub fn assert_tcp_echo(&self, name: &str, dst: &str, bytes: u64) {
        let n = bytes.to_string();
        let out = self.ok(name, &[probe(), "tcp-check", "--dst", dst, "--bytes", &n]);
        assert!(
            out.starts_with(&format!("ok {bytes} bytes echoed intact")),
            "{out}"
        );
    }

    /// Starts checking the checksums of every IPv4 frame arriving on `dev` in `name`.
    pub fn watch_checksums(&self, name: &str, dev: &str) -> Process {
        let p = Process::start(self.spawn(name, &[probe(), "capture-verify", "--dev", dev]));
        p.wait_for("listening", "checksum watcher");
        p
    }

    /// What a wanlb on gw serves at /metrics (on its default --listen).
    pub fn metrics(&self) -> String {
        self.ok(
            "gw",
            &[
                probe(),
                "http-get",
                "--addr",
                "127.0.0.1:9911",
                "--path",
                "/metrics",
            ],
        )
    }

    /// Where wanlb keeps its counts of the uplinks' bytes in this test bed (beside its state
    /// directory, which its stop or `wanlb cleanup` removes); removed with the test bed.
    pub fn data_dir(&self) -> String {
        format!("/tmp/wanlb-test-{}-data", self.prefix)
    }

    /// Starts wanlb on gw with `args` and waits until it reports ready. Its counts of the
    /// uplinks' bytes are kept in [`Testbed::data_dir`] unless `args` say where.
    pub fn start_wanlb(&self, args: &[String]) -> Process {
        let state = format!("/tmp/wanlb-test-{}", self.prefix);
        let data = self.data_dir();
        let mut cmd: Vec<&str> = vec![WANLB, "run", "--state-dir", &state];
        if !args.iter().any(|a| a == "--data-dir") {
            cmd.extend(["--data-dir", &data]);
        }
        cmd.extend(args.iter().map(String::as_str));
        let p = Process::start(self.spawn("gw", &cmd));
        p.wait_for(" ready ", "wanlb");
        p
    }

    /// What the gateway namespace looks like: rules, routes, nftables, links, forwarding.
    pub fn gateway_state(&self) -> String {
        let mut s = String::new();
        for cmd in [
            &["ip", "-4", "rule"][..],
            &["ip", "-6", "rule"],
            // IPv6 link-local routes come and go with address autoconfiguration, untouched by
            // wanlb; compare the IPv4 routes
            &["ip", "-4", "route", "show", "table", "all"],
            &["nft", "list", "ruleset"],
            &["ip", "-o", "link"],
            &["sysctl", "net.ipv4.ip_forward"],
        ] {
            s += &format!("$ {}\n{}", cmd.join(" "), self.ok("gw", cmd));
        }
        s
    }

    /// Asserts the gateway namespace is as `before`, showing the lines that differ.
    pub fn assert_gateway_state(&self, before: &str, context: &str) {
        let now = self.gateway_state();
        if now != before {
            let gone: Vec<_> = before
                .lines()
                .filter(|l| !now.lines().any(|n| n == *l))
                .collect();
            let new: Vec<_> = now
                .lines()
                .filter(|l| !before.lines().any(|b| b == *l))
                .collect();
            panic!(
                "gateway namespace changed.\nmissing now: {gone:#?}\nnew now: {new:#?}\n{context}"
            );
        }
    }

    /// Runs `wanlb-probe spread` from the LAN host and returns (destination, seen address)
    /// for every flow.
    pub fn spread(&self, dst: &str, count: u32, flows: u32) -> Vec<(String, String)> {
        // fresh source ports: a port reused while an earlier flow's mapping lives would follow
        // that mapping's uplink (endpoint affinity) instead of the weights
        let first = self.next_port.fetch_add(count * flows, Ordering::Relaxed);
        assert!(
            first + count * flows < 32768,
            "source ports run into the ephemeral range"
        );
        let out = self.ok(
            "lan",
            &[
                probe(),
                "spread",
                "--dst",
                dst,
                "--count",
                &count.to_string(),
                "--flows",
                &flows.to_string(),
                "--first-port",
                &first.to_string(),
            ],
        );
        out.lines()
            .filter(|l| !l.starts_with("via "))
            .map(|l| {
                let (d, seen) = l.split_once(' ').expect("DST SEEN");
                let (ip, _port) = seen.split_once(':').expect("IP:PORT");
                (d.to_string(), ip.to_string())
            })
            .collect()
    }
}

impl Testbed {
    /// Adds IPv6 to the LAN, the gateway and isp1's router (testbed.sh ipv6): the LAN host
    /// [`LAN6`], the gateway [`GW_LAN6`] and [`GW_UPLINK6`], the router [`R1_6`], and IPv6
    /// forwarding on in the gateway.
    pub fn add_ipv6(&self) {
        let out = Command::new(script())
            .args(["ipv6", &self.prefix])
            .output()
            .expect("running testbed.sh");
        assert!(
            out.status.success(),
            "testbed ipv6 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Counts, in namespace `name`, the packets that arrive matching each of `selectors`
    /// (nft syntax: `ip saddr 198.18.3.0/24`, `ip6 saddr fd00:3::/64`), from now on, before
    /// anything else there sees them; [`Testbed::seen`] reads the counts.
    pub fn watch(&self, name: &str, selectors: &[&str]) {
        let _ = self.run(name, &["nft", "delete", "table", "inet", "watch"]);
        self.ok(name, &["nft", "add", "table", "inet", "watch"]);
        self.ok(
            name,
            &[
                "nft",
                "add chain inet watch pre { type filter hook prerouting priority -500; }",
            ],
        );
        for s in selectors {
            let rule = format!("add rule inet watch pre {s} counter comment \"{s}\"");
            self.ok(name, &["nft", &rule]);
        }
    }

    /// How many packets matching `selector` arrived in namespace `name` since
    /// [`Testbed::watch`] began counting them.
    pub fn seen(&self, name: &str, selector: &str) -> u64 {
        let rules = self.ok(
            name,
            &["nft", "-j", "list", "chain", "inet", "watch", "pre"],
        );
        let json: serde_json::Value = serde_json::from_str(&rules).expect("nft JSON");
        json["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|item| item.get("rule"))
            .filter(|rule| rule["comment"] == selector)
            .filter_map(|rule| {
                rule["expr"]
                    .as_array()?
                    .iter()
                    .find_map(|e| e.get("counter"))
            })
            .map(|c| c["packets"].as_u64().unwrap())
            .sum()
    }
}

/// The LAN host's IPv6 address, and the gateway's on the LAN and on isp1, and isp1's router's
/// (after [`Testbed::add_ipv6`]).
pub const LAN6: &str = "fd00:3::10";
pub const GW_LAN6: &str = "fd00:3::100";
pub const GW_UPLINK6: &str = "fd00:1::1";
pub const R1_6: &str = "fd00:1::254";

/// The health targets the failover tests probe: addresses of the simulated internet.
pub const TARGETS: [&str; 2] = ["198.19.255.1", "198.19.255.2"];
/// The IPv6 health target in the simulated internet (`testbed.sh ipv6lines`).
pub const TARGET6: &str = "2001:2:ff:ffff::1";

/// `example_args()` with the health targets above.
pub fn health_args() -> Vec<String> {
    let mut args = example_args();
    for t in TARGETS {
        args.extend(["--health-target".into(), t.into()]);
    }
    args
}

impl Testbed {
    /// Cuts `router`'s line beyond the gateway: it still answers ARP, but forwards nothing
    /// (`policy drop` in its forward hook), as a modem whose DSL line died.
    pub fn cut_beyond(&self, router: &str) {
        self.ok(router, &["nft", "add", "table", "ip", "cut"]);
        self.ok(
            router,
            &[
                "nft",
                "add chain ip cut forward { type filter hook forward priority 0; policy drop; }",
            ],
        );
    }

    /// Makes `router` lose `percent` % of what it forwards towards the internet, at random.
    pub fn lossy(&self, router: &str, percent: u32) {
        self.ok(router, &["nft", "add", "table", "ip", "cut"]);
        self.ok(
            router,
            &[
                "nft",
                "add chain ip cut forward { type filter hook forward priority 0; policy accept; }",
            ],
        );
        self.ok(
            router,
            &[
                "nft",
                &format!(
                    "add rule ip cut forward ip daddr 198.19.0.0/16 numgen random mod 100 < {percent} drop"
                ),
            ],
        );
    }

    /// Undoes [`Testbed::cut_beyond`] or [`Testbed::lossy`].
    pub fn restore_beyond(&self, router: &str) {
        self.ok(router, &["nft", "delete", "table", "ip", "cut"]);
    }

    /// Takes the link between the gateway and `router` down at the router's end: the
    /// gateway's interface loses carrier.
    pub fn cut_carrier(&self, router: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        self.ok(router, &["ip", "link", "set", "eth0", state]);
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(script()).args(["down", &self.prefix]).output();
        let _ = std::fs::remove_dir_all(format!("/tmp/wanlb-test-{}", self.prefix));
        let _ = std::fs::remove_dir_all(self.data_dir());
    }
}

/// A child whose stdout and stderr are collected as they arrive; killed on drop.
pub struct Process {
    pub child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Process {
    pub fn start(mut child: Child) -> Process {
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            }));
        }
        Process {
            child,
            output,
            readers,
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits for `text` in the output; panics with the output if the process exits first or
    /// it does not appear within a generous bound (this is a wait, not a timing assertion).
    pub fn wait_for(&self, text: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.output().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{what} did not print {text:?}; output:\n{}", self.output());
    }

    /// How many lines of the output so far contain `text`.
    pub fn count(&self, text: &str) -> usize {
        self.output().lines().filter(|l| l.contains(text)).count()
    }

    /// Waits until `n` lines of the output contain `text` (a wait, not a timing assertion).
    pub fn wait_for_count(&self, text: &str, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.count(text) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{what}: {text:?} not seen {n} times; output:\n{}",
            self.output()
        );
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill {sig} {pid} failed");
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for it to end by itself, and for all of its output.
    pub fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, self.output())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal("-TERM");
        let status = self.child.wait().expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status, self.output())
    }
}

/// What a checksum watcher saw: (frames checked, of them GSO, GSO segments checked, bad).
pub fn checksum_summary(watcher: Process) -> (u64, u64, u64, u64, String) {
    let (_, out) = watcher.stop();
    let line = out
        .lines()
        .find(|l| l.starts_with("checked "))
        .unwrap_or_else(|| panic!("no summary: {out}"));
    let field = |name: &str| -> u64 {
        let w: Vec<&str> = line.split_whitespace().collect();
        let i = w.iter().position(|x| *x == name).expect("field");
        w[i + 1].parse().expect("number")
    };
    (
        field("checked"),
        field("gso"),
        field("segments"),
        field("bad"),
        out,
    )
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Counts, in namespace `ns`, the packets its `hook` (forward for a router, input for a host)
/// sees that match `matching`, under the counter `name`.
pub fn count(tb: &Testbed, ns: &str, hook: &str, name: &str, matching: &str) {
    let chain = format!("c_{hook}");
    // adding what exists already is no error
    tb.ok(ns, &["nft", "add", "table", "ip", "seen"]);
    tb.ok(
        ns,
        &[
            "nft",
            &format!(
                "add chain ip seen {chain} {{ type filter hook {hook} priority 0; policy accept; }}"
            ),
        ],
    );
    tb.ok(ns, &["nft", "add", "counter", "ip", "seen", name]);
    tb.ok(
        ns,
        &[
            "nft",
            &format!("add rule ip seen {chain} {matching} counter name {name}"),
        ],
    );
}

/// The packets counted under `name` in `ns` so far.
pub fn counted(tb: &Testbed, ns: &str, name: &str) -> u64 {
    counter_field(tb, ns, name, "packets")
}

/// The IP bytes counted under `name` in `ns` so far.
pub fn counted_bytes(tb: &Testbed, ns: &str, name: &str) -> u64 {
    counter_field(tb, ns, name, "bytes")
}

fn counter_field(tb: &Testbed, ns: &str, name: &str, field: &str) -> u64 {
    let listed = tb.ok(ns, &["nft", "list", "counter", "ip", "seen", name]);
    let words: Vec<&str> = listed.split_whitespace().collect();
    let at = words.iter().position(|w| *w == field).expect("a count");
    words[at + 1].parse().expect("a number")
}

/// A directory from `mktemp -d`, removed with what is in it when dropped.
pub struct Scratch(pub String);

impl Scratch {
    pub fn new() -> Scratch {
        let out = std::process::Command::new("mktemp")
            .arg("-d")
            .output()
            .expect("mktemp");
        assert!(out.status.success(), "mktemp -d failed");
        Scratch(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How many of `flows` (destination, address seen there) left through isp1 and isp2.
pub fn via_counts(flows: &[(String, String)]) -> (usize, usize) {
    let one = flows.iter().filter(|(_, seen)| seen == UPLINK_1).count();
    let two = flows.iter().filter(|(_, seen)| seen == UPLINK_2).count();
    assert_eq!(
        one + two,
        flows.len(),
        "every flow leaves through an uplink address: {flows:?}"
    );
    (one, two)
}
