//! The check of [`Commit::expected`]: a commit's optimistic concurrency on instance
//! records, shared by the stores that check it in memory (memory, fjall).

use std::collections::HashMap;

use crate::error::StoreError;
use crate::record::{Commit, Incarnation};

/// Checks the [`Commit::expected`] of `commits` against `stored` (the incarnation of an
/// instance as stored before them, `None` if absent) and what the commits before each
/// write.
///
/// # Errors
///
/// [`StoreError::InstanceChanged`] for the first expectation not met; what `stored`
/// fails with.
pub(crate) fn check_expected(
    commits: &[Commit],
    stored: impl Fn(&str) -> Result<Option<Incarnation>, StoreError>,
) -> Result<(), StoreError> {
    let mut written: HashMap<&str, Option<Incarnation>> = HashMap::new();
    for commit in commits {
        for (id, expected) in &commit.expected {
            let found = match written.get(id.as_str()) {
                Some(found) => *found,
                None => stored(id)?,
            };
            if found != *expected {
                return Err(StoreError::InstanceChanged {
                    instance: id.clone(),
                    expected: *expected,
                    found,
                });
            }
        }
        for id in &commit.instances_removed {
            written.insert(id, None);
        }
        for (id, record) in &commit.instances {
            written.insert(id, Some(record.incarnation));
        }
    }
    Ok(())
}

impl Commit {
    /// Whether the commit writes nothing.
    pub fn is_empty(&self) -> bool {
        self.histories_removed.is_empty()
            && self.instances_removed.is_empty()
            && self.instances.is_empty()
            && self.history.is_empty()
            && self.dequeued.is_empty()
            && self.enqueued.is_empty()
            && self.progress.is_empty()
    }
}
