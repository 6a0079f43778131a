//! How a setting is declared: the `settings!` table (settings.rs holds the one of wanlb) and
//! what each declaration turns into.
//!
//! A declaration says everything about a setting once: its key in the file (the field's name),
//! its flag and the flag's value, its default, its parser, whether a reload applies it, its
//! `--help` text (the doc comment) and its line in the README's reference (`doc`). From the
//! table come the `Config` struct, the clap-derived flags, the serde-derived file, loading
//! (file, then flags, every error kept), the reload's comparison, check-config's listing and
//! the reference's rows. A macro rather than a derive: the table stays in this crate, reads
//! as a list, and what it expands to is ordinary Rust in the descriptors below.
//!
//! Kinds of entries:
//! - `one`: a single value (`busy_poll = "50us"`, `--busy-poll 50us`); the flag overrides the
//!   file;
//! - `list`: repeatable (`lan = ["eth0"]`, `--lan eth0 --lan eth1`); `merge` says how the
//!   flags' items join the file's;
//! - `tables`: an array of tables in the file and a SPEC flag (`[[uplink]]`, `--uplink`),
//!   loaded and reloaded by the element's [`Table`] impl;
//! - `section`: a table of settings of its own (`[timeouts]`), declared by another
//!   `settings!`, whose flags are flattened into these.

use std::fmt::Debug;
use std::marker::PhantomData;

use toml::Spanned;

use super::ConfigError;
use super::load::{At, FileText, Loading};
use super::values::Value;

/// Whether a reload can apply a setting while wanlb runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadClass {
    /// Policy: the engine, the monitor, the control loop and the logger take it between two
    /// packets.
    Applied,
    /// Built into the running process (interfaces, sockets, the TUN device, the pool): a
    /// change is reported and waits for a restart.
    Restart,
}

/// One line of the configuration reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `lan`, `timeouts.udp`, `[[uplink]] dev`.
    pub key: String,
    /// `--lan IFACE`, `dev=IFACE`.
    pub flag: String,
    /// The flag may be given several times (or the key holds a list).
    pub repeatable: bool,
    pub default: String,
    pub doc: String,
    /// None where a row stands for several classes (an uplink's name).
    pub reload: Option<ReloadClass>,
}

/// A setting's value as the file would write it, for check-config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub key: String,
    pub value: String,
    pub is_default: bool,
}

/// What a reload changes: the lines it applies and those that wait for a restart.
#[derive(Debug, Default)]
pub struct Changes {
    pub applied: Vec<String>,
    pub need_restart: Vec<String>,
}

impl Changes {
    /// `key: old -> new`, when they differ.
    pub fn note<T: Value>(&mut self, key: &str, old: &T, new: &T) {
        if old != new {
            self.applied
                .push(format!("{key}: {} -> {}", old.shown(), new.shown()));
        }
    }

    pub fn restart(&mut self, key: &str) {
        self.need_restart
            .push(format!("{key} changed: restart wanlb to apply it"));
    }

    /// Applies `new` to `running` as `class` says, noting it under `key`.
    pub fn apply<T: Value>(&mut self, class: ReloadClass, key: &str, running: &mut T, new: &T) {
        if running == new {
            return;
        }
        match class {
            ReloadClass::Applied => {
                self.note(key, running, new);
                *running = new.clone();
            }
            ReloadClass::Restart => self.restart(key),
        }
    }
}

/// What the running settings bring to a reload beside themselves.
pub struct ReloadContext {
    /// The uplinks running (a reload adds or removes none).
    pub running_uplinks: Vec<String>,
}

/// A setting's default: as the file writes it (parsed like a given value), or a value with
/// the words the docs name it by.
pub enum DefaultValue<T> {
    Text(&'static str),
    Given(fn() -> T, &'static str),
}

impl<T> DefaultValue<T> {
    pub fn shown(&self) -> &'static str {
        match self {
            DefaultValue::Text(t) | DefaultValue::Given(_, t) => t,
        }
    }
}

/// A setting with one value: `key = VALUE`, `--flag VALUE`.
pub struct One<T, P> {
    key: &'static str,
    flag: &'static str,
    value_name: &'static str,
    /// Its value stays out of messages and listings.
    secret: bool,
    default: DefaultValue<T>,
    parse: P,
    reload: ReloadClass,
    doc: &'static str,
}

impl<T: Value, P: Fn(&str, &str) -> Result<T, ConfigError>> One<T, P> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        flag: &'static str,
        value_name: &'static str,
        secret: bool,
        default: DefaultValue<T>,
        parse: P,
        reload: ReloadClass,
        doc: &'static str,
    ) -> Self {
        One {
            key: "",
            flag,
            value_name,
            secret,
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

    pub fn default_value(&self) -> T {
        match &self.default {
            DefaultValue::Text(text) => (self.parse)(text, self.key)
                .unwrap_or_else(|e| panic!("the declared default of {}: {e}", self.key)),
            DefaultValue::Given(value, _) => value(),
        }
    }

    pub fn apply_file<F: FileText>(
        &self,
        v: &Option<Spanned<F>>,
        place: &mut T,
        at: &At<'_>,
        l: &mut Loading,
    ) {
        let Some(v) = v else { return };
        let origin = at.origin(l, v, self.key);
        let result = (self.parse)(&v.get_ref().text(), &origin);
        if let Some(value) = l.setting(self.key, origin, result) {
            *place = value;
        }
    }

    pub fn apply_flags<V: Debug + ToString>(&self, v: &Option<V>, place: &mut T, l: &mut Loading) {
        let Some(v) = v else { return };
        let origin = if self.secret {
            self.flag.to_string()
        } else {
            format!("{} {v:?}", self.flag)
        };
        let result = (self.parse)(&v.to_string(), &origin);
        if let Some(value) = l.setting(self.key, origin, result) {
            *place = value;
        }
    }

    pub fn reload(&self, running: &mut T, new: &T, _: &ReloadContext, c: &mut Changes) {
        c.apply(self.reload, self.key, running, new);
    }

    pub fn rows(&self) -> Vec<Row> {
        vec![Row {
            key: self.key.to_string(),
            flag: format!("{} {}", self.flag, self.value_name),
            repeatable: false,
            default: self.default.shown().to_string(),
            doc: self.doc.to_string(),
            reload: Some(self.reload),
        }]
    }

    pub fn written(&self, value: &T, default: &T) -> Vec<Written> {
        let text = match value.written() {
            Some(_) if self.secret => "(given)".to_string(),
            Some(text) => text,
            None => self.default.shown().to_string(),
        };
        vec![Written {
            key: self.key.to_string(),
            value: text,
            is_default: value == default,
        }]
    }
}

/// How the items of a list from one place (the file, or the flags) join those already taken:
/// `(list, items with their origins, errors)`.
pub type Merge<T> = fn(&mut Vec<T>, Vec<(T, String)>, &mut Vec<ConfigError>);

/// Adds each item not in the list yet.
pub fn union<T: PartialEq>(list: &mut Vec<T>, items: Vec<(T, String)>, _: &mut Vec<ConfigError>) {
    for (item, _) in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// A repeatable setting: `key = [VALUE, ...]`, `--flag VALUE --flag VALUE`.
pub struct List<T, P> {
    key: &'static str,
    flag: &'static str,
    value_name: &'static str,
    default: &'static str,
    parse: P,
    merge: Merge<T>,
    reload: ReloadClass,
    doc: &'static str,
}

impl<T: Value, P: Fn(&str, &str) -> Result<T, ConfigError>> List<T, P> {
    pub fn new(
        flag: &'static str,
        value_name: &'static str,
        default: &'static str,
        parse: P,
        merge: Merge<T>,
        reload: ReloadClass,
        doc: &'static str,
    ) -> Self {
        List {
            key: "",
            flag,
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

    pub fn default_value(&self) -> Vec<T> {
        Vec::new()
    }

    /// Parses `given` (text and origin), merges what parses; an item refused marks the
    /// setting refused.
    fn take(&self, place: &mut Vec<T>, given: Vec<(&str, String)>, l: &mut Loading) {
        let before = l.errors.len();
        let mut items = Vec::new();
        for (text, origin) in given {
            match (self.parse)(text, &origin) {
                Ok(item) => items.push((item, origin)),
                Err(e) => l.errors.push(e),
            }
        }
        (self.merge)(place, items, &mut l.errors);
        if l.errors.len() > before {
            l.refused.insert(self.key);
        }
    }

    pub fn apply_file(
        &self,
        v: &Option<Vec<Spanned<String>>>,
        place: &mut Vec<T>,
        at: &At<'_>,
        l: &mut Loading,
    ) {
        let Some(list) = v else { return };
        let given = list
            .iter()
            .map(|item| (item.get_ref().as_str(), at.origin(l, item, self.key)))
            .collect();
        self.take(place, given, l);
    }

    pub fn apply_flags(&self, v: &[String], place: &mut Vec<T>, l: &mut Loading) {
        if v.is_empty() {
            return;
        }
        let given = v
            .iter()
            .map(|item| (item.as_str(), format!("{} {item:?}", self.flag)))
            .collect();
        self.take(place, given, l);
    }

    pub fn reload(&self, running: &mut Vec<T>, new: &Vec<T>, _: &ReloadContext, c: &mut Changes) {
        c.apply(self.reload, self.key, running, new);
    }

    pub fn rows(&self) -> Vec<Row> {
        vec![Row {
            key: self.key.to_string(),
            flag: format!("{} {}", self.flag, self.value_name),
            repeatable: true,
            default: self.default.to_string(),
            doc: self.doc.to_string(),
            reload: Some(self.reload),
        }]
    }

    pub fn written(&self, value: &Vec<T>, default: &Vec<T>) -> Vec<Written> {
        vec![Written {
            key: self.key.to_string(),
            value: value.written().unwrap_or_else(|| self.default.to_string()),
            is_default: value == default,
        }]
    }
}

/// An array of tables in the file (`[[uplink]]`), each also given as a flag's SPEC.
pub trait Table: Sized {
    /// One table of the array, as the file gives it.
    type File;
    /// The flag's value, for `--help`.
    const VALUE_NAME: &'static str;
    /// The flag's `--help`.
    fn help() -> String;
    fn apply_file(
        t: &Tables<Self>,
        list: &mut Vec<Self>,
        file: &[Self::File],
        at: &At<'_>,
        l: &mut Loading,
    );
    fn apply_flags(t: &Tables<Self>, list: &mut Vec<Self>, flags: &[String], l: &mut Loading);
    fn reload(running: &mut Vec<Self>, new: &[Self], ctx: &ReloadContext, c: &mut Changes);
    fn rows(t: &Tables<Self>) -> Vec<Row>;
}

/// A `tables` entry: its key in the file (`uplink` for `[[uplink]]`) and its flag.
pub struct Tables<T> {
    pub key: &'static str,
    pub flag: &'static str,
    table: PhantomData<T>,
}

impl<T: Table> Tables<T> {
    pub fn new(key: &'static str, flag: &'static str) -> Self {
        Tables {
            key,
            flag,
            table: PhantomData,
        }
    }

    /// Its key is its own, not the field's name.
    pub fn at(self, _: &'static str) -> Self {
        self
    }

    pub fn default_value(&self) -> Vec<T> {
        Vec::new()
    }

    pub fn apply_file(&self, v: &[T::File], place: &mut Vec<T>, at: &At<'_>, l: &mut Loading) {
        T::apply_file(self, place, v, at, l);
    }

    pub fn apply_flags(&self, v: &[String], place: &mut Vec<T>, l: &mut Loading) {
        T::apply_flags(self, place, v, l);
    }

    pub fn reload(&self, running: &mut Vec<T>, new: &[T], ctx: &ReloadContext, c: &mut Changes) {
        T::reload(running, new, ctx, c);
    }

    pub fn rows(&self) -> Vec<Row> {
        T::rows(self)
    }

    /// check-config lists each table by itself.
    pub fn written(&self, _: &[T], _: &[T]) -> Vec<Written> {
        Vec::new()
    }
}

/// What `settings!` makes of a table of settings: loading, reloading, listing.
pub trait Settings: Sized {
    type Flags;
    type File;
    fn defaults() -> Self;
    fn apply_file(&mut self, file: &Self::File, at: &At<'_>, l: &mut Loading);
    fn apply_flags(&mut self, flags: &Self::Flags, l: &mut Loading);
    fn reload_from(&mut self, new: &Self, ctx: &ReloadContext, c: &mut Changes);
    fn rows() -> Vec<Row>;
    fn written(&self, defaults: &Self) -> Vec<Written>;
}

/// A `section` entry: a table of settings of its own (`[timeouts]`).
pub struct Section<S>(PhantomData<S>);

impl<S: Settings> Section<S> {
    pub fn new() -> Self {
        Section(PhantomData)
    }

    /// Its keys carry the section's name themselves.
    pub fn at(self, _: &'static str) -> Self {
        self
    }

    pub fn default_value(&self) -> S {
        S::defaults()
    }

    pub fn apply_file(&self, v: &Option<S::File>, place: &mut S, at: &At<'_>, l: &mut Loading) {
        if let Some(file) = v {
            place.apply_file(file, at, l);
        }
    }

    pub fn apply_flags(&self, v: &S::Flags, place: &mut S, l: &mut Loading) {
        place.apply_flags(v, l);
    }

    pub fn reload(&self, running: &mut S, new: &S, ctx: &ReloadContext, c: &mut Changes) {
        running.reload_from(new, ctx, c);
    }

    pub fn rows(&self) -> Vec<Row> {
        S::rows()
    }

    pub fn written(&self, value: &S, default: &S) -> Vec<Written> {
        value.written(default)
    }
}

/// A flag's short help: the first paragraph of its doc comment.
pub fn help_summary(lines: &[&str]) -> String {
    let mut words = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            break;
        }
        words.push(line.trim());
    }
    words.join(" ")
}

/// A flag's whole help: its doc comment (blank lines part paragraphs) and its default.
pub fn help_text(lines: &[&str], default: Option<&str>) -> String {
    let mut paragraphs: Vec<String> = vec![String::new()];
    for line in lines {
        let line = line.trim();
        let last = paragraphs.last_mut().expect("never empty");
        if line.is_empty() {
            if !last.is_empty() {
                paragraphs.push(String::new());
            }
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(line);
        }
    }
    let mut text = paragraphs.join("\n\n");
    if let Some(default) = default {
        text += &format!(" [default: {default}]");
    }
    text
}

/// The value type of a flag: as declared (`as usize`), else text.
macro_rules! flag_value {
    () => {
        String
    };
    ($t:ident) => {
        $t
    };
}

/// Whether a flag's value is kept out of messages (`secret: true`).
macro_rules! is_secret {
    () => {
        false
    };
    ($secret:literal) => {
        $secret
    };
}

/// A setting's file field for `file: text` (a TOML string) or `file: number` (a number, or a
/// string holding one).
macro_rules! file_form {
    (text) => {
        ::std::string::String
    };
    (number) => {
        ::toml::Value
    };
}

/// A default as declared: `"10m"` (parsed like a given value) or `(VALUE, "how the docs name
/// it")`.
macro_rules! default_value {
    ($text:literal) => {
        $crate::config::declare::DefaultValue::Text($text)
    };
    (($value:expr, $shown:literal)) => {
        $crate::config::declare::DefaultValue::Given(|| $value, $shown)
    };
}

/// How the docs name a default.
macro_rules! default_shown {
    ($text:literal) => {
        $text
    };
    (($value:expr, $shown:literal)) => {
        $shown
    };
}

/// A table of settings: see the module's doc, and settings.rs for the grammar in use.
///
/// It reads the entries one by one (`@munch`), putting each one's struct fields (the typed
/// value, the flag, the file's) and its descriptor into four lists, then writes the structs
/// and the [`Settings`] impl from them (`@emit`).
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $config:ident {
            flags: $flags:ident,
            file: $file:ident,
            prefix: $prefix:literal,
            $(flags_first: { $($first:tt)* } $(,)?)?
        }
        $($entries:tt)*
    ) => {
        $crate::config::declare::settings! { @munch
            [[$(#[$meta])*] $config $flags $file $prefix [$($($first)*)?]]
            [] [] [] []
            $($entries)*
        }
    };

    (@munch $head:tt [$($config:tt)*] [$($flags:tt)*] [$($file:tt)*] [$($entries:tt)*]
        $(#[doc = $help:literal])*
        one $name:ident: $ty:ty {
            flag: $flag:literal $value:literal $(as $flag_ty:ident)?,
            $(secret: $secret:literal,)?
            file: $form:ident,
            default: $default:tt,
            parse: $parse:expr,
            reload: $reload:ident,
            doc: $doc:literal $(,)?
        }
        $($rest:tt)*
    ) => {
        $crate::config::declare::settings! { @munch $head
            [$($config)* #[doc = $doc] pub $name: $ty,]
            [$($flags)*
                #[arg(
                    long = $flag.trim_start_matches('-'),
                    value_name = $value,
                    help = $crate::config::declare::help_summary(&[$($help),*]),
                    long_help = $crate::config::declare::help_text(
                        &[$($help),*],
                        Some($crate::config::declare::default_shown!($default)),
                    ),
                )]
                pub $name: Option<$crate::config::declare::flag_value!($($flag_ty)?)>,
            ]
            [$($file)*
                #[serde(default)]
                $name: Option<::toml::Spanned<$crate::config::declare::file_form!($form)>>,
            ]
            [$($entries)* {
                $name
                $crate::config::declare::One::new(
                    $flag,
                    $value,
                    $crate::config::declare::is_secret!($($secret)?),
                    $crate::config::declare::default_value!($default),
                    $parse,
                    $crate::config::declare::ReloadClass::$reload,
                    $doc,
                )
            }]
            $($rest)*
        }
    };

    (@munch $head:tt [$($config:tt)*] [$($flags:tt)*] [$($file:tt)*] [$($entries:tt)*]
        $(#[doc = $help:literal])*
        list $name:ident: Vec<$item:ty> {
            flag: $flag:literal $value:literal,
            default: $default:literal,
            parse: $parse:expr,
            merge: $merge:expr,
            reload: $reload:ident,
            doc: $doc:literal $(,)?
        }
        $($rest:tt)*
    ) => {
        $crate::config::declare::settings! { @munch $head
            [$($config)* #[doc = $doc] pub $name: Vec<$item>,]
            [$($flags)*
                #[arg(
                    long = $flag.trim_start_matches('-'),
                    value_name = $value,
                    help = $crate::config::declare::help_summary(&[$($help),*]),
                    long_help = $crate::config::declare::help_text(&[$($help),*], None),
                )]
                pub $name: Vec<String>,
            ]
            [$($file)*
                #[serde(default)]
                $name: Option<Vec<::toml::Spanned<String>>>,
            ]
            [$($entries)* {
                $name
                $crate::config::declare::List::new(
                    $flag,
                    $value,
                    $default,
                    $parse,
                    $merge,
                    $crate::config::declare::ReloadClass::$reload,
                    $doc,
                )
            }]
            $($rest)*
        }
    };

    (@munch $head:tt [$($config:tt)*] [$($flags:tt)*] [$($file:tt)*] [$($entries:tt)*]
        tables $name:ident: Vec<$item:ty> { key: $key:literal, flag: $flag:literal $(,)? }
        $($rest:tt)*
    ) => {
        $crate::config::declare::settings! { @munch $head
            [$($config)* pub $name: Vec<$item>,]
            [$($flags)*
                #[arg(
                    long = $flag.trim_start_matches('-'),
                    value_name = <$item as $crate::config::declare::Table>::VALUE_NAME,
                    help = <$item as $crate::config::declare::Table>::help(),
                )]
                pub $name: Vec<String>,
            ]
            [$($file)*
                #[serde(default, rename = $key)]
                $name: Vec<<$item as $crate::config::declare::Table>::File>,
            ]
            [$($entries)* { $name $crate::config::declare::Tables::<$item>::new($key, $flag) }]
            $($rest)*
        }
    };

    (@munch $head:tt [$($config:tt)*] [$($flags:tt)*] [$($file:tt)*] [$($entries:tt)*]
        section $name:ident: $ty:ident { flags: $section_flags:ident, file: $section_file:ident $(,)? }
        $($rest:tt)*
    ) => {
        $crate::config::declare::settings! { @munch $head
            [$($config)* pub $name: $ty,]
            [$($flags)* #[command(flatten)] pub $name: $section_flags,]
            [$($file)* #[serde(default)] $name: Option<$section_file>,]
            [$($entries)* { $name $crate::config::declare::Section::<$ty>::new() }]
            $($rest)*
        }
    };

    (@munch
        [[$($meta:tt)*] $config:ident $flags:ident $file:ident $prefix:literal [$($first:tt)*]]
        [$($config_fields:tt)*] [$($flag_fields:tt)*] [$($file_fields:tt)*]
        [$({ $name:ident $entry:expr })*]
    ) => {
        $($meta)*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $config {
            $($config_fields)*
        }

        /// What the command line gives (each flag as written; loading parses it).
        #[derive(clap::Args, Clone, Debug, Default)]
        pub struct $flags {
            $($first)*
            $($flag_fields)*
        }

        /// What the file gives, each value with where it is.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $file {
            $($file_fields)*
        }

        impl $crate::config::declare::Settings for $config {
            type Flags = $flags;
            type File = $file;

            fn defaults() -> Self {
                $config {
                    $($name: $entry.at(concat!($prefix, stringify!($name))).default_value(),)*
                }
            }

            fn apply_file(
                &mut self,
                file: &$file,
                at: &$crate::config::load::At<'_>,
                l: &mut $crate::config::load::Loading,
            ) {
                $($entry
                    .at(concat!($prefix, stringify!($name)))
                    .apply_file(&file.$name, &mut self.$name, at, l);)*
            }

            fn apply_flags(&mut self, flags: &$flags, l: &mut $crate::config::load::Loading) {
                $($entry
                    .at(concat!($prefix, stringify!($name)))
                    .apply_flags(&flags.$name, &mut self.$name, l);)*
            }

            fn reload_from(
                &mut self,
                new: &Self,
                ctx: &$crate::config::declare::ReloadContext,
                c: &mut $crate::config::declare::Changes,
            ) {
                $($entry
                    .at(concat!($prefix, stringify!($name)))
                    .reload(&mut self.$name, &new.$name, ctx, c);)*
            }

            fn rows() -> Vec<$crate::config::declare::Row> {
                let mut rows = Vec::new();
                $(rows.extend($entry.at(concat!($prefix, stringify!($name))).rows());)*
                rows
            }

            fn written(&self, defaults: &Self) -> Vec<$crate::config::declare::Written> {
                let mut written = Vec::new();
                $(written.extend(
                    $entry
                        .at(concat!($prefix, stringify!($name)))
                        .written(&self.$name, &defaults.$name),
                );)*
                written
            }
        }
    };
}

pub(crate) use {default_shown, default_value, file_form, flag_value, is_secret, settings};
