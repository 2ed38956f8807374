//! Listing instances ([`Client::list`] with an [`InstanceQuery`]), counting them by status
//! ([`Client::count_by_status`]) and choosing the finished ones to purge ([`PurgeFilter`]).
//!
//! Each reads the store's indexes ([`Store::list_instances`](durable_store::Store::list_instances),
//! [`Store::count_by_status`](durable_store::Store::count_by_status)): a page costs what
//! it holds, not what the store ever held.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_store::{
    InstanceCursor, InstanceFilter, InstanceRecord, Status, StatusCounts, StatusKind,
};

use crate::client::Client;
use crate::error::Error;
use crate::handle::Orchestrator;
use crate::payload::{self, PayloadError};
use crate::position::{Position, StepAt};

/// A stored time (ms since the Unix epoch) as a [`SystemTime`].
fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The first whole millisecond since the Unix epoch at or after `time` (0 before the
/// epoch): a stored time `ms` is at or after `time` exactly when `ms >= ms_from(time)`.
fn ms_from(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        let ms = since.as_millis();
        let ms = if since.subsec_nanos() % 1_000_000 == 0 {
            ms
        } else {
            ms + 1
        };
        u64::try_from(ms).unwrap_or(u64::MAX)
    })
}

impl Client {
    /// Orchestration instances matching `query`, one page at a time, in creation order
    /// (then id order for instances created in the same millisecond). Entities are not
    /// orchestrations and are never listed here: [`Client::list_entities`] lists them.
    ///
    /// Reads the store's index by status (and orchestrator, and creation time): the cost
    /// grows with the page, not with the instances stored, finished ones included.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the instances cannot be read.
    pub async fn list(&self, query: &InstanceQuery) -> Result<Page, Error> {
        let after = query.after.as_ref().map(|cursor| &cursor.0);
        let page = self
            .engine
            .store()
            .list_instances(&query.filter(), after, query.page_size)?;
        let instances = (page.instances.into_iter())
            .map(|(id, record)| self.summary(id, record))
            .collect::<Result<_, Error>>()?;
        Ok(Page {
            instances,
            next: page.next.map(PageCursor),
        })
    }

    /// The summary of instance `id`, whose record is `record`: reads its history if it
    /// failed or stalled, for where it stopped.
    fn summary(&self, id: String, record: InstanceRecord) -> Result<InstanceSummary, Error> {
        let message = match &record.status {
            Status::Failed { failure } | Status::Stalled { failure } => {
                Some(failure.message.clone())
            }
            Status::Terminated { reason }
            | Status::Suspended { reason }
            | Status::DeadLettered { reason } => Some(reason.clone()),
            Status::Pending | Status::Running | Status::Completed { .. } => None,
        };
        let stopped_at = if matches!(
            record.status,
            Status::Failed { .. } | Status::Stalled { .. }
        ) {
            Position::of(&self.engine.store().history(&id)?).last
        } else {
            None
        };
        Ok(InstanceSummary {
            orchestrator: record.orchestrator,
            status: record.status.kind(),
            created_at: time_of(record.created_ms),
            updated_at: time_of(record.updated_ms),
            message,
            custom_status: record.custom_status,
            stopped_at,
            id,
        })
    }

    /// How many orchestration instances the store holds in each status: every
    /// [`StatusKind`], zeros included. Entities are not counted.
    ///
    /// Reads counters the store keeps in step with every commit: it costs the same
    /// whatever the store holds.
    ///
    /// ```no_run
    /// # async fn f(client: durable_core::Client) -> Result<(), durable_core::Error> {
    /// use durable_core::StatusKind;
    ///
    /// let counts = client.count_by_status().await?;
    /// println!("{} running", counts[&StatusKind::Running]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the counters cannot be read.
    pub async fn count_by_status(&self) -> Result<StatusCounts, Error> {
        Ok(self.engine.store().count_by_status()?)
    }
}

/// Where the next page of [`Client::list`] starts: the [`next`](Page::next) of a page,
/// passed to [`InstanceQuery::after`]. Opaque; it stays valid when the instance it
/// follows is purged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCursor(pub(crate) InstanceCursor);

/// Which instances [`Client::list`] returns: all by default, 100 a page. Build one with
/// [`InstanceQuery::new`] and its methods.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use durable_core::{InstanceQuery, StatusKind};
///
/// let query = InstanceQuery::new()
///     .status(StatusKind::Running)
///     .status(StatusKind::Suspended)
///     .created_from(SystemTime::now() - Duration::from_secs(3600))
///     .page_size(20);
/// assert_eq!(query.statuses, [StatusKind::Running, StatusKind::Suspended]);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct InstanceQuery {
    /// Only these statuses; all if empty.
    pub statuses: Vec<StatusKind>,
    /// Only instances of the orchestrator of this registered name.
    pub orchestrator: Option<String>,
    /// Only instances created at or after this time.
    pub created_from: Option<SystemTime>,
    /// Only instances created before this time.
    pub created_before: Option<SystemTime>,
    /// At most this many per page (at least 1).
    pub page_size: usize,
    /// Start after this position: the [`next`](Page::next) of the previous page.
    pub after: Option<PageCursor>,
}

impl Default for InstanceQuery {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            orchestrator: None,
            created_from: None,
            created_before: None,
            page_size: 100,
            after: None,
        }
    }
}

impl InstanceQuery {
    /// Every instance, 100 a page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also instances of status `status` (a query without any takes all statuses).
    #[must_use]
    pub fn status(mut self, status: StatusKind) -> Self {
        self.statuses.push(status);
        self
    }

    /// Only instances of `orchestrator` (by its registered name; set the
    /// [`orchestrator`](Self::orchestrator) field to select by name alone).
    #[must_use]
    pub fn orchestrator<O: Orchestrator>(mut self, orchestrator: O) -> Self {
        let _ = orchestrator;
        self.orchestrator = Some(O::NAME.to_string());
        self
    }

    /// Only instances created at or after `time`.
    #[must_use]
    pub fn created_from(mut self, time: SystemTime) -> Self {
        self.created_from = Some(time);
        self
    }

    /// Only instances created before `time`.
    #[must_use]
    pub fn created_before(mut self, time: SystemTime) -> Self {
        self.created_before = Some(time);
        self
    }

    /// At most `size` instances a page (a size of 0 counts as 1).
    #[must_use]
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size;
        self
    }

    /// Start after `cursor`: the [`next`](Page::next) of the previous page.
    #[must_use]
    pub fn after(mut self, cursor: PageCursor) -> Self {
        self.after = Some(cursor);
        self
    }

    /// The query as the store takes it.
    fn filter(&self) -> InstanceFilter {
        InstanceFilter {
            statuses: self.statuses.clone(),
            orchestrator: self.orchestrator.clone(),
            created_from_ms: self.created_from.map(ms_from),
            created_before_ms: self.created_before.map(ms_from),
            finished_before_ms: None,
        }
    }

    #[cfg(test)]
    fn matches(&self, record: &durable_store::InstanceRecord) -> bool {
        self.filter().matches(record)
    }
}

/// Which finished instances [`Client::purge_where`] removes: all by default. Build one
/// with [`PurgeFilter::new`] and its methods.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use durable_core::{PurgeFilter, StatusKind};
///
/// let week_ago = SystemTime::now() - Duration::from_secs(7 * 24 * 3600);
/// let filter = PurgeFilter::new()
///     .status(StatusKind::Completed)
///     .finished_before(week_ago);
/// assert_eq!(filter.statuses, [StatusKind::Completed]);
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct PurgeFilter {
    /// Only these statuses, each a finished one ([`StatusKind::is_terminal`]: completed,
    /// failed, terminated); all finished if empty.
    pub statuses: Vec<StatusKind>,
    /// Only instances that finished before this time.
    pub finished_before: Option<SystemTime>,
}

impl PurgeFilter {
    /// Every finished instance.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also finished instances of status `status`: completed, failed or terminated
    /// ([`Client::purge_where`] refuses any other).
    #[must_use]
    pub fn status(mut self, status: StatusKind) -> Self {
        self.statuses.push(status);
        self
    }

    /// Only instances that finished before `time`.
    #[must_use]
    pub fn finished_before(mut self, time: SystemTime) -> Self {
        self.finished_before = Some(time);
        self
    }

    /// Refuses a status whose instances are never purged, which would match nothing.
    pub(crate) fn check(&self) -> Result<(), Error> {
        match self.statuses.iter().find(|s| !s.is_terminal()) {
            Some(&status) => Err(Error::PurgeUnfinished { status }),
            None => Ok(()),
        }
    }

    /// The filter as the store takes it: the statuses named, or every finished one.
    pub(crate) fn filter(&self) -> InstanceFilter {
        let statuses = if self.statuses.is_empty() {
            StatusKind::ALL
                .into_iter()
                .filter(|s| s.is_terminal())
                .collect()
        } else {
            self.statuses.clone()
        };
        InstanceFilter {
            statuses,
            finished_before_ms: self.finished_before.map(ms_from),
            ..InstanceFilter::default()
        }
    }

    #[cfg(test)]
    fn matches(&self, record: &durable_store::InstanceRecord) -> bool {
        self.filter().matches(record)
    }
}

/// One instance in a [`Page`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceSummary {
    /// The instance id.
    pub id: String,
    /// Its orchestrator's registered name.
    pub orchestrator: String,
    /// Its status.
    pub status: StatusKind,
    /// When it was created (by the runtime's clock).
    pub created_at: SystemTime,
    /// When its record last changed (by the runtime's clock): for a finished instance,
    /// when it finished.
    pub updated_at: SystemTime,
    /// For a failed or stalled instance, the failure's message; for a terminated or
    /// suspended one, the reason given.
    pub message: Option<String>,
    /// The custom status the orchestrator set last, encoded (JSON;
    /// [`custom_status_json`](Self::custom_status_json) reads it).
    pub custom_status: Option<Vec<u8>>,
    /// For a failed or stalled instance, the last step it issued, with its await site
    /// (see [`Position::last`]).
    pub stopped_at: Option<StepAt>,
}

impl InstanceSummary {
    /// The custom status as a JSON value, `None` if it has none.
    ///
    /// # Errors
    ///
    /// [`PayloadError`] if the stored status is not JSON.
    pub fn custom_status_json(&self) -> Result<Option<serde_json::Value>, PayloadError> {
        self.custom_status
            .as_deref()
            .map(payload::to_json)
            .transpose()
    }
}

/// A page of [`Client::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// The instances, in creation order (then id order).
    pub instances: Vec<InstanceSummary>,
    /// Pass to [`InstanceQuery::after`] for the next page; `None` on the last.
    pub next: Option<PageCursor>,
}

#[cfg(test)]
mod tests {
    use durable_store::{Failure, FailureKind, InstanceRecord, Status};

    use super::*;

    fn record(status: Status, created_ms: u64, updated_ms: u64) -> InstanceRecord {
        let mut record = InstanceRecord::pending("flow".into(), 1, vec![], created_ms, 1, None);
        record.status = status;
        record.updated_ms = updated_ms;
        record
    }

    #[test]
    fn status_kinds_name_the_statuses_as_before() {
        let names: Vec<_> = StatusKind::ALL.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            names,
            [
                "pending",
                "running",
                "completed",
                "failed",
                "stalled",
                "terminated",
                "suspended",
                "dead-lettered"
            ]
        );
        let failure = Failure {
            kind: FailureKind::Panicked,
            message: "boom".into(),
        };
        let statuses = [
            Status::Pending,
            Status::Running,
            Status::Completed { output: vec![] },
            Status::Failed {
                failure: failure.clone(),
            },
            Status::Stalled { failure },
            Status::Terminated { reason: "r".into() },
            Status::Suspended { reason: "r".into() },
            Status::DeadLettered { reason: "r".into() },
        ];
        for (status, kind) in statuses.iter().zip(StatusKind::ALL) {
            assert_eq!(status.kind(), kind);
            assert_eq!(status.name(), kind.as_str());
            assert_eq!(status.is_terminal(), kind.is_terminal());
        }
    }

    #[test]
    fn queries_match_by_status_kind_and_time() {
        let at = |ms| time_of(ms);
        let running = record(Status::Running, 1_000, 5_000);
        let query = InstanceQuery::new().status(StatusKind::Running);
        assert!(query.matches(&running));
        assert!(
            !InstanceQuery::new()
                .status(StatusKind::Pending)
                .matches(&running)
        );
        assert!(
            InstanceQuery::new()
                .created_from(at(1_000))
                .matches(&running)
        );
        assert!(
            !InstanceQuery::new()
                .created_from(at(1_001))
                .matches(&running)
        );
        assert!(
            InstanceQuery::new()
                .created_before(at(1_001))
                .matches(&running)
        );
        assert!(
            !InstanceQuery::new()
                .created_before(at(1_000))
                .matches(&running)
        );

        let done = record(Status::Completed { output: vec![] }, 1_000, 5_000);
        let filter = PurgeFilter::new().status(StatusKind::Completed);
        assert!(filter.check().is_ok() && filter.matches(&done));
        assert!(filter.clone().finished_before(at(5_001)).matches(&done));
        assert!(!filter.finished_before(at(5_000)).matches(&done));
        assert!(matches!(
            PurgeFilter::new().status(StatusKind::Running).check(),
            Err(Error::PurgeUnfinished {
                status: StatusKind::Running
            })
        ));
    }
}
