//! The check of [`Commit::expected`]: a commit's optimistic concurrency on instance
//! records, shared by the stores that check it in memory (memory, fjall).

use std::collections::HashMap;

use crate::error::StoreError;
use crate::record::{Commit, Incarnation};

/// Checks the [`Commit::expected`] of `commits` against the store as it is before them
/// and what the commits before each write: `exists(id)` says whether instance `id` is
/// stored (all a start's expectation needs), `stored(id)` reads its incarnation (`None`
/// if absent).
///
/// # Errors
///
/// [`StoreError::InstanceChanged`] for the first expectation not met; what `exists` or
/// `stored` fails with.
pub(crate) fn check_expected(
    commits: &[Commit],
    exists: impl Fn(&str) -> Result<bool, StoreError>,
    stored: impl Fn(&str) -> Result<Option<Incarnation>, StoreError>,
) -> Result<(), StoreError> {
    let mut written: HashMap<&str, Option<Incarnation>> = HashMap::new();
    for commit in commits {
        for (id, expected) in &commit.expected {
            let found = match (written.get(id.as_str()), expected) {
                (Some(found), _) => *found,
                // Expected absent, and absent: no record to read.
                (None, None) if !exists(id)? => None,
                (None, _) => stored(id)?,
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
