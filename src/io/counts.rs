//! The lines' counts against their caps on disk, so that restarts, crashes and reboots lose
//! at most what was counted since the last write: `DATA_DIR/TUN.json`, one file per wanlb
//! (by its TUN device), replaced atomically (a file beside it, written and synced, renamed
//! over it, the directory synced). A missing or unreadable file is reported and every count
//! starts at 0; it never stops wanlb.
//!
//! The directory must be writable by this user alone, as the undo journal's: a file planted
//! there (a link to elsewhere, say) would be written as root. Not the network namespace in
//! the name, unlike the journal's: its number changes at every boot.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::metered::{Date, Meter};

/// The format's version: a file of another is reported and not read.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kept {
    version: u32,
    uplinks: BTreeMap<String, Meter>,
}

/// Where one wanlb keeps its counts.
#[derive(Debug)]
pub struct CountsFile {
    path: PathBuf,
}

/// What was found on disk.
#[derive(Debug, Default)]
pub struct Found {
    pub meters: BTreeMap<String, Meter>,
    /// Why nothing (or not all) could be used, for the log; None if all was read.
    pub problem: Option<String>,
}

impl CountsFile {
    /// The file of the wanlb with TUN device `tun` in `dir`, made (0755) if missing; refused
    /// if others can write the directory.
    pub fn open(dir: &Path, tun: &str) -> io::Result<CountsFile> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
        let dir = super::trusted_dir::trusted_dir(dir).map_err(|why| {
            io::Error::other(format!(
                "{} is not safe for wanlb's counts, which it writes as root: {why}",
                dir.display()
            ))
        })?;
        Ok(CountsFile {
            path: dir.join(format!("{tun}.json")),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counts kept, or none and why. A file that cannot be read is moved aside
    /// (`TUN.json.bad`) so that the next write does not lose what it held.
    pub fn load(&self) -> Found {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Found {
                    problem: Some(format!("{} does not exist yet", self.path.display())),
                    ..Found::default()
                };
            }
            Err(e) => {
                return Found {
                    problem: Some(format!("cannot read {}: {e}", self.path.display())),
                    ..Found::default()
                };
            }
        };
        match serde_json::from_str::<Kept>(&text) {
            Ok(kept) if kept.version == VERSION => Found {
                meters: kept.uplinks,
                problem: None,
            },
            Ok(kept) => Found {
                problem: Some(format!(
                    "{} is of version {}, this wanlb writes {VERSION}",
                    self.path.display(),
                    kept.version
                )),
                ..Found::default()
            },
            Err(e) => {
                let aside = self.path.with_extension("json.bad");
                let moved = match fs::rename(&self.path, &aside) {
                    Ok(()) => format!("moved to {}", aside.display()),
                    Err(e) => format!("and cannot be moved aside: {e}"),
                };
                Found {
                    problem: Some(format!(
                        "{} is not what wanlb writes ({e}); {moved}",
                        self.path.display()
                    )),
                    ..Found::default()
                }
            }
        }
    }

    /// Replaces the file with `meters`, atomically and durably.
    pub fn save(&self, meters: &BTreeMap<String, Meter>) -> io::Result<()> {
        let kept = Kept {
            version: VERSION,
            uplinks: meters.clone(),
        };
        let text = serde_json::to_string_pretty(&kept).map_err(io::Error::other)?;
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let temporary = dir.join(format!(".{name}.new"));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&temporary)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        fs::rename(&temporary, &self.path)?;
        File::open(dir)?.sync_all()
    }
}

/// Today's date in the local time zone (the TZ variable, else /etc/localtime, as `date`
/// says); None if the clock reads before 1970 or the C library cannot say.
pub fn local_today() -> Option<Date> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let seconds = libc::time_t::try_from(now.as_secs()).ok()?;
    // SAFETY: an all-zero tm is a valid value of a plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live values of the right types for the call; localtime_r
    // writes only into `tm` and is thread-safe.
    let converted = unsafe { libc::localtime_r(&seconds, &mut tm) };
    if converted.is_null() {
        return None;
    }
    Date::new(
        tm.tm_year + 1900,
        u8::try_from(tm.tm_mon + 1).ok()?,
        u8::try_from(tm.tm_mday).ok()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wanlb-counts-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn counts_are_kept_and_a_bad_file_starts_at_zero() {
        let d = dir("kept");
        let file = CountsFile::open(&d, "wanlb0").unwrap();
        let found = file.load();
        assert!(found.meters.is_empty());
        assert!(found.problem.unwrap().contains("does not exist"));
        let mut meters = BTreeMap::new();
        meters.insert(
            "lte".to_string(),
            Meter {
                bytes: 123,
                period_start: Date::new(2026, 3, 5),
                warned: false,
                reached: false,
            },
        );
        file.save(&meters).unwrap();
        let found = file.load();
        assert_eq!((found.meters, found.problem), (meters.clone(), None));
        assert!(!d.join(".wanlb0.json.new").exists());
        // cut short (a disk that lost the end of it): reported, set aside, started at 0
        let text = fs::read_to_string(file.path()).unwrap();
        fs::write(file.path(), &text[..text.len() / 2]).unwrap();
        let found = file.load();
        assert!(found.meters.is_empty());
        assert!(found.problem.unwrap().contains("not what wanlb writes"));
        assert!(d.join("wanlb0.json.bad").exists());
        file.save(&meters).unwrap();
        assert_eq!(file.load().meters, meters);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = dir("loose");
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let e = CountsFile::open(&d, "wanlb0").unwrap_err();
        assert!(e.to_string().contains("not safe"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn today_is_a_date() {
        assert!(local_today().is_some());
    }
}
