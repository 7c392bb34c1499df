//! Signatures a process verified last, so that one signature shared by many documents is
//! checked once: a node's statement over one group commit's tree (§18.11.3) and a node's
//! batch root over one group's receipts (§12.4.2) each reach a client in every reply of
//! the group. An entry is the digest of the key, the signed bytes and the signature
//! together (lengths included), so only a verification with exactly those inputs is skipped.

use std::collections::VecDeque;
use std::sync::Mutex;

use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_crypto::{IdentityError, PublicKey};

/// The last `capacity` signatures verified.
pub struct SignatureCache {
    recent: Mutex<VecDeque<Digest32>>,
    capacity: usize,
}

impl SignatureCache {
    /// A cache of the last `capacity` signatures verified.
    pub fn new(capacity: usize) -> Self {
        Self {
            recent: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
        }
    }

    /// Verifies `signature` over `message` under `key` as [`PublicKey::verify`] does,
    /// skipping the check when exactly these three verified lately.
    pub fn verify(
        &self,
        key: &PublicKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), IdentityError> {
        let d = entry(key, message, signature);
        if self.contains(&d) {
            return Ok(());
        }
        key.verify(message, signature)?;
        self.insert(d);
        Ok(())
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.recent.lock().map_or(0, |r| r.len())
    }

    fn contains(&self, d: &Digest32) -> bool {
        self.recent
            .lock()
            .is_ok_and(|r| r.iter().rev().any(|x| x == d))
    }

    fn insert(&self, d: Digest32) {
        if let Ok(mut r) = self.recent.lock() {
            if r.len() >= self.capacity {
                r.pop_front();
            }
            r.push_back(d);
        }
    }
}

/// SHA-256 over the key, the message's length, the message and the signature: the length
/// keeps a message and signature from passing for another split of the same bytes.
fn entry(key: &PublicKey, message: &[u8], signature: &[u8]) -> Digest32 {
    let mut all = Vec::with_capacity(40 + message.len() + signature.len());
    all.extend_from_slice(&key.to_bytes());
    all.extend_from_slice(&(message.len() as u64).to_be_bytes());
    all.extend_from_slice(message);
    all.extend_from_slice(signature);
    sha256(&all)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use quorate_crypto::SecretKey;

    /// A cached verification skips only exactly that check: a forged signature, another
    /// key, another message, or the same bytes split differently between message and
    /// signature still fail; a cache full of others forgets the oldest.
    #[test]
    fn only_an_identical_verification_is_skipped() {
        let key = SecretKey::from_seed(&[3; 32]);
        let public = key.public_key();
        let other = SecretKey::from_seed(&[4; 32]).public_key();
        let msg = b"batch root".to_vec();
        let sig = key.sign(&msg).0.to_vec();
        let cache = SignatureCache::new(2);
        cache.verify(&public, &msg, &sig).unwrap();
        cache.verify(&public, &msg, &sig).unwrap();
        assert!(cache.verify(&other, &msg, &sig).is_err());
        assert!(cache.verify(&public, b"another root", &sig).is_err());
        let mut forged = sig.clone();
        forged[3] ^= 1;
        assert!(cache.verify(&public, &msg, &forged).is_err());
        let mut longer = msg.clone();
        longer.push(sig[0]);
        assert!(cache.verify(&public, &longer, &sig[1..]).is_err());
        for m in [b"one".as_slice(), b"two"] {
            cache.verify(&public, m, &key.sign(m).0).unwrap();
        }
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains(&entry(&public, &msg, &sig)));
    }
}
