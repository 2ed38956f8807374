//! Durable storage for the `durable` workflow engine.
//!
//! [`Store`] is what the engine needs; [`FjallStore`] implements it on an embedded fjall
//! database, and with the `postgres` feature `PostgresStore` on a PostgreSQL server
//! (with `testing` too, `TestServer` runs a throwaway one for tests). With the `testing`
//! feature, `MemoryStore` implements it in memory,
//! `FaultyStore` makes chosen calls of another store fail, `StoreLayer` changes a few, and `conformance::run` checks
//! any implementation.
#![warn(missing_docs)]

mod error;
mod expected;
#[cfg(feature = "testing")]
mod fault;
mod fjall_store;
mod hash;
mod keys;
#[cfg(feature = "testing")]
mod layer;
pub mod lease;
#[cfg(feature = "testing")]
mod memory_store;
#[cfg(feature = "postgres")]
mod postgres;
mod query;
mod record;
mod store;

#[cfg(feature = "testing")]
pub mod conformance;

pub use error::{KeyKind, ServerProblem, StoreError};
#[cfg(feature = "testing")]
pub use fault::{Call, FaultSwitch, FaultyStore};
pub use fjall_store::{FORMAT_VERSION, FjallStore};
#[cfg(feature = "testing")]
pub use layer::{Layered, StoreLayer};
pub use lease::{
    ActivityLimits, Claim, ClaimFilter, ClaimedInstance, CommitLease, Holding, OrchestratorLimits,
    Rate, WorkerId, counts_as_running,
};
#[cfg(feature = "testing")]
pub use memory_store::MemoryStore;
#[cfg(all(feature = "postgres", feature = "testing"))]
pub use postgres::test_server::{TestDatabase, TestServer};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, SCHEMA_VERSION};
pub use query::{
    ENTITY_MARKER, InstanceCursor, InstanceFilter, InstancePage, LIVE_STATUSES, StatusCounts,
    is_empty_entity, is_entity,
};
pub use record::{
    ActivityTask, Commit, Event, Failure, FailureKind, HistoryAppend, Incarnation, InstanceRecord,
    ParentLink, Site, Status, StatusKind, WorkId, WorkItem,
};
pub use store::{Durability, Store};
