//! Connecting to the server, and what its errors mean to a user of the store.

use std::collections::HashMap;
use std::error::Error;
use std::time::Duration;

use postgres::config::Host;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row, Statement, Transaction};

use crate::error::{ServerProblem, StoreError, cause};

/// How long a connection attempt may take when the URL does not say
/// (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The database a store connects to: the parsed URL, and its name for messages.
pub(super) struct Target {
    config: Config,
    name: String,
}

impl Target {
    /// Parses a URL or key-value connection string.
    pub(super) fn parse(url: &str) -> Result<Self, StoreError> {
        let mut config: Config = url.parse().map_err(|e: postgres::Error| StoreError::Io {
            detail: format!(
                "the PostgreSQL connection string does not parse ({e}); write \
                 `postgres://user:password@host:port/database` or `host=... user=... \
                 dbname=...`"
            ),
            source: cause(e),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("durable");
        }
        // Every statement of the store reads rows by key (an id, a key array, an index
        // prefix): none gains from a sequential scan. A table that just grew from empty
        // (a new database, a burst of starts) still has the statistics of an empty one
        // until autovacuum analyzes it, and the planner then scans it whole for each
        // batch's keys: measured at 370 ms per group commit of 1,024 turns on 10,000
        // instances, against 3 ms by the primary key.
        // And the statements are planned once per connection, not at every execution: a
        // commit's statement of a dozen CTEs took 0.66 ms to plan for its parameters, more
        // than it took to run (0.22 ms) for one turn.
        // And no JIT compilation: the cost that `enable_seqscan=off` adds to the plans it
        // cannot avoid (a scan of a table with no index the statement can use) passes the
        // JIT's thresholds, and compiling took 85 to 330 ms per statement for queries that
        // run in well under one (the claim's first statement, reading a `workers` table of
        // a few rows by expiry, took 300 ms, all of it JIT); the server spent 2.2 s of CPU on a `chain` bench of
        // 10,000 orchestrations with it, 1.35 s without.
        let options = config.get_options().map(str::to_owned).unwrap_or_default();
        config.options(
            format!(
                "{options} -c enable_seqscan=off -c plan_cache_mode=force_generic_plan -c jit=off"
            )
            .trim_start(),
        );
        let name = describe(&config);
        Ok(Self { config, name })
    }

    /// `user@host:port/database`, without the password.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Opens a connection.
    pub(super) fn connect(&self) -> Result<Conn, StoreError> {
        let client = self
            .config
            .connect(NoTls)
            .map_err(|e| self.error("connecting", e))?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// What `e`, met while `doing` something, means: a [`StoreError::Server`] when the
    /// server is out of reach or refuses the user, the database or a permission;
    /// [`StoreError::Io`] otherwise.
    pub(super) fn error(&self, doing: &str, e: postgres::Error) -> StoreError {
        let detail = match e.as_db_error() {
            Some(db) => match db.detail() {
                Some(more) => format!("{doing}: {} ({more})", db.message()),
                None => format!("{doing}: {}", db.message()),
            },
            None => match e.source() {
                Some(inner) => format!("{doing}: {e}: {inner}"),
                None => format!("{doing}: {e}"),
            },
        };
        match problem(&e) {
            Some(problem) => StoreError::Server {
                server: self.name.clone(),
                problem,
                detail,
                source: cause(e),
            },
            None => StoreError::Io {
                detail: format!("PostgreSQL {}, {detail}", self.name),
                source: cause(e),
            },
        }
    }
}

/// Which [`ServerProblem`] `e` is, if it is one.
fn problem(e: &postgres::Error) -> Option<ServerProblem> {
    if let Some(code) = e.code() {
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            Some(ServerProblem::Authentication)
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            Some(ServerProblem::NoDatabase)
        } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            Some(ServerProblem::Permission)
        } else if *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            Some(ServerProblem::Unreachable)
        } else {
            None
        };
    }
    // No SQLSTATE: the socket failed, timed out (an `io::Error` too) or closed.
    let io = e.source().is_some_and(|inner| inner.is::<std::io::Error>());
    (io || e.is_closed()).then_some(ServerProblem::Unreachable)
}

/// `user@host:port/database` of `config`, as libpq fills in what it leaves out.
fn describe(config: &Config) -> String {
    let user = config.get_user().unwrap_or("?");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config.get_dbname().unwrap_or(user);
    format!("`{user}@{host}:{port}/{database}`")
}

/// A connection, with the statements prepared on it.
pub(super) struct Conn {
    client: Client,
    /// Prepared once per connection, by their SQL text (the `&'static str` constants of
    /// this module's siblings).
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// Whether the connection broke; it is then dropped.
    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Runs the read `sql`, prepared once per connection.
    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepare(sql)?;
        self.client.query(&statement, params)
    }

    /// The statement of `sql`, prepared on first use.
    fn prepare(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        prepare_once(&mut self.client, &mut self.statements, sql)
    }

    /// Starts a transaction that runs this connection's prepared statements.
    pub(super) fn transaction(&mut self) -> Result<Prepared<'_>, postgres::Error> {
        let Conn { client, statements } = self;
        Ok(Prepared {
            transaction: client.transaction()?,
            statements,
        })
    }
}

/// The statement of `sql` among a connection's `statements`, prepared on `client` (the
/// connection, or a transaction on it) the first time.
fn prepare_once(
    client: &mut impl GenericClient,
    statements: &mut HashMap<&'static str, Statement>,
    sql: &'static str,
) -> Result<Statement, postgres::Error> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(sql)?;
    statements.insert(sql, statement.clone());
    Ok(statement)
}

/// A transaction on a [`Conn`], preparing each statement once per connection.
pub(super) struct Prepared<'a> {
    transaction: Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl Prepared<'_> {
    fn prepare(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        prepare_once(&mut self.transaction, self.statements, sql)
    }

    /// Runs `sql`; returns the rows it returns.
    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepare(sql)?;
        self.transaction.query(&statement, params)
    }

    /// Commits; dropping a `Prepared` without it rolls back.
    pub(super) fn commit(self) -> Result<(), postgres::Error> {
        self.transaction.commit()
    }
}
