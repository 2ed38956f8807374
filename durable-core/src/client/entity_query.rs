//! Listing the entities of one type ([`Client::list_entities`] with an [`EntityQuery`]),
//! a page at a time, in key order.
//!
//! An entity `@Account@alice` is the store instance of that id (`runtime/entities.rs`),
//! so the entities of `Account` are the ids that start with `@Account@`, in key order:
//! a range of each store's primary key
//! ([`Store::instances_with_prefix`](durable_store::Store::instances_with_prefix)), and a
//! key prefix narrows the range further. A page costs what it reads, not what the store
//! holds. Orchestrations' listings ([`Client::list`]) leave entities out.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_store::{InstanceRecord, Store, StoreError};

use crate::client::Client;
use crate::entity::{Entity, EntityId};
use crate::error::Error;
use crate::payload::{self, PayloadError};
use crate::runtime::entities;

/// Where the next page of [`Client::list_entities`] starts: the
/// [`next`](EntityPage::next) of a page, passed to [`EntityQuery::after`]. Opaque; it
/// stays valid when the entity it follows is removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityCursor(String);

/// Which entities of a type [`Client::list_entities`] returns: every one that has a
/// state, 100 a page, by default. Build one with [`EntityQuery::new`] and its methods.
///
/// ```
/// use durable_core::EntityQuery;
///
/// let query = EntityQuery::new().key_prefix("eu-").include_stateless(true).page_size(20);
/// assert_eq!(query.key_prefix, "eu-");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EntityQuery {
    /// Only entities whose key starts with this (every key if empty).
    pub key_prefix: String,
    /// Also entities with no state: signalled but not yet run, or deleted (Durable
    /// Functions' `IncludeDeleted`). `false` by default.
    pub include_stateless: bool,
    /// At most this many per page (at least 1).
    pub page_size: usize,
    /// Start after this position: the [`next`](EntityPage::next) of the previous page.
    pub after: Option<EntityCursor>,
}

impl Default for EntityQuery {
    fn default() -> Self {
        Self {
            key_prefix: String::new(),
            include_stateless: false,
            page_size: 100,
            after: None,
        }
    }
}

impl EntityQuery {
    /// Every entity that has a state, 100 a page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only entities whose key starts with `prefix`.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Also (`true`) entities with no state: signalled but not yet run, or deleted.
    #[must_use]
    pub fn include_stateless(mut self, include: bool) -> Self {
        self.include_stateless = include;
        self
    }

    /// At most `size` entities a page (a size of 0 counts as 1).
    #[must_use]
    pub fn page_size(mut self, size: usize) -> Self {
        self.page_size = size;
        self
    }

    /// Start after `cursor`: the [`next`](EntityPage::next) of the previous page.
    #[must_use]
    pub fn after(mut self, cursor: EntityCursor) -> Self {
        self.after = Some(cursor);
        self
    }
}

/// One entity in an [`EntityPage`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EntitySummary<E> {
    /// The entity's id; [`key`](Self::key) is its key.
    pub id: EntityId,
    /// Its last committed state: `Ok(None)` if it has none (signalled but not yet run,
    /// or deleted), `Err` if the stored state does not decode as `E` (its type changed
    /// incompatibly; [`state_json`](Self::state_json) shows it). One entity's state that
    /// does not decode does not fail the page.
    pub state: Result<Option<E>, PayloadError>,
    /// The orchestration instance that holds it locked in a critical section, if any.
    pub locked_by: Option<String>,
    /// When its record last changed (by the runtime's clock): its last turn, or when it
    /// was made.
    pub updated_at: SystemTime,
    /// The stored state, JSON; empty if none.
    raw_state: Vec<u8>,
}

impl<E> EntitySummary<E> {
    /// The entity's key: `alice` for `@Account@alice`.
    pub fn key(&self) -> &str {
        self.id.key()
    }

    /// The stored state as a JSON value (`None` if it has none), whatever `E` reads.
    ///
    /// # Errors
    ///
    /// [`PayloadError`] if the stored bytes are not JSON.
    pub fn state_json(&self) -> Result<Option<serde_json::Value>, PayloadError> {
        if self.raw_state.is_empty() {
            return Ok(None);
        }
        payload::to_json(&self.raw_state).map(Some)
    }
}

/// A page of [`Client::list_entities`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EntityPage<E> {
    /// The entities, in key order (byte order of the keys).
    pub entities: Vec<EntitySummary<E>>,
    /// Pass to [`EntityQuery::after`] for the next page; `None` on the last.
    pub next: Option<EntityCursor>,
    _type: PhantomData<fn() -> E>,
}

impl Client {
    /// The entities of type `E` that `query` selects (an [`EntityQuery`] or a reference
    /// to one), one page at a time, in key order.
    ///
    /// Reads the store's primary key from `@Name@` + the key prefix on: a page costs
    /// what it holds (plus the stateless entities it skips, unless
    /// [`include_stateless`](EntityQuery::include_stateless)), not the instances stored.
    /// The entity type need not be registered with the runtime.
    ///
    /// ```no_run
    /// # use durable_core::{entity, Client, EntityQuery};
    /// # #[derive(Default, serde::Serialize, serde::Deserialize)]
    /// # struct Account { balance: i64 }
    /// # #[entity]
    /// # impl Account { pub fn deposit(&mut self, amount: i64) { self.balance += amount; } }
    /// # async fn run(client: Client) -> Result<(), durable_core::Error> {
    /// let mut query = EntityQuery::new().page_size(100);
    /// loop {
    ///     let page = client.list_entities::<Account>(&query).await?;
    ///     for account in &page.entities {
    ///         if let Ok(Some(state)) = &account.state {
    ///             println!("{}: {}", account.key(), state.balance);
    ///         }
    ///     }
    ///     match page.next {
    ///         Some(next) => query = query.after(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the entities cannot be read. A state that does not decode is
    /// not an error of the call: it is in [`EntitySummary::state`].
    pub async fn list_entities<E: Entity>(
        &self,
        query: impl Borrow<EntityQuery>,
    ) -> Result<EntityPage<E>, Error> {
        let query = query.borrow();
        let marker = entities::marker(E::NAME);
        let type_prefix = format!("{marker}{}", entities::ENTITY_MARKER);
        let prefix = format!("{type_prefix}{}", query.key_prefix);
        let after = query.after.as_ref().map(|cursor| cursor.0.clone());
        let (found, next) = entity_page(
            self.engine.store(),
            &prefix,
            after,
            query.page_size,
            |_, record| {
                record.orchestrator == marker
                    && (!record.input.is_empty() || query.include_stateless)
            },
        )?;
        Ok(EntityPage {
            entities: (found.into_iter())
                .map(|(entity, record)| summary(entity, record))
                .collect(),
            next: next.map(EntityCursor),
            _type: PhantomData,
        })
    }
}

/// A page of entities as stored, and the id to resume after when more follow.
pub(crate) type RawEntityPage = (Vec<(EntityId, InstanceRecord)>, Option<String>);

/// One page of the entities whose ids start with `prefix`, in id order after the id
/// `after` (`None` for the first page): at most `size` of those `keep` accepts (by id
/// and record; 1 for a
/// size of 0), with the id to resume after when more follow. What the typed
/// [`Client::list_entities`] and the admin views' untyped list read.
///
/// # Errors
///
/// [`StoreError`](durable_store::StoreError) if the store cannot be read.
pub(crate) fn entity_page(
    store: &dyn Store,
    prefix: &str,
    mut after: Option<String>,
    size: usize,
    keep: impl Fn(&str, &InstanceRecord) -> bool,
) -> Result<RawEntityPage, StoreError> {
    // One below the largest, as one more than the page is read.
    let size = size.clamp(1, usize::MAX - 1);
    let mut found = Vec::new();
    loop {
        // One more than the page, to know whether another follows.
        let want = size + 1 - found.len();
        let batch = store.instances_with_prefix(prefix, after.as_deref(), want)?;
        let exhausted = batch.len() < want;
        for (id, record) in batch {
            after = Some(id.clone());
            if !keep(&id, &record) {
                continue;
            }
            let Ok(entity) = id.parse::<EntityId>() else {
                continue;
            };
            found.push((id, entity, record));
            if found.len() > size {
                break;
            }
        }
        if exhausted || found.len() > size {
            break;
        }
    }
    let more = found.len() > size;
    found.truncate(size);
    let next = more
        .then(|| found.last().map(|(id, _, _)| id.clone()))
        .flatten();
    let found = found
        .into_iter()
        .map(|(_, entity, record)| (entity, record));
    Ok((found.collect(), next))
}

/// The summary of entity `id` from its record.
fn summary<E: Entity>(id: EntityId, record: InstanceRecord) -> EntitySummary<E> {
    let state = if record.input.is_empty() {
        Ok(None)
    } else {
        payload::decode(&record.input).map(Some)
    };
    EntitySummary {
        id,
        state,
        locked_by: record.parent.map(|owner| owner.instance),
        updated_at: UNIX_EPOCH + Duration::from_millis(record.updated_ms),
        raw_state: record.input,
    }
}
