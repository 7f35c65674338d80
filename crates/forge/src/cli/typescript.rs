//! JSON Schema (as `schemars` writes it, draft 2020-12) to TypeScript types, and the typed API
//! module `forge generate ts` writes from an application's description.
//!
//! The API is written as `api.js` (plain JavaScript, runnable by a browser or Node as it is)
//! beside `api.d.ts` (its types), so a page can import it without a build step and a
//! TypeScript project type-checks against it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use forge::functions::{AppDescription, FunctionDescription, FunctionKind};
use serde_json::Value;

/// The two files of the typed API.
pub(crate) struct ApiModule {
    /// `api.js`.
    pub(crate) js: String,
    /// `api.d.ts`.
    pub(crate) dts: String,
    /// Types that had no schema (they do not derive `JsonSchema`): typed `unknown`.
    pub(crate) untyped: Vec<String>,
}

/// Writes the typed API of `app`'s functions. Fails when two functions would get the same
/// JavaScript name.
pub(crate) fn api_module(app: &AppDescription) -> Result<ApiModule, String> {
    let mut types = Declarations::default();
    let mut untyped = Vec::new();
    let mut entries: BTreeMap<&'static str, Vec<(String, &FunctionDescription, String, String)>> = BTreeMap::new();
    let mut names: BTreeMap<String, &str> = BTreeMap::new();
    for function in &app.functions {
        let js_name = camel_case(&function.name);
        if let Some(other) = names.insert(js_name.clone(), &function.name) {
            return Err(format!(
                "functions {other:?} and {:?} would both be `{js_name}` in TypeScript; rename one",
                function.name
            ));
        }
        let mut typed = |schema: &Option<Value>, rust: &str| match schema {
            Some(schema) => types.root(schema),
            None => {
                untyped.push(format!("{} ({})", rust, function.name));
                "unknown".to_owned()
            }
        };
        let args = typed(&function.args_schema, &function.args_type);
        let output = typed(&function.output_schema, &function.output_type);
        let group = match function.kind {
            FunctionKind::Query => "query",
            FunctionKind::Mutation => "mutation",
            FunctionKind::Action => "action",
        };
        entries.entry(group).or_default().push((js_name, function, args, output));
    }

    let mut dts = String::from(HEADER);
    dts.push_str("import type { ForgeClient, FunctionRef, JobState, ForgeError, Unsubscribe } from './client.js';\n\n");
    dts.push_str(&types.out);
    dts.push_str("/** The application's functions, by kind, each callable and subscribable. */\n");
    dts.push_str("export interface Api {\n");
    let mut js = String::from(HEADER);
    js.push_str("import { ForgeClient } from './client.js';\n\n");
    js.push_str("/** The application's functions, called through `client`. */\n");
    js.push_str("export function createApi(client) {\n  return {\n");
    for group in ["query", "mutation", "action"] {
        let list = entries.get(group).map(Vec::as_slice).unwrap_or_default();
        let _ = writeln!(dts, "  {group}: {{");
        let _ = writeln!(js, "    {group}: {{");
        for (js_name, function, args, output) in list {
            let _ = write!(dts, "{}", doc_block(&function_doc(function), "    "));
            let _ = writeln!(dts, "    {js_name}: FunctionRef<'{group}', {args}, {output}>;");
            let _ = writeln!(js, "      {js_name}: client.ref('{group}', {}),", js_string(&function.name));
        }
        let _ = writeln!(dts, "  }};");
        let _ = writeln!(js, "    }},");
    }
    dts.push_str("}\n\n");
    js.push_str("  };\n}\n\n");
    dts.push_str(TAIL_DTS);
    js.push_str(TAIL_JS);
    untyped.sort();
    untyped.dedup();
    Ok(ApiModule { js, dts, untyped })
}

const HEADER: &str = "// Written by `forge generate ts` from the application's functions: do not edit; run it again\n\
// after changing a function or its types.\n\n";

const TAIL_DTS: &str = "\
/** The client `api`, `subscribe` and `watchJob` use: configure it with `client.configure({ url, token })`. */
export declare const client: ForgeClient;
/** The functions, called through `client`. */
export declare const api: Api;
/** Runs a query now and again whenever its result changes; returns a function that stops it. */
export declare function subscribe<A, R>(
  query: FunctionRef<'query', A, R>,
  args: A,
  onData: (data: R) => void,
  onError?: (error: ForgeError) => void,
): Unsubscribe;
/** Follows a job's state and progress until it finishes; returns a function that stops it. */
export declare function watchJob(
  id: number,
  onJob: (job: JobState) => void,
  onError?: (error: ForgeError) => void,
): Unsubscribe;
export declare function createApi(client: ForgeClient): Api;
";

const TAIL_JS: &str = "\
export const client = new ForgeClient();
export const api = createApi(client);
export function subscribe(query, args, onData, onError) {
  return query.client.subscribe(query, args, onData, onError);
}
export function watchJob(id, onJob, onError) {
  return client.watchJob(id, onJob, onError);
}
";

fn function_doc(function: &FunctionDescription) -> String {
    let mut doc = function.doc.clone();
    let access = if function.public {
        "Public.".to_owned()
    } else if function.roles.is_empty() {
        "Needs credentials.".to_owned()
    } else {
        format!("Needs one of the roles {}.", function.roles.join(", "))
    };
    if !doc.is_empty() {
        doc.push_str("\n\n");
    }
    let _ = write!(doc, "`{}` ({access})", function.name);
    doc
}

/// A JSDoc block of `text`, indented by `indent`.
fn doc_block(text: &str, indent: &str) -> String {
    if text.trim().is_empty() {
        return String::new();
    }
    if !text.contains('\n') {
        return format!("{indent}/** {} */\n", text.trim().replace("*/", "*\\/"));
    }
    let mut out = format!("{indent}/**\n");
    for line in text.lines() {
        let line = line.replace("*/", "*\\/");
        if line.is_empty() {
            let _ = writeln!(out, "{indent} *");
        } else {
            let _ = writeln!(out, "{indent} * {line}");
        }
    }
    let _ = writeln!(out, "{indent} */");
    out
}

/// `list_notes` → `listNotes`.
pub(crate) fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' || c == '-' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn js_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// The named types declared so far, shared by every function: a type used by several functions
/// is declared once; two different types of one name get `Name`, `Name2`, ….
#[derive(Default)]
struct Declarations {
    /// Declared name → the schema declared under it.
    declared: BTreeMap<String, Value>,
    /// The names whose declaration is written in `out`.
    written: std::collections::BTreeSet<String>,
    out: String,
}

impl Declarations {
    /// The TypeScript type of a function's root schema, declaring its named types.
    fn root(&mut self, schema: &Value) -> String {
        let defs = schema.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
        // Each definition's final name, chosen before any is written (they refer to each other).
        let mut names = BTreeMap::new();
        for (name, def) in &defs {
            names.insert(name.clone(), self.reserve(name, def));
        }
        for (name, def) in &defs {
            let declared = &names[name];
            if self.written.insert(declared.clone()) {
                let ty = convert(def, &names, "");
                let _ = write!(self.out, "{}", doc_block(description(def), ""));
                let _ = writeln!(self.out, "export type {declared} = {ty};\n");
            }
        }
        let mut root = schema.clone();
        if let Some(object) = root.as_object_mut() {
            object.remove("$defs");
            object.remove("$schema");
        }
        let named = root.get("title").and_then(Value::as_str).filter(|t| is_identifier(t)).map(str::to_owned);
        let declarable = ["properties", "oneOf", "anyOf", "enum"].iter().any(|k| root.get(k).is_some());
        match named {
            Some(title) if declarable => {
                let declared = self.reserve(&title, &root);
                if self.written.insert(declared.clone()) {
                    let ty = convert(&root, &names, "");
                    let _ = write!(self.out, "{}", doc_block(description(&root), ""));
                    let _ = writeln!(self.out, "export type {declared} = {ty};\n");
                }
                declared
            }
            _ => convert(&root, &names, ""),
        }
    }

    /// The name `def` is declared under: `name` if free or holding the same schema, else the
    /// first free `name2`, `name3`, ….
    fn reserve(&mut self, name: &str, def: &Value) -> String {
        let base = if is_identifier(name) { name.to_owned() } else { sanitize(name) };
        let mut candidate = base.clone();
        let mut n = 1;
        loop {
            match self.declared.get(&candidate) {
                None => {
                    self.declared.insert(candidate.clone(), def.clone());
                    return candidate;
                }
                Some(existing) if existing == def => return candidate,
                Some(_) => {
                    n += 1;
                    candidate = format!("{base}{n}");
                }
            }
        }
    }
}

fn sanitize(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn description(schema: &Value) -> &str {
    schema.get("description").and_then(Value::as_str).unwrap_or("")
}

/// The TypeScript type of `schema`; `$ref`s to `#/$defs/X` become `names[X]`. `indent` is the
/// indentation of the line the type starts on (object members go one level deeper).
fn convert(schema: &Value, names: &BTreeMap<String, String>, indent: &str) -> String {
    let Some(object) = schema.as_object() else {
        // `true` (anything) or `false` (nothing).
        return if schema == &Value::Bool(false) { "never".to_owned() } else { "unknown".to_owned() };
    };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return names.get(name).cloned().unwrap_or_else(|| "unknown".to_owned());
    }
    if let Some(value) = object.get("const") {
        return literal(value);
    }
    if let Some(values) = object.get("enum").and_then(Value::as_array) {
        return union(values.iter().map(literal).collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = object.get(key).and_then(Value::as_array) {
            let mut base = schema.clone();
            if let Some(base) = base.as_object_mut() {
                base.remove(key);
                base.remove("title");
                base.remove("description");
            }
            let members = variants.iter().map(|v| wrap(&convert(v, names, indent))).collect();
            let united = union(members);
            // Properties beside the variants (an internally tagged enum's shared fields).
            return if base.as_object().is_some_and(|b| b.contains_key("properties")) {
                format!("{} & ({united})", convert(&base, names, indent))
            } else {
                united
            };
        }
    }
    if let Some(parts) = object.get("allOf").and_then(Value::as_array) {
        return parts.iter().map(|p| wrap(&convert(p, names, indent))).collect::<Vec<_>>().join(" & ");
    }
    match object.get("type") {
        Some(Value::Array(types)) => union(
            types
                .iter()
                .filter_map(Value::as_str)
                .map(|t| {
                    let mut single = schema.clone();
                    single["type"] = Value::String(t.to_owned());
                    wrap(&convert(&single, names, indent))
                })
                .collect(),
        ),
        Some(Value::String(t)) => match t.as_str() {
            "string" => "string".to_owned(),
            "integer" | "number" => "number".to_owned(),
            "boolean" => "boolean".to_owned(),
            "null" => "null".to_owned(),
            "array" => array(object, names, indent),
            "object" => object_type(object, names, indent),
            _ => "unknown".to_owned(),
        },
        _ if object.contains_key("properties") => object_type(object, names, indent),
        _ => "unknown".to_owned(),
    }
}

fn array(object: &serde_json::Map<String, Value>, names: &BTreeMap<String, String>, indent: &str) -> String {
    if let Some(prefix) = object.get("prefixItems").and_then(Value::as_array) {
        let items: Vec<String> = prefix.iter().map(|p| convert(p, names, indent)).collect();
        return format!("[{}]", items.join(", "));
    }
    match object.get("items") {
        Some(items) => format!("{}[]", wrap(&convert(items, names, indent))),
        None => "unknown[]".to_owned(),
    }
}

fn object_type(object: &serde_json::Map<String, Value>, names: &BTreeMap<String, String>, indent: &str) -> String {
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let inner = format!("{indent}  ");
    let mut members = String::new();
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (key, property) in properties {
            let _ = write!(members, "{}", doc_block(description(property), &inner));
            let optional = if required.contains(&key.as_str()) { "" } else { "?" };
            let key = if is_identifier(key) { key.clone() } else { js_string(key) };
            let _ = writeln!(members, "{inner}{key}{optional}: {};", convert(property, names, &inner));
        }
    }
    match object.get("additionalProperties") {
        Some(Value::Bool(false)) | None if !members.is_empty() => {}
        None | Some(Value::Bool(true)) if members.is_empty() => return "Record<string, unknown>".to_owned(),
        Some(extra @ Value::Object(_)) => {
            let value = convert(extra, names, &inner);
            if members.is_empty() {
                return format!("Record<string, {value}>");
            }
            let _ = writeln!(members, "{inner}[key: string]: {value} | undefined;");
        }
        _ => {}
    }
    if members.is_empty() {
        return "Record<string, never>".to_owned();
    }
    format!("{{\n{members}{indent}}}")
}

fn literal(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "unknown".to_owned())
}

fn union(mut members: Vec<String>) -> String {
    members.dedup();
    match members.len() {
        0 => "never".to_owned(),
        1 => members.remove(0),
        _ => members.join(" | "),
    }
}

/// `t` in parentheses when it is a union or intersection (before `[]` or inside `|`).
fn wrap(t: &str) -> String {
    let top_level = {
        let mut depth = 0i32;
        let mut found = false;
        for c in t.chars() {
            match c {
                '{' | '(' | '[' | '<' => depth += 1,
                '}' | ')' | ']' | '>' => depth -= 1,
                '|' | '&' if depth == 0 => found = true,
                _ => {}
            }
        }
        found
    };
    if top_level { format!("({t})") } else { t.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(schema: Value) -> (String, String) {
        let mut d = Declarations::default();
        let t = d.root(&schema);
        (t, d.out)
    }

    #[test]
    fn primitives_arrays_maps_and_options() {
        assert_eq!(ts(json!({"type": "null"})).0, "null");
        assert_eq!(ts(json!({"type": "integer", "format": "int64"})).0, "number");
        assert_eq!(ts(json!(true)).0, "unknown");
        assert_eq!(ts(json!({"type": ["string", "null"]})).0, "string | null");
        assert_eq!(ts(json!({"type": "array", "items": {"type": ["string", "null"]}})).0, "(string | null)[]");
        assert_eq!(
            ts(json!({"type": "object", "additionalProperties": {"type": "integer"}})).0,
            "Record<string, number>"
        );
        assert_eq!(
            ts(json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}]})).0,
            "[string, boolean]"
        );
        assert_eq!(ts(json!({"type": "string", "enum": ["a", "b"]})).0, "\"a\" | \"b\"");
    }

    #[test]
    fn named_types_are_declared_once_and_referenced() {
        let notes = json!({
            "title": "Array_of_Note", "type": "array", "items": {"$ref": "#/$defs/Note"},
            "$defs": {"Note": {"type": "object", "description": "A note.",
                "properties": {"id": {"type": "integer"}, "title": {"type": "string"}, "tag": {"type": ["string", "null"]}},
                "required": ["id", "title"]}}
        });
        let mut d = Declarations::default();
        assert_eq!(d.root(&notes), "Note[]");
        assert_eq!(d.root(&notes), "Note[]");
        assert_eq!(d.out.matches("export type Note =").count(), 1, "{}", d.out);
        assert!(
            d.out.contains(
                "/** A note. */\nexport type Note = {\n  id: number;\n  tag?: string | null;\n  title: string;\n};"
            ),
            "{}",
            d.out
        );
        // The same name with another shape is declared apart.
        let other = json!({"title": "Note", "type": "object", "properties": {"body": {"type": "string"}}, "required": ["body"]});
        assert_eq!(d.root(&other), "Note2");
        assert!(d.out.contains("export type Note2 = {\n  body: string;\n};"), "{}", d.out);
    }

    #[test]
    fn enums_as_serde_writes_them() {
        let (t, out) = ts(json!({"title": "Shape", "oneOf": [
            {"type": "object", "properties": {"kind": {"type": "string", "const": "circle"}, "r": {"type": "number"}}, "required": ["kind", "r"]},
            {"type": "string", "const": "point"}
        ]}));
        assert_eq!(t, "Shape");
        assert!(out.contains("export type Shape = {\n  kind: \"circle\";\n  r: number;\n} | \"point\";"), "{out}");
    }

    #[test]
    fn names_become_camel_case() {
        assert_eq!(camel_case("list_notes"), "listNotes");
        assert_eq!(camel_case("sign_up"), "signUp");
        assert_eq!(camel_case("ping"), "ping");
        assert_eq!(camel_case("2fa"), "_2fa");
    }
}
