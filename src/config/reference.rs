//! The README's configuration reference and its table of what a reload applies, rendered
//! from the declarations; a test keeps README.md the same as what this renders.

use super::Config;
use super::declare::{ReloadClass, Row, Settings};

/// Where the README's generated parts begin and end (`NAME` is `reference` or `reload`).
pub const BEGIN: &str = "<!-- generated from src/config/settings.rs: NAME -->";
pub const END: &str = "<!-- end of NAME -->";

/// Every row of the reference, in the declarations' order.
pub fn rows() -> Vec<Row> {
    Config::rows()
}

/// A key as the reference names it: `lan`, `[timeouts] udp`, `[[uplink]] dev`.
fn key(row: &Row) -> String {
    let key = match row.key.split_once('.') {
        Some((table, key)) => format!("[{table}] {key}"),
        None => row.key.clone(),
    };
    format!("`{key}`")
}

/// A table cell: Markdown would take a bare `|` for the cell's end.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The reference: one row per key, with its flag, default and meaning.
pub fn reference() -> String {
    let mut out = String::from("| key | flag | default | meaning |\n|---|---|---|---|\n");
    for row in rows() {
        let repeatable = if row.repeatable { " (repeatable)" } else { "" };
        out += &format!(
            "| {} | `{}`{repeatable} | {} | {} |\n",
            key(&row),
            cell(&row.flag),
            cell(&row.default),
            row.doc
        );
    }
    out
}

/// What a reload applies, and what waits for a restart.
pub fn reload() -> String {
    let keys = |class: ReloadClass| -> String {
        let keys: Vec<String> = rows()
            .iter()
            .filter(|r| r.reload == Some(class))
            .map(key)
            .collect();
        keys.join(", ")
    };
    format!(
        "| applied at once | waits for a restart (logged, not ignored) |\n|---|---|\n| {} | {}, adding or removing an uplink |\n",
        keys(ReloadClass::Applied),
        keys(ReloadClass::Restart)
    )
}

/// `text` with its generated part `name` (between its markers) made `content`, or None if the
/// markers are missing.
pub fn replaced(text: &str, name: &str, content: &str) -> Option<String> {
    let begin = BEGIN.replace("NAME", name);
    let end = END.replace("NAME", name);
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    Some(format!(
        "{}\n\n{content}\n{}",
        &text[..start],
        &text[stop..]
    ))
}
