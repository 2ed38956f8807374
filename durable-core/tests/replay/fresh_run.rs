use durable_core::record::Event;
use durable_core::replay_test::{Execution, Outcome};

use crate::builders::*;

#[test]
fn a_fresh_instance_schedules_its_first_activity_and_waits() {
    let mut execution = Execution::of(chain, "i");
    let turn = execution.turn(&[], vec![started("chain", &5u64)]);

    assert_eq!(turn.outcome, Outcome::Running);
    assert_eq!(turn.appended[0], started("chain", &5u64));
    assert_eq!(scheduled_names(&turn.appended), ["double"]);
    assert_eq!(activities(&turn).len(), 1);
    assert_eq!(activities(&turn)[0].seq, 0);
    assert_eq!(activities(&turn)[0].activity, "double");
    assert_eq!(activities(&turn)[0].input, encode(&5u64));
}

#[test]
fn the_await_site_is_recorded_with_the_step() {
    let mut execution = Execution::of(chain, "i");
    let turn = execution.turn(&[], vec![started("chain", &5u64)]);
    let Event::ActivityScheduled { seq, site, .. } = &turn.appended[1] else {
        panic!("expected a scheduled activity, got {:?}", turn.appended[1]);
    };
    assert_eq!(*seq, 0);
    assert_eq!(site.function, "chain");
    assert!(site.file.ends_with("builders.rs"), "{site:?}");
    // `chain`'s first call is on the line below its `fn`.
    assert_eq!(site.line_offset, 1, "{site:?}");
}

#[test]
fn an_instance_without_its_started_event_does_nothing() {
    let mut execution = Execution::of(chain, "i");
    let turn = execution.turn(&[], vec![]);
    assert_eq!(turn.outcome, Outcome::Running);
    assert!(turn.appended.is_empty());
    assert!(activities(&turn).is_empty());
}
