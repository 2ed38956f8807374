//! The client's side of entities: signal an operation (at once or at a time), read the
//! last committed state, delete an entity. Listing them is in `entity_query.rs`. How entities are stored and run is in `runtime/entities.rs`.

use std::time::SystemTime;

use durable_store::{Commit, StoreError};
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
        let mut commit = Commit::default();
        // Held until the commit is durable: see `Creating`.
        let creating = entities::create_if_absent(&self.engine, id, &mut commit, true).await?;
        let creates = creating.is_some();
        let sent = (self.engine)
            .send_message(&instance, entities::recipient(), event.clone(), commit)
            .await;
        drop(creating);
        match sent {
            // Another sender made the entity first (a worker holding it may refuse this
            // commit as fenced before the store compares): send the message alone.
            Err(Error::Store(StoreError::InstanceChanged { .. } | StoreError::Fenced { .. }))
                if creates =>
            {
                (self.engine)
                    .send_message(&instance, entities::recipient(), event, Commit::default())
                    .await
            }
            sent => sent,
        }
    }
}

fn wrong_type<E: Entity>(id: EntityId) -> Error {
    Error::WrongEntityType {
        id,
        expected: E::NAME,
    }
}
