//! A map of bounded size shared by every request: sharded behind mutexes so that requests
//! rarely wait on each other, and emptied a shard at a time when full, so that a flood of new
//! keys (client addresses, token ids) never grows memory without bound.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

/// A map shared by every request: sharded so that requests rarely wait for one another, and
/// bounded (a full shard is emptied before it takes a new key), so no client can make it grow.
pub struct Bounded<K, V> {
    shards: Vec<Mutex<HashMap<K, V>>>,
    hasher: std::hash::RandomState,
}

const SHARDS: usize = 16;
const PER_SHARD: usize = 1024;

impl<K, V> Default for Bounded<K, V> {
    fn default() -> Self {
        Bounded {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl<K: Hash + Eq, V: Clone> Bounded<K, V> {
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<HashMap<K, V>> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).lock().ok()?.get(key).cloned()
    }

    /// Sets `key`'s value (the key is copied only when it is new).
    pub fn put<Q>(&self, key: &Q, value: V)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let Ok(mut map) = self.shard(key).lock() else {
            return;
        };
        if let Some(slot) = map.get_mut(key) {
            *slot = value;
            return;
        }
        if map.len() >= PER_SHARD {
            map.clear();
        }
        map.insert(key.to_owned(), value);
    }

    /// Replaces `key`'s value by what `f` makes of the current one, under the shard's lock,
    /// and returns the new value.
    pub fn update(&self, key: &K, f: impl FnOnce(Option<&V>) -> V) -> Option<V>
    where
        K: Clone,
    {
        let mut map = self.shard(key).lock().ok()?;
        let value = f(map.get(key));
        if !map.contains_key(key) && map.len() >= PER_SHARD {
            map.clear();
        }
        map.insert(key.clone(), value.clone());
        Some(value)
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
