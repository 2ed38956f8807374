//! The admin API: read instances as JSON-ready views, and steer them, for the `durable`
//! CLI (feature `cli`) and the dashboard (feature `dashboard`).
//!
//! [`Admin`] wraps a [`Client`] (for a tool, one from [`Client::open`], which never runs
//! anything) and answers in the shapes of [`view`], which both print and serve:
//! [`history`](Admin::history) rows from `history.rs`, an instance's
//! [`detail`](Admin::instance) (pending work, timeline) from `detail.rs`, listings and
//! totals from `listing.rs`, schedules (feature `schedules`) from `schedules.rs`;
//! payloads become JSON values in `json.rs`.

mod detail;
mod filter;
mod history;
mod json;
mod listing;
#[cfg(feature = "schedules")]
mod schedules;
pub mod view;

use durable_store::{InstanceFilter, StatusKind};

use crate::client::Client;
use crate::error::Error;
use crate::replay_test::SavedHistory;
use crate::runtime::entities::is_entity;

pub use filter::{DEFAULT_PAGE_SIZE, EntityFilter, ListFilter};
#[cfg(feature = "schedules")]
pub use schedules::{overlap_name, parse_overlap};
pub use view::{
    EntityList, EntityRow, HistoryRow, InstanceDetail, InstanceList, InstanceRow, ScheduleDetail,
    ScheduleList, ScheduleRow, Stats,
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

    /// Resumes suspended or dead-lettered instance `id`.
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

/// The schedules (feature `schedules`): schedule `id` is instance `schedule:{id}` of the
/// built-in orchestrator `durable.schedule`. A request is raised to that instance and
/// takes effect when a runtime built with `schedules()` next runs it (at once on a running
/// one); a description shows the state as of its latest run.
#[cfg(feature = "schedules")]
impl Admin {
    /// A page of at most `page_size` schedules (default [`DEFAULT_PAGE_SIZE`]) after
    /// schedule id `after`, in id order. Reads one page of the instances with prefix
    /// `schedule:` from `after` on, and nothing else (see [`schedule`](Self::schedule)
    /// for a schedule's recent runs).
    ///
    /// # Errors
    ///
    /// [`Error::Payload`] if a schedule's state does not decode; [`Error::Store`] if the
    /// store cannot be read.
    pub async fn schedules(
        &self,
        after: Option<&str>,
        page_size: Option<usize>,
    ) -> Result<ScheduleList, Error> {
        let size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        schedules::list(&self.client, after, size).await
    }

    /// Schedule `id`: definition, paused state and note, next 5 runs, recent runs with
    /// their statuses, queued ticks, missed and skipped counts. `None` if there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Payload`] if its state does not decode; [`Error::Store`] if the store
    /// cannot be read.
    pub async fn schedule(&self, id: &str) -> Result<Option<ScheduleDetail>, Error> {
        schedules::detail(&self.client, id).await
    }

    /// Pauses schedule `id` with `note` (see
    /// [`ScheduleHandle::pause`](crate::schedule::ScheduleHandle::pause)).
    ///
    /// # Errors
    ///
    /// [`Error::ScheduleNotFound`] if there is no schedule `id`; [`Error::Store`].
    pub async fn pause_schedule(&self, id: &str, note: &str) -> Result<(), Error> {
        self.client.schedule(id).pause(note).await
    }

    /// Unpauses schedule `id`: its next tick after now runs.
    ///
    /// # Errors
    ///
    /// As [`pause_schedule`](Self::pause_schedule).
    pub async fn unpause_schedule(&self, id: &str) -> Result<(), Error> {
        self.client.schedule(id).unpause().await
    }

    /// Triggers a run of schedule `id` now, under its overlap policy.
    ///
    /// # Errors
    ///
    /// As [`pause_schedule`](Self::pause_schedule).
    pub async fn trigger_schedule(&self, id: &str) -> Result<(), Error> {
        self.client.schedule(id).trigger().await
    }

    /// Runs the ticks of schedule `id` from `start_ms` (included) to `end_ms` (excluded),
    /// ms since the Unix epoch, under `overlap`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if the range is empty; as
    /// [`pause_schedule`](Self::pause_schedule) otherwise.
    pub async fn backfill_schedule(
        &self,
        id: &str,
        start_ms: u64,
        end_ms: u64,
        overlap: crate::schedule::OverlapPolicy,
    ) -> Result<(), Error> {
        if end_ms <= start_ms {
            return Err(Error::InvalidArgument {
                argument: "range",
                value: format!("{start_ms}..{end_ms}"),
                hint: "the end must be after the start".into(),
            });
        }
        let time = |ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        let handle = self.client.schedule(id);
        handle.backfill(time(start_ms), time(end_ms), overlap).await
    }

    /// Deletes schedule `id`: asks its instance to end (it starts nothing more once a
    /// runtime handles the request; its runs stay), without waiting, since a tool's
    /// client runs nothing. A schedule whose instance has ended already is purged: delete
    /// it again once it has ended to remove it from the store.
    ///
    /// # Errors
    ///
    /// [`Error::ScheduleNotFound`] if there is no schedule `id`; [`Error::Store`].
    pub async fn delete_schedule(&self, id: &str) -> Result<(), Error> {
        schedules::delete(&self.client, id).await
    }
}

#[cfg(test)]
mod tests;
