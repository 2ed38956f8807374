//! Entity ids: (entity name, key), written `@name@key` as Durable Functions writes them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::entity::Entity;

/// The id of one entity: its entity type's name ([`Entity::NAME`]) and a key chosen by
/// whoever operates on it (`@Account@alice`). An entity exists once operated on.
///
/// Its instance-id form, [`Display`](fmt::Display) and [`FromStr`], is `@name@key`, as
/// Durable Functions writes entity instance ids. The name is not empty and holds no `@`;
/// the key may be any string (`@` included, or empty), so the form reads back exactly:
/// the name ends at the second `@`.
///
/// Ids order by name, then key: the fixed global order in which locks will be taken.
///
/// # Examples
///
/// ```
/// use durable_core::EntityId;
///
/// let id = EntityId::new("Account", "alice@example.com")?;
/// assert_eq!(id.to_string(), "@Account@alice@example.com");
/// assert_eq!("@Account@alice@example.com".parse::<EntityId>()?, id);
/// # Ok::<(), durable_core::EntityIdError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityId {
    name: String,
    key: String,
}

/// An entity id that cannot be made or read ([`EntityId::new`], [`EntityId::from_str`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntityIdError {
    /// The entity name is empty.
    #[error("an entity name cannot be empty")]
    EmptyName,
    /// The entity name holds `@`, which ends the name in `@name@key`.
    #[error("entity name `{0}` holds `@`, which ends the name in an entity id `@name@key`")]
    NameWithAt(String),
    /// The text is not of the form `@name@key`.
    #[error("`{0}` is not an entity id: write `@name@key`, e.g. `@Account@alice`")]
    NotAnEntityId(String),
}

impl EntityId {
    /// The id of the entity `key` of the entity type called `name`.
    ///
    /// # Errors
    ///
    /// [`EntityIdError::EmptyName`] or [`EntityIdError::NameWithAt`] if `name` is not
    /// an entity name. Any key is accepted.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Result<Self, EntityIdError> {
        let name = name.into();
        check_name(&name)?;
        Ok(EntityId {
            name,
            key: key.into(),
        })
    }

    /// The id of the entity `key` of type `E`: `EntityId::of::<Account>("alice")`.
    pub fn of<E: Entity>(key: impl Into<String>) -> Self {
        debug_assert!(check_name(E::NAME).is_ok(), "{}", E::NAME);
        EntityId {
            name: E::NAME.to_string(),
            key: key.into(),
        }
    }

    /// The entity type's name: `Account` in `@Account@alice`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key: `alice` in `@Account@alice`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this is an id of an entity of type `E`.
    pub fn is_of<E: Entity>(&self) -> bool {
        self.name == E::NAME
    }
}

/// Checks an entity name: not empty, no `@`.
pub(crate) fn check_name(name: &str) -> Result<(), EntityIdError> {
    if name.is_empty() {
        Err(EntityIdError::EmptyName)
    } else if name.contains('@') {
        Err(EntityIdError::NameWithAt(name.to_string()))
    } else {
        Ok(())
    }
}

impl fmt::Display for EntityId {
    /// `@name@key`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}@{}", self.name, self.key)
    }
}

impl FromStr for EntityId {
    type Err = EntityIdError;

    /// Reads `@name@key` back: the name runs to the second `@`, the key is the rest.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let not_one = || EntityIdError::NotAnEntityId(text.to_string());
        let rest = text.strip_prefix('@').ok_or_else(not_one)?;
        let (name, key) = rest.split_once('@').ok_or_else(not_one)?;
        if name.is_empty() {
            return Err(not_one());
        }
        Ok(EntityId {
            name: name.to_string(),
            key: key.to_string(),
        })
    }
}
