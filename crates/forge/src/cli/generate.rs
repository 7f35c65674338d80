//! `forge generate ts`: a typed client of the application's functions. The functions and the
//! JSON Schemas of their types come from the application itself (`app --describe`, built and
//! run with `cargo run` in the project, or a file given with `--from`); the client is written
//! as JavaScript modules with TypeScript declarations beside them.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use forge::functions::AppDescription;

use super::typescript;

/// What `forge generate` writes.
#[derive(Debug, Subcommand)]
pub(crate) enum GenerateAction {
    /// A typed TypeScript client of the app's functions: `client.js` (calls, live queries and
    /// job watches over fetch and WebSocket), `api.js` (a reference to each function), and
    /// `svelte.js` (Svelte stores), each with its `.d.ts`.
    Ts {
        /// The folder to write into (created if missing; the four pairs of files in it are
        /// replaced).
        #[arg(long, default_value = "web/forge")]
        out: PathBuf,
        /// Read the app's description from this file (what `app --describe` prints) instead
        /// of building and running the app.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
    },
}

/// The client's fixed files, beside the generated `api.js` and `api.d.ts` (`forge new` writes
/// them too, beside the template's generated api).
pub(crate) const RUNTIME: [(&str, &str); 4] = [
    ("client.js", include_str!("../../../../templates/client/client.js")),
    ("client.d.ts", include_str!("../../../../templates/client/client.d.ts")),
    ("svelte.js", include_str!("../../../../templates/client/svelte.js")),
    ("svelte.d.ts", include_str!("../../../../templates/client/svelte.d.ts")),
];

/// Runs `forge generate …` in `project`; returns the sentence to print.
pub(crate) fn run(project: &Path, action: &GenerateAction) -> Result<String, String> {
    let GenerateAction::Ts { out, from } = action;
    let description = match from {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            parse(&text, &file.display().to_string())?
        }
        None => describe_project(project)?,
    };
    let api = typescript::api_module(&description)?;
    let out = if out.is_absolute() { out.clone() } else { project.join(out) };
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut files: Vec<(&str, &str)> = RUNTIME.to_vec();
    files.push(("api.js", &api.js));
    files.push(("api.d.ts", &api.dts));
    for (name, text) in files {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let mut said = format!(
        "wrote the client of {} function(s) to {} (api.js, client.js, svelte.js and their .d.ts)",
        description.functions.len(),
        out.display()
    );
    if !api.untyped.is_empty() {
        said.push_str(&format!(
            "\nwarning: typed `unknown` because their type does not derive JsonSchema: {}",
            api.untyped.join(", ")
        ));
    }
    Ok(said)
}

fn parse(text: &str, source: &str) -> Result<AppDescription, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("{source} is not an app description (what `app --describe` prints): {e}"))
}

/// Builds and runs the project's binary with `--describe` (`cargo run --quiet -- --describe`).
fn describe_project(project: &Path) -> Result<AppDescription, String> {
    if !project.join("Cargo.toml").is_file() {
        return Err(format!(
            "no Cargo.toml in {}: run this in the app's folder, or pass --project or --from",
            project.display()
        ));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["run", "--quiet", "--", "--describe"])
        .current_dir(project)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo run -- --describe` failed ({}): the app's main must parse its arguments with forge::AppArgs::parse",
            output.status
        ));
    }
    parse(&String::from_utf8_lossy(&output.stdout), "the output of `cargo run -- --describe`")
}
