//! The undo journal: every change wanlb makes to the system is recorded in a file *before* it
//! is made, as the command that undoes it. A clean exit replays the journal backwards and
//! deletes it; a start after a crash, or `wanlb cleanup`, finds it and does the same. An undo
//! that fails for real (not because what it removes is already gone) stays in the journal, so
//! that the next stop, start or cleanup tries it again and the admin can read what is left.
//!
//! One journal per TUN name and network namespace, `DIR/TUN-NETNS.undo`, beside its lock
//! `DIR/TUN-NETNS.lock`, which the running wanlb holds. One wanlb runs per network namespace
//! (they would share routing table 7100): a start undoes what any stopped wanlb of the
//! namespace left, whatever its TUN name, and refuses to start beside a running one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::system::{SystemError, io_err, run, words, write_sysctl};
use super::trusted_dir::trusted_dir;

/// One recorded change, as the line that undoes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Undo {
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

    /// The undo a journal line holds, if it is of a kind wanlb writes: the journal's
    /// commands run as root, so nothing else is taken from it, whoever wrote it.
    fn from_line(line: &str) -> Option<Undo> {
        let mut w = words(line);
        if w.is_empty() {
            return None;
        }
        let kind = w.remove(0);
        match kind.as_str() {
            "ip" if is_ip_undo(&w) => Some(Undo::Ip(w)),
            "nft" if is_nft_undo(&w) => Some(Undo::Nft(w)),
            "sysctl" if w.len() == 2 && is_sysctl_undo(&w[0], &w[1]) => {
                Some(Undo::Sysctl(w[0].clone(), w[1].clone()))
            }
            _ => None,
        }
    }

    fn apply(&self) -> Result<(), SystemError> {
        match self {
            // replayed after a crash that came before the rule was moved, the kernel's rule is
            // still there: adding it again would make a second one (ours is not `proto kernel`)
            Undo::Ip(a) if local_rule_to_put_back(a).is_some_and(local_rule_is_at) => Ok(()),
            Undo::Ip(a) => run("ip", a, None),
            Undo::Nft(a) => run("nft", a, None),
            Undo::Sysctl(k, v) => write_sysctl(k, v),
        }
    }
}

/// The priority at which `ip ARGS` puts the local table's rule back, if that is what it does.
fn local_rule_to_put_back(args: &[String]) -> Option<u32> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words[..] {
        ["rule", "add", "priority", at, "lookup", "local"] => at.parse().ok(),
        _ => None,
    }
}

fn local_rule_is_at(priority: u32) -> bool {
    crate::io::netlink::local_rule_priorities().is_ok_and(|at| at.contains(&priority))
}

/// `ip ARGS` that removes a rule or route, or puts the local table's rule back: no option
/// (`-batch`, `-netns`, `-force`) but a leading `-6` (IPv6's rules and routes), no other
/// object (`netns exec` runs any command).
fn is_ip_undo(args: &[String]) -> bool {
    let args = match args {
        [family, rest @ ..] if family == "-6" => rest,
        _ => args,
    };
    let undoes = match args {
        [object, verb, ..] => matches!(
            (object.as_str(), verb.as_str()),
            ("rule", "del" | "add") | ("route", "del" | "flush")
        ),
        _ => false,
    };
    undoes && args.iter().all(|a| !a.starts_with('-'))
}

/// `nft delete table inet wanlb_NAME`, wanlb's own table and nothing else.
fn is_nft_undo(args: &[String]) -> bool {
    match args {
        [delete, table, inet, name] => {
            (delete.as_str(), table.as_str(), inet.as_str()) == ("delete", "table", "inet")
                && name.strip_prefix("wanlb_").is_some_and(|tun| {
                    !tun.is_empty()
                        && tun
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                })
        }
        _ => false,
    }
}

/// A network sysctl (IPv4 or IPv6) and a value without a path: nothing outside
/// /proc/sys/net is written.
fn is_sysctl_undo(key: &str, value: &str) -> bool {
    let separator = if key.contains('/') { '/' } else { '.' };
    let mut parts = key.split(separator);
    let family = (parts.next(), parts.next());
    matches!(family, (Some("net"), Some("ipv4" | "ipv6")))
        && key.split(separator).all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
        && !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Makes `dir` for this user alone if it is not there, and refuses it unless only this user
/// can write it: every journal there is commands that wanlb runs as root, so one that another
/// user could plant (a directory under /tmp, say, or one made with a loose umask) would run
/// theirs. Returns it resolved, to be used from now on.
fn own_state_dir(dir: &Path) -> Result<PathBuf, SystemError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(format!("creating {}", dir.display())))?;
    check_state_dir(dir)
}

/// `dir` resolved, if it is fit for journals ([`trusted_dir`]).
fn check_state_dir(dir: &Path) -> Result<PathBuf, SystemError> {
    trusted_dir(dir).map_err(|why| SystemError::StateDir {
        dir: dir.to_path_buf(),
        why,
    })
}

/// Undoes `entries` newest first, past failures. Returns those that failed for real, in
/// journal order; what was already gone (it went with the TUN device, or someone removed it)
/// counts as done.
fn undo_all(entries: &[Undo]) -> Vec<Undo> {
    let mut failed = Vec::new();
    for u in entries.iter().rev() {
        match u.apply() {
            Ok(()) => {}
            Err(e) if e.is_already_gone() => {
                tracing::debug!(undo = %u.to_line(), error = %e, "already gone");
            }
            Err(e) => {
                tracing::warn!(undo = %u.to_line(), error = %e, "undo failed; kept in the journal");
                failed.push(u.clone());
            }
        }
    }
    failed.reverse();
    failed
}

/// Replaces the journal at `path` by `entries`, whole or not at all (a crash in between
/// leaves the old one).
fn write_journal(path: &Path, entries: &[Undo]) -> Result<(), SystemError> {
    let text: String = entries.iter().map(|u| u.to_line() + "\n").collect();
    let new = path.with_extension("undo.new");
    fs::write(&new, text)
        .and_then(|()| fs::File::open(&new)?.sync_all())
        .and_then(|()| fs::rename(&new, path))
        .map_err(io_err(format!("writing {}", path.display())))
}

/// This process's network namespace, as its inode number.
fn netns() -> Result<u64, SystemError> {
    Ok(fs::metadata("/proc/self/ns/net")
        .map_err(io_err("reading /proc/self/ns/net"))?
        .ino())
}

/// `dir/TUN-NETNS.undo`: the journal of a wanlb with TUN device `tun` in this network
/// namespace.
fn journal_path(dir: &Path, tun: &str) -> Result<PathBuf, SystemError> {
    Ok(dir.join(format!("{tun}-{}.undo", netns()?)))
}

fn lock_path(journal: &Path) -> PathBuf {
    journal.with_extension("lock")
}

/// The journals in `dir` of this network namespace, found by their lock or their journal
/// file (a run holds its lock before its journal exists), each as (TUN name, journal path),
/// sorted; and how many files there are of other namespaces' journals.
fn journals_here(dir: &Path) -> Result<(Vec<(String, PathBuf)>, usize), SystemError> {
    let suffix = format!("-{}", netns()?);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(format!("reading {}", dir.display()))(e)),
    };
    let mut here = Vec::new();
    let mut elsewhere = 0;
    for entry in entries {
        let name = entry
            .map_err(io_err(format!("reading {}", dir.display())))?
            .file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name
            .strip_suffix(".undo")
            .or_else(|| name.strip_suffix(".lock"))
        else {
            continue;
        };
        match stem.strip_suffix(&suffix) {
            Some(tun) => here.push((tun.to_string(), dir.join(format!("{stem}.undo")))),
            None if name.ends_with(".undo") => elsewhere += 1,
            None => {}
        }
    }
    here.sort();
    here.dedup();
    Ok((here, elsewhere))
}

/// A journal whose lock this process holds: no running wanlb owns it.
struct Held {
    journal: PathBuf,
    lock: fs::File,
}

impl Held {
    /// Takes the lock of `journal`; `None` if a running wanlb holds it.
    fn take(journal: &Path) -> Result<Option<Held>, SystemError> {
        let lock_path = lock_path(journal);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("opening {}", lock_path.display())))?;
        let held = super::fd::try_lock_exclusive(&lock)
            .map_err(io_err(format!("locking {}", lock_path.display())))?;
        Ok(held.then(|| Held {
            journal: journal.to_path_buf(),
            lock,
        }))
    }

    /// Undoes what the journal holds. Returns how many changes it held, and those whose undo
    /// failed, still to undo.
    fn replay(&self) -> Result<(usize, Vec<Undo>), SystemError> {
        let entries = match fs::read_to_string(&self.journal) {
            Ok(text) => text
                .lines()
                .filter_map(|line| {
                    let undo = Undo::from_line(line);
                    if undo.is_none() && !line.trim().is_empty() {
                        tracing::warn!(journal = %self.journal.display(), line, "not an undo wanlb writes; ignored");
                    }
                    undo
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(format!("reading {}", self.journal.display()))(e)),
        };
        Ok((entries.len(), undo_all(&entries)))
    }

    /// Removes the journal and its lock file (whose lock goes when `self` does).
    fn remove(self) -> Result<(), SystemError> {
        match fs::remove_file(&self.journal) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err(format!("removing {}", self.journal.display()))(e));
            }
            _ => {}
        }
        let _ = fs::remove_file(lock_path(&self.journal));
        Ok(())
    }
}

/// What a start undid of what earlier runs in this namespace left.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Changes undone (or found already gone).
    pub undone: usize,
    /// Changes whose undo failed, kept at the head of the new journal.
    pub kept: usize,
}

/// The journal of the running wanlb.
#[derive(Debug)]
pub struct Plumbing {
    journal: PathBuf,
    undo: Vec<Undo>,
    /// Held while this process runs (the kernel drops it when the process dies, however it
    /// dies): no other wanlb, and no `wanlb cleanup`, undoes the changes of a live one.
    lock: fs::File,
}

/// A change in the journal, to undo before teardown ([`Plumbing::undo_now`]).
pub struct Recorded(Undo);

impl Plumbing {
    /// Takes the journal of TUN device `tun` in `dir`, after undoing what stopped runs in this
    /// network namespace left behind (after a crash or SIGKILL), whatever their TUN name.
    /// What fails to undo is kept at the head of the new journal, to be undone after this
    /// run's own changes.
    pub fn start(dir: &Path, tun: &str) -> Result<(Plumbing, Leftovers), SystemError> {
        let dir = &own_state_dir(dir)?;
        let journal = journal_path(dir, tun)?;
        let own = Held::take(&journal)?.ok_or_else(|| SystemError::Busy(lock_path(&journal)))?;
        let (found, _) = journals_here(dir)?;
        let mut others = Vec::new();
        for (_, path) in found.iter().filter(|(_, path)| *path != journal) {
            match Held::take(path)? {
                Some(held) => others.push(held),
                None => {
                    // refused before anything changed: leave no lock file of its own either
                    if !journal.exists() {
                        let _ = fs::remove_file(lock_path(&journal));
                    }
                    return Err(SystemError::Busy(lock_path(path)));
                }
            }
        }
        let mut leftovers = Leftovers::default();
        let mut kept = Vec::new();
        for held in others {
            let (total, failed) = held.replay()?;
            leftovers.undone += total - failed.len();
            kept.extend(failed);
            held.remove()?;
        }
        let (total, failed) = own.replay()?;
        leftovers.undone += total - failed.len();
        kept.extend(failed);
        leftovers.kept = kept.len();
        write_journal(&journal, &kept)?;
        let plumbing = Plumbing {
            journal,
            undo: kept,
            lock: own.lock,
        };
        Ok((plumbing, leftovers))
    }

    /// The journal's path, for messages.
    pub fn path(&self) -> &Path {
        &self.journal
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
        write_journal(&self.journal, &self.undo)
    }

    /// Sets a sysctl, restoring the old value at teardown. Nothing is recorded when the value
    /// is already right.
    pub fn sysctl(&mut self, key: &str, value: &str) -> Result<(), SystemError> {
        let old = super::system::read_sysctl(key)?;
        if old == value {
            return Ok(());
        }
        self.record(Undo::Sysctl(key.into(), old))?;
        write_sysctl(key, value)
    }

    /// Loads an nftables JSON batch that creates table `inet NAME`, deleting it at teardown.
    pub fn nft_table(&mut self, name: &str, batch_json: &str) -> Result<(), SystemError> {
        self.record(Undo::Nft(words(&format!("delete table inet {name}"))))?;
        run("nft", &words("-j -f -"), Some(batch_json))
    }

    /// Undoes everything, newest first, and removes the journal. Keeps going past failures;
    /// what failed stays in the journal (for the next start or `wanlb cleanup`), and the
    /// error says so.
    pub fn teardown(self) -> Result<(), SystemError> {
        let failed = undo_all(&self.undo);
        if !failed.is_empty() {
            write_journal(&self.journal, &failed)?;
            return Err(SystemError::UndoKept {
                count: failed.len(),
                journal: self.journal,
            });
        }
        Held {
            journal: self.journal.clone(),
            lock: self.lock,
        }
        .remove()?;
        // and, if no other gateway uses it, the state directory
        if let Some(dir) = self.journal.parent() {
            let _ = fs::remove_dir(dir);
        }
        Ok(())
    }
}

/// What `wanlb cleanup` did in a state directory.
#[derive(Debug, Default)]
pub struct Cleanup {
    /// The journals of stopped wanlbs in this namespace, by TUN name, and how many changes of
    /// each were undone.
    pub undone: Vec<(String, usize)>,
    /// Journals whose undo partly failed: (journal, the commands still to run).
    pub kept: Vec<(PathBuf, Vec<String>)>,
    /// Running wanlbs (TUN names) whose journals were left alone.
    pub running: Vec<String>,
    /// Journals of other network namespaces in the directory, left alone.
    pub elsewhere: usize,
}

/// Undoes what stopped wanlbs of this network namespace left in `dir` (only the one with TUN
/// device `tun`, if given), fail-closed rules included, as a start would, without starting:
/// journals of running wanlbs are left alone. A journal whose undo partly fails keeps what
/// failed; the others, their locks and then the directory, if empty, are removed.
pub fn cleanup(dir: &Path, tun: Option<&str>) -> Result<Cleanup, SystemError> {
    let resolved;
    let dir = if dir.exists() {
        resolved = check_state_dir(dir)?;
        resolved.as_path()
    } else {
        dir
    };
    let (found, elsewhere) = journals_here(dir)?;
    let mut report = Cleanup {
        elsewhere,
        ..Cleanup::default()
    };
    for (name, path) in found
        .into_iter()
        .filter(|(name, _)| tun.is_none_or(|t| t == name))
    {
        let existed = path.exists();
        let Some(held) = Held::take(&path)? else {
            report.running.push(name);
            continue;
        };
        if !existed {
            // a lock file alone: a run that was refused, or ended between the two removals
            held.remove()?;
            continue;
        }
        let (total, failed) = held.replay()?;
        if failed.is_empty() {
            held.remove()?;
        } else {
            write_journal(&path, &failed)?;
            report
                .kept
                .push((path, failed.iter().map(Undo::to_line).collect()));
        }
        report.undone.push((name, total - failed.len()));
    }
    let _ = fs::remove_dir(dir);
    Ok(report)
}

#[cfg(test)]
mod tests;
