//! Where a command goes: a store opened with a read-and-request client
//! ([`Admin`] over [`Client::open`], which runs no workflow), or a running process's admin
//! API (`--url`). Both answer with the same views; errors become one-line [`CliError`]s
//! that name the store or the address.

use std::path::{Path, PathBuf};

use durable_store::{FjallStore, PostgresStore, StoreError};

use crate::admin::view::{EntityList, HistoryRow, InstanceDetail, InstanceList, Stats};
use crate::admin::{Admin, EntityFilter, ListFilter};
use crate::cli::CliError;
use crate::cli::remote::{Remote, RemoteError, encode_component, query};
use crate::client::Client;
use crate::error::Error;
use crate::replay_test::SavedHistory;

/// The file a process serving its dashboard over a fjall store writes in the store's
/// directory: its admin address (`http://ADDR/` and a newline).
pub(crate) const ADMIN_URL_FILE: &str = crate::dashboard::URL_FILE;

/// Where the commands go.
#[derive(Debug)]
pub(crate) enum Backend {
    /// A store this process opened.
    Store {
        admin: Admin,
        /// Runs the admin's calls (it is async); a small runtime of the CLI's own.
        runtime: tokio::runtime::Runtime,
        /// The store as the user named it (a PostgreSQL URL without its password).
        name: String,
    },
    /// The admin API of a running process.
    Remote(Remote),
}

/// Opens the store `spec` names: a PostgreSQL URL, or a fjall directory that must exist
/// and not be empty.
///
/// # Errors
///
/// [`CliError`] if there is no directory or an empty one (where `FjallStore::open`
/// would create a store), the store is open in another process
/// (naming that process's admin address if it wrote one), or the store cannot be opened.
pub(crate) fn open_store(spec: &str) -> Result<Backend, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the async runtime: {e}")))?;
    let (client, name) = if is_postgres_url(spec) {
        let name = redact_password(spec);
        // Not `open`: a read must not create durable's schema in a mistyped database, nor
        // migrate an older one.
        let store = PostgresStore::open_existing(spec)
            .map_err(|e| CliError::new(format!("cannot open store {name}: {e}")))?;
        (runtime.block_on(Client::open(store)), name)
    } else {
        let dir = PathBuf::from(spec);
        // `FjallStore::open` creates a store where there is none (no directory, or an
        // empty one): a mistyped path must not leave an empty store behind and list
        // nothing.
        if let Some(why) = no_store_at(&dir) {
            return Err(CliError::new(format!(
                "no durable store at `{spec}`: {why}"
            )));
        }
        let store = FjallStore::open(&dir).map_err(|e| match e {
            StoreError::AlreadyOpen { .. } => held_elsewhere(spec, &dir),
            e => CliError::new(format!("cannot open store {spec}: {e}")),
        })?;
        (runtime.block_on(Client::open(store)), spec.to_string())
    };
    let client = client.map_err(|e| CliError::new(format!("cannot open store {name}: {e}")))?;
    Ok(Backend::Store {
        admin: Admin::new(client),
        runtime,
        name,
    })
}

/// Why `dir` cannot hold a fjall store to read (where `FjallStore::open` would create
/// one), or `None` if it may.
fn no_store_at(dir: &Path) -> Option<&'static str> {
    if !dir.exists() {
        return Some("the directory does not exist");
    }
    if !dir.is_dir() {
        return Some("it is not a directory");
    }
    // Unreadable: `FjallStore::open` says why.
    let empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    empty.then_some("the directory is empty")
}

/// The message for a fjall store another process holds: its admin address if it serves
/// one, else how to give it one. The CLI never waits for the lock.
fn held_elsewhere(spec: &str, dir: &Path) -> CliError {
    let url = std::fs::read_to_string(dir.join(ADMIN_URL_FILE))
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|url| !url.is_empty());
    CliError::new(match url {
        Some(url) => format!(
            "store {spec} is open in another process; its admin API is at {url} (run \
             `durable --url {url} ...`)"
        ),
        None => format!(
            "store {spec} is open in another process, which serves no admin API; serve its \
             dashboard (durable-core feature `dashboard`) to reach it with `durable --url \
             http://ADDR/ ...`, or stop it to open the store"
        ),
    })
}

fn is_postgres_url(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`, for messages.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Backend {
    /// Where the commands go, for messages: `store DIR` or `http://ADDR`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Backend::Store { name, .. } => format!("store {name}"),
            Backend::Remote(remote) => remote.base().to_string(),
        }
    }

    /// The not-found message for instance `id`.
    fn not_found(&self, id: &str) -> CliError {
        match self {
            Backend::Store { .. } => {
                CliError::new(format!("no instance `{id}` in {}", self.describe()))
            }
            Backend::Remote(remote) => {
                CliError::new(format!("no instance `{id}` at {}/", remote.base()))
            }
        }
    }

    /// Runs `call` on the admin of a store, or sends `request` to the API; `id` names the
    /// instance concerned, for the not-found message.
    fn call<T>(
        &self,
        id: Option<&str>,
        call: impl AsyncFnOnce(&Admin) -> Result<T, Error>,
        request: impl FnOnce(&Remote) -> Result<T, RemoteError>,
    ) -> Result<T, CliError> {
        match self {
            Backend::Store { admin, runtime, .. } => runtime
                .block_on(call(admin))
                .map_err(|e| self.store_error(id, e)),
            Backend::Remote(remote) => request(remote).map_err(|e| self.remote_error(id, e)),
        }
    }

    fn store_error(&self, id: Option<&str>, e: Error) -> CliError {
        match (e, id) {
            (Error::InstanceNotFound(_), Some(id)) => self.not_found(id),
            // A status or cursor given on the command line that means nothing.
            (e @ Error::InvalidArgument { .. }, _) => CliError::usage(e.to_string()),
            (e, _) => CliError::new(e.to_string()),
        }
    }

    fn remote_error(&self, id: Option<&str>, e: RemoteError) -> CliError {
        match (e, id) {
            (RemoteError::Status { status: 404, .. }, Some(id)) => self.not_found(id),
            (RemoteError::Status { message, .. } | RemoteError::Failed(message), _) => {
                CliError::new(message)
            }
        }
    }

    /// A page of instances.
    pub(crate) fn list(&self, filter: &ListFilter) -> Result<InstanceList, CliError> {
        self.call(
            None,
            async |admin| admin.list(filter).await,
            |remote| {
                remote.get(&format!(
                    "/api/instances{}",
                    query(&[
                        ("status", filter.status.clone()),
                        ("orchestrator", filter.orchestrator.clone()),
                        (
                            "created_from_ms",
                            filter.created_from_ms.map(|v| v.to_string())
                        ),
                        (
                            "created_before_ms",
                            filter.created_before_ms.map(|v| v.to_string())
                        ),
                        ("page_size", filter.page_size.map(|v| v.to_string())),
                        ("after", filter.after.clone()),
                    ])
                ))
            },
        )
    }

    /// Instance `id`, which must exist.
    pub(crate) fn instance(&self, id: &str) -> Result<InstanceDetail, CliError> {
        self.call(
            Some(id),
            async |admin| {
                (admin.instance(id).await?).ok_or_else(|| Error::InstanceNotFound(id.into()))
            },
            |remote| remote.get(&format!("/api/instances/{}", encode_component(id))),
        )
    }

    /// The history of instance `id`, which must exist.
    pub(crate) fn history(&self, id: &str) -> Result<Vec<HistoryRow>, CliError> {
        self.call(
            Some(id),
            async |admin| {
                (admin.history(id).await?).ok_or_else(|| Error::InstanceNotFound(id.into()))
            },
            |remote| remote.get(&format!("/api/instances/{}/history", encode_component(id))),
        )
    }

    /// The store's totals.
    pub(crate) fn stats(&self) -> Result<Stats, CliError> {
        self.call(
            None,
            async |admin| admin.stats().await,
            |remote| remote.get("/api/stats"),
        )
    }

    /// A page of entities.
    pub(crate) fn entities(&self, filter: &EntityFilter) -> Result<EntityList, CliError> {
        self.call(
            None,
            async |admin| admin.entities(filter).await,
            |remote| {
                remote.get(&format!(
                    "/api/entities{}",
                    query(&[
                        ("name", filter.name.clone()),
                        ("key_prefix", filter.key_prefix.clone()),
                        ("page_size", filter.page_size.map(|v| v.to_string())),
                        ("after", filter.after.clone()),
                    ])
                ))
            },
        )
    }

    /// Sends one of the requests that take an instance id and answer `{"ok": true}`:
    /// `action` is the API path's last segment, `body` its JSON body.
    fn act(
        &self,
        id: &str,
        action: &str,
        body: serde_json::Value,
        call: impl AsyncFnOnce(&Admin) -> Result<(), Error>,
    ) -> Result<(), CliError> {
        self.call(Some(id), call, |remote| {
            let path = format!("/api/instances/{}/{action}", encode_component(id));
            remote.post::<serde_json::Value>(&path, &body).map(drop)
        })
    }

    /// Raises event `name` on `id`.
    pub(crate) fn raise(
        &self,
        id: &str,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<(), CliError> {
        let body = serde_json::json!({ "name": name, "payload": payload });
        self.act(id, "raise", body, async |admin| {
            admin.raise_event(id, name, payload.clone()).await
        })
    }

    /// Terminates `id`.
    pub(crate) fn terminate(&self, id: &str, reason: &str) -> Result<(), CliError> {
        let body = serde_json::json!({ "reason": reason });
        self.act(id, "terminate", body, async |admin| {
            admin.terminate(id, reason).await
        })
    }

    /// Suspends `id`.
    pub(crate) fn suspend(&self, id: &str, reason: &str) -> Result<(), CliError> {
        let body = serde_json::json!({ "reason": reason });
        self.act(id, "suspend", body, async |admin| {
            admin.suspend(id, reason).await
        })
    }

    /// Resumes `id`.
    pub(crate) fn resume(&self, id: &str) -> Result<(), CliError> {
        self.act(id, "resume", serde_json::json!({}), async |admin| {
            admin.resume(id).await
        })
    }

    /// Restarts `id`.
    pub(crate) fn restart(&self, id: &str) -> Result<(), CliError> {
        self.act(id, "restart", serde_json::json!({}), async |admin| {
            admin.restart(id).await
        })
    }

    /// Purges `id`.
    pub(crate) fn purge(&self, id: &str) -> Result<(), CliError> {
        self.act(id, "purge", serde_json::json!({}), async |admin| {
            admin.purge(id).await
        })
    }

    /// Purges the finished instances `filter` matches, calling `progress` with the
    /// running total (after each batch on a store; once at the end over the API).
    pub(crate) fn purge_where(
        &self,
        filter: &ListFilter,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<usize, CliError> {
        #[derive(serde::Deserialize)]
        struct Purged {
            purged: usize,
        }
        let purged = self.call(
            None,
            async |admin| admin.purge_where(filter, &mut *progress).await,
            |remote| {
                remote
                    .post::<Purged>("/api/purge", filter)
                    .map(|p| p.purged)
            },
        )?;
        Ok(purged)
    }

    /// Writes the history of `id` to `file`, as `SavedHistory::load` reads it; returns
    /// how many events it holds.
    pub(crate) fn export(&self, id: &str, file: &Path) -> Result<usize, CliError> {
        match self {
            Backend::Store { admin, runtime, .. } => {
                let history = runtime
                    .block_on(admin.export(id))
                    .map_err(|e| self.store_error(Some(id), e))?
                    .ok_or_else(|| self.not_found(id))?;
                history
                    .save(file)
                    .map_err(|e| CliError::new(e.to_string()))?;
                Ok(history.events.len())
            }
            Backend::Remote(remote) => {
                let path = format!("/api/instances/{}/export", encode_component(id));
                let bytes = remote
                    .get_bytes(&path)
                    .map_err(|e| self.remote_error(Some(id), e))?;
                // Checked before it is written: a file a replay test cannot load helps no one.
                let history = postcard::from_bytes::<SavedHistory>(&bytes).map_err(|e| {
                    CliError::new(format!(
                        "the export of `{id}` from {}/ is not a saved history: {e}",
                        remote.base()
                    ))
                })?;
                std::fs::write(file, bytes).map_err(|e| {
                    CliError::new(format!("cannot write `{}`: {e}", file.display()))
                })?;
                Ok(history.events.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_password;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact_password("postgres://app:s3cret@db:5432/orders"),
            "postgres://app:***@db:5432/orders"
        );
        assert_eq!(
            redact_password("postgres://app@db/orders"),
            "postgres://app@db/orders"
        );
    }
}
