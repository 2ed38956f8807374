//! [`TestServer`]: a throwaway PostgreSQL server for tests (features `testing` and
//! `postgres`).
//!
//! The server runs from the PostgreSQL 15 binaries of the machine
//! (`/usr/lib/postgresql/15/bin`, or the directory in `DURABLE_PG_BIN`), in a new
//! directory under the system's temporary directory, with its unix socket there and a TCP
//! port on 127.0.0.1. PostgreSQL refuses to run as root; run as root, the server runs as
//! the `postgres` system user. It is started by a shell that waits on a pipe from this
//! process: when the [`TestServer`] drops, or the process exits however it ends (a
//! SIGKILL included), the pipe closes and the shell stops the server and removes its
//! directory. Durability is off (`fsync=off`): the server is thrown away.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use postgres::{Client, NoTls};

/// Where the PostgreSQL 15 binaries are unless `DURABLE_PG_BIN` says.
const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Starts the server and says `started`, then waits on standard input; at its end, stops
/// the server and removes its directory. Says `failed` if the server does not start.
/// Arguments: the directory, the port, the binaries, the server's options.
const WATCHDOG: &str = r#"
if "$3/pg_ctl" -D "$1/data" -l "$1/log" -w -t 60 start -o "-p $2 -k $1 $4" >/dev/null 2>&1
then
    echo started
    read -r _
    "$3/pg_ctl" -D "$1/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$1"
else
    echo failed
fi
"#;

/// The server's settings besides its port and socket directory.
const OPTIONS: &str = "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
    -c full_page_writes=off -c max_connections=300";

/// How many ports a start tries: another process may take a free port before the server
/// binds it.
const START_ATTEMPTS: usize = 3;

/// A PostgreSQL server started for tests, stopped and removed when dropped or when the
/// process exits.
///
/// The superuser `postgres` connects through the unix socket without a password
/// ([`TestDatabase::url`]), and over TCP with [`TestServer::PASSWORD`]
/// ([`TestServer::tcp_url`]).
///
/// # Examples
///
/// ```no_run
/// use durable_store::{PostgresStore, TestServer};
///
/// let database = TestServer::shared().database();
/// let store = PostgresStore::open(database.url())?;
/// # Ok::<(), durable_store::StoreError>(())
/// ```
pub struct TestServer {
    dir: PathBuf,
    /// The directory of the PostgreSQL binaries.
    bin: PathBuf,
    port: u16,
    watchdog: Option<(Child, ChildStdin)>,
    admin: Mutex<Client>,
}

/// A new, empty database on a [`TestServer`].
#[derive(Clone, Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection string for it, as the superuser through the unix socket.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl TestServer {
    /// The password of the superuser `postgres` over TCP.
    pub const PASSWORD: &'static str = "durable-test";

    /// The server of this process, started on first use.
    ///
    /// # Panics
    ///
    /// If the server cannot start, with the reason (tests that need it fail, never skip).
    pub fn shared() -> &'static TestServer {
        static SERVER: OnceLock<TestServer> = OnceLock::new();
        SERVER.get_or_init(|| {
            TestServer::start()
                .unwrap_or_else(|e| panic!("cannot start a PostgreSQL server for tests: {e}"))
        })
    }

    /// Starts a new server.
    ///
    /// # Errors
    ///
    /// What failed, with the server's log when it started and stopped: the binaries are
    /// missing, `initdb` failed, or the server did not accept connections in a minute.
    pub fn start() -> Result<TestServer, String> {
        // On a thread of its own: the client library panics on a thread that runs an async
        // runtime, and a test may be async.
        std::thread::scope(|scope| {
            scope
                .spawn(Self::start_here)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn start_here() -> Result<TestServer, String> {
        let bin = std::env::var_os("DURABLE_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
        if !bin.join("postgres").is_file() || !bin.join("initdb").is_file() {
            return Err(format!(
                "no PostgreSQL binaries in `{}`: install PostgreSQL 15 (`apt-get install \
                 postgresql-15`) or set DURABLE_PG_BIN to the directory of `initdb` and \
                 `postgres`",
                bin.display()
            ));
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "durable-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        run(server_user(Path::new("mkdir")).arg("-m700").arg(&dir))?;
        let started = Self::start_in(&dir, &bin);
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    /// Starts a new server in `dir`, an empty directory the server's user owns.
    fn start_in(dir: &Path, bin: &Path) -> Result<TestServer, String> {
        let password = dir.join("password");
        std::fs::write(&password, Self::PASSWORD)
            .map_err(|e| format!("cannot write `{}`: {e}", password.display()))?;
        run(server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "postgres", "-A", "trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", password.display()))
            .args(["-E", "UTF8", "--locale=C", "--no-sync"]))?;
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::listen(dir, bin) {
                Ok(server) => return Ok(server),
                Err(e) => failures.push(e),
            }
        }
        Err(failures.join("\n"))
    }

    /// Starts the server of `dir` on a free port.
    fn listen(dir: &Path, bin: &Path) -> Result<TestServer, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        let mut child = server_user(Path::new("sh"))
            .args(["-c", WATCHDOG, "sh"])
            .arg(dir)
            .arg(port.to_string())
            .arg(bin)
            .arg(OPTIONS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut said = String::new();
        let _ = BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut said);
        if said.trim() != "started" {
            let log = log(dir);
            drop(stdin);
            let _ = child.wait();
            return Err(format!(
                "the server did not start on port {port}; its log:\n{log}"
            ));
        }
        let connected = Client::connect(&socket_url(dir, port, "postgres"), NoTls);
        let server = TestServer {
            dir: dir.to_owned(),
            bin: bin.to_owned(),
            port,
            watchdog: Some((child, stdin)),
            admin: Mutex::new(connected.map_err(|e| format!("cannot connect to the server: {e}"))?),
        };
        Ok(server)
    }

    /// A connection string for database `name`, as the superuser through the unix socket.
    pub fn url(&self, name: &str) -> String {
        socket_url(&self.dir, self.port, name)
    }

    /// A URL for database `name` over TCP, as `postgres` with `password`.
    pub fn tcp_url(&self, password: &str, name: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/{name}",
            self.port
        )
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new, empty database.
    ///
    /// # Panics
    ///
    /// If the server refuses, with its reason.
    pub fn database(&self) -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("test_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let created = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut admin = self
                        .admin
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    admin.batch_execute(&format!("CREATE DATABASE {name}"))
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        if let Err(e) = created {
            panic!(
                "cannot create database {name}: {e}; the server's log:\n{}",
                self.log()
            );
        }
        TestDatabase {
            url: self.url(&name),
            name,
        }
    }

    /// Stops the server, as a restart of the database does (`pg_ctl stop -m fast`): every
    /// session ends, and connections are refused until [`start_again`](Self::start_again).
    /// Its databases are kept. For tests of an outage: stop a server of the test's own
    /// ([`TestServer::start`]), never the [`shared`](Self::shared) one.
    ///
    /// # Errors
    ///
    /// What `pg_ctl` said if the server did not stop.
    pub fn stop(&self) -> Result<(), String> {
        self.on_own_thread(|| {
            run(server_user(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-m", "fast", "-w", "-t", "60", "stop"]))
        })
    }

    /// Starts the server [`stop`](Self::stop) stopped, on the same port, with its
    /// databases.
    ///
    /// # Errors
    ///
    /// What `pg_ctl` said, and the server's log, if it did not start or accept a
    /// connection.
    pub fn start_again(&self) -> Result<(), String> {
        self.on_own_thread(|| {
            let options = format!("-p {} -k {} {OPTIONS}", self.port, self.dir.display());
            run(server_user(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("log"))
                .args(["-w", "-t", "60", "start", "-o", &options]))
            .map_err(|e| format!("{e}\nthe server's log:\n{}", self.log()))?;
            let admin = Client::connect(&socket_url(&self.dir, self.port, "postgres"), NoTls)
                .map_err(|e| format!("cannot connect to the server: {e}"))?;
            *self
                .admin
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = admin;
            Ok(())
        })
    }

    /// Runs `f` on a thread of its own: the client library panics on a thread that runs
    /// an async runtime, and a test may be async.
    fn on_own_thread<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(f)
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The server's log, for messages.
    fn log(&self) -> String {
        log(&self.dir)
    }
}

/// The log of the server in `dir`.
fn log(dir: &Path) -> String {
    let mut log = String::new();
    let _ = std::fs::File::open(dir.join("log")).and_then(|mut f| f.read_to_string(&mut log));
    log
}

/// A connection string for database `name` of the server in `dir`, as the superuser
/// through the unix socket.
fn socket_url(dir: &Path, port: u16, name: &str) -> String {
    format!(
        "host={} port={port} user=postgres dbname={name}",
        dir.display()
    )
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Drop for TestServer {
    /// Closes the watchdog's pipe and waits until it has stopped the server and removed
    /// its directory.
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Whether this process runs as root, whom PostgreSQL refuses to run as.
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A command running `program` as the user the server runs as: `postgres` when this
/// process is root, this process's user otherwise. Its PATH ends with the system's
/// directories, where `sh`, `mkdir` and `rm` are, whatever this process's PATH holds.
fn server_user(program: &Path) -> Command {
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if !path.is_empty() {
        path.push(":");
    }
    path.push("/usr/local/bin:/usr/bin:/bin");
    let mut command = server_user_command(program);
    command.env("PATH", path);
    command
}

fn server_user_command(program: &Path) -> Command {
    if is_root() {
        // By its path: a root whose PATH lacks /usr/sbin still finds it.
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .unwrap_or("runuser");
        let mut command = Command::new(runuser);
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command` to its end; its output is the error if it fails.
fn run(command: &mut Command) -> Result<(), String> {
    let out = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}
