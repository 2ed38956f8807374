//! Replay tests: run new orchestrator code against histories saved from a store, so a
//! change that would break instances in flight fails `cargo test`, not production.
//!
//! Export histories of instances worth keeping (one per path the workflow takes) with
//! [`SavedHistory::export`] and [`SavedHistory::save`], commit the files, and replay them in
//! a test:
//!
//! ```no_run
//! # use durable_core::{OrchestrationContext, orchestrator};
//! # #[orchestrator]
//! # async fn fulfil(_ctx: OrchestrationContext, order: u64) -> Result<u64, String> {
//! #     Ok(order)
//! # }
//! #[test]
//! fn orders_replay() {
//!     durable_core::replay_test::replay_dir(fulfil, "tests/histories/fulfil").unwrap();
//! }
//! # fn main() {}
//! ```
//!
//! A replay test never passes having replayed nothing: a directory with no history of the
//! orchestrator, or with histories of a version the test has no code for (after a version
//! bump), fails it. Where several versions are registered side by side, replay each
//! history against the version it ran with a [`Replayer`]:
//!
//! ```no_run
//! # use durable_core::replay_test::Replayer;
//! # use durable_core::{OrchestrationContext, orchestrator};
//! # #[orchestrator(name = "fulfil")]
//! # async fn fulfil_v1(_ctx: OrchestrationContext, order: u64) -> Result<u64, String> {
//! #     Ok(order)
//! # }
//! # #[orchestrator(name = "fulfil", version = 2)]
//! # async fn fulfil_v2(_ctx: OrchestrationContext, order: u64) -> Result<u64, String> {
//! #     Ok(order)
//! # }
//! Replayer::new()
//!     .orchestrator(fulfil_v1)
//!     .orchestrator(fulfil_v2)
//!     .replay_dir("tests/histories/fulfil")
//!     .unwrap();
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use durable_store::{Event, FailureKind, Store};
use serde::{Deserialize, Serialize};

use crate::clock::SystemClock;
use crate::error::Error;
use crate::handle::Orchestrator;
use crate::orchestration_context::OrchestrationContext;
use crate::registry::{OrchestratorEntry, Registry};
use crate::replay::state::Run;

pub use crate::replay::execution::Execution;
pub use crate::replay::turn::{CarriedEvent, Command, Outcome, Turn};

impl Execution {
    /// A fresh execution of orchestrator `O` as instance `instance`: feed it the
    /// instance's history with [`turn`](Self::turn). Replay tests use it to run code
    /// against saved histories. It runs as incarnation 0, generation 0 of the id (which
    /// only the ids generated for sub-orchestrations show).
    pub fn of<O: Orchestrator>(_orchestrator: O, instance: &str) -> Self {
        let mut registry = Registry::default();
        registry.add_orchestrator::<O>();
        let entry = registry
            .orchestrator(O::NAME, O::VERSION)
            .expect("just registered");
        replay_execution(instance, O::NAME, entry)
    }
}

/// A fresh execution of `instance` with the code of `entry` (orchestrator `orchestrator`),
/// as a replay test runs it: under no incarnation (recorded child ids come from the
/// history), without a payload limit, on the system clock.
fn replay_execution(instance: &str, orchestrator: &str, entry: &OrchestratorEntry) -> Execution {
    let run = Run {
        incarnation: 0,
        generation: 0,
    };
    let start = OrchestrationContext::starter(entry.start, entry.line, Arc::new(SystemClock));
    Execution::new(instance, run, orchestrator, usize::MAX, start)
}

/// The file extension of saved histories.
pub const EXTENSION: &str = "history";

/// One instance's history, as exported from a store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedHistory {
    /// The instance id.
    pub instance: String,
    /// The orchestrator's registered name.
    pub orchestrator: String,
    /// The orchestrator's version the instance ran.
    pub version: u32,
    /// The events of its current generation, in order.
    pub events: Vec<Event>,
}

/// Why a saved history does not replay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The code takes another path than the history.
    #[error("history of `{instance}` does not replay: {message}")]
    Nondeterminism {
        /// The instance the history came from.
        instance: String,
        /// The step, what the history recorded and what the code does now.
        message: String,
    },
    /// A payload of the history no longer decodes as the code's type.
    #[error("history of `{instance}` does not replay: {message}")]
    Decode {
        /// The instance the history came from.
        instance: String,
        /// Which type and why.
        message: String,
    },
    /// The file could not be read or written, or does not hold a history.
    #[error("saved history `{path}`: {detail}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The history is of another orchestrator or version.
    #[error(
        "history of `{instance}` is of orchestrator `{found}`, not `{expected}`; replay it with that orchestrator"
    )]
    WrongOrchestrator {
        /// The instance the history came from.
        instance: String,
        /// Name and version in the history.
        found: String,
        /// Names and versions of the code: "order v1, order v2".
        expected: String,
    },
    /// The directory holds histories of an orchestrator in a version the test has no
    /// code for (typically after a version bump): they were not replayed.
    #[error(
        "{count} saved histories of orchestrator `{orchestrator}` version {version} were not replayed \
         ({files}): this replay test has only version(s) {registered} of `{orchestrator}`. Replay each \
         history against the version it ran: `Replayer::new().orchestrator(..)` with every version \
         still running (`#[orchestrator(name = \"{orchestrator}\", version = {version})]` beside the \
         new one), or delete these files once no instance of version {version} can still be running"
    )]
    VersionNotReplayed {
        /// The orchestrator's registered name.
        orchestrator: String,
        /// The version the histories ran and the test has no code for.
        version: u32,
        /// How many histories of that version.
        count: usize,
        /// The files, comma-separated.
        files: String,
        /// The versions the test has, comma-separated.
        registered: String,
    },
    /// The directory holds no history of the orchestrators under test: the test would
    /// replay nothing.
    #[error(
        "`{dir}` holds no saved history of `{orchestrators}`: a replay test that replays nothing \
         proves nothing; export one with `SavedHistory::export(&store, id)?.save(path)`, or check \
         the directory"
    )]
    NoHistories {
        /// The directory.
        dir: String,
        /// The orchestrators under test, with their versions: "order v1, order v2".
        orchestrators: String,
    },
}

impl SavedHistory {
    /// The history of instance `id` in `store`.
    ///
    /// # Errors
    ///
    /// [`Error::InstanceNotFound`] if `store` has no instance `id`; the store's error if
    /// it cannot be read.
    pub fn export(store: &(impl Store + ?Sized), id: &str) -> Result<Self, Error> {
        let record = store
            .instance(id)?
            .ok_or_else(|| Error::InstanceNotFound(id.to_string()))?;
        Ok(Self {
            instance: id.to_string(),
            orchestrator: record.orchestrator,
            version: record.version,
            events: store.history(id)?,
        })
    }

    /// Writes the history to `path` (postcard, like the store).
    ///
    /// # Errors
    ///
    /// [`ReplayError::File`] if it does not encode or the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ReplayError> {
        let path = path.as_ref();
        let bytes = postcard::to_allocvec(self).map_err(|e| file_error(path, e))?;
        std::fs::write(path, bytes).map_err(|e| file_error(path, e))
    }

    /// Reads a history written by [`save`](Self::save).
    ///
    /// # Errors
    ///
    /// [`ReplayError::File`] if the file cannot be read or does not hold a history.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ReplayError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
        postcard::from_bytes(&bytes).map_err(|e| file_error(path, e))
    }
}

/// The orchestrator a saved history ran, and its version; ordered by name, then version.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ran {
    orchestrator: String,
    version: u32,
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Replays `history` with the current code of `orchestrator`: it must take the recorded
/// path, issue nothing the history lacks, and finish as the history finished.
///
/// # Errors
///
/// [`ReplayError::WrongOrchestrator`] if the history is of another orchestrator or
/// version; [`ReplayError::Nondeterminism`] or [`ReplayError::Decode`] if it does not
/// replay.
pub fn replay<O: Orchestrator>(orchestrator: O, history: &SavedHistory) -> Result<(), ReplayError> {
    Replayer::new().orchestrator(orchestrator).replay(history)
}

/// Replays every `*.history` file in `dir` recorded for `orchestrator` (its name and
/// version); returns how many (at least one).
///
/// # Errors
///
/// The first history that does not replay ([`ReplayError::Nondeterminism`],
/// [`ReplayError::Decode`]); [`ReplayError::VersionNotReplayed`] if `dir` holds
/// histories of the same name in another version (replay those with a [`Replayer`]
/// holding each version); [`ReplayError::NoHistories`] if it holds none of the
/// orchestrator; [`ReplayError::File`] if a file cannot be read.
pub fn replay_dir<O: Orchestrator>(
    orchestrator: O,
    dir: impl AsRef<Path>,
) -> Result<usize, ReplayError> {
    Replayer::new().orchestrator(orchestrator).replay_dir(dir)
}

/// Replays saved histories, each against the version of its orchestrator it ran: the
/// replay test of an orchestrator registered in several versions side by side.
#[derive(Default)]
pub struct Replayer {
    registry: Registry,
    /// The versions registered, by orchestrator name.
    versions: BTreeMap<&'static str, BTreeSet<u32>>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replayer")
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl Replayer {
    /// A replayer with no orchestrator yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `orchestrator` (its name and version): histories of that name and version
    /// are replayed against it.
    #[must_use]
    pub fn orchestrator<O: Orchestrator>(mut self, _orchestrator: O) -> Self {
        self.registry.add_orchestrator::<O>();
        self.versions.entry(O::NAME).or_default().insert(O::VERSION);
        self
    }

    /// Replays `history` against the version it ran: it must take the recorded path,
    /// issue nothing the history lacks, and finish as the history finished.
    ///
    /// # Errors
    ///
    /// [`ReplayError::WrongOrchestrator`] if no orchestrator of the history's name and
    /// version was added; [`ReplayError::Nondeterminism`] or [`ReplayError::Decode`] if
    /// it does not replay.
    pub fn replay(&self, history: &SavedHistory) -> Result<(), ReplayError> {
        let instance = history.instance.clone();
        let Some(entry) = self
            .registry
            .orchestrator(&history.orchestrator, history.version)
        else {
            return Err(ReplayError::WrongOrchestrator {
                instance,
                found: format!("{} v{}", history.orchestrator, history.version),
                expected: self.named(),
            });
        };
        let mut execution = replay_execution(&history.instance, &history.orchestrator, entry);
        let turn = execution.turn(&history.events, Vec::new());
        let diverged = |message: String| {
            Err(ReplayError::Nondeterminism {
                instance: history.instance.clone(),
                message,
            })
        };
        match &turn.outcome {
            Outcome::Stalled(failure) if matches!(failure.kind, FailureKind::Decode { .. }) => {
                return Err(ReplayError::Decode {
                    instance,
                    message: failure.message.clone(),
                });
            }
            Outcome::Stalled(failure) => return diverged(failure.message.clone()),
            _ => {}
        }
        if let Some(command) = turn.commands.first() {
            return diverged(format!(
                "after the last recorded step the code issues a new one the history lacks: {command:?}"
            ));
        }
        let recorded_end = history.events.iter().rev().find_map(|event| match event {
            Event::Completed { output } => Some(Outcome::Completed(output.clone())),
            Event::Failed { failure } => Some(Outcome::Failed(failure.clone())),
            _ => None,
        });
        if let Some(recorded_end) = recorded_end
            && recorded_end != turn.outcome
        {
            return diverged(format!(
                "the history ended {recorded_end:?} but the code now ends {:?}",
                turn.outcome
            ));
        }
        Ok(())
    }

    /// Replays every `*.history` file in `dir` of an added orchestrator, each against
    /// the version it ran; returns how many (at least one). Histories of other
    /// orchestrators are left alone.
    ///
    /// # Errors
    ///
    /// The first history that does not replay ([`ReplayError::Nondeterminism`],
    /// [`ReplayError::Decode`]); [`ReplayError::VersionNotReplayed`] if `dir` holds
    /// histories of an added orchestrator in a version that was not added;
    /// [`ReplayError::NoHistories`] if it holds none of the added orchestrators;
    /// [`ReplayError::File`] if a file cannot be read.
    pub fn replay_dir(&self, dir: impl AsRef<Path>) -> Result<usize, ReplayError> {
        let dir = dir.as_ref();
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| file_error(dir, e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == EXTENSION))
            .collect();
        paths.sort();
        let mut replayed = 0;
        // Histories of an added name in a version that was not added, by name and version.
        let mut skipped: BTreeMap<Ran, Vec<String>> = BTreeMap::new();
        for path in paths {
            let history = SavedHistory::load(&path)?;
            let Some(versions) = self.versions.get(history.orchestrator.as_str()) else {
                continue;
            };
            if versions.contains(&history.version) {
                self.replay(&history)?;
                replayed += 1;
            } else {
                skipped
                    .entry(Ran {
                        orchestrator: history.orchestrator.clone(),
                        version: history.version,
                    })
                    .or_default()
                    .push(path.display().to_string());
            }
        }
        if let Some((
            Ran {
                orchestrator,
                version,
            },
            files,
        )) = skipped.into_iter().next()
        {
            let registered = self.versions[orchestrator.as_str()]
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(ReplayError::VersionNotReplayed {
                count: files.len(),
                files: files.join(", "),
                orchestrator,
                version,
                registered,
            });
        }
        if replayed == 0 {
            return Err(ReplayError::NoHistories {
                dir: dir.display().to_string(),
                orchestrators: self.named(),
            });
        }
        Ok(replayed)
    }

    /// The orchestrators added, for messages: "order v1, order v2".
    fn named(&self) -> String {
        let named: Vec<String> = self
            .versions
            .iter()
            .flat_map(|(name, versions)| versions.iter().map(move |v| format!("{name} v{v}")))
            .collect();
        if named.is_empty() {
            "no orchestrator".to_string()
        } else {
            named.join(", ")
        }
    }
}
