//! The client's requests that change an instance's course: terminate, suspend, resume,
//! purge, restart; and the refusals of requests its state does not allow.

use durable_store::{Commit, Event, InstanceFilter, InstanceRecord, Status};

use crate::client::Client;
use crate::client::query::PurgeFilter;
use crate::error::{ClientRequest, Error};
use crate::runtime::dead_letter::{Marker, marker_key, remove_marker};
use crate::runtime::engine::{Engine, Recipient};

/// How many instances [`Client::purge_where`] removes per commit.
const PURGE_BATCH: usize = 1_000;

impl Client {
    /// Stops instance `id` before it finishes; its status becomes terminated with
    /// `reason`. Activities already running finish, their results ignored.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::InvalidState`]
    /// if it has finished; [`Error::PayloadTooLarge`] if `reason` is over the payload
    /// limit; [`Error::Store`] if the request cannot be written.
    #[tracing::instrument(name = "client", skip_all, fields(otel.name = "TerminateWorkflow", otel.kind = "client", instance_id = id))]
    pub async fn terminate(&self, id: &str, reason: &str) -> Result<(), Error> {
        let record = self.existing(id).await?;
        refuse_if_finished(id, &record, ClientRequest::Terminate)?;
        let what = || "the terminate reason".to_string();
        self.engine.check_payload(what, reason.as_bytes())?;
        let event = Event::TerminateRequested {
            reason: reason.to_string(),
        };
        let to = Recipient::any_generation(record.incarnation);
        self.send(id, to, event, Commit::default()).await
    }

    /// Pauses instance `id`: events are kept, and applied once it is resumed.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::InvalidState`]
    /// if it has finished, is suspended already or is dead-lettered;
    /// [`Error::PayloadTooLarge`] if `reason` is over the payload limit; [`Error::Store`]
    /// if the request cannot be written.
    #[tracing::instrument(name = "client", skip_all, fields(otel.name = "SuspendWorkflow", otel.kind = "client", instance_id = id))]
    pub async fn suspend(&self, id: &str, reason: &str) -> Result<(), Error> {
        let record = self.existing(id).await?;
        refuse_if_finished(id, &record, ClientRequest::Suspend)?;
        match record.status {
            Status::Suspended { .. } => {
                return Err(invalid_state(
                    id,
                    ClientRequest::Suspend,
                    &record,
                    "it is suspended already",
                ));
            }
            Status::DeadLettered { .. } => {
                return Err(invalid_state(
                    id,
                    ClientRequest::Suspend,
                    &record,
                    "it is dead-lettered, its work parked already; resume or terminate it",
                ));
            }
            _ => {}
        }
        let what = || "the suspend reason".to_string();
        self.engine.check_payload(what, reason.as_bytes())?;
        let event = Event::SuspendRequested {
            reason: reason.to_string(),
        };
        let to = Recipient::any_generation(record.incarnation);
        self.send(id, to, event, Commit::default()).await
    }

    /// Lets a suspended or dead-lettered instance go on. A dead-lettered one's recovery
    /// count starts again from 0, and the activity tasks parked with it run now on a
    /// runtime that holds it (else at the next start), as DBOS's `resume` does for a
    /// workflow past its `max_recovery_attempts`.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::InvalidState`]
    /// if it is neither suspended nor dead-lettered; [`Error::Store`] if the request
    /// cannot be written.
    #[tracing::instrument(name = "client", skip_all, fields(otel.name = "ResumeWorkflow", otel.kind = "client", instance_id = id))]
    pub async fn resume(&self, id: &str) -> Result<(), Error> {
        let record = self.existing(id).await?;
        if !record.status.waits_for_resume() {
            return Err(invalid_state(
                id,
                ClientRequest::Resume,
                &record,
                "only a suspended or dead-lettered instance can be resumed",
            ));
        }
        // A dead-lettered one starts its count again (`runtime/dead_letter.rs`).
        let mut commit = Commit::default();
        let key = marker_key(id, record.incarnation);
        if let Some(stored) = self.engine.store().progress(&key)? {
            commit
                .progress
                .push((key, Marker::decode(&stored).cleared()));
        }
        let to = Recipient::any_generation(record.incarnation);
        self.send(id, to, Event::ResumeRequested, commit).await
    }

    /// Removes a finished (completed, failed or terminated) instance and its history.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::InvalidState`]
    /// if it has not finished; [`Error::Store`] if the removal cannot be written.
    #[tracing::instrument(name = "client", skip_all, fields(otel.name = "PurgeWorkflow", otel.kind = "client", instance_id = id))]
    pub async fn purge(&self, id: &str) -> Result<(), Error> {
        let record = self.existing(id).await?;
        if !record.status.is_terminal() {
            return Err(invalid_state(
                id,
                ClientRequest::Purge,
                &record,
                "terminate it first, or wait until it finishes",
            ));
        }
        let mut commit = Commit::default();
        purge_into(&mut commit, id, &record);
        self.engine.commit(commit).await?;
        self.engine.forget(id);
        Ok(())
    }

    /// Removes every finished instance that `filter` matches; returns how many.
    ///
    /// Works in batches of 1,000 instances, one commit each, read from the
    /// store's status index: memory stays bounded however many match, and the cost grows
    /// with the finished instances of the statuses named, not with every instance. A
    /// failure part way leaves the batches before it purged.
    ///
    /// # Errors
    ///
    /// [`Error::PurgeUnfinished`] if `filter` names a status that is not a finished one
    /// (nothing is purged); [`Error::Store`] if the instances cannot be read or a removal
    /// cannot be written.
    pub async fn purge_where(&self, filter: &PurgeFilter) -> Result<usize, Error> {
        filter.check()?;
        self.purge_matching(&filter.filter(), &mut |_| {}).await
    }

    /// Removes every instance `filter` matches, which must select finished ones only,
    /// in batches of [`PURGE_BATCH`], telling `progress` the running total after each;
    /// returns how many.
    pub(crate) async fn purge_matching(
        &self,
        filter: &InstanceFilter,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<usize, Error> {
        let mut purged = 0;
        let mut after = None;
        loop {
            let page = self
                .engine
                .store()
                .list_instances(filter, after.as_ref(), PURGE_BATCH)?;
            if page.instances.is_empty() {
                break;
            }
            let mut commit = Commit::default();
            for (id, record) in &page.instances {
                purge_into(&mut commit, id, record);
            }
            self.engine.commit(commit).await?;
            for (id, _) in &page.instances {
                self.engine.forget(id);
            }
            purged += page.instances.len();
            progress(purged);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(purged)
    }

    /// Runs a failed or terminated instance again from its original input, under the
    /// same id and with a fresh history, as a new run of the id: nothing addressed to the
    /// old run reaches the new one.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if there is no instance `id`; [`Error::InvalidState`]
    /// if it is neither failed nor terminated; [`Error::Store`] if the restart cannot be
    /// written.
    #[tracing::instrument(name = "client", skip_all, fields(otel.name = "RestartWorkflow", otel.kind = "client", instance_id = id))]
    pub async fn restart(&self, id: &str) -> Result<(), Error> {
        let mut record = self.existing(id).await?;
        if !matches!(
            record.status,
            Status::Failed { .. } | Status::Terminated { .. }
        ) {
            return Err(invalid_state(
                id,
                ClientRequest::Restart,
                &record,
                "only a failed or terminated instance can be restarted",
            ));
        }
        let mut commit = Commit::default();
        // Another process may restart or purge it at the same time: one of them does.
        commit
            .expected
            .push((id.to_string(), Some(record.incarnation)));
        commit
            .histories_removed
            .push((id.to_string(), record.history_len));
        record.history_len = 0;
        // The old run's recovery marker, if an older version left it when the run ended.
        remove_marker(id, &record, &mut commit);
        // A new incarnation, so late results of the old run are told apart and dropped.
        record.incarnation = Engine::new_incarnation(Some(record.incarnation));
        record.generation = 0;
        record.status = Status::Pending;
        record.custom_status = None;
        record.updated_ms = self.engine.now_ms();
        self.engine.forget(id);
        self.begin(id, record, commit).await
    }
}

/// Adds the removal of instance `id` (as read: `record`), its history and its recovery
/// marker to `commit`.
fn purge_into(commit: &mut Commit, id: &str, record: &InstanceRecord) {
    remove_marker(id, record, commit);
    // Another process may restart it meanwhile: then the purge writes nothing.
    commit
        .expected
        .push((id.to_string(), Some(record.incarnation)));
    commit
        .histories_removed
        .push((id.to_string(), record.history_len));
    commit.instances_removed.push(id.to_string());
}

/// Refuses `action` on an instance that has finished.
pub(super) fn refuse_if_finished(
    id: &str,
    record: &InstanceRecord,
    action: ClientRequest,
) -> Result<(), Error> {
    if record.status.is_terminal() {
        return Err(invalid_state(
            id,
            action,
            record,
            "it has finished; restart it or start a new instance",
        ));
    }
    Ok(())
}

/// The refusal of `action` on instance `id` in its current state, saying what to do
/// instead (`hint`).
fn invalid_state(
    id: &str,
    action: ClientRequest,
    record: &InstanceRecord,
    hint: &'static str,
) -> Error {
    Error::InvalidState {
        id: id.to_string(),
        action,
        status: record.status.kind(),
        hint,
    }
}
