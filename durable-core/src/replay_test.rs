//! Replay tests: run new orchestrator code against histories saved from a store, so a
//! change that would break instances in flight fails `cargo test`, not production.
//!
//! Export histories of instances worth keeping (one per path the workflow takes) with
//! [`SavedHistory::export`] and [`SavedHistory::save`], commit the files, and replay them in
//! a test:
//!
//! ```ignore
//! #[test]
//! fn orders_replay() {
//!     durable_core::replay_test::replay_dir(fulfil, "tests/histories/fulfil").unwrap();
//! }
//! ```

use std::path::Path;

use durable_store::{Event, FailureKind, Store};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::handle::Orchestrator;
use crate::replay::{Execution, Outcome};

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
        /// Name and version of the code.
        expected: String,
    },
}

impl SavedHistory {
    /// The history of instance `id` in `store`.
    pub fn export(store: &impl Store, id: &str) -> Result<Self, Error> {
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
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ReplayError> {
        let path = path.as_ref();
        let bytes = postcard::to_allocvec(self).map_err(|e| file_error(path, e))?;
        std::fs::write(path, bytes).map_err(|e| file_error(path, e))
    }

    /// Reads a history written by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ReplayError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
        postcard::from_bytes(&bytes).map_err(|e| file_error(path, e))
    }
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Replays `history` with the current code of `orchestrator`: it must take the recorded
/// path, issue nothing the history lacks, and finish as the history finished.
pub fn replay<O: Orchestrator>(orchestrator: O, history: &SavedHistory) -> Result<(), ReplayError> {
    let instance = history.instance.clone();
    if history.orchestrator != O::NAME || history.version != O::VERSION {
        return Err(ReplayError::WrongOrchestrator {
            instance,
            found: format!("{} v{}", history.orchestrator, history.version),
            expected: format!("{} v{}", O::NAME, O::VERSION),
        });
    }
    let mut execution = Execution::of(orchestrator, &history.instance);
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

/// Replays every `*.history` file in `dir` recorded for `orchestrator` (its name and
/// version); returns how many. Fails on the first that does not replay.
pub fn replay_dir<O: Orchestrator>(
    orchestrator: O,
    dir: impl AsRef<Path>,
) -> Result<usize, ReplayError> {
    let dir = dir.as_ref();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| file_error(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == EXTENSION))
        .collect();
    paths.sort();
    let mut replayed = 0;
    for path in paths {
        let history = SavedHistory::load(&path)?;
        if history.orchestrator == O::NAME && history.version == O::VERSION {
            replay(orchestrator, &history)?;
            replayed += 1;
        }
    }
    Ok(replayed)
}
