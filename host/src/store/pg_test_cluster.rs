//! A throwaway PostgreSQL cluster for the store tests: `PSP_TEST_POSTGRES_URL` if set (a
//! superuser's URL on a server the tests may create databases on), else one cluster per
//! test process, `initdb` into a temp dir and started on a free port. A watcher process
//! stops it and removes its directory when the test process exits. Each test gets its own
//! database, so tests run in parallel.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use sqlx::Connection;

/// PostgreSQL refuses to run as root: the cluster then belongs to this user.
const UNPRIVILEGED: &str = "nobody";

/// The URL of a fresh, empty database of the test cluster.
pub async fn database() -> String {
    let server = server().unwrap_or_else(|e| panic!("no PostgreSQL for the store tests: {e}"));
    create_database(server).await
}

async fn create_database(server: &str) -> String {
    let name = format!("t_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("connecting to the test cluster at {server}: {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    admin.close().await.ok();
    format!("{server}/{name}")
}

/// `postgres://user@host:port` (no database), set up once per test process.
fn server() -> Result<&'static str, &'static str> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var("PSP_TEST_POSTGRES_URL") {
            Ok(url) => Ok(strip_database(&url)),
            Err(_) => start_cluster(),
        })
        .as_deref()
        .map_err(String::as_str)
}

/// The server part of a URL: tests make their own databases on it.
fn strip_database(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url).trim_end_matches('/');
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, _db)) => format!("{scheme}://{authority}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    // The newest version first.
    debian.sort_by_key(|p| std::cmp::Reverse(version_of(p)));
    on_path
        .chain(debian)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn version_of(bin: &Path) -> u32 {
    bin.parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL program, as the unprivileged user when we are root.
/// Runs in `dir`, which that user can enter (our working directory may not be).
fn pg_command(bin: &Path, program: &str, as_other: bool, dir: &Path) -> Command {
    let program = bin.join(program);
    let mut c = if as_other {
        let mut c = Command::new("runuser");
        c.args(["-u", UNPRIVILEGED, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    c.current_dir(dir);
    c
}

fn run(mut command: Command, what: &str) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_cluster() -> Result<String, String> {
    let cluster = Cluster::start()?;
    spawn_cleanup(&cluster.bin, &cluster.dir, &cluster.data, cluster.root);
    Ok(cluster.url.clone())
}

/// A cluster of one's own (for a test that stops and starts the server), stopped and
/// removed when the test process exits.
pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:PORT` (no database).
    pub url: String,
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    root: bool,
    /// fsync and synchronous commits off: fast tests, not crash-safe across an OS crash.
    fast: bool,
}

// Some of these only the e2e crate's outage test uses (it includes this file too).
#[allow(dead_code)]
impl Cluster {
    /// initdb into a temp dir and start it on a free port, tuned for tests (fsync off).
    pub fn start() -> Result<Cluster, String> {
        Cluster::start_with(true)
    }

    /// A cluster with PostgreSQL's durable defaults (fsync on), for benchmarks that
    /// compare it with SQLite's fsync'd commits.
    pub fn start_durable() -> Result<Cluster, String> {
        Cluster::start_with(false)
    }

    fn start_with(fast: bool) -> Result<Cluster, String> {
        let bin = find_bin_dir().ok_or(
            "initdb and pg_ctl not found on PATH nor under /usr/lib/postgresql/*/bin: \
             install Debian's `postgresql` package (apt-get install postgresql), \
             or set PSP_TEST_POSTGRES_URL",
        )?;
        let root = is_root();
        let dir = std::env::temp_dir().join(format!(
            "psp-test-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if root {
            let mut chown = Command::new("chown");
            chown.arg(UNPRIVILEGED).arg(&dir);
            run(chown, "chown of the test cluster's directory")?;
        }
        let mut initdb = pg_command(&bin, "initdb", root, &dir);
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let cluster = Cluster {
            url: format!("postgres://postgres@127.0.0.1:{port}"),
            bin,
            dir,
            data,
            port,
            root,
            fast,
        };
        cluster.start_again()?;
        Ok(cluster)
    }

    /// (Re)starts the server on its port and waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        let tuning = if self.fast {
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        } else {
            ""
        };
        let mut start = pg_command(&self.bin, "pg_ctl", self.root, &self.dir);
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-k {} -p {} -c listen_addresses=127.0.0.1 {tuning} -c max_connections=300",
                self.dir.display(),
                self.port
            ))
            .args(["start", "-w"]);
        run(start, "pg_ctl start")
    }

    /// Stops the server at once, as a crash would (`-m immediate`: no checkpoint, every
    /// connection cut).
    pub fn stop_immediate(&self) -> Result<(), String> {
        let mut stop = pg_command(&self.bin, "pg_ctl", self.root, &self.dir);
        stop.arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "immediate", "-w"]);
        run(stop, "pg_ctl stop")
    }

    /// A fresh, empty database on this cluster.
    pub async fn database(&self) -> String {
        create_database(&self.url).await
    }

    /// Stop and remove it when this process exits.
    pub fn clean_up_at_exit(&self) {
        spawn_cleanup(&self.bin, &self.dir, &self.data, self.root);
    }
}

/// A detached shell that waits for this process to end, then stops the cluster and
/// removes its directory (statics are never dropped, so this cannot be a `Drop`).
fn spawn_cleanup(bin: &Path, dir: &Path, data: &Path, root: bool) {
    let as_user = if root {
        format!("runuser -u {UNPRIVILEGED} -- ")
    } else {
        String::new()
    };
    let script = format!(
        "cd /; while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {as_user}'{pg_ctl}' -D '{data}' stop -m immediate; rm -rf '{dir}'",
        pid = std::process::id(),
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
        dir = dir.display(),
    );
    // Its output goes nowhere: a caller piping `cargo test` must not wait for it.
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
