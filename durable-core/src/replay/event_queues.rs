//! The external events of one instance, queued by name until a wait takes them.
//!
//! Events of one name form a queue in the order the history received them; events that
//! arrive before anyone waits are kept. Each wait takes a ticket when it is created, and
//! the events go to the live tickets in ticket order, so which wait gets which event does
//! not depend on the order futures happen to be polled in, and replays agree. A wait that
//! is dropped before it got its event (it lost a race with a timeout) gives its ticket
//! back, and any event handed to it returns to the front of the queue.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::Location;

use crate::replay::turn::CarriedEvent;

/// The event queues of one instance, by event name.
#[derive(Debug, Default)]
pub(crate) struct EventQueues {
    by_name: HashMap<String, Queue>,
}

/// An event raised and not yet taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Raised {
    /// Where the history received it.
    pub(crate) position: u64,
    /// Which event of its name it is, 0 for the first.
    pub(crate) index: u32,
    /// The encoded payload.
    pub(crate) payload: Vec<u8>,
}

/// Where a wait was created: the call of `wait_event`, and its line counted from the
/// orchestrator's `fn` (kept as is, turned into a `Site` only for an `EventAwaited`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WaitSite {
    /// The call of `wait_event`.
    pub(crate) caller: &'static Location<'static>,
    /// Its line minus the line of the orchestrator's `fn`.
    pub(crate) line_offset: i64,
}

/// A live wait whose event has not arrived: the `index`-th event of `name` (0 for the
/// first) is the one it will take.
#[derive(Debug)]
pub(crate) struct Awaiting<'a> {
    /// The event's name.
    pub(crate) name: &'a str,
    /// Which event of that name the wait will take.
    pub(crate) index: u32,
    /// Where the wait was created.
    pub(crate) site: Option<WaitSite>,
}

#[derive(Debug, Default)]
struct Queue {
    /// Events not yet handed to a wait.
    raised: VecDeque<Raised>,
    /// How many events of this name were raised.
    count: u32,
    next_ticket: u64,
    /// Tickets of live waits that have no event yet.
    waiting: BTreeSet<u64>,
    /// Events handed to a wait that has not taken it yet.
    assigned: HashMap<u64, Raised>,
    /// Where each live wait was created, by ticket.
    sites: HashMap<u64, WaitSite>,
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
        let index = queue.count;
        queue.count += 1;
        queue.raised.push_back(Raised {
            position,
            index,
            payload,
        });
    }

    /// A ticket for a new wait on `name`, created at `site`.
    pub(crate) fn claim(&mut self, name: &str, site: WaitSite) -> u64 {
        let queue = self.by_name.entry(name.to_string()).or_default();
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.insert(ticket);
        queue.sites.insert(ticket, site);
        ticket
    }

    /// The wait of `ticket` took its event and ends.
    pub(crate) fn finish(&mut self, name: &str, ticket: u64) {
        if let Some(queue) = self.by_name.get_mut(name) {
            queue.sites.remove(&ticket);
        }
    }

    /// The live waits whose event has not arrived, by name, then in ticket order.
    pub(crate) fn awaiting(&self) -> Vec<Awaiting<'_>> {
        let mut awaiting = Vec::new();
        for (name, queue) in &self.by_name {
            let queued = queue.raised.len();
            for (rank, ticket) in queue.waiting.iter().enumerate().skip(queued) {
                let ahead = u32::try_from(rank - queued).unwrap_or(u32::MAX);
                awaiting.push(Awaiting {
                    name,
                    index: queue.count.saturating_add(ahead),
                    site: queue.sites.get(ticket).copied(),
                });
            }
        }
        awaiting.sort_by(|a, b| a.name.cmp(b.name).then(a.index.cmp(&b.index)));
        awaiting
    }

    /// Gives back the ticket of a wait dropped before it took its event.
    pub(crate) fn release(&mut self, name: &str, ticket: u64) {
        let Some(queue) = self.by_name.get_mut(name) else {
            return;
        };
        queue.waiting.remove(&ticket);
        queue.sites.remove(&ticket);
        if let Some(event) = queue.assigned.remove(&ticket) {
            queue.raised.push_front(event);
        }
    }

    /// The event `ticket` would get, if it is there.
    pub(crate) fn peek_event(&self, name: &str, ticket: u64) -> Option<&Raised> {
        let queue = self.by_name.get(name)?;
        let event = match queue.assigned.get(&ticket) {
            Some(event) => event,
            None if !queue.waiting.contains(&ticket) => return None,
            None => {
                let rank = queue.waiting.range(..ticket).count();
                queue.raised.get(rank)?
            }
        };
        Some(event)
    }

    /// The event for `ticket`, if it is there; taken.
    pub(crate) fn take(&mut self, name: &str, ticket: u64) -> Option<Raised> {
        let queue = self.by_name.get_mut(name)?;
        queue.assign_through(ticket);
        queue.assigned.remove(&ticket)
    }

    /// Lets `ticket`, which took an event it then set aside, wait for the next one.
    pub(crate) fn wait_again(&mut self, name: &str, ticket: u64) {
        if let Some(queue) = self.by_name.get_mut(name) {
            queue.waiting.insert(ticket);
        }
    }

    /// Takes event `index` of `name` out of the queue (it was set aside), wherever it is;
    /// a wait it was handed to waits for the next one.
    pub(crate) fn set_aside(&mut self, name: &str, index: u32) {
        let Some(queue) = self.by_name.get_mut(name) else {
            return;
        };
        if let Some(at) = queue.raised.iter().position(|e| e.index == index) {
            queue.raised.remove(at);
        } else if let Some(&ticket) = queue
            .assigned
            .iter()
            .find_map(|(ticket, e)| (e.index == index).then_some(ticket))
        {
            queue.assigned.remove(&ticket);
            queue.waiting.insert(ticket);
        }
    }

    /// Every event no wait has taken, by name, in the order the history received them;
    /// the queues are left empty. (What an instance that continues as new carries over.)
    pub(crate) fn drain_unconsumed(&mut self) -> Vec<CarriedEvent> {
        let mut events: Vec<(u64, CarriedEvent)> = Vec::new();
        for (name, queue) in &mut self.by_name {
            let assigned = queue.assigned.drain().map(|(_, event)| event);
            for event in queue.raised.drain(..).chain(assigned) {
                let carried = CarriedEvent {
                    name: name.clone(),
                    payload: event.payload,
                };
                events.push((event.position, carried));
            }
        }
        events.sort_by_key(|(position, _)| *position);
        events.into_iter().map(|(_, event)| event).collect()
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

    #[track_caller]
    fn here() -> WaitSite {
        WaitSite {
            caller: Location::caller(),
            line_offset: 0,
        }
    }

    impl EventQueues {
        /// The history position of the event `ticket` would get, if it is there.
        fn peek(&self, name: &str, ticket: u64) -> Option<u64> {
            self.peek_event(name, ticket).map(|e| e.position)
        }
    }

    #[test]
    fn events_before_a_wait_are_kept_in_order() {
        let mut q = EventQueues::default();
        q.raise("approve", 3, b"first".to_vec());
        q.raise("approve", 5, b"second".to_vec());
        let a = q.claim("approve", here());
        assert_eq!(
            q.take("approve", a).map(|e| e.payload).as_deref(),
            Some(&b"first"[..])
        );
        let b = q.claim("approve", here());
        assert_eq!(q.peek("approve", b), Some(5));
        assert_eq!(
            q.take("approve", b).map(|e| e.payload).as_deref(),
            Some(&b"second"[..])
        );
        assert!(!q.has_waiters());
    }

    #[test]
    fn tickets_not_poll_order_decide_who_gets_which_event() {
        let mut q = EventQueues::default();
        let a = q.claim("x", here());
        let b = q.claim("x", here());
        q.raise("x", 1, b"one".to_vec());
        q.raise("x", 2, b"two".to_vec());
        // `b` is polled first, yet `a` (the earlier wait) gets the earlier event.
        assert_eq!(
            q.take("x", b).map(|e| e.payload).as_deref(),
            Some(&b"two"[..])
        );
        assert_eq!(
            q.take("x", a).map(|e| e.payload).as_deref(),
            Some(&b"one"[..])
        );
    }

    #[test]
    fn unconsumed_events_drain_in_history_order_handed_out_or_not() {
        let mut q = EventQueues::default();
        q.raise("b", 1, b"b1".to_vec());
        q.raise("a", 2, b"a2".to_vec());
        q.raise("a", 3, b"a3".to_vec());
        q.raise("b", 4, b"b4".to_vec());
        let a = q.claim("a", here());
        assert_eq!(
            q.take("a", a).map(|e| e.payload).as_deref(),
            Some(&b"a2"[..])
        );
        // Handed to a wait that never took it.
        let b = q.claim("b", here());
        assert_eq!(q.peek("b", b), Some(1));
        q.take("b", b + 1);
        let drained = q.drain_unconsumed();
        let names: Vec<(&str, &[u8])> = drained
            .iter()
            .map(|e| (e.name.as_str(), e.payload.as_slice()))
            .collect();
        assert_eq!(
            names,
            [("b", &b"b1"[..]), ("a", &b"a3"[..]), ("b", &b"b4"[..])]
        );
        assert!(q.drain_unconsumed().is_empty());
    }

    #[test]
    fn awaiting_lists_waits_past_the_queued_events_with_the_index_they_will_take() {
        let mut q = EventQueues::default();
        q.raise("x", 1, b"one".to_vec());
        let a = q.claim("x", here());
        let _b = q.claim("x", here());
        let _c = q.claim("x", here());
        let _y = q.claim("y", here());
        let listed = |q: &EventQueues| -> Vec<(String, u32)> {
            q.awaiting()
                .iter()
                .map(|w| (w.name.to_string(), w.index))
                .collect()
        };
        // `a` gets event 0 (queued); `b` and `c` wait for events 1 and 2.
        assert_eq!(
            listed(&q),
            [("x".into(), 1), ("x".into(), 2), ("y".into(), 0)]
        );
        assert!(q.awaiting().iter().all(|w| w.site.is_some()));
        assert!(q.take("x", a).is_some());
        q.finish("x", a);
        assert_eq!(
            listed(&q),
            [("x".into(), 1), ("x".into(), 2), ("y".into(), 0)]
        );
        q.raise("x", 2, b"two".to_vec());
        assert_eq!(listed(&q), [("x".into(), 2), ("y".into(), 0)]);
    }

    #[test]
    fn an_event_set_aside_leaves_the_queue_and_its_wait_takes_the_next() {
        let mut q = EventQueues::default();
        let a = q.claim("x", here());
        q.raise("x", 1, b"bad".to_vec());
        q.raise("x", 2, b"good".to_vec());
        let peeked = q
            .peek_event("x", a)
            .map(|e| (e.position, e.index, &e.payload[..]));
        assert_eq!(peeked, Some((1, 0, &b"bad"[..])));
        // Set aside after it was taken: the wait waits again.
        assert_eq!(q.take("x", a).map(|e| e.index), Some(0));
        q.wait_again("x", a);
        assert_eq!(
            q.take("x", a).map(|e| e.payload).as_deref(),
            Some(&b"good"[..])
        );
        // Set aside by index (on replay), queued or handed to a wait.
        q.raise("x", 3, b"bad".to_vec());
        q.raise("x", 4, b"good".to_vec());
        let b = q.claim("x", here());
        q.set_aside("x", 2);
        assert_eq!(
            q.take("x", b).map(|e| e.payload).as_deref(),
            Some(&b"good"[..])
        );
        let c = q.claim("x", here());
        let d = q.claim("x", here());
        q.raise("x", 5, b"bad".to_vec());
        q.raise("x", 6, b"good".to_vec());
        // `d` is taken first: the bad event is handed to `c`.
        assert_eq!(q.take("x", d).map(|e| e.index), Some(5));
        q.set_aside("x", 4);
        q.raise("x", 7, b"late".to_vec());
        assert_eq!(
            q.take("x", c).map(|e| e.payload).as_deref(),
            Some(&b"late"[..])
        );
        assert!(!q.has_waiters());
    }

    #[test]
    fn a_dropped_wait_gives_its_event_back() {
        let mut q = EventQueues::default();
        let a = q.claim("x", here());
        let b = q.claim("x", here());
        q.raise("x", 1, b"one".to_vec());
        q.raise("x", 2, b"two".to_vec());
        assert_eq!(
            q.take("x", b).map(|e| e.payload).as_deref(),
            Some(&b"two"[..])
        );
        q.release("x", a);
        let c = q.claim("x", here());
        assert_eq!(
            q.take("x", c).map(|e| e.payload).as_deref(),
            Some(&b"one"[..])
        );
    }
}
