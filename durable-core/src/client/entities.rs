//! The client's side of entities: signal an operation (at once or at a time), read the
//! last committed state, delete an entity, clean the storage of empty entities. Listing them is in `entity_query.rs`. How entities are stored and run is in `runtime/entities.rs`.

use std::time::SystemTime;

use durable_store::{Commit, StoreError, is_empty_entity};
use serde::Serialize;

use crate::client::Client;
use crate::clock::millis;
use crate::entity::{Entity, EntityId, IntoEntityId, Operation};
use crate::error::Error;
use crate::instance_id::check_instance_id;
use crate::payload;
use crate::runtime::entities;

impl Client {
    /// Signals `operation` with `input` to entity `key` (a key, `"alice"`, or a whole
    /// [`EntityId`] of the operation's type): one way, no result. Returns once the signal
    /// is durable: from then on it runs exactly once, after the operations signalled
    /// before it from this client, across crashes. The entity exists from then on (its
    /// state is [`Entity::initial`] until an operation writes one).
    ///
    /// ```no_run
    /// # use durable_core::{entity, Client};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)]
    /// # struct Account { balance: i64 }
    /// # #[entity]
    /// # impl Account { pub fn deposit(&mut self, amount: i64) { self.balance += amount; } }
    /// # async fn run(client: Client) -> Result<(), durable_core::Error> {
    /// client.signal_entity(Account::deposit, "alice", 10).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// Each call sends one signal: a call that returned an error may still have been
    /// written (a failed fsync after the write), and calling again then sends a second.
    ///
    /// # Errors
    ///
    /// [`Error::UnregisteredEntity`] if the entity type is not registered with the
    /// runtime; [`Error::WrongEntityType`] if `key` is an id of another entity type;
    /// [`Error::InvalidInstanceId`] if the id `@Name@key` is too long or holds control
    /// characters; [`Error::Payload`] if `input` does not encode;
    /// [`Error::PayloadTooLarge`] if it is over the payload limit; [`Error::Store`] if
    /// the signal cannot be written.
    pub async fn signal_entity<E, I, O, Er>(
        &self,
        operation: Operation<E, I, O, Er>,
        key: impl IntoEntityId<E>,
        input: I,
    ) -> Result<(), Error>
    where
        E: Entity,
        I: Serialize,
    {
        self.signal(operation, key, input, None).await
    }

    /// Signals `operation` with `input` to entity `key`, to run at `at` (by the runtime's
    /// clock), not before: [`signal_entity`](Self::signal_entity) scheduled, as
    /// Durable Functions' `SignalEntityAsync(id, scheduledTime, ..)`. Returns once the
    /// signal is durable; it waits in the store until its time, across restarts, and runs
    /// then (at once if `at` has passed). Operations signalled after it may run before
    /// it: it runs at its time, not in its sender's order. The entity exists from the
    /// call on.
    ///
    /// ```no_run
    /// # use std::time::{Duration, SystemTime};
    /// # use durable_core::{entity, Client};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)]
    /// # struct Account { balance: i64 }
    /// # #[entity]
    /// # impl Account { pub fn deposit(&mut self, amount: i64) { self.balance += amount; } }
    /// # async fn run(client: Client) -> Result<(), durable_core::Error> {
    /// let tomorrow = SystemTime::now() + Duration::from_secs(24 * 3600);
    /// client.signal_entity_at(Account::deposit, "alice", 10, tomorrow).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`signal_entity`](Self::signal_entity).
    pub async fn signal_entity_at<E, I, O, Er>(
        &self,
        operation: Operation<E, I, O, Er>,
        key: impl IntoEntityId<E>,
        input: I,
        at: SystemTime,
    ) -> Result<(), Error>
    where
        E: Entity,
        I: Serialize,
    {
        self.signal(operation, key, input, Some(at)).await
    }

    /// Signals `operation` to `key`, at once or at `at`.
    async fn signal<E, I, O, Er>(
        &self,
        operation: Operation<E, I, O, Er>,
        key: impl IntoEntityId<E>,
        input: I,
        at: Option<SystemTime>,
    ) -> Result<(), Error>
    where
        E: Entity,
        I: Serialize,
    {
        let id = self.entity_id(key)?;
        let input = payload::encode(&input)?;
        self.engine.check_payload(
            || {
                format!(
                    "the input of operation `{}` of entity `{id}`",
                    operation.name()
                )
            },
            &input,
        )?;
        self.send_to_entity(&id, operation.name(), input, at.map(millis))
            .await
    }

    /// The last committed state of entity `key` of type `E`; `None` if it has none: it
    /// was never operated on, no operation that writes its state has run yet, or it was
    /// deleted. Operations signalled but not yet run are not in it.
    ///
    /// # Errors
    ///
    /// [`Error::WrongEntityType`] if `key` is an id of another entity type;
    /// [`Error::UndecodableEntityState`] if the stored state does not decode as `E` (its
    /// type changed incompatibly); [`Error::Store`] if the record cannot be read.
    pub async fn entity_state<E: Entity>(
        &self,
        key: impl IntoEntityId<E>,
    ) -> Result<Option<E>, Error> {
        let id = key.into_entity_id().map_err(|id| wrong_type::<E>(id))?;
        let instance = id.to_string();
        let Some(record) = self.engine.store().instance(&instance)? else {
            return Ok(None);
        };
        if !entities::is_entity(&instance, &record) || record.input.is_empty() {
            return Ok(None);
        }
        payload::decode(&record.input)
            .map(Some)
            .map_err(|error| Error::UndecodableEntityState { entity: id, error })
    }

    /// Deletes entity `key` of type `E`: sends it a request, run in its turn after the
    /// operations signalled before it, that resets its state to none (to
    /// [`Entity::initial`] for an operation signalled after). Returns once the request is
    /// durable, `false` (nothing sent) if the entity does not exist. Until its turn runs,
    /// [`entity_state`](Self::entity_state) still reads the state.
    ///
    /// # Errors
    ///
    /// [`Error::UnregisteredEntity`] if the entity type is not registered with the
    /// runtime; [`Error::WrongEntityType`] if `key` is an id of another entity type;
    /// [`Error::Store`] if the entity cannot be read or the request written.
    pub async fn delete_entity<E: Entity>(&self, key: impl IntoEntityId<E>) -> Result<bool, Error> {
        let id = self.entity_id(key)?;
        let instance = id.to_string();
        match self.engine.store().instance(&instance)? {
            Some(record) if entities::is_entity(&instance, &record) => {}
            _ => return Ok(false),
        }
        self.send_to_entity(&id, entities::DELETE_OPERATION, b"null".to_vec(), None)
            .await?;
        Ok(true)
    }

    /// Removes from the store the records of entities with nothing in them, as Durable
    /// Functions' `CleanEntityStorageAsync(removeEmptyEntities: true, ..)` does, and
    /// returns how many it removed. An entity is removed if it has no state (never
    /// written, or deleted with [`delete_entity`](Self::delete_entity)), is not locked by
    /// an orchestration, no live worker holds it, and no message (operation, call, lock
    /// request, scheduled signal) is queued for it. An entity removed is made again by
    /// the next operation sent to it, as if never operated on: nothing of it is lost.
    ///
    /// No operation is lost to a clean: each entity is checked and removed in one step of
    /// the store ([`Store::remove_idle_entities`](durable_store::Store::remove_idle_entities)),
    /// so a message committed before it keeps its entity, and a sender that read the
    /// record before it and commits after it is refused by the store (it expected the
    /// record) and makes the entity again.
    ///
    /// A worker holds every entity it ran an operation of until it stops (its lease ends):
    /// entities it ran are removed after that, by a clean on the next start or from
    /// another process. Locks whose orchestration is gone are not released here.
    ///
    /// Reads every entity's record, 500 at a time, and for each batch with empty ones the
    /// store's work queue (`FjallStore` and `MemoryStore` under the lock commits take,
    /// PostgreSQL by a scan of `work`): a maintenance task, to run now and then.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the records cannot be read or removed; the entities removed
    /// before the error stay removed.
    pub async fn clean_entity_storage(&self) -> Result<usize, Error> {
        let store = self.engine.store();
        let prefix = entities::ENTITY_MARKER.to_string();
        let mut after: Option<String> = None;
        let mut removed = 0;
        loop {
            let batch = store.instances_with_prefix(&prefix, after.as_deref(), CLEAN_BATCH)?;
            let last = batch.len() < CLEAN_BATCH;
            after = batch.last().map(|(id, _)| id.clone());
            let empty: Vec<String> = (batch.into_iter())
                .filter(|(id, record)| entities::is_entity(id, record) && is_empty_entity(record))
                .map(|(id, _)| id)
                .collect();
            if !empty.is_empty() {
                let gone = store.remove_idle_entities(&empty)?;
                for id in &gone {
                    self.engine.forget(id);
                }
                removed += gone.len();
            }
            if last {
                return Ok(removed);
            }
        }
    }

    /// The id `key` names, of an entity type the runtime has.
    fn entity_id<E: Entity>(&self, key: impl IntoEntityId<E>) -> Result<EntityId, Error> {
        let id = key.into_entity_id().map_err(|id| wrong_type::<E>(id))?;
        if self.engine.registry().entity(E::NAME).is_none() {
            return Err(Error::UnregisteredEntity(E::NAME.to_string()));
        }
        check_instance_id(&id.to_string())?;
        Ok(id)
    }

    /// Commits the message that runs `operation` on entity `id` (with the entity's
    /// record, if it has none yet), at once or not before `at_ms` (ms since the Unix
    /// epoch), then hands it to the runtime.
    async fn send_to_entity(
        &self,
        id: &EntityId,
        operation: &str,
        input: Vec<u8>,
        at_ms: Option<u64>,
    ) -> Result<(), Error> {
        let instance = id.to_string();
        let event = entities::operation(operation, input, None, at_ms);
        let mut attempt = 1;
        loop {
            let mut commit = Commit::default();
            // Held until the commit is durable: see `Creating`.
            let creating = entities::create_if_absent(&self.engine, id, &mut commit, true).await?;
            let sent = (self.engine)
                .send_message(&instance, entities::recipient(), event.clone(), commit)
                .await;
            drop(creating);
            match sent {
                // Another sender made the entity first (a worker holding it may refuse
                // this commit as fenced before the store compares), or a clean removed
                // the record this commit expected: go again on what the store holds.
                Err(Error::Store(
                    StoreError::InstanceChanged { .. } | StoreError::Fenced { .. },
                )) if attempt < SEND_ATTEMPTS => {
                    attempt += 1;
                }
                sent => return sent,
            }
        }
    }
}

/// How many entities [`Client::clean_entity_storage`] reads (and removes) at a time.
const CLEAN_BATCH: usize = 500;

/// How many times a client's message to an entity is sent before a refusal is returned:
/// each refusal means another writer changed the entity's record in between (made it,
/// or removed it as idle), which does not go on for long.
const SEND_ATTEMPTS: u32 = 8;

fn wrong_type<E: Entity>(id: EntityId) -> Error {
    Error::WrongEntityType {
        id,
        expected: E::NAME,
    }
}
