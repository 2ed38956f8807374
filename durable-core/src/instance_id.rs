//! Instance ids: which ones a user may choose, and the ones the runtime generates for
//! sub-orchestrations started without an id.

use durable_store::Incarnation;

use crate::entity::EntityId;
use crate::error::{Error, InvalidIdReason};

/// The longest instance id accepted, in bytes.
pub const MAX_INSTANCE_ID_LEN: usize = 256;

/// The first character of the ids the runtime generates for sub-orchestrations started
/// without an id (`ctx.sub_orchestration`), which read
/// `~{parent}~{incarnation as hex}.{generation}.{step}`. So that no id a user chooses can
/// clash with one, [`Client::start`](crate::Client::start) and
/// `ctx.sub_orchestration_with_id` refuse ids of that form (starting with `~` and ending
/// with `~`, hex digits, `.`, digits, `.`, digits). Other ids starting with `~` are
/// accepted: an id derived from a generated one, like
/// `format!("{}-audit", ctx.instance_id())` in a generated child, is never of that form.
pub const GENERATED_ID_PREFIX: char = '~';

/// Checks an id a user chose: a valid id that does not have the form of the ids the
/// runtime generates (see [`GENERATED_ID_PREFIX`]) nor of an entity's (`@Name@key`).
pub(crate) fn check_user_instance_id(id: &str) -> Result<(), Error> {
    check_instance_id(id)?;
    let reason = if has_generated_form(id) {
        InvalidIdReason::Reserved
    } else if id.parse::<EntityId>().is_ok() {
        InvalidIdReason::EntityForm
    } else {
        return Ok(());
    };
    Err(Error::InvalidInstanceId {
        id: id.to_string(),
        reason,
    })
}

/// Whether `id` has the form of an id [`generated_child_id`] makes:
/// `~{anything}~{hex digits}.{digits}.{digits}`. Every generated id has it (the part after
/// its last `~` is the suffix, which holds no `~`), so an id without it is never one.
fn has_generated_form(id: &str) -> bool {
    let Some(rest) = id.strip_prefix(GENERATED_ID_PREFIX) else {
        return false;
    };
    let Some((parent, suffix)) = rest.rsplit_once(GENERATED_ID_PREFIX) else {
        return false;
    };
    let mut parts = suffix.split('.');
    let is = |part: Option<&str>, digit: fn(&char) -> bool| {
        part.is_some_and(|p| !p.is_empty() && p.chars().all(|c| digit(&c)))
    };
    !parent.is_empty()
        && is(parts.next(), char::is_ascii_hexdigit)
        && is(parts.next(), char::is_ascii_digit)
        && is(parts.next(), char::is_ascii_digit)
        && parts.next().is_none()
}

/// The id of the sub-orchestration that step `seq` of run `(incarnation, generation)` of
/// `parent` starts without an explicit id:
/// `~{parent}~{incarnation as hex}.{generation}.{seq}`. Unique per parent run and step,
/// never an id a user may choose (its form is reserved), and a valid id whatever the
/// parent's id: a parent id too long to fit is cut, and a hash of the whole id added.
pub(crate) fn generated_child_id(
    parent: &str,
    incarnation: Incarnation,
    generation: u32,
    seq: u64,
) -> String {
    let suffix = format!("{GENERATED_ID_PREFIX}{incarnation:x}.{generation}.{seq}");
    let room = MAX_INSTANCE_ID_LEN - GENERATED_ID_PREFIX.len_utf8() - suffix.len();
    let mut id = String::with_capacity(MAX_INSTANCE_ID_LEN);
    id.push(GENERATED_ID_PREFIX);
    if parent.len() <= room {
        id.push_str(parent);
    } else {
        // `#` and 16 hex digits of the parent id's FNV-1a hash after its longest prefix
        // that fits on a character boundary.
        let hash = parent.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let mut cut = room - 17;
        while !parent.is_char_boundary(cut) {
            cut -= 1;
        }
        id.push_str(&parent[..cut]);
        id.push_str(&format!("#{hash:016x}"));
    }
    id.push_str(&suffix);
    id
}

/// Checks that `id` can name an instance: not empty, at most [`MAX_INSTANCE_ID_LEN`]
/// bytes, no control characters.
pub(crate) fn check_instance_id(id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        InvalidIdReason::Empty
    } else if id.len() > MAX_INSTANCE_ID_LEN {
        InvalidIdReason::TooLong
    } else if id.chars().any(char::is_control) {
        InvalidIdReason::ControlCharacters
    } else {
        return Ok(());
    };
    Err(Error::InvalidInstanceId {
        id: id.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_child_ids_are_valid_distinct_and_reserved_whatever_the_parent_id() {
        let long_ascii = "p".repeat(MAX_INSTANCE_ID_LEN);
        // Multi-byte characters across the cut.
        let long_wide = "é€😀".repeat(40);
        let nested = generated_child_id(&long_wide, 7, 0, 1);
        let mut seen = std::collections::HashSet::new();
        for parent in ["p", "a~b", long_ascii.as_str(), long_wide.as_str(), &nested] {
            for (incarnation, generation, seq) in [
                (1, 0, 0),
                (1, 0, 1),
                (1, 1, 0),
                (2, 0, 0),
                (u64::MAX, u32::MAX, u64::MAX),
            ] {
                let id = generated_child_id(parent, incarnation, generation, seq);
                check_instance_id(&id).unwrap();
                assert!(check_user_instance_id(&id).is_err(), "{id}");
                assert!(seen.insert(id.clone()), "{id} generated twice");
            }
        }
        // Two long parents that share the part kept still get different ids.
        let other = format!("{}q", "p".repeat(MAX_INSTANCE_ID_LEN - 1));
        assert_ne!(
            generated_child_id(&long_ascii, 1, 0, 0),
            generated_child_id(&other, 1, 0, 0)
        );
        assert_eq!(generated_child_id("p", 0xab, 2, 3), "~p~ab.2.3");
        // Ids derived from a generated one, or starting with `~` otherwise, are a user's.
        for id in [
            "~p~ab.2.3-audit",
            "~p~ab.2.3~audit",
            "~tilde",
            "~~",
            "~p~ab.2",
            "~p~ab.2.3.4",
            "~p~xy.2.3",
            "~~ab.2.3",
        ] {
            check_user_instance_id(id).unwrap();
        }
    }

    #[test]
    fn each_refused_id_says_why() {
        let reason = |id: &str| match check_user_instance_id(id) {
            Err(Error::InvalidInstanceId { reason, .. }) => Some(reason),
            _ => None,
        };
        let long = "x".repeat(MAX_INSTANCE_ID_LEN + 1);
        assert_eq!(reason(""), Some(InvalidIdReason::Empty));
        assert_eq!(reason(&long), Some(InvalidIdReason::TooLong));
        assert_eq!(reason("a\nb"), Some(InvalidIdReason::ControlCharacters));
        assert_eq!(reason("~p~ab.2.3"), Some(InvalidIdReason::Reserved));
        assert_eq!(reason("@Account@alice"), Some(InvalidIdReason::EntityForm));
        assert_eq!(reason("@Account@"), Some(InvalidIdReason::EntityForm));
        // Not of the form: no name, or no second `@`.
        assert_eq!(reason("@@alice"), None);
        assert_eq!(reason("@alice"), None);
        assert_eq!(reason("a@b@c"), None);
        assert_eq!(reason(&"x".repeat(MAX_INSTANCE_ID_LEN)), None);
        assert!(
            InvalidIdReason::TooLong
                .to_string()
                .contains(&MAX_INSTANCE_ID_LEN.to_string())
        );
    }
}
