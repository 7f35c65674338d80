//! The command line every Forge application understands: `--help`, `--version`,
//! `--config PATH` and `--describe` (its functions with their types, as JSON, for
//! `forge generate ts`). An application's `main` reads it first, so `./shop --help` prints usage
//! instead of starting a node.

use std::ffi::OsString;
use std::path::PathBuf;

/// An application's own command line, parsed by [`AppArgs::parse`].
///
/// ```
/// let args = forge::AppArgs::try_parse_from("shop", "0.1.0", ["shop", "--config", "prod.toml"]).unwrap();
/// assert_eq!(args.config, std::path::PathBuf::from("prod.toml"));
///
/// let help = forge::AppArgs::try_parse_from("shop", "0.1.0", ["shop", "--help"]).unwrap_err();
/// assert!(help.to_string().contains("DATABASE_URL"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppArgs {
    /// The configuration file (`forge.toml` unless `--config` names another). A missing file
    /// means every default.
    pub config: PathBuf,
    /// `--describe`: print the application's functions with the JSON Schemas of their types
    /// ([`functions::describe`](crate::functions::describe)) instead of starting a node.
    /// [`AppArgs::parse`] prints it and exits.
    pub describe: bool,
}

const AFTER_HELP: &str = "\
With no DATABASE_URL the application starts its own PostgreSQL under .forge/postgres/, from the
server binaries installed on this machine, and applies every migration before it serves.

Environment:
  DATABASE_URL             the PostgreSQL to use instead of the embedded one
  FORGE_PORT               the gateway's port ([gateway] port)
  FORGE_<SECTION>_<KEY>    any key of the configuration, e.g. FORGE_NODE_ROLES=worker
  RUST_LOG                 log filter, e.g. info,sqlx=warn ([observability] log_level)
  NO_COLOR                 plain logs even on a terminal

Signals: SIGTERM or Ctrl-C stops the node gracefully (it finishes running jobs, up to
[worker] shutdown_timeout); a second Ctrl-C releases them at once and exits.";

impl AppArgs {
    /// Parses `std::env::args()`. Prints usage and exits on `--help`, the version on
    /// `--version`, the description of the application's functions on `--describe`, and a
    /// precise error (exit code 2) on an argument it does not know.
    pub fn parse(name: &'static str, version: &'static str) -> Self {
        let args = match Self::try_parse_from(name, version, std::env::args_os()) {
            Ok(args) => args,
            Err(e) => e.exit(),
        };
        if args.describe {
            let description = crate::functions::describe();
            match serde_json::to_string_pretty(&description) {
                Ok(json) => {
                    println!("{json}");
                    std::process::exit(0)
                }
                Err(e) => {
                    eprintln!("error: cannot describe the functions: {e}");
                    std::process::exit(1)
                }
            }
        }
        args
    }

    /// Parses `args` (the first is the program's name). `--help` and `--version` come back as
    /// an error whose `Display` is the text to print ([`clap::Error::exit`] prints it).
    pub fn try_parse_from<I, T>(name: &'static str, version: &'static str, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let command = clap::Command::new(name)
            .version(version)
            .about(format!("A Forge application. With no arguments, {name} starts a node as forge.toml says."))
            .arg(
                clap::Arg::new("config")
                    .long("config")
                    .value_name("PATH")
                    .value_parser(clap::value_parser!(PathBuf))
                    .default_value("forge.toml")
                    .help("The configuration file; a missing file means every default"),
            )
            .arg(
                clap::Arg::new("describe")
                    .long("describe")
                    .action(clap::ArgAction::SetTrue)
                    .help("Print the functions with the JSON Schemas of their types (for forge generate ts) and exit"),
            )
            .after_help(AFTER_HELP);
        let matches = command.try_get_matches_from(args)?;
        let config = matches.get_one::<PathBuf>("config").cloned().unwrap_or_else(|| PathBuf::from("forge.toml"));
        Ok(AppArgs { config, describe: matches.get_flag("describe") })
    }
}
