//! Logs on stderr. On a terminal or into a file they look as tracing-subscriber writes them
//! (time, level, target, fields; colours on a terminal only). Into the systemd journal they
//! go without the time, which the journal records itself, and without colours, each line led
//! by its syslog priority (`<4>` for a warning) as sd-daemon(3) describes, so that
//! `journalctl -p warning` selects them.
//!
//! The level comes from the settings (`--log-level`, `log_level`), and can change while wanlb
//! runs ([`set_level`]); it is wanlb's own, other crates stay at info at most. RUST_LOG, when
//! set, takes tracing's full filter directives instead (`RUST_LOG=info,wanlb::io::monitor=debug`)
//! and wins over the settings.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry, prelude::*, reload};

/// Changes the level of the running logger; unset while RUST_LOG decides.
static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// How the logs go out.
pub struct Logs {
    /// Stderr is the systemd journal: lines written to stderr outside the logger (the last
    /// words of a failed start) should lead with their priority too.
    pub journal: bool,
}

/// Starts logging to stderr at `info`, or as RUST_LOG says.
pub fn init() -> Logs {
    let journal = stderr_is_journal();
    let rust_log = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let mut unusable_rust_log = None;
    let from_env = match rust_log.map(|v| EnvFilter::try_new(&v)) {
        Some(Ok(directives)) => Some(directives),
        Some(Err(e)) => {
            unusable_rust_log = Some(e);
            None
        }
        None => None,
    };
    let settings_decide = from_env.is_none();
    let filter = from_env.unwrap_or_else(|| level_filter(LevelFilter::INFO));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = !journal && std::io::stderr().is_terminal();
    tracing_subscriber::registry()
        .with(filter)
        .with(output(journal, ansi, std::io::stderr))
        .init();
    if let Some(e) = unusable_rust_log {
        tracing::warn!(error = %e, "RUST_LOG is not a filter; ignoring it");
    }
    if settings_decide {
        let _ = LEVEL.set(handle);
    }
    Logs { journal }
}

/// Logs events of `level` and above from now on (at start, and on a reload of the settings),
/// unless RUST_LOG decides.
pub fn set_level(level: LevelFilter) {
    if let Some(handle) = LEVEL.get()
        && let Err(e) = handle.reload(level_filter(level))
    {
        tracing::warn!(error = %e, "cannot change the log level");
    }
}

/// `level` for wanlb's own events. Other crates' stop at info: their debug output (the eBPF
/// loader's, say) would bury wanlb's; RUST_LOG reaches them.
fn level_filter(level: LevelFilter) -> EnvFilter {
    let own = format!("wanlb={level}")
        .parse()
        .expect("a target and a level make a directive");
    EnvFilter::default()
        .add_directive(level.min(LevelFilter::INFO).into())
        .add_directive(own)
}

/// The formatting layer: the journal's format, or tracing-subscriber's own.
fn output<S, W>(journal: bool, ansi: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = fmt::layer().with_writer(writer);
    if journal {
        layer
            .with_ansi(false)
            .event_format(JournalFormat::default())
            .boxed()
    } else {
        layer.with_ansi(ansi).boxed()
    }
}

/// Whether stderr is the journal. systemd names the stream it connects to stderr in
/// JOURNAL_STREAM (`DEVICE:INODE`); a child that inherited the variable with stderr sent
/// elsewhere sees another file there.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    // fstat on a duplicate of fd 2: std does the syscall, no unsafe here
    let stderr = std::io::stderr().as_fd().try_clone_to_owned();
    let Ok(metadata) = stderr.map(std::fs::File::from).and_then(|f| f.metadata()) else {
        return false;
    };
    stream
        .to_str()
        .is_some_and(|s| names_file(s, metadata.dev(), metadata.ino()))
}

/// Whether JOURNAL_STREAM's value names the file of device `dev` and inode `ino`.
fn names_file(stream: &str, dev: u64, ino: u64) -> bool {
    let parsed = stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)));
    parsed == Some((dev, ino))
}

/// The syslog priority the journal files a line under.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<6>INFO wanlb::io::monitor: uplink up uplink=isp1 ...`: tracing-subscriber's format without
/// the time and the padded level, led by the syslog priority. Each line of a message that
/// spans several gets the priority, as the journal reads every line as an entry of its own.
struct JournalFormat {
    rest: Format<Full, ()>,
}

impl Default for JournalFormat {
    fn default() -> JournalFormat {
        JournalFormat {
            rest: fmt::format().without_time().with_level(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let mut text = String::new();
        self.rest.format_event(ctx, Writer::new(&mut text), event)?;
        let priority = syslog_priority(level);
        for (i, line) in text.lines().enumerate() {
            if i == 0 {
                writeln!(writer, "<{priority}>{level} {line}")?;
            } else {
                writeln!(writer, "<{priority}>{line}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
