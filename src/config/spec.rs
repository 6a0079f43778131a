//! The keys of a table that is also a flag's SPEC: `[[uplink]]` in the file and
//! `--uplink NAME,KEY=VALUE,...` on the command line, declared once for both (`spec_keys!`,
//! used in uplink.rs).
//!
//! ```text
//! /// KEY's part of the flag's --help.
//! required KEY: TYPE { value: "VALUE", parse, reload, doc }          must be given
//! one KEY: TYPE { value, file: text | number, default, parse, reload, doc }
//! list KEY: Option<Vec<T>> { value, default: "TEXT", parse (one item), merge, reload, doc }
//! ```
//!
//! In a SPEC a key's error names the key: in its message, or after the SPEC
//! (`--uplink "isp1,tier=0": tier: must be ...`).

use toml::Spanned;

use super::ConfigError;
use super::declare::{Changes, DefaultValue, Merge, ReloadClass, Row};
use super::load::{At, FileText, Loading};
use super::values::Value;

/// `error`, given for `key` in a SPEC at `origin`, naming the key if it does not already.
fn naming_key(mut error: ConfigError, key: &str) -> ConfigError {
    if !error.message.starts_with(key) {
        error.origin = format!("{}: {key}", error.origin);
    }
    error
}

/// A key's value in the file: required (`Spanned`) or not (`Option<Spanned>`).
pub trait FileKey {
    type Text: FileText;
    fn given(&self) -> Option<&Spanned<Self::Text>>;
}

impl<F: FileText> FileKey for Spanned<F> {
    type Text = F;
    fn given(&self) -> Option<&Spanned<F>> {
        Some(self)
    }
}

impl<F: FileText> FileKey for Option<Spanned<F>> {
    type Text = F;
    fn given(&self) -> Option<&Spanned<F>> {
        self.as_ref()
    }
}

/// A key with one value; without a default it must be given.
pub struct Key<T, P> {
    key: &'static str,
    value_name: &'static str,
    default: Option<DefaultValue<T>>,
    parse: P,
    reload: ReloadClass,
    doc: &'static str,
}

impl<T: Value, P: Fn(&str, &str) -> Result<T, ConfigError>> Key<T, P> {
    pub fn new(
        value_name: &'static str,
        default: Option<DefaultValue<T>>,
        parse: P,
        reload: ReloadClass,
        doc: &'static str,
    ) -> Self {
        Key {
            key: "",
            value_name,
            default,
            parse,
            reload,
            doc,
        }
    }

    pub fn at(mut self, key: &'static str) -> Self {
        self.key = key;
        self
    }

    fn default_value(&self) -> Option<T> {
        match self.default.as_ref()? {
            DefaultValue::Text(text) => Some(
                (self.parse)(text, self.key)
                    .unwrap_or_else(|e| panic!("the declared default of {}: {e}", self.key)),
            ),
            DefaultValue::Given(value, _) => Some(value()),
        }
    }

    /// Its value from `values` (each one given in a SPEC; the last counts), or None once the
    /// error is in `errors`.
    pub fn parse_spec(
        &self,
        values: &[&str],
        origin: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<T> {
        let given = values
            .last()
            .filter(|v| !v.is_empty() || self.default.is_some());
        let Some(text) = given else {
            if let Some(default) = self.default_value() {
                return Some(default);
            }
            errors.push(ConfigError {
                origin: origin.to_string(),
                message: format!("{}={} is missing", self.key, self.value_name),
            });
            return None;
        };
        match (self.parse)(text, origin) {
            Ok(value) => Some(value),
            Err(e) => {
                errors.push(naming_key(e, self.key));
                None
            }
        }
    }

    /// Its value from the file (`key`: how errors name it), or None once the error is noted.
    pub fn parse_file<V: FileKey>(
        &self,
        v: &V,
        key: &str,
        at: &At<'_>,
        l: &mut Loading,
    ) -> Option<T> {
        match v.given() {
            Some(v) => at.parse(l, v, key, |text, o| (self.parse)(&text.text(), o)),
            None => self.default_value(),
        }
    }

    /// `uplink` (the table's key) `name`'s value changed from `running` to `new`.
    pub fn reload(&self, table: &str, name: &str, running: &mut T, new: &T, c: &mut Changes) {
        let key = format!("{table} {name} {}", self.key);
        c.apply(self.reload, &key, running, new);
    }

    pub fn row(&self, table: &str) -> Row {
        Row {
            key: format!("[[{table}]] {}", self.key),
            flag: format!("{}={}", self.key, self.value_name),
            repeatable: false,
            default: self
                .default
                .as_ref()
                .map_or("(required)", DefaultValue::shown)
                .to_string(),
            doc: self.doc.to_string(),
            reload: Some(self.reload),
        }
    }

    /// Its default as the docs name it, if it has one.
    pub fn default_text(&self) -> Option<&'static str> {
        self.default.as_ref().map(DefaultValue::shown)
    }

    /// Its part of the SPEC: `,dev=IFACE` or `[,gw=IPV4]`.
    pub fn grammar(&self) -> String {
        match self.default {
            None => format!(",{}={}", self.key, self.value_name),
            Some(_) => format!("[,{}={}]", self.key, self.value_name),
        }
    }
}

/// A key that may be given several times (`check=A,check=B`; `check = [A, B]`): None when
/// it is not given at all.
pub struct ListKey<I, P> {
    key: &'static str,
    value_name: &'static str,
    default: &'static str,
    parse: P,
    merge: Merge<I>,
    reload: ReloadClass,
    doc: &'static str,
}

impl<I: Value, P: Fn(&str, &str) -> Result<I, ConfigError>> ListKey<I, P> {
    pub fn new(
        value_name: &'static str,
        default: &'static str,
        parse: P,
        merge: Merge<I>,
        reload: ReloadClass,
        doc: &'static str,
    ) -> Self {
        ListKey {
            key: "",
            value_name,
            default,
            parse,
            merge,
            reload,
            doc,
        }
    }

    pub fn at(mut self, key: &'static str) -> Self {
        self.key = key;
        self
    }

    fn take(&self, given: Vec<(&str, String)>, errors: &mut Vec<ConfigError>) -> Vec<I> {
        let mut items = Vec::new();
        for (text, origin) in given {
            match (self.parse)(text, &origin) {
                Ok(item) => items.push((item, origin)),
                Err(e) => errors.push(e),
            }
        }
        let mut list = Vec::new();
        (self.merge)(&mut list, items, errors);
        list
    }

    pub fn parse_spec(
        &self,
        values: &[&str],
        origin: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Option<Vec<I>>> {
        if values.is_empty() {
            return Some(None);
        }
        let mut found = Vec::new();
        let given = values.iter().map(|v| (*v, origin.to_string())).collect();
        let list = self.take(given, &mut found);
        errors.extend(found.into_iter().map(|e| naming_key(e, self.key)));
        Some(Some(list))
    }

    pub fn parse_file(
        &self,
        v: &Option<Vec<Spanned<String>>>,
        key: &str,
        at: &At<'_>,
        l: &mut Loading,
    ) -> Option<Option<Vec<I>>> {
        let Some(list) = v else {
            return Some(None);
        };
        let given = list
            .iter()
            .map(|item| (item.get_ref().as_str(), at.origin(l, item, key)))
            .collect();
        let list = self.take(given, &mut l.errors);
        Some(Some(list))
    }

    pub fn reload(
        &self,
        table: &str,
        name: &str,
        running: &mut Option<Vec<I>>,
        new: &Option<Vec<I>>,
        c: &mut Changes,
    ) {
        let key = format!("{table} {name} {}", self.key);
        c.apply(self.reload, &key, running, new);
    }

    pub fn row(&self, table: &str) -> Row {
        Row {
            key: format!("[[{table}]] {}", self.key),
            flag: format!("{}={}", self.key, self.value_name),
            repeatable: true,
            default: self.default.to_string(),
            doc: self.doc.to_string(),
            reload: Some(self.reload),
        }
    }

    pub fn default_text(&self) -> Option<&'static str> {
        Some(self.default)
    }

    pub fn grammar(&self) -> String {
        format!("[,{}={}]...", self.key, self.value_name)
    }
}

/// A key's file field.
macro_rules! key_file {
    (required) => { ::toml::Spanned<String> };
    (one $form:ident) => { Option<::toml::Spanned<$crate::config::declare::file_form!($form)>> };
    (list) => { Option<Vec<::toml::Spanned<String>>> };
}

/// A key's descriptor.
macro_rules! key_entry {
    (required [$value:literal] [] [] [$parse:expr] [] [$reload:ident] [$doc:literal]) => {
        $crate::config::spec::Key::new(
            $value,
            None,
            $parse,
            $crate::config::declare::ReloadClass::$reload,
            $doc,
        )
    };
    (one [$value:literal] [$form:ident] [$default:tt] [$parse:expr] [] [$reload:ident] [$doc:literal]) => {
        $crate::config::spec::Key::new(
            $value,
            Some($crate::config::declare::default_value!($default)),
            $parse,
            $crate::config::declare::ReloadClass::$reload,
            $doc,
        )
    };
    (list [$value:literal] [] [$default:literal] [$parse:expr] [$merge:expr] [$reload:ident] [$doc:literal]) => {
        $crate::config::spec::ListKey::new(
            $value,
            $default,
            $parse,
            $merge,
            $crate::config::declare::ReloadClass::$reload,
            $doc,
        )
    };
}

/// The keys of a SPEC table: the struct of one (its name, the keys, where it was given), the
/// file's form, and what loading, reloading and the docs need of the keys.
macro_rules! spec_keys {
    (
        $(#[$meta:meta])*
        pub struct $spec:ident in $table:literal { file: $file:ident $(,)? }
        $(
            $(#[doc = $help:literal])*
            $kind:ident $name:ident: $ty:ty {
                value: $value:literal,
                $(file: $form:ident,)?
                $(default: $default:tt,)?
                parse: $parse:expr,
                $(merge: $merge:expr,)?
                reload: $reload:ident,
                doc: $doc:literal $(,)?
            }
        )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $spec {
            pub name: String,
            $(#[doc = $doc] pub $name: $ty,)*
            /// Where it was given, for errors found later against the system.
            pub origin: String,
        }

        /// One table of the array in the file.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $file {
            name: ::toml::Spanned<String>,
            $($name: $crate::config::spec::key_file!($kind $($form)?),)*
        }

        impl $spec {
            /// The keys, in order.
            const KEYS: &[&str] = &[$(stringify!($name)),*];

            /// From a SPEC's `KEY=VALUE` pairs, or None once every error is in `errors`.
            fn from_pairs(
                name: &str,
                pairs: &[(&str, &str)],
                origin: String,
                errors: &mut Vec<$crate::config::ConfigError>,
            ) -> Option<$spec> {
                let before = errors.len();
                let values = |key: &str| -> Vec<&str> {
                    pairs.iter().filter(|(k, _)| *k == key).map(|(_, v)| *v).collect()
                };
                $(let $name = $crate::config::spec::key_entry!(
                    $kind [$value] [$($form)?] [$($default)?] [$parse] [$($merge)?] [$reload] [$doc]
                )
                .at(stringify!($name))
                .parse_spec(&values(stringify!($name)), &origin, errors);)*
                if errors.len() > before {
                    return None;
                }
                Some($spec {
                    name: name.to_string(),
                    $($name: $name?,)*
                    origin,
                })
            }

            /// From the file, or None once every error is noted; `key` names a key in errors.
            fn from_table(
                file: &$file,
                origin: String,
                key: impl Fn(&str) -> String,
                at: &$crate::config::load::At<'_>,
                l: &mut $crate::config::load::Loading,
            ) -> Option<$spec> {
                let before = l.errors.len();
                $(let $name = $crate::config::spec::key_entry!(
                    $kind [$value] [$($form)?] [$($default)?] [$parse] [$($merge)?] [$reload] [$doc]
                )
                .at(stringify!($name))
                .parse_file(&file.$name, &key(stringify!($name)), at, l);)*
                if l.errors.len() > before {
                    return None;
                }
                Some($spec {
                    name: file.name.get_ref().clone(),
                    $($name: $name?,)*
                    origin,
                })
            }

            /// Takes from `new` what a reload applies, noting it, and what waits for a
            /// restart.
            fn reload_keys(&mut self, new: &$spec, c: &mut $crate::config::declare::Changes) {
                $($crate::config::spec::key_entry!(
                    $kind [$value] [$($form)?] [$($default)?] [$parse] [$($merge)?] [$reload] [$doc]
                )
                .at(stringify!($name))
                .reload($table, &self.name, &mut self.$name, &new.$name, c);)*
                self.origin = new.origin.clone();
            }

            /// The reference's rows of the keys.
            fn key_rows() -> Vec<$crate::config::declare::Row> {
                vec![$($crate::config::spec::key_entry!(
                    $kind [$value] [$($form)?] [$($default)?] [$parse] [$($merge)?] [$reload] [$doc]
                )
                .at(stringify!($name))
                .row($table),)*]
            }

            /// The keys' part of the SPEC, e.g. `,dev=IFACE[,gw=IPV4]`.
            fn key_grammar() -> String {
                let parts: Vec<String> = vec![$($crate::config::spec::key_entry!(
                    $kind [$value] [$($form)?] [$($default)?] [$parse] [$($merge)?] [$reload] [$doc]
                )
                .at(stringify!($name))
                .grammar(),)*];
                parts.concat()
            }

            /// Each key's part of the flag's `--help`.
            fn key_help() -> Vec<(&'static str, String)> {
                vec![$((
                    stringify!($name),
                    $crate::config::declare::help_text(
                        &[$($help),*],
                        $crate::config::spec::key_entry!(
                            $kind [$value] [$($form)?] [$($default)?] [$parse] [$($merge)?] [$reload] [$doc]
                        )
                        .default_text(),
                    ),
                ),)*]
            }
        }
    };
}

pub(crate) use {key_entry, key_file, spec_keys};
