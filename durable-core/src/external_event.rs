//! External events: raised by clients, received with `ctx.wait_event(name)`.
//!
//! Events of one name form a queue in the order the history received them; events that
//! arrive before anyone waits are kept. Each wait takes a ticket when it is created, and
//! the events go to the live tickets in ticket order, so which wait gets which event does
//! not depend on the order futures happen to be polled in, and replays agree. A wait that
//! is dropped before it got its event (it lost a race with a timeout) gives its ticket
//! back, and any event handed to it returns to the front of the queue.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// The event queues of one instance, by event name.
#[derive(Debug, Default)]
pub(crate) struct EventQueues {
    by_name: HashMap<String, Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Events not yet handed to a wait: history position and payload.
    raised: VecDeque<(u64, Vec<u8>)>,
    next_ticket: u64,
    /// Tickets of live waits that have no event yet.
    waiting: BTreeSet<u64>,
    /// Events handed to a wait that has not taken it yet.
    assigned: HashMap<u64, (u64, Vec<u8>)>,
}

impl Queue {
    /// Hands queued events to the waiting tickets, lowest first, up to and including
    /// `ticket`.
    fn assign_through(&mut self, ticket: u64) {
        while let Some(&first) = self.waiting.first() {
            if first > ticket {
                break;
            }
            let Some(event) = self.raised.pop_front() else {
                break;
            };
            self.waiting.remove(&first);
            self.assigned.insert(first, event);
        }
    }
}

impl EventQueues {
    /// Queues an event that arrived at history position `position`.
    pub(crate) fn raise(&mut self, name: &str, position: u64, payload: Vec<u8>) {
        let queue = self.by_name.entry(name.to_string()).or_default();
        queue.raised.push_back((position, payload));
    }

    /// A ticket for a new wait on `name`.
    pub(crate) fn claim(&mut self, name: &str) -> u64 {
        let queue = self.by_name.entry(name.to_string()).or_default();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.insert(ticket);
        ticket
    }

    /// Gives back the ticket of a wait dropped before it took its event.
    pub(crate) fn release(&mut self, name: &str, ticket: u64) {
        let Some(queue) = self.by_name.get_mut(name) else {
            return;
        };
        queue.waiting.remove(&ticket);
        if let Some(event) = queue.assigned.remove(&ticket) {
            queue.raised.push_front(event);
        }
    }

    /// The history position of the event `ticket` would get, if it is there.
    pub(crate) fn peek(&self, name: &str, ticket: u64) -> Option<u64> {
        let queue = self.by_name.get(name)?;
        if let Some((position, _)) = queue.assigned.get(&ticket) {
            return Some(*position);
        }
        if !queue.waiting.contains(&ticket) {
            return None;
        }
        let rank = queue.waiting.range(..ticket).count();
        queue.raised.get(rank).map(|(position, _)| *position)
    }

    /// The history position and payload of the event for `ticket`, if it is there; taken.
    pub(crate) fn take(&mut self, name: &str, ticket: u64) -> Option<(u64, Vec<u8>)> {
        let queue = self.by_name.get_mut(name)?;
        queue.assign_through(ticket);
        queue.assigned.remove(&ticket)
    }

    /// Every event no wait has taken, by name, in the order the history received them;
    /// the queues are left empty. (What an instance that continues as new carries over.)
    pub(crate) fn drain_unconsumed(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut events: Vec<(u64, String, Vec<u8>)> = Vec::new();
        for (name, queue) in &mut self.by_name {
            let assigned = queue.assigned.drain().map(|(_, event)| event);
            for (position, payload) in queue.raised.drain(..).chain(assigned) {
                events.push((position, name.clone(), payload));
            }
        }
        events.sort_by_key(|(position, ..)| *position);
        events
            .into_iter()
            .map(|(_, name, payload)| (name, payload))
            .collect()
    }

    /// Whether some wait is still live.
    pub(crate) fn has_waiters(&self) -> bool {
        self.by_name
            .values()
            .any(|q| !q.waiting.is_empty() || !q.assigned.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_before_a_wait_are_kept_in_order() {
        let mut q = EventQueues::default();
        q.raise("approve", 3, b"first".to_vec());
        q.raise("approve", 5, b"second".to_vec());
        let a = q.claim("approve");
        assert_eq!(
            q.take("approve", a).map(|e| e.1).as_deref(),
            Some(&b"first"[..])
        );
        let b = q.claim("approve");
        assert_eq!(q.peek("approve", b), Some(5));
        assert_eq!(
            q.take("approve", b).map(|e| e.1).as_deref(),
            Some(&b"second"[..])
        );
        assert!(!q.has_waiters());
    }

    #[test]
    fn tickets_not_poll_order_decide_who_gets_which_event() {
        let mut q = EventQueues::default();
        let a = q.claim("x");
        let b = q.claim("x");
        q.raise("x", 1, b"one".to_vec());
        q.raise("x", 2, b"two".to_vec());
        // `b` is polled first, yet `a` (the earlier wait) gets the earlier event.
        assert_eq!(q.take("x", b).map(|e| e.1).as_deref(), Some(&b"two"[..]));
        assert_eq!(q.take("x", a).map(|e| e.1).as_deref(), Some(&b"one"[..]));
    }

    #[test]
    fn unconsumed_events_drain_in_history_order_handed_out_or_not() {
        let mut q = EventQueues::default();
        q.raise("b", 1, b"b1".to_vec());
        q.raise("a", 2, b"a2".to_vec());
        q.raise("a", 3, b"a3".to_vec());
        q.raise("b", 4, b"b4".to_vec());
        let a = q.claim("a");
        assert_eq!(q.take("a", a).map(|e| e.1).as_deref(), Some(&b"a2"[..]));
        // Handed to a wait that never took it.
        let b = q.claim("b");
        assert_eq!(q.peek("b", b), Some(1));
        q.take("b", b + 1);
        let drained = q.drain_unconsumed();
        let names: Vec<(&str, &[u8])> = drained
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_slice()))
            .collect();
        assert_eq!(
            names,
            [("b", &b"b1"[..]), ("a", &b"a3"[..]), ("b", &b"b4"[..])]
        );
        assert!(q.drain_unconsumed().is_empty());
    }

    #[test]
    fn a_dropped_wait_gives_its_event_back() {
        let mut q = EventQueues::default();
        let a = q.claim("x");
        let b = q.claim("x");
        q.raise("x", 1, b"one".to_vec());
        q.raise("x", 2, b"two".to_vec());
        assert_eq!(q.take("x", b).map(|e| e.1).as_deref(), Some(&b"two"[..]));
        q.release("x", a);
        let c = q.claim("x");
        assert_eq!(q.take("x", c).map(|e| e.1).as_deref(), Some(&b"one"[..]));
    }
}
