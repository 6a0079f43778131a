//! The wanlb binary's answers to bad settings, as a user or systemd sees them. No root needed:
//! every run here stops at the settings, before anything on the system changes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const WANLB: &str = env!("CARGO_BIN_EXE_wanlb");

/// A directory of this test's own, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("wanlb-cli-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// wanlb with `args`, its environment free of the caller's log settings.
fn wanlb(args: &[&str]) -> Command {
    let mut cmd = Command::new(WANLB);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    cmd
}

fn run(args: &[&str]) -> Output {
    wanlb(args).output().expect("running wanlb")
}

const SEVERAL_ERRORS: &str = r#"lan = ["eth0"]
workers = 0

[[uplink]]
name = "isp1"
dev = "eth1"
gw = "192.168.1.999"
weight = "heavy"

[[pin]]
dst = "174.143.119.91/32"
uplink = "isp2"
"#;

#[test]
fn check_config_lists_every_error_with_its_line_and_exits_2() {
    let dir = TempDir::new("check");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, SEVERAL_ERRORS).unwrap();
    let file = file.to_str().unwrap();
    let out = run(&["check-config", "--config", file]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing is declared OK");
    assert_eq!(
        stderr,
        format!(
            "wanlb: {file} line 2, workers: must be a whole number from 1 to 64, got \"0\"\n\
             wanlb: {file} line 7, uplink \"isp1\" gw: gw \"192.168.1.999\" is not an IPv4 address\n\
             wanlb: {file} line 8, uplink \"isp1\" weight: weight must be a whole number from 1 to 1000, got \"heavy\"\n\
             wanlb: {file} line 12, [[pin]] uplink: unknown uplink \"isp2\" (uplinks: isp1)\n\
             wanlb: 4 errors\n"
        )
    );
}

#[test]
fn run_lists_every_error_too() {
    let dir = TempDir::new("run");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, SEVERAL_ERRORS).unwrap();
    let out = run(&[
        "run",
        "--config",
        file.to_str().unwrap(),
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--busy-poll",
        "2s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        6,
        "the file's four, the flag's, the count:\n{stderr}"
    );
    assert!(
        lines[..5].iter().all(|l| l.starts_with("wanlb: ")),
        "{stderr}"
    );
    assert!(lines[1].contains("line 7, uplink \"isp1\" gw"), "{stderr}");
    assert!(
        lines[4].starts_with("wanlb: --busy-poll \"2s\": busy polling can last at most 1s"),
        "{stderr}"
    );
    assert_eq!(lines[5], "wanlb: 5 errors");
}

#[test]
fn a_bad_log_level_is_refused_naming_the_flag() {
    let dir = TempDir::new("level");
    let out = run(&[
        "run",
        "--log-level",
        "nonsense",
        "--state-dir",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("wanlb: --log-level \"nonsense\": must be error, warn, info, debug or trace"),
        "{stderr}"
    );
}

/// wanlb run with settings the system refuses (no such interfaces), its stderr a file, and
/// JOURNAL_STREAM naming that file (as systemd names the journal's stream), or another.
fn run_with_stderr_in_a_file(test: &str, journal: bool) -> (Option<i32>, String) {
    let dir = TempDir::new(test);
    let log = dir.path().join("stderr");
    let stderr = std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let ino = if journal { meta.ino() } else { meta.ino() + 1 };
    let status = wanlb(&[
        "run",
        "--lan",
        "nosuch0",
        "--uplink",
        "isp1,dev=nosuch1,gw=198.18.1.254",
        "--state-dir",
        dir.path().to_str().unwrap(),
    ])
    .env("JOURNAL_STREAM", format!("{}:{ino}", meta.dev()))
    // not a filter: wanlb warns through its logger and goes on
    .env("RUST_LOG", "wanlb=loud")
    .stdout(Stdio::null())
    .stderr(stderr)
    .status()
    .expect("running wanlb");
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn into_the_journal_each_line_leads_with_its_priority() {
    let (code, stderr) = run_with_stderr_in_a_file("journal", true);
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<_> = stderr.lines().collect();
    assert!(
        lines[0].starts_with("<4>WARN wanlb::logging: RUST_LOG is not a filter; ignoring it"),
        "{stderr}"
    );
    assert_eq!(
        lines[1..],
        [
            "<3>wanlb: --lan \"nosuch0\": no such interface",
            "<3>wanlb: --uplink \"isp1,dev=nosuch1,gw=198.18.1.254\": dev \"nosuch1\": no such interface",
            "<3>wanlb: 2 errors",
        ]
    );
}

#[test]
fn elsewhere_lines_have_no_priority_even_with_journal_stream_inherited() {
    let (code, stderr) = run_with_stderr_in_a_file("not-journal", false);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains('<'), "{stderr}");
    assert!(
        stderr.contains(" WARN wanlb::logging: RUST_LOG is not a filter"),
        "{stderr}"
    );
    assert!(stderr.ends_with("wanlb: 2 errors\n"), "{stderr}");
}
