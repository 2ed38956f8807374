//! The parent's final check: every instance ended as expected, every effect is in the
//! ledger once, every event arrived once, every entity operation ran once (in its
//! sender's order, for the client's signals), and the store reopens cleanly.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use durable_core::record::{Event, Status};
use durable_core::{FjallStore, Store};
use durable_store::PostgresStore;

use crate::entities;
use crate::workload::{Kind, Ledger, Spec, read_postgres_ledger};

/// What the check found.
#[derive(Debug, Default)]
pub struct Report {
    pub instances: usize,
    /// Instances, effects or events that are missing or wrong.
    pub lost: Vec<String>,
    /// Effects, events or instances that exist more than once.
    pub duplicated: Vec<String>,
    /// Deliveries that found their effect applied already (absorbed by idempotency keys).
    pub repeats: u64,
    /// Entity operations checked, and the entities they ran on.
    pub entity_ops: usize,
    pub entities: usize,
    /// Starter runs that found some of the entity operations sent, not all: kills that
    /// landed while they were being sent.
    pub sends_resumed: usize,
}

/// Checks the store and the ledger (in `dir`, or in the PostgreSQL database at `url`)
/// against the workload `specs`.
pub fn verify(dir: &Path, url: Option<&str>, specs: &[Spec]) -> Report {
    let mut report = Report::default();
    let opened: Result<Box<dyn Store>, _> = match url {
        Some(url) => PostgresStore::open(url).map(|s| Box::new(s) as Box<dyn Store>),
        None => FjallStore::open(dir.join("durable")).map(|s| Box::new(s) as Box<dyn Store>),
    };
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            report.lost.push(format!("the store does not reopen: {e}"));
            return report;
        }
    };
    let store = &*store;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut effects: BTreeSet<String> = BTreeSet::new();
    for spec in specs {
        expected.insert(spec.id(), spec.expected_output());
        // The children's ids carry their parent's incarnation.
        let incarnation = store
            .instance(&spec.id())
            .ok()
            .flatten()
            .map_or(0, |record| record.incarnation);
        expected.extend(spec.children(incarnation));
        effects.extend(spec.expected_effects(incarnation));
    }
    report.instances = expected.len();
    let per_kind = specs.iter().filter(|s| s.kind == Kind::Chain).count() as u64;
    let ops = entities::ops(per_kind);
    let entities = entities::expected(&ops);
    report.entity_ops = ops.len();
    report.entities = entities.len();
    report.sends_resumed = entities::resumed(dir, ops.len());
    check_instances(store, &expected, &entities, &mut report);
    check_entities(store, &entities, &mut report);
    for spec in specs.iter().filter(|s| s.kind == Kind::Approval) {
        check_events(store, &spec.id(), &mut report);
    }
    match store.work_items() {
        Ok(items) if items.is_empty() => {}
        Ok(items) => report
            .lost
            .push(format!("{} work items left in the queue", items.len())),
        Err(e) => report.lost.push(format!("the queue does not read: {e}")),
    }
    let contents = match url {
        Some(url) => read_postgres_ledger(url),
        None => Ledger::open(&dir.join("ledger"))
            .map_err(|e| format!("{e:?}"))
            .and_then(|ledger| ledger.contents()),
    };
    check_ledger(contents, &effects, &mut report);
    report
}

fn check_instances(
    store: &dyn Store,
    expected: &BTreeMap<String, u64>,
    entities: &BTreeMap<String, Vec<String>>,
    report: &mut Report,
) {
    let stored = match store.instances() {
        Ok(stored) => stored,
        Err(e) => {
            report.lost.push(format!("the instances do not read: {e}"));
            return;
        }
    };
    let stored: BTreeMap<String, _> = stored.into_iter().collect();
    let known = |id: &String| expected.contains_key(id) || entities.contains_key(id);
    for id in stored.keys().filter(|id| !known(id)) {
        report
            .duplicated
            .push(format!("instance {id}: not started by the workload"));
    }
    for (id, output) in expected {
        let Some(record) = stored.get(id) else {
            report.lost.push(format!("instance {id}: missing"));
            continue;
        };
        match &record.status {
            Status::Completed { output: bytes } => match serde_json::from_slice::<u64>(bytes) {
                Ok(found) if found == *output => {}
                found => report.lost.push(format!(
                    "instance {id}: output {found:?}, expected {output}"
                )),
            },
            other => report
                .lost
                .push(format!("instance {id}: ended {}: {other:?}", other.name())),
        }
        match store.history(id) {
            Ok(history) if history.len() == record.history_len as usize => {}
            Ok(history) => report.lost.push(format!(
                "instance {id}: {} events in its history, its record says {}",
                history.len(),
                record.history_len
            )),
            Err(e) => report.lost.push(format!("instance {id}: history: {e}")),
        }
    }
}

/// Each entity ran each of its operations once, and a tally its client signals (`d-`) in
/// the order they were sent.
fn check_entities(
    store: &dyn Store,
    expected: &BTreeMap<String, Vec<String>>,
    report: &mut Report,
) {
    for (id, want) in expected {
        let record = match store.instance(id) {
            Ok(Some(record)) => record,
            Ok(None) => {
                report.lost.push(format!("entity {id}: missing"));
                continue;
            }
            Err(e) => {
                report.lost.push(format!("entity {id}: does not read: {e}"));
                continue;
            }
        };
        let Some(ran) = entities::state_ops(id, &record.input) else {
            report
                .lost
                .push(format!("entity {id}: its state does not decode"));
            continue;
        };
        let mut times: BTreeMap<&str, usize> = BTreeMap::new();
        for op in &ran {
            *times.entry(op.as_str()).or_default() += 1;
        }
        for op in want {
            match times.get(op.as_str()) {
                None => report
                    .lost
                    .push(format!("entity operation {op} on {id}: never ran")),
                Some(1) => {}
                Some(n) => report
                    .duplicated
                    .push(format!("entity operation {op} on {id}: ran {n} times")),
            }
        }
        for op in times.keys().filter(|op| !want.iter().any(|w| w == *op)) {
            report
                .duplicated
                .push(format!("entity operation {op} on {id}: not sent to it"));
        }
        let client_order = |ops: &[String]| -> Vec<String> {
            let mut seen = BTreeSet::new();
            ops.iter()
                .filter(|op| op.starts_with("d-") && seen.insert(op.as_str()))
                .cloned()
                .collect()
        };
        let (sent, applied) = (client_order(want), client_order(&ran));
        if applied.len() == sent.len() && applied != sent {
            report.lost.push(format!(
                "entity {id}: the client's signals ran out of order: {applied:?}, sent {sent:?}"
            ));
        }
    }
}

/// Each approval got `approve` and `late` once.
fn check_events(store: &dyn Store, id: &str, report: &mut Report) {
    let Ok(history) = store.history(id) else {
        return; // reported with the instance
    };
    for name in ["approve", "late"] {
        let count = history
            .iter()
            .filter(|e| matches!(e, Event::EventRaised { name: n, .. } if n == name))
            .count();
        match count {
            1 => {}
            0 => report
                .lost
                .push(format!("event {name} of {id}: never arrived")),
            n => report
                .duplicated
                .push(format!("event {name} of {id}: arrived {n} times")),
        }
    }
}

fn check_ledger(
    contents: Result<(Vec<(String, String)>, u64), String>,
    expected: &BTreeSet<String>,
    report: &mut Report,
) {
    let (entries, repeats) = match contents {
        Ok(contents) => contents,
        Err(e) => {
            report.lost.push(format!("the ledger does not read: {e}"));
            return;
        }
    };
    report.repeats = repeats;
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, logical) in entries {
        keys.entry(logical).or_default().push(key);
    }
    for effect in expected.iter().filter(|e| !keys.contains_key(*e)) {
        report
            .lost
            .push(format!("effect {effect}: not in the ledger"));
    }
    for (effect, keys) in &keys {
        if !expected.contains(effect) {
            report
                .duplicated
                .push(format!("effect {effect}: not expected (keys {keys:?})"));
        } else if keys.len() > 1 {
            report
                .duplicated
                .push(format!("effect {effect}: applied under {keys:?}"));
        }
    }
}
