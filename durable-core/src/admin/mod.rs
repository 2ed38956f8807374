//! The admin API: read instances as JSON-ready views, and steer them, for the `durable`
//! CLI (feature `cli`) and the dashboard (feature `dashboard`).
//!
//! [`Admin`] wraps a [`Client`] (for a tool, one from [`Client::open`], which never runs
//! anything) and answers in the shapes of [`view`], which both print and serve:
//! [`history`](Admin::history) rows from `history.rs`, an instance's
//! [`detail`](Admin::instance) (pending work, timeline) from `detail.rs`, listings and
//! totals from `listing.rs`; payloads become JSON values in `json.rs`.

mod detail;
mod filter;
mod history;
mod json;
mod listing;
pub mod view;

use durable_store::{InstanceFilter, StatusKind};

use crate::client::Client;
use crate::error::Error;
use crate::replay_test::SavedHistory;
use crate::runtime::entities::is_entity;

pub use filter::{DEFAULT_PAGE_SIZE, EntityFilter, ListFilter};
pub use view::{
    EntityList, EntityRow, HistoryRow, InstanceDetail, InstanceList, InstanceRow, Stats,
};

/// The admin API over a [`Client`]: every read as a view of [`view`], every request by
/// instance id and JSON payload. Cheap to clone.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use durable_core::admin::{Admin, ListFilter};
/// use durable_core::{Client, FjallStore};
///
/// // A tool's client: it reads and sends, and runs nothing.
/// let admin = Admin::new(Client::open(FjallStore::open("data/durable")?).await?);
/// let stalled = ListFilter {
///     status: Some("stalled".into()),
///     ..ListFilter::default()
/// };
/// for row in admin.list(&stalled).await?.instances {
///     println!("{}: {:?} at {:?}", row.id, row.message, row.stopped_at);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// The admin API over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The client it reads and sends through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A page of the orchestration instances `filter` selects, in creation order, with
    /// the counts by status of the whole store. Reads the store's indexes (a page costs
    /// what it holds) and, for each failed or stalled instance of the page, its history
    /// (for where it stopped).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `filter` names an unknown status or a cursor not
    /// from a previous page; [`Error::Store`] if the store cannot be read.
    pub async fn list(&self, filter: &ListFilter) -> Result<InstanceList, Error> {
        listing::list(&self.client, filter)
    }

    /// Everything about orchestration instance `id`: status, payloads as JSON, parent and
    /// children, pending work and timeline. `None` if there is no such instance (or `id`
    /// is an entity's).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if its record, history or its children's records cannot be read.
    pub async fn instance(&self, id: &str) -> Result<Option<InstanceDetail>, Error> {
        detail::detail(&self.client, id)
    }

    /// The history of orchestration instance `id` (its current generation), one row per
    /// event; `None` if there is no such instance.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if its record or history cannot be read.
    pub async fn history(&self, id: &str) -> Result<Option<Vec<HistoryRow>>, Error> {
        let store = self.client.engine.store();
        match store.instance(id)? {
            Some(record) if !is_entity(id, &record) => Ok(Some(history::rows(&store.history(id)?))),
            _ => Ok(None),
        }
    }

    /// The store's totals: instances by status, work queued, the oldest pending item.
    ///
    /// The counts cost the same whatever the store holds; the work queue is scanned
    /// whole ([`Store::work_items`](durable_store::Store::work_items)), so this costs
    /// what is queued.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub async fn stats(&self) -> Result<Stats, Error> {
        listing::stats(&self.client)
    }

    /// A page of the entities `filter` selects, in id order, their state as JSON.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the store cannot be read.
    pub async fn entities(&self, filter: &EntityFilter) -> Result<EntityList, Error> {
        listing::entities(&self.client, filter)
    }

    /// Raises event `name` with `payload` (any JSON) to instance `id`.
    ///
    /// # Errors
    ///
    /// What [`Client::raise_event`] returns: [`Error::InstanceNotFound`],
    /// [`Error::InvalidState`] if it has finished, [`Error::PayloadTooLarge`],
    /// [`Error::Store`].
    pub async fn raise_event(
        &self,
        id: &str,
        name: &str,
        payload: serde_json::Value,
    ) -> Result<(), Error> {
        self.client.raise_event(id, name, &payload).await
    }

    /// Terminates instance `id` with `reason`.
    ///
    /// # Errors
    ///
    /// What [`Client::terminate`] returns.
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.client.terminate(id, reason).await
    }

    /// Suspends instance `id` with `reason`.
    ///
    /// # Errors
    ///
    /// What [`Client::suspend`] returns.
    pub async fn suspend(&self, id: &str, reason: &str) -> Result<(), Error> {
        self.client.suspend(id, reason).await
    }

    /// Resumes suspended instance `id`.
    ///
    /// # Errors
    ///
    /// What [`Client::resume`] returns.
    pub async fn resume(&self, id: &str) -> Result<(), Error> {
        self.client.resume(id).await
    }

    /// Restarts failed or terminated instance `id` from its input.
    ///
    /// # Errors
    ///
    /// What [`Client::restart`] returns.
    pub async fn restart(&self, id: &str) -> Result<(), Error> {
        self.client.restart(id).await
    }

    /// Purges finished instance `id` and its history.
    ///
    /// # Errors
    ///
    /// What [`Client::purge`] returns.
    pub async fn purge(&self, id: &str) -> Result<(), Error> {
        self.client.purge(id).await
    }

    /// Purges the finished instances matching `filter` (all pages; its `page_size` and
    /// `after` are ignored), calling `progress` with the running total after each batch
    /// of 1,000. Returns how many were purged. With no status, every finished status.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an unknown status name;
    /// [`Error::PurgeUnfinished`] if the status is not a finished one (nothing is
    /// purged); [`Error::Store`] if the instances cannot be read or a removal cannot be
    /// written (the batches before it stay purged).
    pub async fn purge_where(
        &self,
        filter: &ListFilter,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<usize, Error> {
        let statuses = match filter.status_kind()? {
            Some(status) if !status.is_terminal() => {
                return Err(Error::PurgeUnfinished { status });
            }
            Some(status) => vec![status],
            None => (StatusKind::ALL.into_iter())
                .filter(|s| s.is_terminal())
                .collect(),
        };
        let filter = InstanceFilter {
            statuses,
            ..filter.store_filter()?
        };
        self.client.purge_matching(&filter, progress).await
    }

    /// The history of instance `id` as a file the replay-test helper loads
    /// ([`SavedHistory::save`]); `None` if there is no such instance.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if its record or history cannot be read.
    pub async fn export(&self, id: &str) -> Result<Option<SavedHistory>, Error> {
        match SavedHistory::export(self.client.engine.store(), id) {
            Ok(saved) => Ok(Some(saved)),
            Err(Error::InstanceNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
