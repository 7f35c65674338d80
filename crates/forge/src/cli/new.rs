//! `forge new NAME`: writes a new application from the templates embedded in this binary.

use std::path::{Path, PathBuf};

use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "../../templates/app"]
struct AppTemplate;

/// Names a package cannot take: Rust keywords, the standard crates, and `forge` (the app depends
/// on it).
const RESERVED: &[&str] = &[
    "forge",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
    "self",
    "super",
    "crate",
    "async",
    "await",
    "dyn",
    "fn",
    "mod",
    "use",
    "type",
    "struct",
    "enum",
    "trait",
    "impl",
    "let",
    "loop",
    "match",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "static",
    "unsafe",
    "where",
    "while",
    "for",
    "if",
    "else",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "extern",
    "false",
    "true",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
];

/// Checks a project name: a lowercase letter, then lowercase letters, digits, `-` or `_`; at most
/// 64 characters; not reserved.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "{name:?} is not a valid project name: use a lowercase letter, then lowercase letters, digits, `-` or `_` (at most 64)"
        ));
    }
    if RESERVED.contains(&name.replace('-', "_").as_str()) {
        return Err(format!("{name:?} is reserved in Rust or by Forge; choose another name"));
    }
    Ok(())
}

/// Writes the project into `parent/name`. Nothing is written if that path exists.
pub(crate) fn create(parent: &Path, name: &str, forge_path: Option<&Path>) -> Result<PathBuf, String> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.symlink_metadata().is_ok() {
        return Err(format!("{} already exists; forge new never overwrites", dir.display()));
    }
    let (dependency, inline, docs) = match forge_path {
        Some(path) => {
            let checkout = path.canonicalize().map_err(|e| format!("--forge-path {}: {e}", path.display()))?;
            let facade = checkout.join("crates/forge");
            if !facade.join("Cargo.toml").is_file() {
                return Err(format!(
                    "--forge-path {}: no Forge checkout there (no crates/forge/Cargo.toml)",
                    path.display()
                ));
            }
            let inline = format!("path = {}", toml_string(&facade.display().to_string()));
            let docs = Docs::Checkout(checkout.join("website/src"));
            (format!("{{ {inline} }}"), inline, docs)
        }
        None => {
            let version = env!("CARGO_PKG_VERSION");
            (format!("\"{version}\""), format!("version = \"{version}\""), Docs::Released(version))
        }
    };
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let written = write_files(&dir, name, &dependency, &inline, &docs);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    // The exact versions this checkout is tested with.
    if let Some(lock) = forge_path.map(|p| p.join("Cargo.lock")).filter(|p| p.is_file()) {
        let _ = std::fs::copy(lock, dir.join("Cargo.lock"));
    }
    Ok(dir)
}

/// Where the generated README's links point: the book in the Forge checkout the app builds
/// against, or the released crate's documentation.
enum Docs {
    Checkout(PathBuf),
    Released(&'static str),
}

impl Docs {
    /// The link to a page of the book (`page` is its path under `website/src`, e.g.
    /// `testing.md`).
    fn link(&self, page: &str) -> String {
        match self {
            Docs::Checkout(book) => book.join(page).display().to_string(),
            Docs::Released(version) => format!("https://docs.rs/forge/{version}/forge/"),
        }
    }
}

fn write_files(dir: &Path, name: &str, dependency: &str, inline: &str, docs: &Docs) -> Result<(), String> {
    let mut files: Vec<_> = AppTemplate::iter().collect();
    files.sort();
    for file in files {
        let Some(content) = AppTemplate::get(&file) else { continue };
        let text = String::from_utf8(content.data.into_owned()).map_err(|_| format!("template {file} is not UTF-8"))?;
        let text = text
            .replace("{{forge_dependency_inline}}", inline)
            .replace("{{forge_dependency}}", dependency)
            .replace("{{docs:getting-started}}", &docs.link("getting-started.md"))
            .replace("{{docs:testing}}", &docs.link("testing.md"))
            .replace("{{docs:configuration}}", &docs.link("reference/configuration.md"))
            .replace("{{docs:cli}}", &docs.link("reference/cli.md"))
            .replace("{{docs:typescript-client}}", &docs.link("concepts/typescript-client.md"))
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{name}}", name);
        let path = dir.join(file.as_ref());
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    // The client runtime beside the template's generated api (web/forge/api.js): the same files
    // `forge generate ts` writes.
    let client = dir.join("web/forge");
    std::fs::create_dir_all(&client).map_err(|e| format!("cannot create {}: {e}", client.display()))?;
    for (name, text) in super::generate::RUNTIME {
        let path = client.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["demo", "my-app", "shop_2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Demo", "2fast", "-x", "a b", "café", "forge", "test", "self", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_new_project_gets_the_client_runtime_generate_writes() {
        let parent = tempfile::tempdir().expect("dir");
        let dir = create(parent.path(), "shop", None).expect("created");
        for (name, runtime) in crate::cli::generate::RUNTIME {
            let written = std::fs::read_to_string(dir.join("web/forge").join(name)).expect("written");
            assert_eq!(written, runtime, "web/forge/{name}");
        }
        assert!(dir.join("web/forge/api.js").is_file() && dir.join("web/forge/api.d.ts").is_file());
    }

    #[test]
    fn the_template_has_every_file_a_project_needs() {
        let files: Vec<String> = AppTemplate::iter().map(|f| f.to_string()).collect();
        for want in [
            "Cargo.toml",
            "forge.toml",
            "README.md",
            ".gitignore",
            "src/lib.rs",
            "src/main.rs",
            "src/signups.rs",
            "migrations/0001_init.sql",
            "tests/signups.rs",
            "web/index.html",
            "web/forge/api.js",
            "web/forge/api.d.ts",
        ] {
            assert!(files.iter().any(|f| f == want), "the template lacks {want}: {files:?}");
        }
    }
}
