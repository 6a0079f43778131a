//! The wanlb binary's answers to bad settings, as a user or systemd sees them. No root needed:
//! every run here stops at the settings, before anything on the system changes.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const WANLB: &str = env!("CARGO_BIN_EXE_wanlb");

/// A directory of this test's own.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wanlb-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
    let file = temp_dir("check").join("bad.toml");
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
    let dir = temp_dir("run");
    let file = dir.join("bad.toml");
    std::fs::write(&file, SEVERAL_ERRORS).unwrap();
    let out = run(&[
        "run",
        "--config",
        file.to_str().unwrap(),
        "--state-dir",
        dir.to_str().unwrap(),
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
