//! [`Recorded`]: what a `Recorded` history event holds, named.
//!
//! A value from outside the orchestration (`ctx.now()`, `ctx.random()`, ...) and a
//! `patched` marker are both recorded as a step whose `what` field names its kind. The
//! strings are what histories on disk hold, so they never change; this module is the one
//! place that writes and reads them:
//!
//! | recorded by | `what` on disk |
//! |---|---|
//! | `ctx.now()` | `now` |
//! | `ctx.random()` | `random` |
//! | `ctx.new_uuid()` | `uuid` |
//! | `ctx.side_effect(..)` | `side_effect` |
//! | `ctx.patched("{change}")` | `patch:{change}` |
//! | the library, for a change of its own behaviour | `patch:durable:{change}` |
//!
//! The library's markers share the `patch:` namespace with the user's (they were written
//! that way before they had a type): a user change id starting with `durable:` that names
//! one of them is that marker, as it always was.

use std::fmt;

/// The prefix of every `patched` marker on disk.
const PATCH: &str = "patch:";

/// The prefix, after [`PATCH`], of the markers the library records for itself.
const LIBRARY: &str = "durable:";

/// The kind of a recorded step: a value from outside the orchestration, or a marker.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Recorded {
    /// `ctx.now()`: the time, in milliseconds since the Unix epoch.
    Now,
    /// `ctx.random()`: a random `u64`.
    Random,
    /// `ctx.new_uuid()`: a v4 UUID.
    Uuid,
    /// `ctx.side_effect(..)`: the value of the user's closure.
    SideEffect,
    /// A `patched` marker: the instance took the new path of a change.
    Patch(Patch),
    /// A kind this code does not know (a history written by newer code): kept by its
    /// name, so a replay that meets it names it.
    Unknown(String),
}

/// The change a `patched` marker is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Patch {
    /// A change of the user's code: the id given to `ctx.patched`.
    User(String),
    /// A change of the library's own behaviour under running instances.
    Library(LibraryChange),
}

/// A change of the library's behaviour that instances started before it must not see:
/// each asks `patched` for itself, so old histories keep the old rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LibraryChange {
    /// Errors no attempt can mend are no longer retried. Before it, every error was.
    NonRetryableErrors,
    /// A retry follows on from the number of the execution that failed, counting the
    /// redeliveries. Before it, a retry counted on from the retry before.
    EveryExecutionCounted,
    /// The attempt timeout bounds each execution from when it starts, where it runs.
    /// Before it, a durable timer from when the attempt was scheduled raced the call.
    StartToClose,
}

impl LibraryChange {
    const ALL: [Self; 3] = [
        Self::NonRetryableErrors,
        Self::EveryExecutionCounted,
        Self::StartToClose,
    ];

    /// Its name on disk, after `patch:durable:`.
    fn name(self) -> &'static str {
        match self {
            Self::NonRetryableErrors => "non-retryable-errors",
            Self::EveryExecutionCounted => "every-execution-counted",
            Self::StartToClose => "start-to-close",
        }
    }
}

impl Patch {
    /// The marker of change id `change`, as `ctx.patched(change)` records it.
    pub(crate) fn named(change: &str) -> Self {
        change
            .strip_prefix(LIBRARY)
            .and_then(|name| LibraryChange::ALL.into_iter().find(|c| c.name() == name))
            .map_or_else(|| Self::User(change.to_string()), Self::Library)
    }
}

impl Recorded {
    /// The kind a history's `what` field names.
    pub(crate) fn parse(what: &str) -> Self {
        match what {
            "now" => Self::Now,
            "random" => Self::Random,
            "uuid" => Self::Uuid,
            "side_effect" => Self::SideEffect,
            _ => match what.strip_prefix(PATCH) {
                Some(change) => Self::Patch(Patch::named(change)),
                None => Self::Unknown(what.to_string()),
            },
        }
    }

    /// The `what` field that records it, as histories on disk hold it.
    pub(crate) fn what(&self) -> String {
        self.to_string()
    }
}

/// The `what` field on disk.
impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Now => f.write_str("now"),
            Self::Random => f.write_str("random"),
            Self::Uuid => f.write_str("uuid"),
            Self::SideEffect => f.write_str("side_effect"),
            Self::Patch(Patch::User(change)) => write!(f, "{PATCH}{change}"),
            Self::Patch(Patch::Library(change)) => write!(f, "{PATCH}{LIBRARY}{}", change.name()),
            Self::Unknown(what) => f.write_str(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strings_on_disk_are_kept_and_read_back() {
        let kinds = [
            (Recorded::Now, "now"),
            (Recorded::Random, "random"),
            (Recorded::Uuid, "uuid"),
            (Recorded::SideEffect, "side_effect"),
            (
                Recorded::Patch(Patch::User("fraud-check".into())),
                "patch:fraud-check",
            ),
            (
                Recorded::Patch(Patch::Library(LibraryChange::NonRetryableErrors)),
                "patch:durable:non-retryable-errors",
            ),
            (
                Recorded::Patch(Patch::Library(LibraryChange::EveryExecutionCounted)),
                "patch:durable:every-execution-counted",
            ),
            (
                Recorded::Patch(Patch::Library(LibraryChange::StartToClose)),
                "patch:durable:start-to-close",
            ),
            (
                Recorded::Patch(Patch::User("durable:other".into())),
                "patch:durable:other",
            ),
            (Recorded::Unknown("later".into()), "later"),
        ];
        for (kind, what) in kinds {
            assert_eq!(kind.what(), what);
            assert_eq!(Recorded::parse(what), kind);
        }
        // A user id naming a library marker is that marker, as it always was on disk.
        assert_eq!(
            Patch::named("durable:start-to-close"),
            Patch::Library(LibraryChange::StartToClose)
        );
    }
}
