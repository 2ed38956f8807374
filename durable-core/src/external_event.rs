//! External events: raised by clients, received with `ctx.wait_event(name)`.
//!
//! An event's name and payload type are declared once with an [`EventName`], which both
//! sides use, so rustc refuses a payload of another type. A raised event whose payload does
//! not decode as the type a wait expects (raised by name, or before a deploy changed the
//! type) is set aside: recorded as `EventSetAside` in the history, out of the queue, and
//! the wait takes the next event of its name. The queues that hand events to waits, in an
//! order every replay agrees on, are replay state: `replay/event_queues.rs`.

use std::marker::PhantomData;

/// The name of an external event and the type of its payload, declared once and used on
/// both sides: [`OrchestrationContext::wait_event`](crate::OrchestrationContext::wait_event)
/// and [`Client::raise_event`](crate::Client::raise_event) (or
/// [`Instance::raise_event`](crate::Instance::raise_event)). A wait then gets a `T`, and
/// raising a value of another type does not compile.
///
/// ```
/// use durable_core::{orchestrator, EventName, OrchestrationContext};
///
/// /// Whether the manager approved the expense.
/// pub const APPROVED: EventName<bool> = EventName::new("approved");
///
/// #[orchestrator]
/// async fn expense(ctx: OrchestrationContext, amount: u64) -> Result<u64, String> {
///     if ctx.wait_event(APPROVED).await {
///         Ok(amount)
///     } else {
///         Err("rejected".into())
///     }
/// }
/// // A client: `instance.raise_event(APPROVED, &true).await?`; `&"yes"` is a type error.
/// ```
pub struct EventName<T> {
    name: &'static str,
    _payload: PhantomData<fn() -> T>,
}

impl<T> EventName<T> {
    /// The event named `name`, whose payload is a `T`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _payload: PhantomData,
        }
    }

    /// The event's name, as stored in the history.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for EventName<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for EventName<T> {}

impl<T> std::fmt::Debug for EventName<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("EventName")
            .field(&self.name)
            .field(&std::any::type_name::<T>())
            .finish()
    }
}

/// The event's name.
impl<T> std::fmt::Display for EventName<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// What names an event whose payload is a `T`: an [`EventName<T>`], whose type is fixed,
/// or a plain name (`&str`, `String`), whose payload type the code around it decides.
pub trait AsEventName<T> {
    /// The event's name.
    fn event_name(&self) -> &str;
}

impl<T> AsEventName<T> for EventName<T> {
    fn event_name(&self) -> &str {
        self.name
    }
}

impl<T> AsEventName<T> for &EventName<T> {
    fn event_name(&self) -> &str {
        self.name
    }
}

impl<T> AsEventName<T> for &str {
    fn event_name(&self) -> &str {
        self
    }
}

impl<T> AsEventName<T> for String {
    fn event_name(&self) -> &str {
        self
    }
}

impl<T> AsEventName<T> for &String {
    fn event_name(&self) -> &str {
        self
    }
}
