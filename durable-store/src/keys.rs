//! How records are keyed, and which keys a store accepts.
//!
//! Both stores check a whole call to `commit` with [`check`] before writing anything, so a
//! rejected call leaves the store untouched and the two implementations agree on what they
//! refuse.

use crate::error::{KeyKind, StoreError};
use crate::record::{Commit, HistoryAppend};

/// The longest progress key, in bytes.
///
/// fjall keys hold at most `u16::MAX` bytes; kept as long as the limit on ids was before
/// format 3.
pub(crate) const MAX_KEY_LEN: usize = u16::MAX as usize - 6;

/// The longest instance id, in bytes (a NUL counts twice): an entry of the orchestrator
/// index (fjall) holds the id escaped (a NUL takes 2 bytes, and 2 bytes end it), a hash of
/// 8 bytes, a class byte, a creation time and an incarnation of 8 bytes each, and fjall
/// keys hold at most `u16::MAX` bytes.
pub(crate) const MAX_ID_LEN: usize = u16::MAX as usize - 27;

/// Checks every id, key and history index of `commits`.
pub(crate) fn check(commits: &[Commit]) -> Result<(), StoreError> {
    for commit in commits {
        for (id, _) in &commit.histories_removed {
            check_key(KeyKind::InstanceId, id)?;
        }
        for id in &commit.instances_removed {
            check_key(KeyKind::InstanceId, id)?;
        }
        for (id, _) in &commit.instances {
            check_key(KeyKind::InstanceId, id)?;
        }
        for append in &commit.history {
            check_key(KeyKind::InstanceId, &append.instance)?;
            check_indices(append)?;
        }
        for (key, _) in &commit.progress {
            check_key(KeyKind::ProgressKey, key)?;
        }
    }
    Ok(())
}

/// Whether `key` can be stored; reads of a key that cannot be stored find nothing.
pub(crate) fn is_storable(kind: KeyKind, key: &str) -> bool {
    !key.is_empty() && stored_len(kind, key) <= max_len(kind)
}

/// The length of `key` as [`max_len`] counts it: an instance id's NULs count twice.
fn stored_len(kind: KeyKind, key: &str) -> usize {
    match kind {
        KeyKind::ProgressKey => key.len(),
        _ => key.len() + key.bytes().filter(|&b| b == 0).count(),
    }
}

/// The longest key of `kind`, in bytes.
fn max_len(kind: KeyKind) -> usize {
    match kind {
        KeyKind::ProgressKey => MAX_KEY_LEN,
        _ => MAX_ID_LEN,
    }
}

fn check_key(kind: KeyKind, key: &str) -> Result<(), StoreError> {
    if is_storable(kind, key) {
        return Ok(());
    }
    let max = max_len(kind);
    let problem = if key.is_empty() {
        "it is empty".to_owned()
    } else {
        format!("it is {} bytes long", stored_len(kind, key))
    };
    Err(invalid(
        kind,
        key,
        format!("{problem}; use 1 to {max} bytes"),
    ))
}

/// Checks that every event of `append` gets a `u32` index.
fn check_indices(append: &HistoryAppend) -> Result<(), StoreError> {
    let end = u64::from(append.first) + append.events.len() as u64;
    if end <= u64::from(u32::MAX) + 1 {
        return Ok(());
    }
    Err(invalid(
        KeyKind::EventIndex,
        &append.instance,
        format!(
            "appending {} events at index {} passes 2^32 events, the most one history holds; \
             continue as new to start a fresh history",
            append.events.len(),
            append.first,
        ),
    ))
}

/// The longest part of a key an error quotes, in characters.
const QUOTED_CHARS: usize = 64;

/// A [`StoreError::InvalidKey`] quoting at most [`QUOTED_CHARS`] characters of `key`: a
/// refused key may be 64 KiB or more, too long to read and to copy with every clone.
pub(crate) fn invalid(kind: KeyKind, key: &str, reason: String) -> StoreError {
    let key = match key.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &key[..cut]),
        None => key.to_owned(),
    };
    StoreError::InvalidKey { kind, key, reason }
}

/// The prefix shared by every history key of instance `id`: its length (u16 big-endian) and
/// its bytes. The fixed-width length keeps `a` from matching the keys of `ab`.
pub(crate) fn history_prefix(id: &str) -> Vec<u8> {
    let len = u16::try_from(id.len()).expect("ids are checked to fit in u16 before keying");
    let mut key = Vec::with_capacity(2 + id.len() + 4);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// The key of event `index` of instance `id`: the prefix, then the index big-endian so keys
/// sort in history order.
pub(crate) fn history_key(id: &str, index: u32) -> Vec<u8> {
    let mut key = history_prefix(id);
    key.extend_from_slice(&index.to_be_bytes());
    key
}
