//! What an application says of its functions (`app --describe`, `forge::functions::describe`)
//! and the typed client `forge generate ts` writes from it.

use forge::functions::{FunctionKind, describe};
use forge::prelude::*;
use serde::{Deserialize, Serialize};

/// A note as `list_described_notes` answers it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DescribedNote {
    /// Its id.
    pub id: i64,
    /// Its title.
    pub title: String,
    /// A tag, when it has one.
    pub tag: Option<String>,
}

/// Which notes to list.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct NoteFilter {
    /// Only notes with this tag.
    pub tag: Option<String>,
    /// At most this many.
    pub limit: u32,
}

/// Lists notes, newest first.
///
/// A second paragraph.
#[forge::query(public, reads = ["described_notes"])]
async fn list_described_notes(_ctx: &QueryContext, _args: NoteFilter) -> Result<Vec<DescribedNote>, ForgeError> {
    Ok(Vec::new())
}

/// Arguments without a schema: the client types them `unknown`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Opaque {
    /// Anything.
    pub x: i32,
}

#[forge::mutation(require_role("editor"))]
async fn opaque_described(_ctx: &MutationContext, _args: Opaque) -> Result<JobId, ForgeError> {
    Ok(JobId(1))
}

#[test]
fn describe_gives_each_function_its_schemas_doc_and_access() {
    let app = describe();
    let list = app.functions.iter().find(|f| f.name == "list_described_notes").expect("listed");
    assert_eq!(list.kind, FunctionKind::Query);
    assert!(list.public && list.roles.is_empty());
    assert_eq!(list.doc, "Lists notes, newest first.\n\nA second paragraph.");
    assert_eq!(list.reads.as_deref(), Some(&["described_notes".to_owned()][..]));
    let args = list.args_schema.as_ref().expect("NoteFilter derives JsonSchema");
    assert_eq!(args["title"], "NoteFilter");
    assert_eq!(args["properties"]["limit"]["type"], "integer");
    let output = list.output_schema.as_ref().expect("Vec<DescribedNote> has a schema");
    assert_eq!(output["type"], "array");
    assert_eq!(output["$defs"]["DescribedNote"]["properties"]["title"]["type"], "string");

    let opaque = app.functions.iter().find(|f| f.name == "opaque_described").expect("listed");
    assert_eq!(opaque.kind, FunctionKind::Mutation);
    assert!(!opaque.public);
    assert_eq!(opaque.roles, ["editor"]);
    assert_eq!(opaque.args_schema, None, "Opaque does not derive JsonSchema");
    assert_eq!(opaque.output_schema.as_ref().expect("JobId has one")["type"], "integer");
    assert_eq!(opaque.doc, "");
    assert!(app.functions.windows(2).all(|w| w[0].name < w[1].name), "sorted by name");
}

#[test]
fn the_app_command_line_takes_describe() {
    let args = forge::AppArgs::try_parse_from("shop", "0.1.0", ["shop", "--describe"]).expect("parse");
    assert!(args.describe);
    let args = forge::AppArgs::try_parse_from("shop", "0.1.0", ["shop"]).expect("parse");
    assert!(!args.describe);
    let help = forge::AppArgs::try_parse_from("shop", "0.1.0", ["shop", "--help"]).expect_err("help");
    assert!(help.to_string().contains("--describe"), "{help}");
}

#[test]
fn forge_generate_ts_writes_the_typed_client_from_a_description() {
    let dir = tempfile::tempdir().expect("dir");
    let description = dir.path().join("app.json");
    std::fs::write(&description, serde_json::to_string(&describe()).expect("json")).expect("write");
    let out = dir.path().join("client");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["generate", "ts", "--from"])
        .arg(&description)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("forge runs");
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{said} {}", String::from_utf8_lossy(&run.stderr));
    assert!(said.contains("warning") && said.contains("Opaque (opaque_described)"), "{said}");
    for file in ["api.js", "api.d.ts", "client.js", "client.d.ts", "svelte.js", "svelte.d.ts"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let dts = std::fs::read_to_string(out.join("api.d.ts")).expect("api.d.ts");
    assert!(dts.contains("export type NoteFilter = {"), "{dts}");
    assert!(dts.contains("  /** A tag, when it has one. */\n  tag?: string | null;"), "{dts}");
    assert!(dts.contains("listDescribedNotes: FunctionRef<'query', NoteFilter, DescribedNote[]>;"), "{dts}");
    assert!(dts.contains("opaqueDescribed: FunctionRef<'mutation', unknown, number>;"), "{dts}");
    assert!(dts.contains("Needs one of the roles editor."), "{dts}");
    let js = std::fs::read_to_string(out.join("api.js")).expect("api.js");
    assert!(js.contains("listDescribedNotes: client.ref('query', \"list_described_notes\"),"), "{js}");

    // Not a description: a precise error, nothing written.
    std::fs::write(&description, "{\"functions\": 3}").expect("write");
    let bad = dir.path().join("bad");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["generate", "ts", "--from"])
        .arg(&description)
        .arg("--out")
        .arg(&bad)
        .output()
        .expect("forge runs");
    assert!(!run.status.success());
    let error = String::from_utf8_lossy(&run.stderr);
    assert!(error.contains("is not an app description"), "{error}");
    assert!(!bad.exists());
}
