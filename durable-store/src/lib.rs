//! Durable storage for the `durable` workflow engine.
//!
//! [`Store`] is what the engine needs; [`FjallStore`] implements it on an embedded fjall
//! database and [`MemoryStore`] in memory for tests; [`conformance::run`] checks any
//! implementation.

mod fault;
mod fjall_store;
mod keys;
mod memory_store;
mod record;
mod store;

pub mod conformance;

pub use fault::{Call, FaultSwitch, FaultyStore};
pub use fjall_store::{FORMAT_VERSION, FjallStore};
pub use memory_store::MemoryStore;
pub use record::{
    ActivityTask, Commit, Event, Failure, FailureKind, HistoryAppend, Incarnation, InstanceRecord,
    ParentLink, Site, Status, StatusKind, WorkId, WorkItem,
};
pub use store::{Durability, Store, StoreError};
