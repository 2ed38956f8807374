//! What a runtime knows how to run: orchestrators and activities by name, type-erased to
//! functions over encoded payloads, and the application state handed to activities.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use durable_store::{ActivityLimits, Failure, OrchestratorLimits};

use crate::activity_context::ActivityContext;
use crate::entity::{Dispatched, Entity, EntityError, EntityId};
use crate::failure;
use crate::handle::{Activity, BoxFuture, Callee, Orchestrator};
use crate::orchestration_context::OrchestrationContext;
use crate::payload;
use crate::runtime::unregistered::UnregisteredCallee;

/// The future of a running orchestrator or activity: its encoded output or its failure.
pub(crate) type ErasedFuture = BoxFuture<Result<Vec<u8>, Failure>>;

pub(crate) struct OrchestratorEntry {
    handle: TypeId,
    /// What its body calls.
    callees: Vec<Callee>,
    pub(crate) line: u32,
    pub(crate) start: fn(OrchestrationContext, &[u8]) -> Result<ErasedFuture, Failure>,
}

/// A registered entity type: its pure step, type-erased ([`Entity::dispatch`]).
pub(crate) struct EntityEntry {
    handle: TypeId,
    pub(crate) dispatch: EntityDispatch,
}

/// [`Entity::dispatch`] of one entity type.
pub(crate) type EntityDispatch =
    fn(&EntityId, Option<&[u8]>, &str, &[u8]) -> Result<Dispatched, EntityError>;

pub(crate) struct ActivityEntry {
    handle: TypeId,
    pub(crate) start: fn(ActivityContext, &[u8]) -> Result<ErasedFuture, Failure>,
    /// Its flow control: the builder's (`RuntimeBuilder::activity_limits`) if it set
    /// them, else the attribute's ([`Activity::limits`]).
    pub(crate) limits: ActivityLimits,
}

#[derive(Default)]
pub(crate) struct Registry {
    /// By name, then version.
    orchestrators: HashMap<&'static str, BTreeMap<u32, OrchestratorEntry>>,
    activities: HashMap<&'static str, ActivityEntry>,
    /// By [`Entity::NAME`].
    entities: HashMap<&'static str, EntityEntry>,
    state: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// Names registered twice by different handles; reported when the runtime starts.
    duplicates: Vec<&'static str>,
    /// The limits the builder set, by activity name; they override the attribute's.
    limits: HashMap<&'static str, ActivityLimits>,
    /// The limits of each orchestrator, by name: the attribute's (of the last version
    /// registered that sets any), or the builder's, which override them.
    orchestrator_limits: HashMap<&'static str, OrchestratorLimits>,
    /// The orchestrators whose limits the builder set.
    orchestrator_limits_set: Vec<&'static str>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field(
                "orchestrators",
                &self.orchestrators.keys().collect::<Vec<_>>(),
            )
            .field("activities", &self.activities.keys().collect::<Vec<_>>())
            .field("entities", &self.entities.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn add_orchestrator<O: Orchestrator>(&mut self) {
        let entry = OrchestratorEntry {
            handle: TypeId::of::<O>(),
            callees: O::callees(),
            line: O::LINE,
            start: start_orchestrator::<O>,
        };
        if O::limits().is_limited() && !self.orchestrator_limits_set.contains(&O::NAME) {
            self.orchestrator_limits.insert(O::NAME, O::limits());
        }
        let versions = self.orchestrators.entry(O::NAME).or_default();
        if let Some(old) = versions.insert(O::VERSION, entry)
            && old.handle != TypeId::of::<O>()
        {
            self.duplicates.push(O::NAME);
        }
    }

    /// Version `version` of orchestrator `name`.
    pub(crate) fn orchestrator(&self, name: &str, version: u32) -> Option<&OrchestratorEntry> {
        self.orchestrators.get(name)?.get(&version)
    }

    /// Activity `name`: its registered name (static, for the activity's context) and
    /// entry.
    pub(crate) fn activity(&self, name: &str) -> Option<(&'static str, &ActivityEntry)> {
        self.activities
            .get_key_value(name)
            .map(|(&name, entry)| (name, entry))
    }

    /// Sets the limits of orchestrator `O` (every version), over the attribute's.
    pub(crate) fn set_orchestrator_limits<O: Orchestrator>(&mut self, limits: OrchestratorLimits) {
        self.orchestrator_limits.insert(O::NAME, limits);
        self.orchestrator_limits_set.push(O::NAME);
    }

    /// The limits of every orchestrator that has any, by name.
    pub(crate) fn all_orchestrator_limits(&self) -> BTreeMap<String, OrchestratorLimits> {
        (self.orchestrator_limits.iter())
            .filter(|(_, limits)| limits.is_limited())
            .map(|(name, limits)| (name.to_string(), *limits))
            .collect()
    }

    /// Sets the limits of activity `A`, over the attribute's.
    pub(crate) fn set_activity_limits<A: Activity>(&mut self, limits: ActivityLimits) {
        self.limits.insert(A::NAME, limits);
    }

    /// The flow control of activity `name`: the builder's, else the attribute's; `None`
    /// for an activity that is not registered.
    pub(crate) fn activity_limits(&self, name: &str) -> Option<ActivityLimits> {
        let entry = self.activities.get(name)?;
        Some(self.limits.get(name).copied().unwrap_or(entry.limits))
    }

    /// The limits of every registered activity that has any (a concurrency, a rate or a
    /// priority), by name.
    pub(crate) fn all_activity_limits(&self) -> BTreeMap<String, ActivityLimits> {
        (self.activities.keys())
            .filter_map(|name| Some((name.to_string(), self.activity_limits(name)?)))
            .filter(|(_, limits)| *limits != ActivityLimits::default())
            .collect()
    }

    /// Whether activity `name` is registered.
    pub(crate) fn has_activity(&self, name: &str) -> bool {
        self.activities.contains_key(name)
    }

    /// The names of the registered orchestrators, sorted.
    pub(crate) fn orchestrator_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.orchestrators.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    /// The registered versions of every orchestrator, as `(name, version)`, sorted.
    pub(crate) fn orchestrator_versions(&self) -> Vec<(String, u32)> {
        let mut versions: Vec<(String, u32)> = (self.orchestrators.iter())
            .flat_map(|(name, versions)| versions.keys().map(|v| (name.to_string(), *v)))
            .collect();
        versions.sort();
        versions
    }

    /// The names of the registered activities, sorted.
    pub(crate) fn activity_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.activities.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    /// The first name registered twice by different handles, if any.
    pub(crate) fn first_duplicate(&self) -> Option<&'static str> {
        self.duplicates.first().copied()
    }

    /// The newest registered version of orchestrator `name`.
    pub(crate) fn latest_version(&self, name: &str) -> Option<u32> {
        self.orchestrators.get(name)?.keys().next_back().copied()
    }

    /// The calls the registered orchestrators' bodies make to activities and
    /// orchestrators that are not registered, sorted by orchestrator, version and callee.
    pub(crate) fn unregistered_callees(&self) -> Vec<UnregisteredCallee> {
        let mut missing: Vec<UnregisteredCallee> =
            self.orchestrators
                .iter()
                .flat_map(|(&name, versions)| {
                    versions.iter().flat_map(move |(&version, entry)| {
                        entry.callees.iter().filter(|callee| !self.has(callee)).map(
                            move |&callee| UnregisteredCallee {
                                orchestrator: name,
                                version,
                                callee,
                            },
                        )
                    })
                })
                .collect();
        missing.sort_by_key(|m| (m.orchestrator, m.version, m.callee));
        missing.dedup();
        missing
    }

    fn has(&self, callee: &Callee) -> bool {
        match *callee {
            Callee::CallActivity { name } => self.has_activity(name),
            Callee::CallSubOrchestrator { name, version } => {
                self.orchestrator(name, version).is_some()
            }
            Callee::CallEntity { name } => self.entity(name).is_some(),
        }
    }

    pub(crate) fn add_activity<A: Activity>(&mut self) {
        let entry = ActivityEntry {
            handle: TypeId::of::<A>(),
            start: start_activity::<A>,
            limits: A::limits(),
        };
        if let Some(old) = self.activities.insert(A::NAME, entry)
            && old.handle != TypeId::of::<A>()
        {
            self.duplicates.push(A::NAME);
        }
    }

    pub(crate) fn add_entity<E: Entity>(&mut self) {
        let entry = EntityEntry {
            handle: TypeId::of::<E>(),
            dispatch: E::dispatch,
        };
        if let Some(old) = self.entities.insert(E::NAME, entry)
            && old.handle != TypeId::of::<E>()
        {
            self.duplicates.push(E::NAME);
        }
    }

    /// Entity type `name` ([`Entity::NAME`]).
    pub(crate) fn entity(&self, name: &str) -> Option<&EntityEntry> {
        self.entities.get(name)
    }

    /// The names of the registered entity types, sorted.
    pub(crate) fn entity_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entities.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    }

    pub(crate) fn add_state<T: Send + Sync + 'static>(&mut self, value: T) {
        self.state.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub(crate) fn state<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.state.get(&TypeId::of::<T>())?.downcast_ref()
    }
}

/// Encodes the outcome of user code: the output, or the error with its `Display`.
fn outcome<T: serde::Serialize, E: serde::Serialize + std::fmt::Display>(
    result: Result<T, E>,
) -> Result<Vec<u8>, Failure> {
    match result {
        Ok(output) => payload::encode(&output).map_err(failure::undecodable),
        Err(error) => Err(failure::returned(
            payload::encode(&error).unwrap_or_default(),
            error.to_string(),
        )),
    }
}

fn start_orchestrator<O: Orchestrator>(
    ctx: OrchestrationContext,
    input: &[u8],
) -> Result<ErasedFuture, Failure> {
    let input: O::Input = payload::decode(input).map_err(failure::undecodable)?;
    Ok(Box::pin(async move { outcome(O::run(ctx, input).await) }))
}

fn start_activity<A: Activity>(
    ctx: ActivityContext,
    input: &[u8],
) -> Result<ErasedFuture, Failure> {
    let input: A::Input = payload::decode(input).map_err(failure::undecodable)?;
    Ok(Box::pin(async move { outcome(A::run(ctx, input).await) }))
}
