//! Loading in progress: the errors found so far (it goes on past each, so that one run reports
//! them all) and the file being read, to name the line and key of each value.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use toml::Spanned;

use super::{ConfigError, ConfigErrors};

/// What loading has found wrong so far, and enough to keep the checks between settings from
/// reporting what only follows from an error already reported.
#[derive(Default)]
pub struct Loading {
    pub errors: Vec<ConfigError>,
    /// The file's line of each origin in the file, to list the errors in line order.
    lines: HashMap<String, usize>,
    /// Where each setting was given last, for the checks between settings.
    places: HashMap<&'static str, String>,
    /// Settings whose value was refused: their defaults stand in, and are not checked against
    /// other settings.
    pub refused: HashSet<&'static str>,
    /// Uplinks given but refused, in order: pins may name them, and "no uplink" would be
    /// wrong.
    pub refused_uplinks: Vec<String>,
}

impl Loading {
    /// The value of `result`, or None once its error is noted.
    pub fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|e| self.errors.push(e)).ok()
    }

    /// The value of setting `name`, given at `origin`, or None once its error is noted.
    pub fn setting<T>(
        &mut self,
        name: &'static str,
        origin: String,
        result: Result<T, ConfigError>,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.refused.remove(name);
                self.places.insert(name, origin);
                Some(value)
            }
            Err(e) => {
                self.refused.insert(name);
                self.errors.push(e);
                None
            }
        }
    }

    /// Where setting `name` was given, or `default` for its default.
    pub fn place(&self, name: &str, default: &str) -> String {
        self.places
            .get(name)
            .map_or_else(|| default.to_string(), String::clone)
    }

    /// `value`, or every error found, the file's in the order of its lines, then the flags'
    /// and the checks between settings in the order found.
    pub fn finish<T>(mut self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(value);
        }
        // stable: the flags' errors, on no line, stay in their order after the file's
        let lines = &self.lines;
        self.errors
            .sort_by_key(|e| lines.get(&e.origin).copied().unwrap_or(usize::MAX));
        Err(ConfigErrors(self.errors))
    }
}

/// The file being read, to name the line and key of each value in it.
pub struct At<'a> {
    pub file: &'a Path,
    pub text: &'a str,
}

/// The line `offset` is on, counting from 1.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl At<'_> {
    /// "FILE line N, KEY" for `v`; `loading` keeps its line, to list errors in line order.
    pub fn origin<T>(&self, loading: &mut Loading, v: &Spanned<T>, key: &str) -> String {
        let line = line_of(self.text, v.span().start);
        let origin = format!("{} line {line}, {key}", self.file.display());
        loading.lines.insert(origin.clone(), line);
        origin
    }

    /// `parse(value, origin)` for `v`, or None once its error is noted.
    pub fn parse<T, R>(
        &self,
        loading: &mut Loading,
        v: &Spanned<T>,
        key: &str,
        parse: impl FnOnce(&T, &str) -> Result<R, ConfigError>,
    ) -> Option<R> {
        let origin = self.origin(loading, v, key);
        let result = parse(v.get_ref(), &origin);
        loading.take(result)
    }
}

/// A value in the file as the parsers take it.
pub trait FileText {
    fn text(&self) -> std::borrow::Cow<'_, str>;
}

impl FileText for String {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        self.into()
    }
}

/// A number: `3` and `"3"` alike; anything else as TOML writes it, for the error to quote.
impl FileText for toml::Value {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            toml::Value::String(s) => s.into(),
            other => other.to_string().into(),
        }
    }
}
