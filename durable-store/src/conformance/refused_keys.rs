//! The check that a call with a key the store cannot hold is refused whole, with
//! [`StoreError::InvalidKey`] naming the kind of key (or, for events past the last index,
//! which only a history of 2^32 - 1 events could reach, by the history fence).

use super::Check;
use super::records::{append, events, record};
use crate::error::{KeyKind, StoreError};
use crate::keys::{MAX_ID_LEN, MAX_KEY_LEN};
use crate::record::{Commit, Status};
use crate::store::Store;

pub(super) fn refused_keys_write_nothing(store: &impl Store) {
    let c = Check::new("refused_keys_write_nothing", store);
    let longest = "k".repeat(MAX_KEY_LEN);
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    let longest_id = "k".repeat(MAX_ID_LEN);
    let too_long_id = "k".repeat(MAX_ID_LEN + 1);
    // The longest keys are accepted.
    c.commit(vec![Commit {
        instances: vec![(longest_id.clone(), record("flow", Status::Pending, 1))],
        history: vec![append(&longest_id, 0, events("longest", 0..1))],
        progress: vec![(longest.clone(), Some(b"1".to_vec()))],
        ..Commit::default()
    }]);
    let what = "an id of the longest length should be stored";
    c.expect(store.history(&longest_id), events("longest", 0..1), what);
    let what = "a progress key of the longest length should be stored";
    c.expect(store.progress(&longest), Some(b"1".to_vec()), what);

    let good = || Commit {
        instances: vec![("good".into(), record("flow", Status::Pending, 0))],
        progress: vec![("good".into(), Some(b"1".to_vec()))],
        ..Commit::default()
    };
    let refused: [(&str, KeyKind, &str, Commit); 6] = [
        (
            "an empty instance id",
            KeyKind::InstanceId,
            "",
            Commit {
                instances: vec![(String::new(), record("flow", Status::Pending, 0))],
                ..Commit::default()
            },
        ),
        (
            "an empty id in a removal",
            KeyKind::InstanceId,
            "",
            Commit {
                instances_removed: vec![String::new()],
                ..Commit::default()
            },
        ),
        (
            "an instance id one byte too long",
            KeyKind::InstanceId,
            &too_long_id,
            Commit {
                history: vec![append(&too_long_id, 0, events("x", 0..1))],
                ..Commit::default()
            },
        ),
        (
            "an empty progress key",
            KeyKind::ProgressKey,
            "",
            Commit {
                progress: vec![(String::new(), None)],
                ..Commit::default()
            },
        ),
        (
            "a progress key one byte too long",
            KeyKind::ProgressKey,
            &too_long,
            Commit {
                progress: vec![(too_long.clone(), Some(vec![]))],
                ..Commit::default()
            },
        ),
        (
            "events past index 2^32 - 1",
            KeyKind::EventIndex,
            "last",
            Commit {
                history: vec![append("last", u32::MAX, events("last", 1..3))],
                ..Commit::default()
            },
        ),
    ];
    for (how, want_kind, key, bad) in refused {
        let quoted = match store.commit(&[good(), bad]) {
            Err(StoreError::InvalidKey { kind, key, .. }) if kind == want_kind => key,
            // The last index is only reached through a history that long: a store may
            // refuse the append for where it starts, before looking at its keys.
            Err(StoreError::HistoryConflict { instance, .. })
                if want_kind == KeyKind::EventIndex && instance == key =>
            {
                key.to_owned()
            }
            other => panic!(
                "conformance `{}`: {how} should be refused with StoreError::InvalidKey {{ kind: \
                 KeyKind::{want_kind:?}, .. }}, got {other:?}",
                c.name
            ),
        };
        assert!(
            quoted.chars().count() <= 65 && key.starts_with(quoted.trim_end_matches('…')),
            "conformance `{}`: the error for {how} should quote at most 64 characters of the \
             key, got {quoted:?}",
            c.name
        );
        let what = format!("a call refused for {how} should write nothing");
        c.expect(store.instance("good"), None, &what);
        c.expect(store.progress("good"), None, &what);
    }
    let what = "a refused append should leave the history as it was";
    c.expect(store.history("last"), vec![], what);
}
