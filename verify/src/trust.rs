//! The keys an auditor trusts (§6.1), each with a display name.

use std::collections::HashMap;

use quorate_crypto::{KeyId, PublicKey};

/// Trusted keys, with a display name each.
#[derive(Default)]
pub struct TrustStore {
    keys: HashMap<KeyId, (PublicKey, String)>,
}

impl TrustStore {
    /// Adds a key under a name.
    pub fn add(&mut self, key: PublicKey, name: impl Into<String>) {
        self.keys.insert(key.key_id(), (key, name.into()));
    }
    /// Looks a key up by id.
    pub fn get(&self, kid: &KeyId) -> Option<&(PublicKey, String)> {
        self.keys.get(kid)
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl TrustStore {
    /// The display name of a key id: its name when trusted, else the id itself.
    pub fn name(&self, kid: &KeyId) -> String {
        self.get(kid)
            .map_or_else(|| kid.to_string(), |(_, n)| n.clone())
    }

    /// The key of a trusted id, for the protocol's lookups.
    pub fn key(&self, kid: &KeyId) -> Option<PublicKey> {
        self.get(kid).map(|(k, _)| *k)
    }
}
