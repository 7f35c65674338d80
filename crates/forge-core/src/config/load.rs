//! Reading `forge.toml` and the environment into a [`ForgeConfig`], with errors that point at
//! the exact key and line.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::ForgeConfig;
use super::error::ConfigError;

/// The sections of `forge.toml`; `FORGE_<SECTION>_<KEY>` overrides only these.
const SECTIONS: [&str; 9] =
    ["project", "database", "node", "gateway", "worker", "observability", "auth", "dashboard", "api"];

impl ForgeConfig {
    /// Parses `forge.toml` text, without looking at the environment. Errors name the file as
    /// `forge.toml`.
    pub fn parse_toml(text: &str) -> Result<Self, ConfigError> {
        Self::parse_named(text, Path::new("forge.toml"))
    }

    /// Parses TOML text that came from `file` (used only in error messages), without looking at
    /// the environment.
    pub fn parse_named(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let deserializer =
            toml::de::Deserializer::parse(text).map_err(|e| file_error(file, text, String::new(), &e))?;
        deserialize_tracked(deserializer).map_err(|(path, e)| file_error(file, text, path, &e))
    }

    /// Reads `path` and applies environment overrides from the process environment.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: path.to_owned(), source })?;
        Self::parse_with_env(&text, path, std::env::vars())
    }

    /// Like [`ForgeConfig::load`], but a missing file means "all defaults" rather than an error.
    /// This is what `forge run` and the examples use.
    pub fn load_or_default(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse_with_env(&text, path, std::env::vars()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::parse_with_env("", path, std::env::vars()),
            Err(source) => Err(ConfigError::Io { file: path.to_owned(), source }),
        }
    }

    /// Parses `text` (from `file`) and then applies overrides from `env`, a list of
    /// `(name, value)` pairs such as `std::env::vars()`.
    pub fn parse_with_env(
        text: &str,
        file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // The file alone first, so its own mistakes are reported with their line.
        let from_file = Self::parse_named(text, file)?;
        let overrides = overrides(env);
        if overrides.is_empty() {
            return Ok(from_file);
        }
        let mut table: toml::Table = toml::from_str(text).map_err(|e| file_error(file, text, String::new(), &e))?;
        let defaults = toml::Table::try_from(ForgeConfig::default()).unwrap_or_default();
        let mut overrides = overrides;
        for o in &mut overrides {
            o.path = nested_path(defaults.get(&o.section), &o.key);
            let mut at = &mut table;
            let mut kind = defaults.get(&o.section);
            let (last, tables) = o.path.split_last().unwrap_or((&o.key, &[]));
            for (depth, name) in std::iter::once(&o.section).chain(tables).enumerate() {
                if depth > 0 {
                    kind = kind.and_then(|k| k.get(name));
                }
                let next = at.entry(name.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let Some(next) = next.as_table_mut() else {
                    let key = std::iter::once(&o.section).chain(tables).take(depth + 1).cloned();
                    return Err(ConfigError::Env {
                        var: o.var.clone(),
                        key: key.collect::<Vec<_>>().join("."),
                        message: "the file sets this table to a plain value".to_owned(),
                    });
                };
                at = next;
            }
            at.insert(last.clone(), env_value(&o.value, kind.and_then(|k| k.get(last))));
        }
        deserialize_tracked::<ForgeConfig, _>(toml::Value::Table(table)).map_err(|(path, e)| {
            let key = full_key(&path, e.message());
            let var = overrides
                .iter()
                .rev()
                .find(|o| key == o.dotted() || key.starts_with(&format!("{}.", o.dotted())))
                .or_else(|| overrides.iter().rev().find(|o| key.starts_with(&o.section)))
                .map(|o| o.var.clone())
                .unwrap_or_else(|| "FORGE_*".to_owned());
            ConfigError::Env { var, key, message: clean_message(e.message()) }
        })
    }
}

/// One `section.key = value` taken from the environment.
#[derive(Debug)]
struct Override {
    var: String,
    section: String,
    /// The key as the variable spells it after the section (`webhooks_concurrency`).
    key: String,
    /// The key's path inside its section (`["webhooks", "concurrency"]`), see [`nested_path`].
    path: Vec<String>,
    value: String,
}

impl Override {
    fn dotted(&self) -> String {
        let path = if self.path.is_empty() { self.key.clone() } else { self.path.join(".") };
        format!("{}.{path}", self.section)
    }
}

/// The path of `key` inside a section whose defaults are `defaults`: a key of the section as
/// it is (`poll_interval`), or one of a table inside it, its name and the key joined by `_`
/// (`webhooks_concurrency` is `[api.webhooks] concurrency`, `queues_default_concurrency` is
/// `[worker.queues.default] concurrency`). A key the defaults do not know stays as it is, so
/// that the error names it.
fn nested_path(defaults: Option<&toml::Value>, key: &str) -> Vec<String> {
    let Some(table) = defaults.and_then(toml::Value::as_table) else {
        return vec![key.to_owned()];
    };
    if table.contains_key(key) {
        return vec![key.to_owned()];
    }
    let inner = table
        .iter()
        .filter(|(_, value)| value.is_table())
        .filter_map(|(name, value)| Some((name, value, key.strip_prefix(name.as_str())?.strip_prefix('_')?)))
        .max_by_key(|(name, _, _)| name.len());
    match inner {
        Some((name, value, rest)) if !rest.is_empty() => {
            std::iter::once(name.clone()).chain(nested_path(Some(value), rest)).collect()
        }
        _ => vec![key.to_owned()],
    }
}

/// The overrides in `env`, aliases first so that the long form wins when both are set.
fn overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut aliases = Vec::new();
    let mut long = Vec::new();
    for (var, value) in env {
        let alias = match var.as_str() {
            "DATABASE_URL" => Some(("database", "url")),
            "FORGE_PORT" => Some(("gateway", "port")),
            _ => None,
        };
        if let Some((section, key)) = alias {
            aliases.push(Override { var, section: section.to_owned(), key: key.to_owned(), path: Vec::new(), value });
            continue;
        }
        let Some(rest) = var.strip_prefix("FORGE_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if key.is_empty() || !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let key = key.to_ascii_lowercase();
        long.push(Override { var, section, key, path: Vec::new(), value });
    }
    aliases.sort_by(|a, b| a.var.cmp(&b.var));
    long.sort_by(|a, b| a.var.cmp(&b.var));
    aliases.extend(long);
    aliases
}

/// Turns an environment string into the TOML value its key expects, going by the type of the
/// key's default. A value that does not fit stays a string, so the error names the expected type.
fn env_value(raw: &str, default: Option<&toml::Value>) -> toml::Value {
    let parsed = || raw.parse::<toml::Value>().ok().or_else(|| parse_inline(raw));
    match default {
        Some(toml::Value::Integer(_)) => raw.trim().parse::<i64>().map(toml::Value::Integer).ok(),
        Some(toml::Value::Boolean(_)) => raw.trim().parse::<bool>().map(toml::Value::Boolean).ok(),
        Some(toml::Value::Array(_)) if raw.trim_start().starts_with('[') => parse_inline(raw),
        Some(toml::Value::Array(_)) => Some(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        )),
        Some(toml::Value::Table(_)) => parsed(),
        _ => None,
    }
    .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn parse_inline(raw: &str) -> Option<toml::Value> {
    let table: toml::Table = toml::from_str(&format!("v = {raw}")).ok()?;
    table.get("v").cloned()
}

/// Deserializes while tracking the path of the value being read, so errors can name their key.
fn deserialize_tracked<'de, T, D>(deserializer: D) -> Result<T, (String, toml::de::Error)>
where
    T: DeserializeOwned,
    D: serde::Deserializer<'de, Error = toml::de::Error>,
{
    serde_path_to_error::deserialize(deserializer).map_err(|e| (e.path().to_string(), e.into_inner()))
}

fn file_error(file: &Path, text: &str, path: String, error: &toml::de::Error) -> ConfigError {
    let (line, column) = error.span().map(|span| line_column(text, span)).unwrap_or((1, 1));
    ConfigError::File {
        file: file.to_owned(),
        key: full_key(&path, error.message()),
        line,
        column,
        message: clean_message(error.message()),
    }
}

/// `serde_path_to_error` usually ends the path with an unknown key already; where it stops at the
/// table, the key is taken from serde's message (``unknown field `prot` ``). A path of `.` means
/// the document root.
fn full_key(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')).map(|(field, _)| field);
    match (path, unknown) {
        (path, Some(field)) if path == field || path.ends_with(&format!(".{field}")) => path.to_owned(),
        ("", Some(field)) => field.to_owned(),
        (path, Some(field)) => format!("{path}.{field}"),
        (path, None) => path.to_owned(),
    }
}

fn clean_message(message: &str) -> String {
    message.trim().trim_end_matches('.').to_owned()
}

fn line_column(text: &str, span: Range<usize>) -> (usize, usize) {
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(start, |nl| start - nl - 1) + 1;
    (line, column)
}
