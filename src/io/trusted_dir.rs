//! Directories wanlb keeps what it runs or trusts as root in (the undo journals, the data
//! caps' counts): resolved once, and refused unless nobody else can change what they hold or
//! what their path leads to.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `dir` with every symbolic link resolved, to be used from now on, if it is a directory of
/// this user's that nobody else can write, under directories that only root or this user
/// own and that nobody else can write (or, like /tmp, sticky: others cannot move what is not
/// theirs). A link someone planted on the way is thus followed once, at the check, and
/// re-pointing it later changes nothing. Else why not.
pub fn trusted_dir(dir: &Path) -> Result<PathBuf, String> {
    let real = fs::canonicalize(dir).map_err(|e| format!("it cannot be resolved: {e}"))?;
    // SAFETY: geteuid takes nothing and cannot fail.
    let me = unsafe { libc::geteuid() };
    let meta = fs::metadata(&real).map_err(|e| format!("it cannot be read: {e}"))?;
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    if meta.uid() != me {
        return Err(format!(
            "it belongs to user {}, not to {me}, who runs wanlb",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "others can write it (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    for above in real.ancestors().skip(1) {
        let m =
            fs::metadata(above).map_err(|e| format!("{} cannot be read: {e}", above.display()))?;
        if m.uid() != 0 && m.uid() != me {
            return Err(format!("{} belongs to user {}", above.display(), m.uid()));
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Err(format!(
                "others can write {} (mode {:o}) and could swap what it holds",
                above.display(),
                m.mode() & 0o7777
            ));
        }
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wanlb-trusted-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn a_link_is_followed_once_and_repointing_it_changes_nothing() {
        let d = scratch("link");
        let (state, elsewhere) = (d.join("state"), d.join("elsewhere"));
        fs::create_dir(&state).unwrap();
        fs::create_dir(&elsewhere).unwrap();
        let link = d.join("link");
        symlink(&state, &link).unwrap();
        let real = trusted_dir(&link).unwrap();
        assert_eq!(real, fs::canonicalize(&state).unwrap());
        fs::remove_file(&link).unwrap();
        symlink(&elsewhere, &link).unwrap();
        assert_eq!(
            real,
            fs::canonicalize(&state).unwrap(),
            "what was resolved stays"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_under_one_others_can_write_is_refused() {
        let d = scratch("loose");
        let open = d.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let state = open.join("state");
        fs::create_dir(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        let why = trusted_dir(&state).unwrap_err();
        assert!(
            why.contains("others can write") && why.contains("open"),
            "{why}"
        );
        // sticky, like /tmp: others cannot move what is not theirs
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(trusted_dir(&state).is_ok());
        // the directory itself loose
        fs::set_permissions(&state, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(
            trusted_dir(&state)
                .unwrap_err()
                .contains("others can write it")
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_of_another_user_or_under_one_is_refused() {
        if fs::metadata("/proc/self").unwrap().uid() != 0 {
            return; // giving a directory away takes root
        }
        let d = scratch("owner");
        let theirs = d.join("theirs");
        fs::create_dir(&theirs).unwrap();
        let mine = theirs.join("mine");
        fs::create_dir(&mine).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        let why = trusted_dir(&theirs).unwrap_err();
        assert!(why.contains("belongs to user 65534"), "{why}");
        let why = trusted_dir(&mine).unwrap_err();
        assert!(why.contains("theirs belongs to user 65534"), "{why}");
        fs::remove_dir_all(&d).unwrap();
    }
}
