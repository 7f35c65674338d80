//! The embedded default: a private PostgreSQL cluster started from the machine's installed
//! server binaries when no `DATABASE_URL` is given.
//!
//! Layout of the cluster folder (`.forge/postgres/` by default):
//!
//! | path              | what                                                      |
//! |-------------------|-----------------------------------------------------------|
//! | `data/`           | `PGDATA`, made by `initdb` on first use                   |
//! | `.s.PGSQL.5432`   | the Unix socket; the server listens on no TCP port        |
//! | `postgres.log`    | the server's log                                          |
//! | `users.lock`      | a shared `flock` held by every process using the cluster  |
//! | `start.lock`      | an exclusive `flock` held while starting or stopping      |
//!
//! Several processes (a dev server, `cargo test` binaries, a second node) may use one cluster.
//! Each holds a shared lock on `users.lock` while it does; the process that leaves last (it can
//! upgrade its lock to an exclusive one) stops the server. A process killed with `kill -9` leaves
//! the server running, and the next one reuses it.
//!
//! PostgreSQL refuses to run as root. When Forge runs as root, the server binaries run as the
//! `postgres` system user and the cluster folder is owned by it. If that user cannot reach the
//! project folder (say it is under `/root`, mode 700), the cluster goes to
//! `/var/tmp/forge-postgres-<hash>/` instead, and a warning says so.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

/// The port number that names the socket file (`.s.PGSQL.5432`); no TCP port is opened.
const SOCKET_PORT: u16 = 5432;

/// The superuser `initdb` creates.
pub const EMBEDDED_USER: &str = "postgres";

/// Why the embedded cluster could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// No `initdb`/`pg_ctl`/`postgres` on this machine.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: `apt-get install postgresql`, \
         Fedora: `dnf install postgresql-server`, macOS: `brew install postgresql`) or set \
         DATABASE_URL to use a running server"
    )]
    BinariesNotFound,
    /// Running as root, with no `postgres` user to run the server as.
    #[error(
        "running as root, but there is no `postgres` system user to run the embedded server as \
         (PostgreSQL refuses to run as root); install the postgresql package, which creates it, \
         run Forge as a normal user, or set DATABASE_URL"
    )]
    NoPostgresUser,
    /// The cluster folder's path cannot be used for a Unix socket.
    #[error("cluster folder {path} cannot hold a Unix socket: {reason}")]
    BadPath {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A server binary failed.
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed (stderr, then stdout), trimmed.
        output: String,
    },
}

type Result<T, E = EmbeddedError> = std::result::Result<T, E>;

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EmbeddedError + use<> {
    let path = path.to_owned();
    move |source| EmbeddedError::Io { action, path, source }
}

/// A running embedded cluster, shared with other processes through `users.lock`.
///
/// Dropping it stops the server if no other process uses it; [`EmbeddedPostgres::stop`] does the
/// same explicitly.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<SystemUser>,
    users_lock: Option<File>,
}

#[derive(Clone, Debug)]
struct SystemUser {
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl EmbeddedPostgres {
    /// Starts (or joins) the cluster in `dir`, creating it with `initdb` on first use. Blocks
    /// until the server accepts connections; call it from `spawn_blocking` in async code.
    pub fn start(dir: impl AsRef<Path>) -> Result<Self> {
        let bin_dir = find_binaries()?;
        let run_as = if is_root() { Some(postgres_user()?) } else { None };
        let dir = absolute(dir.as_ref())?;
        let dir = match &run_as {
            Some(user) if !reachable_by(&dir, user.uid)? => {
                let fallback = fallback_dir(&dir);
                tracing::warn!(
                    wanted = %dir.display(),
                    using = %fallback.display(),
                    "the postgres user cannot reach the project folder; the embedded cluster lives elsewhere"
                );
                fallback
            }
            _ => dir,
        };
        check_socket_path(&dir)?;
        fs::create_dir_all(&dir).map_err(io_err("cannot create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err("cannot chmod", &dir))?;
        if let Some(user) = &run_as {
            std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid)).map_err(io_err("cannot chown", &dir))?;
        }

        let users_lock = open_lock(&dir.join("users.lock"))?;
        users_lock.lock_shared().map_err(io_err("cannot lock", &dir.join("users.lock")))?;
        let start_lock = open_lock(&dir.join("start.lock"))?;
        start_lock.lock().map_err(io_err("cannot lock", &dir.join("start.lock")))?;

        let cluster = Self { dir, bin_dir, run_as, users_lock: Some(users_lock) };
        cluster.init_if_needed()?;
        if !cluster.is_running()? {
            cluster.pg_ctl_start()?;
        }
        drop(start_lock);
        Ok(cluster)
    }

    /// The cluster folder (which also holds the socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data folder (`PGDATA`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Connection options for `database` as the embedded superuser, over the Unix socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.dir).port(SOCKET_PORT).username(EMBEDDED_USER).database(database)
    }

    /// A `postgres://` URL for `database` (the `host` parameter names the socket folder), usable
    /// by sqlx and by `psql`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{EMBEDDED_USER}@localhost:{SOCKET_PORT}/{database}?host={}", self.dir.display())
    }

    /// Restarts the server (`pg_ctl restart -m fast`: every session is ended, the server comes
    /// back on the same socket), for fault tests such as `forge-bench chaos
    /// --restart-db-every-ms`. Blocks until it accepts connections again.
    pub fn restart(&self) -> Result<()> {
        let data = self.data_dir();
        let log = self.dir.join("postgres.log");
        let options = format!("-k '{}' -p {SOCKET_PORT}", self.dir.display());
        self.run(
            "pg_ctl",
            &["restart", "-D", path_str(&data), "-l", path_str(&log), "-m", "fast", "-w", "-t", "60", "-o", &options],
        )?;
        Ok(())
    }

    /// Stops the server (fast: sessions are ended) while this process keeps the cluster, for
    /// fault tests of a database outage; [`EmbeddedPostgres::start_server`] brings it back.
    pub fn stop_server(&self) -> Result<()> {
        let data = self.data_dir();
        self.run("pg_ctl", &["stop", "-D", path_str(&data), "-m", "fast", "-w", "-t", "60"])?;
        Ok(())
    }

    /// Starts the server again after [`EmbeddedPostgres::stop_server`].
    pub fn start_server(&self) -> Result<()> {
        if !self.is_running()? {
            self.pg_ctl_start()?;
        }
        Ok(())
    }

    /// Stops the server unless another process still uses it.
    pub fn stop(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        let Some(users_lock) = self.users_lock.take() else {
            return Ok(());
        };
        // Upgrading our shared lock succeeds only when no other process holds one.
        if users_lock.try_lock().is_err() {
            return Ok(());
        }
        let start_lock = open_lock(&self.dir.join("start.lock"))?;
        start_lock.lock().map_err(io_err("cannot lock", &self.dir.join("start.lock")))?;
        if self.is_running()? {
            let data = self.data_dir();
            self.run("pg_ctl", &["stop", "-D", path_str(&data), "-m", "fast", "-w", "-t", "60"])?;
        }
        Ok(())
    }

    fn init_if_needed(&self) -> Result<()> {
        let data = self.data_dir();
        if data.join("PG_VERSION").exists() {
            return Ok(());
        }
        // A folder without PG_VERSION is the remains of an interrupted initdb.
        if data.exists() {
            fs::remove_dir_all(&data).map_err(io_err("cannot remove", &data))?;
        }
        tracing::info!(dir = %self.dir.display(), "creating the embedded PostgreSQL cluster");
        self.run(
            "initdb",
            &["-D", path_str(&data), "-U", EMBEDDED_USER, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
        )?;
        // Tests open many small pools in parallel; the default of 100 connections is tight.
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).map_err(io_err("cannot read", &conf))?;
        text.push_str("\n# Added by Forge for the embedded cluster.\nmax_connections = 500\nlisten_addresses = ''\n");
        fs::write(&conf, text).map_err(io_err("cannot write", &conf))?;
        Ok(())
    }

    fn is_running(&self) -> Result<bool> {
        let data = self.data_dir();
        let out = self.command("pg_ctl").args(["status", "-D", path_str(&data)]).output();
        let out = out.map_err(io_err("cannot run", &self.bin_dir.join("pg_ctl")))?;
        // 0: running; 3: not running; 4: no data folder.
        Ok(out.status.success())
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let data = self.data_dir();
        let log = self.dir.join("postgres.log");
        // pg_ctl hands -o to a shell; check_socket_path has refused quotes in the path.
        let options = format!("-k '{}' -p {SOCKET_PORT}", self.dir.display());
        tracing::info!(dir = %self.dir.display(), "starting the embedded PostgreSQL server");
        self.run("pg_ctl", &["start", "-D", path_str(&data), "-l", path_str(&log), "-w", "-t", "60", "-o", &options])
            .map_err(|e| match e {
            EmbeddedError::Command { command, status, output } => {
                let tail = fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                EmbeddedError::Command { command, status, output: format!("{output}\n{}", tail.join("\n")) }
            }
            other => other,
        })?;
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        cmd.current_dir(&self.dir).env("LC_ALL", "C").env_remove("PGDATA");
        if let Some(user) = &self.run_as {
            cmd.uid(user.uid).gid(user.gid).env("HOME", &user.home).env("USER", EMBEDDED_USER);
        }
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<Output> {
        let out =
            self.command(program).args(args).output().map_err(io_err("cannot run", &self.bin_dir.join(program)))?;
        if out.status.success() {
            return Ok(out);
        }
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !stdout.trim().is_empty() {
            output = format!("{output}\n{}", stdout.trim());
        }
        Err(EmbeddedError::Command {
            command: format!("{program} {}", args.join(" ")),
            status: out.status.to_string(),
            output,
        })
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!(error = %e, "could not stop the embedded PostgreSQL server");
        }
    }
}

/// The folder holding `initdb`, `pg_ctl` and `postgres`: `pg_ctl` on PATH (symlinks resolved),
/// else the newest `/usr/lib/postgresql/<version>/bin`.
pub fn find_binaries() -> Result<PathBuf> {
    find_binaries_in(std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
}

fn find_binaries_in(path: Option<std::ffi::OsString>, versions_dir: &Path) -> Result<PathBuf> {
    let has_all = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| dir.join(b).is_file());
    if let Some(path) = path {
        for dir in std::env::split_paths(&path) {
            let pg_ctl = dir.join("pg_ctl");
            if pg_ctl.is_file()
                && let Some(real) = fs::canonicalize(&pg_ctl).ok().and_then(|p| p.parent().map(Path::to_path_buf))
                && has_all(&real)
            {
                return Ok(real);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(versions_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_all(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or(EmbeddedError::BinariesNotFound)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn postgres_user() -> Result<SystemUser> {
    let name = CString::new(EMBEDDED_USER).map_err(|_| EmbeddedError::NoPostgresUser)?;
    // SAFETY: getpwnam gets a valid NUL-terminated string; the returned record is read at once,
    // before any other call that could overwrite it, and only when non-null.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err(EmbeddedError::NoPostgresUser);
        }
        let home = if (*pw).pw_dir.is_null() {
            PathBuf::from("/")
        } else {
            PathBuf::from(std::ffi::CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned())
        };
        Ok(SystemUser { uid: (*pw).pw_uid, gid: (*pw).pw_gid, home })
    }
}

/// `dir` made absolute, without `.` components: `./.forge/postgres` from the project folder and
/// `/abs/project/.forge/postgres` name the same cluster (and the same fallback folder).
fn absolute(dir: &Path) -> Result<PathBuf> {
    let dir = if dir.is_absolute() {
        dir.to_owned()
    } else {
        let cwd = std::env::current_dir().map_err(io_err("cannot read the current folder", Path::new(".")))?;
        cwd.join(dir)
    };
    Ok(dir.components().collect())
}

/// Whether `uid` can walk down to `dir`: every existing ancestor must be searchable by it.
fn reachable_by(dir: &Path, uid: u32) -> Result<bool> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = if meta.uid() == uid { mode & 0o100 != 0 } else { mode & 0o001 != 0 };
        if !searchable {
            return Ok(false);
        }
    }
    Ok(true)
}

fn fallback_dir(dir: &Path) -> PathBuf {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    PathBuf::from(format!("/var/tmp/forge-postgres-{hex}"))
}

fn check_socket_path(dir: &Path) -> Result<()> {
    let text = dir.to_str().ok_or(EmbeddedError::BadPath { path: dir.to_owned(), reason: "it is not UTF-8" })?;
    if text.contains('\'') || text.contains('\\') {
        return Err(EmbeddedError::BadPath { path: dir.to_owned(), reason: "it contains a quote or backslash" });
    }
    // sockaddr_un holds 107 bytes; the socket file name adds 14.
    if text.len() + "/.s.PGSQL.5432".len() > 107 {
        return Err(EmbeddedError::BadPath {
            path: dir.to_owned(),
            reason: "it is too long (Unix socket paths are limited to 107 bytes); set [database] embedded_dir to a shorter path",
        });
    }
    Ok(())
}

fn open_lock(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io_err("cannot open", path))
}

fn path_str(path: &Path) -> &str {
    // check_socket_path has made sure the cluster folder is UTF-8, and every path passed here is
    // inside it.
    path.to_str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_or_quoted_paths_are_refused() {
        assert!(check_socket_path(Path::new("/tmp/it's")).is_err());
        assert!(check_socket_path(&PathBuf::from(format!("/tmp/{}", "x".repeat(100)))).is_err());
        assert!(check_socket_path(Path::new("/work/app/.forge/postgres")).is_ok());
    }

    #[test]
    fn missing_binaries_say_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_binaries_in(Some(empty.path().as_os_str().to_owned()), empty.path()).unwrap_err();
        assert!(matches!(err, EmbeddedError::BinariesNotFound));
        let message = err.to_string();
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("DATABASE_URL"), "{message}");
    }

    #[test]
    fn binaries_are_found_in_a_versioned_folder() {
        let root = tempfile::tempdir().unwrap();
        for version in ["13", "16"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            for b in ["initdb", "pg_ctl", "postgres"] {
                fs::write(bin.join(b), "").unwrap();
            }
        }
        let found = find_binaries_in(None, root.path()).unwrap();
        assert_eq!(found, root.path().join("16").join("bin"), "the newest version wins");
    }

    #[test]
    fn a_relative_folder_names_the_same_cluster_as_its_absolute_path() {
        let cwd = std::env::current_dir().expect("cwd");
        let relative = absolute(Path::new("./.forge/postgres")).expect("absolute");
        assert_eq!(relative, cwd.join(".forge").join("postgres"));
        assert_eq!(fallback_dir(&relative), fallback_dir(&cwd.join(".forge/postgres")));
    }

    #[test]
    fn fallback_dir_is_stable_per_project() {
        let a = fallback_dir(Path::new("/root/app/.forge/postgres"));
        assert_eq!(a, fallback_dir(Path::new("/root/app/.forge/postgres")));
        assert_ne!(a, fallback_dir(Path::new("/root/other/.forge/postgres")));
    }
}
