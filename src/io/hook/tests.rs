//! The hook's bounds, with real commands (`sh`, no root).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

fn event(uplink: &str, state: &'static str) -> Event {
    Event {
        uplink: uplink.into(),
        event: state,
        state,
        reason: "test".into(),
        cap: None,
    }
}

/// Waits (without asserting on time) until `done`, for at most a minute.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn commands_that_hang_are_bounded_killed_and_the_latest_change_of_each_line_still_runs() {
    let dir = std::env::temp_dir().join(format!("wanlb-hook-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ran, pids) = (dir.join("ran"), dir.join("pids"));
    // each command says what it heard, starts a child of its own, and hangs
    let command = format!(
        "echo \"$WANLB_UPLINK $WANLB_STATE\" >> {}; sleep 300 >/dev/null 2>&1 & echo $! >> {}; wait",
        ran.display(),
        pids.display()
    );
    let limits = HookLimits {
        max_running: 2,
        timeout: Duration::from_millis(500),
    };
    let counts = HookCounts::default();
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| run(|| Some(command.clone()), rx, &stop, limits, &counts));
        // the hook stops however this ends, a failed assertion included
        let _stop = StopOnDrop(&stop);
        tx.send(event("isp1", "down")).unwrap();
        tx.send(event("isp2", "down")).unwrap();
        wait_until("two commands", || lines(&ran).len() == 2);
        // both run: the next changes wait, and isp1's newer change replaces its older one
        tx.send(event("isp1", "up")).unwrap();
        tx.send(event("isp3", "up")).unwrap();
        tx.send(event("isp1", "down")).unwrap();
        wait_until("the superseded change", || {
            counts.superseded.load(Ordering::Relaxed) == 1
        });
        assert_eq!(lines(&ran).len(), 2, "no more than two at once");
        // the first two are killed at their timeout, then the waiting two run, and are too
        wait_until("four timeouts", || {
            counts.timed_out.load(Ordering::Relaxed) == 4
        });
    });
    // two at a time, in whichever order each pair's shells wrote
    let mut ran = lines(&ran);
    ran[..2].sort();
    ran[2..].sort();
    assert_eq!(ran, ["isp1 down", "isp2 down", "isp1 down", "isp3 up"]);
    assert_eq!(counts.started.load(Ordering::Relaxed), 4);
    assert_eq!(counts.failed.load(Ordering::Relaxed), 0);
    // what the commands started went with them
    for pid in lines(&pids) {
        let proc = std::path::PathBuf::from(format!("/proc/{pid}/stat"));
        wait_until(&format!("sleep {pid} to end"), || {
            std::fs::read_to_string(&proc).map_or(true, |stat| stat.contains(") Z "))
        });
    }
    assert_eq!(lines(&pids).len(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
