//! The host's in-memory table of loaded components, by digest: a component
//! is read from the cache (or compiled), mapped and linked once per
//! process, and every later load of the same bytes takes it from here.
//!
//! What the table holds depends on the component's bytes alone (the
//! compiled code, its `InstancePre` on the host's one linker, its imports,
//! what `describe` returned under given limits), never on a policy: every
//! load still reads the plugin file and checks its sha256 against the pin
//! first (the digest is the key), and checks and sets up that policy's
//! grants and limits after. Bounded: at most `capacity` components, the
//! least recently used evicted first, so a long-running agent does not
//! grow with the plugins it has seen.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

pub(crate) struct Table<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    /// Bumped on every use; an entry's stamp is its last use.
    clock: u64,
    entries: HashMap<String, (u64, V)>,
}

impl<V: Clone> Table<V> {
    /// `capacity` 0: nothing is kept.
    pub fn new(capacity: usize) -> Table<V> {
        Table {
            capacity,
            inner: Mutex::new(Inner {
                clock: 0,
                entries: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // A panic while holding the lock cannot leave an entry half made
        // (each operation is one map call), so a poisoned table is usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for this digest, marked used.
    pub fn get(&self, digest: &str) -> Option<V> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.entries.get_mut(digest).map(|(used, v)| {
            *used = now;
            v.clone()
        })
    }

    /// Keeps `value` for `digest`, evicting the least recently used entries
    /// beyond the capacity.
    pub fn insert(&self, digest: &str, value: V) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        inner.entries.insert(digest.to_string(), (now, value));
        while inner.entries.len() > self.capacity {
            let Some(oldest) = inner
                .entries
                .iter()
                .min_by_key(|(_, (used, _))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            inner.entries.remove(&oldest);
        }
    }

    /// Changes the entry for `digest` in place, if it is still there.
    pub fn update(&self, digest: &str, f: impl FnOnce(&mut V)) {
        if let Some((_, v)) = self.lock().entries.get_mut(digest) {
            f(v);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.lock().entries.contains_key(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let t = Table::new(2);
        t.insert("a", 1);
        t.insert("b", 2);
        assert_eq!(t.get("a"), Some(1));
        t.insert("c", 3);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("b"), None);
        assert_eq!(t.get("a"), Some(1));
        assert_eq!(t.get("c"), Some(3));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let t = Table::new(0);
        t.insert("a", 1);
        assert_eq!(t.get("a"), None);
        assert_eq!(t.len(), 0);
    }
}
