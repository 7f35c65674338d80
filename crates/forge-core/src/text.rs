//! Text and JSON as Postgres can store them, within documented sizes.
//!
//! Postgres refuses one character Rust strings may hold: NUL (`\u0000`), in `text` and in
//! `jsonb` alike. A job's output or error, its progress message, a log line's fields or a span's
//! attributes come from application code and may hold anything, so before Forge writes them it
//! replaces each NUL with U+FFFD (`�`) and cuts what is longer than its cap ([`caps`]), with a
//! marker that says how long it was. What the application *asked* to store as data — a job's
//! arguments, tags and unique key — is never changed: a NUL there is refused with an error
//! naming where it is ([`find_nul`]).
//!
//! ```
//! use forge_core::text::{clean_json, clean_text, find_nul};
//! use serde_json::json;
//!
//! let mut message = String::from("bad\0byte");
//! clean_text(&mut message, 100);
//! assert_eq!(message, "bad\u{FFFD}byte");
//!
//! let mut output = json!({"rows": ["a\0b"]});
//! clean_json(&mut output, 1000);
//! assert_eq!(output, json!({"rows": ["a\u{FFFD}b"]}));
//!
//! assert_eq!(find_nul(&json!({"to": ["x", "y\0"]})).as_deref(), Some("$.to[1]"));
//! ```

use serde_json::Value;

/// What a NUL becomes.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// The size caps, in bytes (of UTF-8 text, or of the JSON's text). Longer values are cut and
/// marked, never refused.
pub mod caps {
    /// A job's output (the JSON its handler returned).
    pub const OUTPUT: usize = 1024 * 1024;
    /// The message of a failed attempt.
    pub const ERROR_MESSAGE: usize = 16 * 1024;
    /// A progress message.
    pub const PROGRESS_MESSAGE: usize = 1024;
    /// A log record's message.
    pub const LOG_MESSAGE: usize = 16 * 1024;
    /// Each field of a log record.
    pub const LOG_FIELD: usize = 4 * 1024;
    /// Each attribute of a span.
    pub const SPAN_ATTRIBUTE: usize = 4 * 1024;
    /// How much of an oversized JSON value is kept, as text, in its marker.
    pub const JSON_PREVIEW: usize = 1024;
}

/// Replaces each NUL in `text` with U+FFFD and cuts it to at most about `max` bytes (on a
/// character boundary, followed by `… [cut: N bytes in all]`). Returns whether it changed.
pub fn clean_text(text: &mut String, max: usize) -> bool {
    let mut changed = false;
    if text.contains('\0') {
        *text = text.replace('\0', "\u{FFFD}");
        changed = true;
    }
    if text.len() > max {
        let total = text.len();
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(&format!("… [cut: {total} bytes in all]"));
        changed = true;
    }
    changed
}

/// Replaces each NUL in `value`'s strings and keys with U+FFFD, and when its JSON text is longer
/// than `max` bytes, replaces it with a marker:
/// `{"forge_cut": {"bytes": N, "preview": "<the first bytes of its JSON text>"}}`.
pub fn clean_json(value: &mut Value, max: usize) {
    let size = clean_nul(value);
    if size > max {
        let text = value.to_string();
        if text.len() > max {
            let mut preview = text;
            let bytes = preview.len();
            let mut end = caps::JSON_PREVIEW.min(max);
            while !preview.is_char_boundary(end) {
                end -= 1;
            }
            preview.truncate(end);
            *value = serde_json::json!({ "forge_cut": { "bytes": bytes, "preview": preview } });
        }
    }
}

/// Replaces NULs in place; returns about how long the value's JSON text is (an estimate that
/// never falls far below it: strings and keys by their length plus quotes).
fn clean_nul(value: &mut Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => {
            if s.contains('\0') {
                *s = s.replace('\0', "\u{FFFD}");
            }
            s.len() + 2
        }
        Value::Array(items) => 2 + items.iter_mut().map(|v| clean_nul(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let entries = std::mem::take(map);
                *map = entries.into_iter().map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v)).collect();
            }
            2 + map.iter_mut().map(|(k, v)| k.len() + 4 + clean_nul(v)).sum::<usize>()
        }
    }
}

/// Where `value` holds a NUL (in a string or a key), as a path like `$.to[1]`; `None` if
/// nowhere.
pub fn find_nul(value: &Value) -> Option<String> {
    fn walk(value: &Value, path: &mut String) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, v)| {
                let len = path.len();
                path.push('.');
                path.push_str(&k.replace('\0', "\\u0000"));
                let found = k.contains('\0') || walk(v, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::from("$");
    walk(value, &mut path).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_cut_on_a_character_boundary_and_marked() {
        let mut text = "é".repeat(10);
        assert!(clean_text(&mut text, 5));
        assert_eq!(text, "éé… [cut: 20 bytes in all]");
        let mut short = String::from("fine");
        assert!(!clean_text(&mut short, 5));
        assert_eq!(short, "fine");
    }

    #[test]
    fn oversized_json_becomes_a_marker_with_a_preview() {
        let mut value = json!({"blob": "x".repeat(5000)});
        clean_json(&mut value, 2000);
        assert_eq!(value["forge_cut"]["bytes"], json!(5000 + 11));
        let preview = value["forge_cut"]["preview"].as_str().unwrap();
        assert!(preview.starts_with(r#"{"blob":"xxx"#) && preview.len() == caps::JSON_PREVIEW);
        let mut small = json!({"a": [1, 2, "b"]});
        clean_json(&mut small, 2000);
        assert_eq!(small, json!({"a": [1, 2, "b"]}));
    }

    #[test]
    fn nul_in_keys_is_replaced_and_found() {
        let mut value = json!({"k\u{0}": {"x": 1}});
        assert_eq!(find_nul(&value).as_deref(), Some("$.k\\u0000"));
        clean_json(&mut value, 100);
        assert_eq!(value, json!({"k\u{FFFD}": {"x": 1}}));
        assert_eq!(find_nul(&value), None);
        assert_eq!(find_nul(&json!([1, {"a": ["\u{0}"]}])).as_deref(), Some("$[1].a[0]"));
    }
}
