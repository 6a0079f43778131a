//! The Debian package (root; CI runs as root): scripts/package.sh builds it, and what it holds
//! is checked with dpkg-deb: the binary, the unit, /etc/wanlb/wanlb.toml as a conffile, the
//! man pages and docs, the fields apt reads, maintainer scripts that leave the service off on
//! install. The package is then taken apart and its binary and settings are run, dpkg unpacks
//! it into a scratch root with a database of its own, and apt installs it for real in a
//! container of its own running systemd, on the test bed's gateway, where the service is
//! given bad settings, started, crashed and removed.
//!
//! Nothing here installs the package on the host or talks to its systemd. In the scratch root
//! the package is unpacked, never configured: configuring runs the postinst, chrooted into
//! the scratch root (where there is no shell, so it would fail) or, with
//! --force-script-chrootless, on this host, where it would call systemctl. The container has
//! a root file system of its own (a minimal Debian made by debootstrap under target/, which
//! each run writes to a tmpfs laid over), the network namespace of the test bed's gateway
//! and nothing else of the host's.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Process, TARGETS, Testbed};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (scripts/test.sh installs it)"))
}

/// Runs a command that must succeed and returns its stdout.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The package, built once for all the tests of this file (the release build takes minutes
/// on a fresh checkout, seconds after that).
fn deb() -> &'static str {
    static DEB: OnceLock<String> = OnceLock::new();
    DEB.get_or_init(|| {
        let out = Command::new(repo().join("scripts/package.sh"))
            .output()
            .expect("running scripts/package.sh");
        assert!(
            out.status.success(),
            "scripts/package.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
        let deb = stdout.lines().last().expect("package.sh prints the path");
        let arch = ok("dpkg", &["--print-architecture"]);
        assert!(
            deb.ends_with(&format!("/wanlb_{VERSION}-1_{}.deb", arch.trim()))
                && Path::new(deb).is_file(),
            "package.sh printed {deb:?}"
        );
        deb.to_string()
    })
}

/// A directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("wanlb-package-{what}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 path")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn control_fields_say_what_apt_needs() {
    let field = |name: &str| ok("dpkg-deb", &["-f", deb(), name]).trim().to_string();
    assert_eq!(field("Package"), "wanlb");
    assert_eq!(field("Version"), format!("{VERSION}-1"));
    assert_eq!(field("Section"), "net");
    assert_eq!(field("Priority"), "optional");
    let depends = field("Depends");
    // what wanlb and its unit run, and the C library found by dpkg-shlibdeps ($auto)
    for needed in ["iproute2", "nftables", "procps", "libc6 (>= "] {
        assert!(depends.contains(needed), "Depends: {depends}");
    }
    assert!(field("Maintainer").contains('@'));
    assert!(
        field("Description").contains("systemctl enable --now wanlb"),
        "the description says how to start it"
    );
}

#[test]
fn contents_are_the_binary_the_unit_the_settings_the_man_pages_and_the_docs() {
    let listing = ok("dpkg-deb", &["-c", deb()]);
    // mode owner/group size date time path
    let entries: Vec<(&str, &str, &str)> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 6, "unexpected listing line {l:?}");
            (f[0], f[1], f[5])
        })
        .collect();
    for (mode, owner, path) in &entries {
        assert_eq!(*owner, "0/0", "{path} belongs to root");
        assert!(
            path.starts_with("./usr/") || path.starts_with("./etc/"),
            "{path} lies outside /usr and /etc"
        );
        if path.ends_with('/') {
            assert_eq!(*mode, "drwxr-xr-x", "{path}");
        }
    }
    let mode_of = |path: &str| {
        entries
            .iter()
            .find(|e| e.2 == format!(".{path}"))
            .map(|e| e.0)
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"))
    };
    let executable = "-rwxr-xr-x";
    let readable = "-rw-r--r--";
    assert_eq!(mode_of("/usr/bin/wanlb"), executable);
    assert_eq!(mode_of("/usr/lib/systemd/system/wanlb.service"), readable);
    // it may hold listen_token and the on_change commands: no other user reads it
    assert_eq!(mode_of("/etc/wanlb/wanlb.toml"), "-rw-r-----");
    for doc in [
        "README.md",
        "copyright",
        "CONFORMANCE.md",
        "examples/wanlb.toml",
        "examples/metered.toml",
    ] {
        assert_eq!(mode_of(&format!("/usr/share/doc/wanlb/{doc}")), readable);
    }
    for page in [
        "wanlb",
        "wanlb-run",
        "wanlb-status",
        "wanlb-cap",
        "wanlb-check-config",
        "wanlb-cleanup",
    ] {
        assert_eq!(
            mode_of(&format!("/usr/share/man/man8/{page}.8.gz")),
            readable
        );
    }
}

#[test]
fn settings_are_a_conffile_and_the_service_is_left_off_on_install() {
    let control = Scratch::new("control");
    ok("dpkg-deb", &["-e", deb(), control.str()]);
    assert_eq!(
        fs::read_to_string(control.path("conffiles")).expect("a conffiles list"),
        "/etc/wanlb/wanlb.toml\n",
        "dpkg keeps the admin's edits to the settings across upgrades"
    );
    let script = |name: &str| fs::read_to_string(control.path(name)).unwrap_or_default();
    let postinst = script("postinst");
    // installing neither starts the service nor enables it (the example settings name
    // interfaces this host may not have); an upgrade restarts it only if it runs, and
    // re-enables it only if the admin had
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
    assert!(postinst.contains("deb-systemd-invoke try-restart wanlb.service"));
    for (i, line) in postinst.lines().enumerate() {
        if line.contains("deb-systemd-helper enable") {
            let before: Vec<&str> = postinst.lines().take(i).collect();
            assert!(
                before
                    .iter()
                    .rev()
                    .take(3)
                    .any(|l| l.contains("was-enabled")),
                "postinst enables wanlb unconditionally:\n{postinst}"
            );
        }
    }
    // removing the package stops wanlb, which then removes its routes, rules and table, and
    // then undoes what a wanlb that is no longer running left
    let prerm = script("prerm");
    let stop = prerm.find("deb-systemd-invoke stop wanlb.service");
    let cleanup = prerm.find("/usr/bin/wanlb cleanup");
    assert!(stop.is_some() && stop < cleanup, "{prerm}");
    assert!(
        !control.path("preinst").exists(),
        "a preinst would run in the scratch-root test below"
    );
}

#[test]
fn extracted_package_runs_and_its_unit_and_settings_are_those_of_the_repository() {
    let root = Scratch::new("extract");
    ok("dpkg-deb", &["-x", deb(), root.str()]);
    let wanlb = root.path("usr/bin/wanlb");
    let wanlb = wanlb.to_str().unwrap();
    assert_eq!(ok(wanlb, &["--version"]).trim(), format!("wanlb {VERSION}"));
    let settings = root.path("etc/wanlb/wanlb.toml");
    let checked = ok(
        wanlb,
        &[
            "check-config",
            "--offline",
            "--config",
            settings.to_str().unwrap(),
        ],
    );
    assert!(checked.starts_with("configuration OK"), "{checked}");
    let same = |installed: &str, source: &str| {
        assert_eq!(
            fs::read(root.path(installed)).unwrap(),
            fs::read(repo().join(source)).unwrap(),
            "{installed} is not {source}"
        );
    };
    same("etc/wanlb/wanlb.toml", "examples/wanlb.toml");
    same(
        "usr/lib/systemd/system/wanlb.service",
        "contrib/wanlb.service",
    );

    // wanlb-run(8) is `wanlb run --help`: every option is in it
    let page = ok(
        "gzip",
        &[
            "-dc",
            root.path("usr/share/man/man8/wanlb-run.8.gz")
                .to_str()
                .unwrap(),
        ],
    );
    assert!(page.contains(".TH WANLB-RUN \"8\""), "{page}");
    let help = ok(wanlb, &["run", "--help"]);
    for option in help.split_whitespace().filter(|w| w.starts_with("--")) {
        let option = option.trim_end_matches([',', '.', ')']);
        let in_roff = option.replace('-', "\\-");
        assert!(
            page.contains(&in_roff),
            "{option} is missing from wanlb-run(8)"
        );
    }
}

#[test]
fn the_unit_lets_wanlb_keep_its_counts_where_it_writes_them() {
    let unit = fs::read_to_string(repo().join("contrib/wanlb.service")).unwrap();
    // ProtectSystem=strict makes /var read-only but for the unit's StateDirectory
    assert!(unit.lines().any(|l| l == "ProtectSystem=strict"));
    assert!(unit.lines().any(|l| l == "StateDirectory=wanlb"), "{unit}");
    let help = String::from_utf8(
        std::process::Command::new(env!("CARGO_BIN_EXE_wanlb"))
            .args(["run", "--help"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(help.contains("[default: /var/lib/wanlb]"), "{help}");
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    // systemd need not run here: verify only reads the unit and checks its commands exist
    let root = Scratch::new("verify");
    ok("dpkg-deb", &["-x", deb(), root.str()]);
    let unit = fs::read_to_string(root.path("usr/lib/systemd/system/wanlb.service")).unwrap();
    // the unit names /usr/bin/wanlb, which is not installed on this host: point it at the
    // extracted one
    let bin = root.path("usr/bin/wanlb");
    let copy = root.path("wanlb.service");
    fs::write(&copy, unit.replace("/usr/bin/wanlb", bin.to_str().unwrap())).unwrap();
    let out = run(
        "systemd-analyze",
        &["verify", "--man=no", copy.to_str().unwrap()],
    );
    // an unknown or misspelt setting is only a warning: any message fails the test
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn dpkg_unpacks_it_into_a_scratch_root_with_the_settings_as_a_conffile() {
    // the control archive has no preinst (checked above), so unpacking runs no maintainer
    // script; dpkg's log goes to the scratch root too
    let root = Scratch::new("root");
    let admin = root.path("var/lib/dpkg");
    fs::create_dir_all(admin.join("info")).unwrap();
    fs::create_dir_all(admin.join("updates")).unwrap();
    fs::write(admin.join("status"), "").unwrap();
    let root_flag = format!("--root={}", root.str());
    let log_flag = format!("--log={}", root.path("dpkg.log").display());
    ok("dpkg", &[&root_flag, &log_flag, "--unpack", deb()]);
    let status = ok("dpkg", &[&root_flag, "--status", "wanlb"]);
    assert!(status.contains("Status: install ok unpacked"), "{status}");
    assert!(
        status.contains("Conffiles:\n /etc/wanlb/wanlb.toml "),
        "dpkg does not hold the settings as a conffile:\n{status}"
    );
    let files = ok("dpkg", &[&root_flag, "--listfiles", "wanlb"]);
    for path in [
        "/usr/bin/wanlb",
        "/usr/lib/systemd/system/wanlb.service",
        "/etc/wanlb/wanlb.toml",
        "/usr/share/man/man8/wanlb.8.gz",
    ] {
        assert!(files.lines().any(|l| l == path), "{path} not in:\n{files}");
        // a conffile waits as .dpkg-new until configured
        let on_disk = root.path(&path[1..]);
        let pending = root.path(&format!("{}.dpkg-new", &path[1..]));
        assert!(on_disk.exists() || pending.exists(), "{path} not unpacked");
    }
}

/// A minimal Debian of this host's release with systemd, iproute2, nftables and procps, made
/// by debootstrap once under target/ and reused: containers never write to it.
fn debian_root() -> PathBuf {
    let release = fs::read_to_string("/etc/os-release").expect("/etc/os-release");
    let codename = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .expect("a Debian release with a code name")
        .trim_matches('"')
        .to_string();
    let root = repo().join(format!("target/package-test/debian-{codename}"));
    let complete = root.with_extension("complete");
    if !complete.exists() {
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        ok(
            "debootstrap",
            &[
                "--variant=minbase",
                "--include=systemd,systemd-sysv,dbus,iproute2,nftables,procps",
                &codename,
                root.to_str().unwrap(),
            ],
        );
        fs::write(&complete, "").unwrap();
    }
    root
}

/// A container booted with systemd from [`debian_root`] in the network namespace of the
/// test bed's gateway, with the capabilities wanlb's unit grants and the bpf() system call
/// (systemd-nspawn's own filter refuses it otherwise). Halted when dropped.
struct Container {
    nspawn: Process,
    leader: String,
    name: String,
}

impl Container {
    fn boot(tb: &Testbed, binds: &[(&Path, &str)]) -> Container {
        let name = format!("wanlb-{}", tb.prefix);
        let mut args = vec![
            "--quiet".to_string(),
            format!("--directory={}", debian_root().display()),
            // the image stays as debootstrap made it; what the container writes goes to a
            // tmpfs
            "--volatile=overlay".into(),
            "--boot".into(),
            // this host's PID 1 need not be systemd: no machine registration, no scope
            "--register=no".into(),
            "--keep-unit".into(),
            format!("--machine={name}"),
            format!("--network-namespace-path=/run/netns/{}", tb.ns("gw")),
            "--capability=CAP_NET_ADMIN,CAP_BPF,CAP_PERFMON".into(),
            "--system-call-filter=bpf".into(),
            "--resolv-conf=off".into(),
            "--timezone=off".into(),
            "--link-journal=no".into(),
            "--console=pipe".into(),
        ];
        for (host, inside) in binds {
            args.push(format!("--bind-ro={}:{inside}", host.display()));
        }
        let child = Command::new("systemd-nspawn")
            .args(&args)
            // /proc/sys/net writable, as on a host: the network namespace is the test bed's
            // own, and `wanlb cleanup` run by the package's removal restores its sysctls
            .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("systemd-nspawn (scripts/test.sh installs systemd-container)");
        let nspawn = Process::start(child);
        let nspawn_pid = nspawn.child.id().to_string();
        // systemd, the container's PID 1, is systemd-nspawn's child
        let leader = wait_until("the container to start", || {
            let children = run("pgrep", &["-P", &nspawn_pid]);
            let pid = String::from_utf8_lossy(&children.stdout).trim().to_string();
            (!pid.is_empty() && !pid.contains('\n')).then_some(pid)
        });
        let container = Container {
            nspawn,
            leader,
            name,
        };
        // a loaded machine (the other package tests pack and unpack at the same time) boots
        // slowly: wait longer than for anything else, and say what was still running
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let state = container.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
            if ["running", "degraded"].contains(&state.as_str()) {
                break;
            }
            if Instant::now() > deadline {
                let jobs = container.run(&["systemctl", "list-jobs", "--no-pager"]);
                panic!(
                    "waited in vain for the container's systemd to finish booting: {state:?}\n\
                     jobs:\n{}\nconsole:\n{}",
                    String::from_utf8_lossy(&jobs.stdout),
                    container.nspawn.output()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        container
    }

    /// Runs a command inside the container (all its namespaces).
    fn run(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["--target", &self.leader, "--all", "--"];
        args.extend(cmd);
        run("nsenter", &args)
    }

    /// Runs a command inside the container that must succeed and returns its stdout.
    fn ok(&self, cmd: &[&str]) -> String {
        let out = self.run(cmd);
        assert!(
            out.status.success(),
            "{cmd:?} in the container failed: {}{}\nconsole:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.nspawn.output()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What `systemctl show -p PROPERTY --value wanlb` says.
    fn wanlb_property(&self, property: &str) -> String {
        let value = self.ok(&["systemctl", "show", "-p", property, "--value", "wanlb"]);
        value.trim().to_string()
    }

    /// wanlb's lines in the container's journal.
    fn wanlb_log(&self) -> String {
        self.ok(&["journalctl", "-u", "wanlb", "-o", "cat", "--no-pager"])
    }

    /// Waits until `text` appears `count` times in wanlb's journal.
    fn wait_for_log(&self, text: &str, count: usize) {
        wait_until(&format!("{text:?} in wanlb's journal"), || {
            (self.wanlb_log().matches(text).count() >= count).then_some(())
        });
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM asks systemd-nspawn to halt the container cleanly; the test bed's teardown
        // kills whatever of it is still in the gateway's namespace
        let pid = self.nspawn.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // left behind by systemd-nspawn when /run is not a tmpfs
        let _ = fs::remove_dir_all(format!("/run/systemd/nspawn/propagate/{}", self.name));
    }
}

/// Calls `ready` until it returns something, for at most a minute (a wait, not a timing
/// assertion).
fn wait_until<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn under_systemd_it_installs_off_runs_restarts_after_a_crash_and_is_removed_cleanly() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let settings_dir = Scratch::new("container");
    let settings = settings_dir.path("testbed.toml");
    let bad = settings_dir.path("bad.toml");
    let testbed_settings = format!(
        "lan = [\"eth0\"]\nhealth_target = [\"{}\", \"{}\"]\n\
         [[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"198.18.1.254\"\nweight = 2\n\
         [[uplink]]\nname = \"isp2\"\ndev = \"eth2\"\ngw = \"198.18.2.254\"\n",
        TARGETS[0], TARGETS[1]
    );
    fs::write(&settings, &testbed_settings).unwrap();
    // a gateway that is not on its uplink's subnet
    fs::write(
        &bad,
        testbed_settings.replace("198.18.1.254", "198.18.9.254"),
    )
    .unwrap();
    let box_ = Container::boot(
        &tb,
        &[
            (Path::new(deb()), "/root/wanlb.deb"),
            (&settings, "/root/testbed.toml"),
            (&bad, "/root/bad.toml"),
        ],
    );
    let before = tb.gateway_state();

    box_.ok(&["apt-get", "install", "--yes", "--quiet", "/root/wanlb.deb"]);
    assert_eq!(box_.wanlb_property("UnitFileState"), "disabled");
    assert_eq!(box_.wanlb_property("ActiveState"), "inactive");
    // the settings (a token, commands) are root's alone
    let mode = box_.ok(&["stat", "--format=%a %U:%G", "/etc/wanlb/wanlb.toml"]);
    assert_eq!(mode.trim(), "640 root:root");

    // settings that cannot be used: refused, and not tried again for ever
    box_.ok(&["cp", "/root/bad.toml", "/etc/wanlb/wanlb.toml"]);
    assert!(!box_.run(&["systemctl", "start", "wanlb"]).status.success());
    wait_until("wanlb to give up on bad settings", || {
        (box_.wanlb_property("ActiveState") == "failed").then_some(())
    });
    assert!(box_.wanlb_log().contains("is not on eth1's subnet"));
    box_.ok(&["systemctl", "reset-failed", "wanlb"]);

    box_.ok(&["cp", "/root/testbed.toml", "/etc/wanlb/wanlb.toml"]);
    box_.ok(&["systemctl", "enable", "--now", "wanlb"]);
    box_.wait_for_log(" ready ", 1);
    assert!(box_.wanlb_log().contains("kernel fast path attached"));
    tb.assert_pings("lan", "198.19.0.1", 3, "0.2");
    tb.assert_tcp_echo("lan", "198.19.0.2:9000", 1_000_000);
    // the unit's capabilities and no others, and no way to gain more
    let main_pid = box_.wanlb_property("MainPID");
    let status = box_.ok(&["cat", &format!("/proc/{main_pid}/status")]);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
            .to_string()
    };
    // CAP_NET_ADMIN (12), CAP_NET_RAW (13), CAP_PERFMON (38), CAP_BPF (39)
    let caps = format!("{:016x}", (1u64 << 12) | (1 << 13) | (1 << 38) | (1 << 39));
    for set in ["CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(field(set), caps, "{set} of wanlb under its unit");
    }
    assert_eq!(field("NoNewPrivs:"), "1");
    // the unit's limits: open files, and how long a stop may take
    let limits = box_.ok(&["cat", &format!("/proc/{main_pid}/limits")]);
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open-file limit in {limits}"));
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["16384", "16384"],
        "{open_files}"
    );
    assert_eq!(box_.wanlb_property("TimeoutStopUSec"), "15s");
    // what wanlb adds, less the TUN device's interface number, which a new one changes
    let plumbing = || {
        let rules = tb.ok("gw", &["ip", "-4", "rule"]);
        let routes = tb.ok("gw", &["ip", "-4", "route", "show", "table", "all"]);
        let tables = tb.ok("gw", &["nft", "list", "ruleset"]);
        format!("{rules}{routes}{tables}")
    };
    let running = plumbing();

    // reloading settings that cannot be used fails, and wanlb runs on with its own
    box_.ok(&["cp", "/root/bad.toml", "/etc/wanlb/wanlb.toml"]);
    assert!(!box_.run(&["systemctl", "reload", "wanlb"]).status.success());
    assert_eq!(box_.wanlb_property("MainPID"), main_pid);
    // a good one is applied by the same process
    box_.ok(&["cp", "/root/testbed.toml", "/etc/wanlb/wanlb.toml"]);
    box_.ok(&[
        "sed",
        "-i",
        "1i affinity_timeout = \"20m\"",
        "/etc/wanlb/wanlb.toml",
    ]);
    box_.ok(&["systemctl", "reload", "wanlb"]);
    box_.wait_for_log("affinity_timeout: \"10m\" -> \"20m\"", 1);
    assert_eq!(box_.wanlb_property("MainPID"), main_pid);
    box_.ok(&["cp", "/root/testbed.toml", "/etc/wanlb/wanlb.toml"]);

    // a crash: systemd starts wanlb again, which first undoes what the dead one added (its
    // journal survived in /run/wanlb), so nothing is added twice
    box_.ok(&["systemctl", "kill", "--signal=KILL", "wanlb"]);
    box_.wait_for_log("undid what a previous run left behind", 1);
    box_.wait_for_log(" ready ", 2);
    assert_ne!(box_.wanlb_property("MainPID"), main_pid);
    assert_eq!(
        plumbing(),
        running,
        "after systemd restarted wanlb after a crash"
    );
    tb.assert_pings("lan", "198.19.0.3", 3, "0.2");

    // a crash with no restart left (as when the restarts ran out): the LAN stays closed, and
    // the unit's last word says how to undo it
    box_.ok(&["mkdir", "-p", "/run/systemd/system/wanlb.service.d"]);
    box_.ok(&[
        "sh",
        "-c",
        "printf '[Service]\\nRestart=no\\n' >/run/systemd/system/wanlb.service.d/no-restart.conf",
    ]);
    box_.ok(&["systemctl", "daemon-reload"]);
    box_.ok(&["systemctl", "kill", "--signal=KILL", "wanlb"]);
    wait_until("wanlb to fail", || {
        (box_.wanlb_property("ActiveState") == "failed").then_some(())
    });
    box_.wait_for_log("run: wanlb cleanup", 1);
    let left = plumbing();
    assert!(
        left.contains("unreachable default table 7100 metric 4294967295"),
        "the LAN is closed: {left}"
    );

    // removing the package stops wanlb (if it runs), which removes what it added, and undoes
    // what a wanlb that no longer runs left
    let removed = box_.run(&["apt-get", "remove", "--yes", "--quiet", "wanlb"]);
    let said = String::from_utf8_lossy(&removed.stdout).into_owned()
        + &String::from_utf8_lossy(&removed.stderr);
    assert!(removed.status.success(), "{said}");
    tb.assert_gateway_state(&before, &format!("after apt-get remove wanlb:\n{said}"));
    // the settings stay until purged
    box_.ok(&["test", "-f", "/etc/wanlb/wanlb.toml"]);
    box_.ok(&["apt-get", "purge", "--yes", "--quiet", "wanlb"]);
    assert!(!box_.run(&["test", "-e", "/etc/wanlb"]).status.success());
}
