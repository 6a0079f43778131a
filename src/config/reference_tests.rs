//! The README's configuration reference and reload table are what the declarations say.

use std::path::Path;

use super::declare::{ReloadClass, Settings};
use super::{Config, reference};

/// The README with its generated parts as the declarations make them; with
/// `WANLB_WRITE_README=1`, written back to README.md.
#[test]
fn the_readme_says_what_the_declarations_say() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let mut expected = readme.clone();
    for (name, content) in [
        ("reference", reference::reference()),
        ("reload", reference::reload()),
    ] {
        expected = reference::replaced(&expected, name, &content)
            .unwrap_or_else(|| panic!("README.md has no markers for the generated {name}"));
    }
    if expected == readme {
        return;
    }
    if std::env::var_os("WANLB_WRITE_README").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    panic!(
        "README.md's configuration reference is not what src/config/settings.rs declares; \
         run `WANLB_WRITE_README=1 cargo test --lib readme_says` to write it. It should read:\n\n{}\n{}",
        reference::reference(),
        reference::reload()
    );
}

#[test]
fn every_key_has_one_row_and_every_row_a_reload_class_but_an_uplinks_name() {
    let rows = reference::rows();
    let mut keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), rows.len(), "a key declared twice");
    for row in &rows {
        assert!(!row.doc.is_empty(), "{} has no doc", row.key);
        assert_eq!(
            row.reload.is_none(),
            row.key == "[[uplink]] name",
            "{}",
            row.key
        );
    }
    // what the file does not take is not in the reference
    let classes = |class| rows.iter().filter(|r| r.reload == Some(class)).count();
    assert!(classes(ReloadClass::Applied) > 0 && classes(ReloadClass::Restart) > 0);
}

#[test]
fn the_declared_defaults_are_what_loading_nothing_gives() {
    // every text default parses with its own parser (or this panics), and stands when
    // nothing is given
    let defaults = Config::defaults();
    let loaded = Config::load(&super::Flags {
        lan: vec!["eth0".into()],
        uplinks: vec!["isp1,dev=eth1,gw=198.18.1.254".into()],
        ..super::Flags::default()
    })
    .unwrap();
    assert_eq!(
        Config {
            lan: defaults.lan.clone(),
            uplinks: defaults.uplinks.clone(),
            ..loaded
        },
        defaults
    );
    assert!(defaults.written().iter().all(|w| w.is_default));
    assert_eq!(<Config as Settings>::rows().len(), reference::rows().len());
}
