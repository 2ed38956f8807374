//! The rules about values a replay reads differently from the first run: the clock,
//! randomness, fresh ids, the iteration order of hash collections, the environment of
//! the process, state shared outside the instance, and addresses.

use proc_macro2::{TokenStream, TokenTree};

use crate::site::{Hazard, Site};

/// Rule 1: the wall clock. Every replay reads a different time.
pub(super) fn check_wall_clock(site: &Site<'_>) -> Option<Hazard> {
    const NOW: &str = "use `ctx.now()`, which is recorded in history";
    match site {
        Site::Path(path)
            if path.last2_in(
                &[
                    "SystemTime",
                    "Instant",
                    "Utc",
                    "Local",
                    "Timestamp",
                    "Zoned",
                    "UtcDateTime",
                ],
                &["now", "today"],
            ) || path.last2_in(&["OffsetDateTime"], &["now_utc", "now_local"]) =>
        {
            path.hazard(1, "it returns a different time on every replay", NOW)
        }
        Site::Path(path) if path.last2_in(&["SystemTime", "Instant"], &["elapsed"]) => {
            path.hazard(1, "it reads the clock again on every replay", NOW)
        }
        Site::Method(method) if method.name == "elapsed" && method.args == 0 => Some(Hazard {
            rule: 1,
            what: ".elapsed()".into(),
            note: String::new(),
            why: "it reads the clock again on every replay",
            fix: "subtract two readings of `ctx.now()`, which is recorded in history",
        }),
        _ => None,
    }
}

/// Rule 2: randomness. Every replay draws other numbers.
pub(super) fn check_randomness(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    let rand_fn = path.root() == "rand"
        && path.last_in(&[
            "random",
            "rng",
            "random_range",
            "random_bool",
            "random_ratio",
            "random_iter",
            "fill",
        ]);
    let global = path.last_in(&[
        "thread_rng",
        "ThreadRng",
        "OsRng",
        "from_entropy",
        "from_os_rng",
    ]) || path.root() == "getrandom"
        || (path.root() == "fastrand" && !path.has("with_seed"));
    if !(rand_fn || global) {
        return None;
    }
    path.hazard(
        2,
        "it returns different values on every replay",
        "use `ctx.random()` (a `u64` recorded in history), or seed an rng with it",
    )
}

/// Rule 3: fresh ids. Every replay makes a new one.
pub(super) fn check_uuid(site: &Site<'_>) -> Option<Hazard> {
    const WHY: &str = "it makes a new id on every replay";
    const FIX: &str = "use `ctx.new_uuid()`, which is recorded in history";
    match site {
        Site::Path(path)
            if path.last2_in(
                &["Uuid"],
                &["new_v4", "new_v7", "now_v7", "now_v6", "now_v1"],
            ) || path.last2_in(&["Ulid"], &["new", "generate"]) =>
        {
            path.hazard(3, WHY, FIX)
        }
        Site::Macro(mac) if mac.last() == "nanoid" => mac.hazard(3, WHY, FIX),
        _ => None,
    }
}

/// Rule 8: hash collections. They iterate in a random order, different in every process.
pub(super) fn check_hash_collections(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    const WHY: &str = "it iterates in a random order, different in every process";
    if path
        .resolved
        .iter()
        .any(|s| ["HashMap", "AHashMap", "DashMap"].contains(&s.as_str()))
    {
        return path.hazard(8, WHY, "use `BTreeMap`");
    }
    if path
        .resolved
        .iter()
        .any(|s| ["HashSet", "AHashSet", "DashSet"].contains(&s.as_str()))
    {
        return path.hazard(8, WHY, "use `BTreeSet`");
    }
    if path.has("RandomState") {
        return path.hazard(8, WHY, "use `BTreeMap` or `BTreeSet`");
    }
    None
}

/// Rule 9: the environment and the process. A replay runs in another process.
pub(super) fn check_environment(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    let env = &path.resolved;
    let env_index = match env.first().map(String::as_str) {
        Some("env") => Some(0),
        Some("std" | "core") if env.get(1).is_some_and(|s| s == "env") => Some(1),
        _ => None,
    };
    let reads_env = env_index.is_some_and(|i| env.get(i + 1).is_some_and(|item| item != "consts"));
    if reads_env
        || path.pair(&["process"], &["id"])
        || path.pair(&["thread"], &["current"])
        || path.last_in(&["available_parallelism"])
        || [
            "dotenv",
            "dotenvy",
            "num_cpus",
            "gethostname",
            "hostname",
            "whoami",
            "sysinfo",
        ]
        .contains(&path.root())
    {
        return path.hazard(
            9,
            "it reads the environment of whichever process replays it",
            "pass it in the input or read it in an activity (or record it with `ctx.side_effect(|| ...)`)",
        );
    }
    None
}

/// Rule 12: shared mutable state. It differs between replays and between processes.
pub(super) fn check_shared_state(site: &Site<'_>) -> Option<Hazard> {
    const WHY: &str = "state shared outside the instance differs between replays and processes";
    const FIX: &str = "pass state through the input and results";
    let hazard = |what: String| {
        Some(Hazard {
            rule: 12,
            what,
            note: String::new(),
            why: WHY,
            fix: FIX,
        })
    };
    match site {
        Site::Static(item) if matches!(item.mutability, syn::StaticMutability::Mut(_)) => {
            hazard(format!("static mut {}", item.ident))
        }
        Site::Static(item) if interior_mutability(&item.ty) => {
            hazard(format!("static {}", item.ident))
        }
        Site::Macro(mac) if mac.last() == "thread_local" => mac.hazard(12, WHY, FIX),
        Site::Path(path) if path.resolved.iter().any(|s| is_atomic(s)) => path.hazard(12, WHY, FIX),
        Site::Method(method)
            if ATOMIC_METHODS.contains(&method.name.as_str())
                || (["load", "store", "swap"].contains(&method.name.as_str())
                    && method.atomic_ordering) =>
        {
            hazard(format!(".{}()", method.name))
        }
        _ => None,
    }
}

/// The read-modify-write methods of the atomic types (exactly: `fetch_orders()` is fine).
const ATOMIC_METHODS: [&str; 15] = [
    "fetch_add",
    "fetch_sub",
    "fetch_and",
    "fetch_nand",
    "fetch_or",
    "fetch_xor",
    "fetch_max",
    "fetch_min",
    "fetch_not",
    "fetch_neg",
    "fetch_update",
    "fetch_ptr_add",
    "compare_exchange",
    "compare_exchange_weak",
    "compare_and_swap",
];

/// `AtomicU64`, `AtomicBool`, ...: `Atomic` then an upper-case letter.
fn is_atomic(segment: &str) -> bool {
    segment
        .strip_prefix("Atomic")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_uppercase())
}

/// Whether a `static`'s type can change behind a shared reference.
fn interior_mutability(ty: &syn::Type) -> bool {
    fn scan(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|tree| match tree {
            TokenTree::Ident(ident) => {
                let name = ident.to_string();
                is_atomic(&name)
                    || ["Mutex", "RwLock", "Cell", "RefCell", "UnsafeCell"].contains(&name.as_str())
            }
            TokenTree::Group(group) => scan(group.stream()),
            _ => false,
        })
    }
    scan(quote::quote!(#ty))
}

/// Rule 13: addresses. They differ on every run.
pub(super) fn check_addresses(site: &Site<'_>) -> Option<Hazard> {
    const WHY: &str = "addresses differ on every run";
    const FIX: &str = "use stable ids";
    let hazard = |what: String| {
        Some(Hazard {
            rule: 13,
            what,
            note: String::new(),
            why: WHY,
            fix: FIX,
        })
    };
    const POINTER_METHODS: [&str; 5] = [
        "as_ptr",
        "as_mut_ptr",
        "addr",
        "expose_provenance",
        "expose_addr",
    ];
    match site {
        Site::Method(method) if POINTER_METHODS.contains(&method.name.as_str()) => {
            hazard(format!(".{}()", method.name))
        }
        Site::Path(path) if path.last_in(&POINTER_METHODS) => path.hazard(13, WHY, FIX),
        Site::Macro(mac) if ["addr_of", "addr_of_mut"].contains(&mac.last()) => {
            mac.hazard(13, WHY, FIX)
        }
        Site::Cast(cast) if matches!(*cast.ty, syn::Type::Ptr(_)) => hazard("as *const _".into()),
        Site::FormatString(text) if formats_pointer(text) => hazard("{:p}".into()),
        _ => None,
    }
}

/// Whether a format string has a `{...:p}` placeholder (also `{x:p}`, `{:#p}`, `{:>18p}`).
fn formats_pointer(text: &str) -> bool {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(escaped) = rest.strip_prefix('{') {
            rest = escaped;
            continue;
        }
        let Some(close) = rest.find('}') else { break };
        let placeholder = &rest[..close];
        if placeholder
            .split_once(':')
            .is_some_and(|(_, spec)| spec.ends_with('p'))
        {
            return true;
        }
        rest = &rest[close + 1..];
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pointer_placeholders() {
        assert!(formats_pointer("{:p}"));
        assert!(formats_pointer("at {x:#p}!"));
        assert!(formats_pointer("{0:>18p}"));
        assert!(!formats_pointer("{{:p}}"));
        assert!(!formats_pointer("{:?} {x} {}"));
        assert!(!formats_pointer("sleep 5s"));
    }
}
