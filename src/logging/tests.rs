use std::io;
use std::sync::{Arc, Mutex};

use super::*;

/// What the logger writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// What `log` writes through wanlb's output layer, everything down to trace let through.
fn logged(journal: bool, log: impl FnOnce()) -> String {
    let out = Captured::default();
    let sink = out.clone();
    let subscriber = tracing_subscriber::registry()
        .with(LevelFilter::TRACE)
        .with(output(journal, false, move || sink.clone()));
    tracing::subscriber::with_default(subscriber, log);
    out.text()
}

#[test]
fn journal_lines_lead_with_their_syslog_priority_and_carry_no_time() {
    let text = logged(true, || {
        tracing::error!("a data-path thread stopped");
        tracing::warn!(uplinks = %"lte", "no health verdict yet");
        tracing::info!(uplink = %"isp1", reason = %"carrier lost", "uplink down");
        tracing::debug!(uplink = %"isp1", carrier = false, "carrier");
        tracing::trace!("trace");
    });
    assert_eq!(
        text,
        "<3>ERROR wanlb::logging::tests: a data-path thread stopped\n\
         <4>WARN wanlb::logging::tests: no health verdict yet uplinks=lte\n\
         <6>INFO wanlb::logging::tests: uplink down uplink=isp1 reason=carrier lost\n\
         <7>DEBUG wanlb::logging::tests: carrier uplink=isp1 carrier=false\n\
         <7>TRACE wanlb::logging::tests: trace\n"
    );
}

#[test]
fn every_line_of_a_long_message_keeps_its_priority_in_the_journal() {
    let text = logged(true, || {
        tracing::warn!("the kernel refused the program\nverifier log:\nR1 invalid mem access")
    });
    assert_eq!(
        text,
        "<4>WARN wanlb::logging::tests: the kernel refused the program\n\
         <4>verifier log:\n\
         <4>R1 invalid mem access\n"
    );
}

#[test]
fn elsewhere_lines_keep_their_time_and_no_priority() {
    let text = logged(false, || tracing::info!(uplink = %"isp1", "uplink up"));
    assert!(!text.starts_with('<'), "{text}");
    // RFC 3339 time first: 2026-11-29T19:06:14.123456Z
    assert!(
        text.as_bytes()[..4].iter().all(u8::is_ascii_digit),
        "{text}"
    );
    assert!(
        text.ends_with(" INFO wanlb::logging::tests: uplink up uplink=isp1\n"),
        "{text}"
    );
}

#[test]
fn the_level_changes_while_running() {
    let out = Captured::default();
    let sink = out.clone();
    let (filter, handle) = reload::Layer::new(level_filter(LevelFilter::INFO));
    let subscriber =
        tracing_subscriber::registry()
            .with(filter)
            .with(output(true, false, move || sink.clone()));
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("hidden");
        tracing::info!("shown");
        handle.reload(level_filter(LevelFilter::DEBUG)).unwrap();
        tracing::debug!("shown after the change");
        // another crate's debug stays out
        tracing::debug!(target: "aya::bpf", "BPF Feature Detection");
        tracing::info!(target: "aya::bpf", "another crate's info");
        handle.reload(level_filter(LevelFilter::WARN)).unwrap();
        tracing::info!("hidden again");
    });
    assert_eq!(
        out.text(),
        "<6>INFO wanlb::logging::tests: shown\n\
         <7>DEBUG wanlb::logging::tests: shown after the change\n\
         <6>INFO aya::bpf: another crate's info\n"
    );
}

#[test]
fn journal_stream_names_a_device_and_an_inode() {
    assert!(names_file("8:1234", 8, 1234));
    assert!(!names_file("8:1234", 8, 1235));
    assert!(!names_file("9:1234", 8, 1234));
    for bad in ["", "8", "8:", ":1234", "8:12x", "-8:1234", "8:1234:5"] {
        assert!(!names_file(bad, 8, 1234), "{bad:?}");
    }
}
