//! The undo journal: what it records, and what a stop, a start and a cleanup undo.

use super::*;

#[test]
fn undo_lines_round_trip() {
    for u in [
        Undo::Ip(words("rule del iif eth0 lookup 7100 priority 7101")),
        Undo::Nft(words("delete table inet wanlb_wanlb0")),
        Undo::Sysctl("net.ipv4.ip_forward".into(), "0".into()),
    ] {
        assert_eq!(Undo::from_line(&u.to_line()), Some(u));
    }
    assert_eq!(Undo::from_line("rm -rf /"), None);
}

#[test]
fn a_journal_runs_only_the_undos_wanlb_writes() {
    // what wanlb journals, each kind
    for line in [
        "ip route del unreachable default metric 4294967295 table 7100",
        "ip rule del fwmark 0x7100 iif eth0 lookup 7100 priority 1",
        "ip rule add priority 0 lookup local",
        "ip route flush exact 0.0.0.0/0 proto 253 table main",
        "nft delete table inet wanlb_wanlb0",
        "nft delete table inet wanlb_wan.0-x",
        "sysctl net.ipv4.ip_forward 0",
        "sysctl net/ipv4/conf/wan.0/rp_filter 2",
        "ip -6 route del unreachable default metric 4294967295 table 7100",
        "ip -6 rule del iif eth0 lookup 7100 priority 7101",
        "sysctl net/ipv6/conf/eth1/accept_ra 1",
        "sysctl net/ipv6/conf/all/forwarding 0",
    ] {
        assert!(Undo::from_line(line).is_some(), "{line}");
    }
    // what a planted journal would run as root: a command, a file written anywhere,
    // another firewall's rules flushed, another network namespace, a batch file
    for line in [
        "ip netns exec x /bin/sh",
        "ip netns add x",
        "ip vrf exec default /bin/sh",
        "ip -batch /tmp/x",
        "ip -n other route del default",
        "ip -6 -batch /tmp/x",
        "ip -6 netns exec x /bin/sh",
        "ip -4 -6 route del default",
        "ip rule del priority 0 lookup local -force",
        "ip link del eth0",
        "nft flush ruleset",
        "nft -f /tmp/x",
        "nft delete table inet filter",
        "nft delete table ip wanlb_wanlb0",
        "nft delete table inet wanlb_x extra",
        "sysctl ../../../etc/shadow x",
        "sysctl net/ipv4/../../../etc/shadow x",
        "sysctl kernel.core_pattern |/tmp/x",
        "sysctl net.ipv4.ip_forward 1/x",
    ] {
        assert_eq!(Undo::from_line(line), None, "{line}");
    }
}

#[test]
fn a_state_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Dir::new("open");
    fs::create_dir_all(&dir.0).unwrap();
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
    let planted = journal_path(&dir.0, "wanlb0").unwrap();
    fs::write(&planted, format!("{FAILS}\n")).unwrap();
    for e in [
        Plumbing::start(&dir.0, "wanlb0").map(|_| ()).unwrap_err(),
        cleanup(&dir.0, None).map(|_| ()).unwrap_err(),
    ] {
        assert!(matches!(e, SystemError::StateDir { .. }), "{e}");
        assert!(e.to_string().contains(&dir.0.display().to_string()), "{e}");
    }
    assert_eq!(fs::read_to_string(&planted).unwrap(), format!("{FAILS}\n"));
    // a new one is made for this user alone
    let fresh = Dir::new("fresh");
    let (plumbing, _) = Plumbing::start(&fresh.0.join("state"), "wanlb0").unwrap();
    let mode = fs::metadata(fresh.0.join("state"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    plumbing.teardown().unwrap();
}

/// A state directory of this test's own, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("wanlb-journal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// Undo commands that touch nothing: `ip` refuses the word before it talks to the kernel
// (a real failure), and a sysctl of an interface that does not exist is already gone.
const FAILS: &str = "ip rule del no-such-selector";
const GONE: &str = "sysctl net/ipv4/conf/wanlb-test-gone/rp_filter 1";

#[test]
fn an_undo_that_fails_is_kept_and_one_already_gone_is_not() {
    let dir = Dir::new("kept");
    let (mut plumbing, leftovers) = Plumbing::start(&dir.0, "t0").unwrap();
    assert_eq!((leftovers.undone, leftovers.kept), (0, 0));
    for line in [FAILS, GONE] {
        plumbing.record(Undo::from_line(line).unwrap()).unwrap();
    }
    let journal = plumbing.path().to_path_buf();
    let e = plumbing.teardown().unwrap_err();
    assert!(matches!(e, SystemError::UndoKept { count: 1, .. }), "{e}");
    assert!(e.to_string().contains("wanlb cleanup"), "{e}");
    assert_eq!(fs::read_to_string(&journal).unwrap(), format!("{FAILS}\n"));

    // the next start undoes it again, and keeps it at the head of its own journal, to be
    // undone after its own changes
    let (mut plumbing, leftovers) = Plumbing::start(&dir.0, "t0").unwrap();
    assert_eq!((leftovers.undone, leftovers.kept), (0, 1));
    plumbing.record(Undo::from_line(GONE).unwrap()).unwrap();
    assert_eq!(
        fs::read_to_string(&journal).unwrap(),
        format!("{FAILS}\n{GONE}\n")
    );
    assert!(plumbing.teardown().is_err());

    // and so does `wanlb cleanup`, which keeps it too
    let report = cleanup(&dir.0, None).unwrap();
    assert_eq!(report.undone, [("t0".to_string(), 0)]);
    assert_eq!(report.kept, [(journal.clone(), vec![FAILS.to_string()])]);
    assert_eq!(fs::read_to_string(&journal).unwrap(), format!("{FAILS}\n"));
}

#[test]
fn a_start_undoes_what_a_stopped_run_with_another_tun_left_and_refuses_beside_a_live_one() {
    let dir = Dir::new("others");
    let other = journal_path(&dir.0, "a.b-0").unwrap();
    fs::create_dir_all(&dir.0).unwrap();
    fs::write(&other, format!("{GONE}\n")).unwrap();
    // another namespace's journal is not this one's business
    let foreign = dir.0.join("wanlb0-1.undo");
    fs::write(&foreign, format!("{FAILS}\n")).unwrap();

    let (live, leftovers) = Plumbing::start(&dir.0, "a_b_0").unwrap();
    assert_eq!((leftovers.undone, leftovers.kept), (1, 0));
    assert!(!other.exists() && !lock_path(&other).exists());
    assert!(foreign.exists());

    // while it runs, neither a start with another TUN name nor a cleanup touches it
    let e = Plumbing::start(&dir.0, "a.b-0").unwrap_err();
    assert!(matches!(e, SystemError::Busy(_)), "{e}");
    let report = cleanup(&dir.0, None).unwrap();
    assert_eq!(report.running, ["a_b_0"]);
    assert_eq!(report.elsewhere, 1);
    assert!(report.undone.is_empty() && report.kept.is_empty());
    assert!(live.path().exists());
    live.teardown().unwrap();

    // nothing of this namespace is left
    let report = cleanup(&dir.0, None).unwrap();
    assert!(report.undone.is_empty() && report.running.is_empty());
    fs::remove_file(&foreign).unwrap();
    let _ = cleanup(&dir.0, None).unwrap();
    assert!(!dir.0.exists(), "an empty state directory is removed");
}
