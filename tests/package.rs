//! The Debian package (root; CI runs as root): scripts/package.sh builds it, and what it holds
//! is checked with dpkg-deb: the binary, the unit, /etc/wanlb/wanlb.toml as a conffile, the
//! man pages and docs, the fields apt reads, maintainer scripts that leave the service off on
//! install. The package is then taken apart and its binary and settings are run, and dpkg
//! unpacks it into a scratch root with a database of its own.
//!
//! It is never configured there: that runs the postinst, which dpkg runs chrooted into the
//! scratch root (where there is no shell, so it would fail) and which calls systemctl and
//! deb-systemd-helper; with --force-script-chrootless it would run them on this host. Nothing
//! here installs the package on the host or talks to its systemd.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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
    assert_eq!(mode_of("/etc/wanlb/wanlb.toml"), readable);
    for doc in [
        "README.md",
        "copyright",
        "CONFORMANCE.md",
        "examples/wanlb.toml",
    ] {
        assert_eq!(mode_of(&format!("/usr/share/doc/wanlb/{doc}")), readable);
    }
    for page in ["wanlb", "wanlb-run", "wanlb-status", "wanlb-check-config"] {
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
    // removing the package stops wanlb, which then removes its routes, rules and table
    assert!(script("prerm").contains("deb-systemd-invoke stop wanlb.service"));
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
