//! The keys an auditor trusts (§6.1), each with a display name, and the mesh governance
//! (§10.6) under which evidence bundles may convict.

use std::collections::HashMap;

use quorate_crypto::{KeyId, PublicKey};
use quorate_protocol::governance::Governance;

/// Trusted keys, with a display name each, and the governance evidence is judged under.
#[derive(Default)]
pub struct TrustStore {
    keys: HashMap<KeyId, (PublicKey, String)>,
    /// The roster's governance, when the keys come from a roster.
    governance: Option<Governance>,
}

impl TrustStore {
    /// Judges evidence under `governance`, the governance signed into the roster the keys
    /// come from (§10.6).
    pub fn set_governance(&mut self, governance: Governance) {
        self.governance = Some(governance);
    }
    /// The governance evidence is judged under: the roster's, or [`Governance::default`]
    /// when the keys were given without a roster.
    pub fn governance(&self) -> Governance {
        self.governance.clone().unwrap_or_default()
    }
    /// Whether the governance comes from a roster (false: the default governance applies).
    pub fn governance_from_roster(&self) -> bool {
        self.governance.is_some()
    }
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
