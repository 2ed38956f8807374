//! [`Fnv`]: the hasher of the maps the commit path and the lease table use.

use std::collections::HashMap;

/// FNV-1a as a [`std::hash::Hasher`], for the maps of the commit path: their keys are
/// short (ids, store keys) and hashed by the thousand per batch, where std's SipHash
/// costs several times more; a map lives for one call or holds the store's own ids.
#[derive(Clone, Copy)]
pub(crate) struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// A `HashMap` hashed with [`Fnv`].
pub(crate) type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// A `HashSet` hashed with [`Fnv`].
pub(crate) type FnvSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<Fnv>>;
