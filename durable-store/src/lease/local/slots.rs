//! The slots and rate windows of limited activities ([`ActivityLimits`]) for
//! [`Leases`](super::Leases): the reference semantics the PostgreSQL claim follows.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::hash::FnvMap;
use crate::lease::{ActivityLimits, ClaimFilter};
use crate::record::WorkId;

/// A task of a limited activity that a claim met unheld.
pub(super) struct Waiting {
    pub(super) id: WorkId,
    pub(super) activity: String,
}

/// The tasks of limited activities claims took (held until their worker removes them or
/// its lease ends), and the recent starts of rate-limited ones.
#[derive(Debug, Default)]
pub(super) struct Slots {
    /// Each task of a limited activity a claim took, with its activity.
    held: FnvMap<WorkId, String>,
    /// The starts of each rate-limited activity within its last period, oldest first.
    starts: HashMap<String, VecDeque<Instant>>,
}

impl Slots {
    /// Forgets task `id` (removed, or no longer held); whether it held a slot.
    pub(super) fn free(&mut self, id: WorkId) -> bool {
        !self.held.is_empty() && self.held.remove(&id).is_some()
    }

    /// Chooses, among `waiting` (met in id order), the tasks a claim may take: higher
    /// priority first, then in id order, at most `room`, while each activity's held tasks
    /// (those `live` says a live worker holds) stay under its concurrency and its starts
    /// in the period under its rate. Records them as held and started. Returns them, in
    /// the order chosen, and when a rate window next opens for a task left waiting.
    pub(super) fn choose(
        &mut self,
        waiting: Vec<Waiting>,
        filter: &ClaimFilter,
        live: impl Fn(WorkId) -> bool,
        room: usize,
    ) -> (Vec<WorkId>, Option<Duration>) {
        let limits = |activity: &str| -> ActivityLimits {
            filter.limits_of(activity).copied().unwrap_or_default()
        };
        let mut waiting = waiting;
        waiting.sort_by_key(|w| (std::cmp::Reverse(limits(&w.activity).priority), w.id));
        let now = Instant::now();
        let mut running: HashMap<&str, u32> = HashMap::new();
        for (id, activity) in &self.held {
            if live(*id) {
                *running.entry(activity.as_str()).or_default() += 1;
            }
        }
        let mut running: HashMap<String, u32> = running
            .into_iter()
            .map(|(activity, n)| (activity.to_owned(), n))
            .collect();
        let mut chosen = Vec::new();
        let mut retry_after: Option<Duration> = None;
        for Waiting { id, activity } in waiting {
            if chosen.len() >= room {
                break;
            }
            let limits = limits(&activity);
            let held = running.entry(activity.clone()).or_default();
            if limits.concurrency.is_some_and(|n| *held >= n) {
                continue;
            }
            if let Some(rate) = limits.rate {
                let starts = self.starts.entry(activity.clone()).or_default();
                while starts
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= rate.period)
                {
                    starts.pop_front();
                }
                if starts.len() >= rate.starts as usize {
                    let opens = starts
                        .front()
                        .map_or(Duration::ZERO, |at| rate.period - now.duration_since(*at));
                    retry_after = Some(retry_after.map_or(opens, |r| r.min(opens)));
                    continue;
                }
                starts.push_back(now);
            }
            *held += 1;
            self.held.insert(id, activity);
            chosen.push(id);
        }
        (chosen, retry_after)
    }
}
