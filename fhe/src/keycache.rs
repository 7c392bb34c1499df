//! A node's server-key cache (§16.3): chunked uploads assembled in order, checked against
//! their SHA-256, decoded with a size limit, and kept decompressed with least-recently-used
//! eviction. Sizes are bounded before anything is allocated.
//!
//! Uploads and keys belong to the peer that uploaded them (§17.11): a peer's chunks never
//! restart or extend another peer's upload, and a peer makes room by evicting its own
//! uploads and keys first; another peer's only once they have been idle for
//! [`IDLE_UPLOAD_SECS`] or [`IDLE_KEY_SECS`]. Otherwise the new upload is refused as busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_protocol::fhe::KeyChunk;
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
use tfhe::ServerKey;

use crate::engine;

/// Uploads assembled at once across all peers.
const MAX_UPLOADS: usize = 2;
/// An upload no chunk extended for this long may be evicted by another peer.
pub const IDLE_UPLOAD_SECS: u64 = 60;
/// A key not used for this long may be evicted by another peer.
pub const IDLE_KEY_SECS: u64 = 600;

/// Who uploaded: the peer's Ed25519 public key bytes.
pub type Owner = [u8; 32];

struct Upload {
    total_len: u64,
    data: Vec<u8>,
    /// Unix seconds of the last chunk.
    touched: u64,
}

struct Ready {
    key: Arc<ServerKey>,
    owner: Owner,
    /// Unix seconds of the last use.
    used: u64,
}

#[derive(Default)]
struct Inner {
    uploads: HashMap<(Owner, Digest32), Upload>,
    ready: HashMap<Digest32, Ready>,
}

/// The cache, shared by all requests of a node.
pub struct KeyCache {
    inner: Mutex<Inner>,
    max_keys: usize,
}

/// Where an upload stands after a chunk.
pub enum ChunkOutcome {
    /// More bytes are expected.
    Partial(u64),
    /// The key was already cached.
    Ready,
    /// The last chunk arrived: the bytes, to be decoded off the async threads.
    Complete(Vec<u8>),
}

fn err(code: ErrorCode, m: impl Into<String>) -> ErrorFrame {
    ErrorFrame::new(code, m)
}

impl KeyCache {
    /// A cache keeping at most `max_keys` decompressed keys (about 172 MiB each).
    pub fn new(max_keys: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_keys: max_keys.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached key, marking it used at `now` (Unix seconds).
    pub fn get(&self, digest: &Digest32, now: u64) -> Option<Arc<ServerKey>> {
        let mut g = self.lock();
        g.ready.get_mut(digest).map(|r| {
            r.used = now;
            r.key.clone()
        })
    }

    /// Takes one chunk from `owner` at `now` (§16.3): chunks must arrive in order, with one
    /// total length; each peer has at most one upload in progress.
    pub fn chunk(&self, owner: Owner, c: KeyChunk, now: u64) -> Result<ChunkOutcome, ErrorFrame> {
        let mut g = self.lock();
        if g.ready.contains_key(&c.key_digest) {
            return Ok(ChunkOutcome::Ready);
        }
        let id = (owner, c.key_digest);
        if c.offset == 0 {
            // A peer's new upload replaces its own earlier one, never another peer's.
            g.uploads.retain(|(o, _), _| *o != owner);
            if g.uploads.len() >= MAX_UPLOADS {
                let idle = g
                    .uploads
                    .iter()
                    .filter(|(_, u)| now.saturating_sub(u.touched) >= IDLE_UPLOAD_SECS)
                    .min_by_key(|(_, u)| u.touched)
                    .map(|(k, _)| *k);
                match idle {
                    Some(k) => {
                        g.uploads.remove(&k);
                    }
                    None => {
                        return Err(err(
                            ErrorCode::Busy,
                            format!(
                                "{MAX_UPLOADS} server-key uploads of other peers are in progress; retry in a minute"
                            ),
                        ));
                    }
                }
            }
            g.uploads.insert(
                id,
                Upload {
                    total_len: c.total_len,
                    data: Vec::new(),
                    touched: now,
                },
            );
        }
        let Some(up) = g.uploads.get_mut(&id) else {
            return Err(err(
                ErrorCode::InvalidInput,
                "no upload of this server key is in progress: start at offset 0",
            ));
        };
        if up.total_len != c.total_len || up.data.len() as u64 != c.offset {
            let msg = format!(
                "server key chunk out of order: expected offset {} of {}, got {} of {}",
                up.data.len(),
                up.total_len,
                c.offset,
                c.total_len
            );
            g.uploads.remove(&id);
            return Err(err(ErrorCode::InvalidInput, msg));
        }
        up.data.extend_from_slice(&c.data);
        up.touched = now;
        if (up.data.len() as u64) < up.total_len {
            return Ok(ChunkOutcome::Partial(up.data.len() as u64));
        }
        let done = g.uploads.remove(&id).map(|u| u.data);
        Ok(ChunkOutcome::Complete(done.unwrap_or_default()))
    }

    /// Makes room for one more key of `owner` at `now`: its own least recently used key
    /// first, then another peer's idle one; refuses when neither exists.
    fn make_room(&self, g: &mut Inner, owner: &Owner, now: u64) -> Result<(), ErrorFrame> {
        while g.ready.len() >= self.max_keys {
            let own = g
                .ready
                .iter()
                .filter(|(_, r)| r.owner == *owner)
                .min_by_key(|(_, r)| r.used)
                .map(|(d, _)| *d);
            let idle = || {
                g.ready
                    .iter()
                    .filter(|(_, r)| now.saturating_sub(r.used) >= IDLE_KEY_SECS)
                    .min_by_key(|(_, r)| r.used)
                    .map(|(d, _)| *d)
            };
            match own.or_else(idle) {
                Some(d) => {
                    g.ready.remove(&d);
                }
                None => {
                    return Err(err(
                        ErrorCode::Busy,
                        format!(
                            "the node keeps {} server keys and all belong to other peers that used them in the last {IDLE_KEY_SECS} s",
                            self.max_keys
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks, decodes and decompresses a completed upload of `owner`, then caches it
    /// (blocking: seconds).
    pub fn install(
        &self,
        owner: Owner,
        digest: Digest32,
        bytes: &[u8],
        now: u64,
    ) -> Result<(), ErrorFrame> {
        if sha256(bytes) != digest {
            return Err(err(
                ErrorCode::InvalidInput,
                "the uploaded server key does not hash to the digest it was announced with",
            ));
        }
        let compressed = engine::server_key_from_bytes(bytes)
            .map_err(|e| err(ErrorCode::InvalidInput, format!("{e:#}")))?;
        self.make_room(&mut self.lock(), &owner, now)?;
        let key = Arc::new(compressed.decompress());
        let mut g = self.lock();
        self.make_room(&mut g, &owner, now)?;
        g.ready.insert(
            digest,
            Ready {
                key,
                owner,
                used: now,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chunk(digest: u8, offset: u64, data: &[u8], total: u64) -> KeyChunk {
        KeyChunk {
            key_digest: [digest; 32],
            total_len: total,
            offset,
            data: data.to_vec(),
        }
    }

    fn partial(r: Result<ChunkOutcome, ErrorFrame>) -> u64 {
        match r {
            Ok(ChunkOutcome::Partial(n)) => n,
            Ok(_) => panic!("not partial"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn attack_l4_a_peer_restarts_or_evicts_another_peers_upload() {
        let cache = KeyCache::new(2);
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        assert_eq!(partial(cache.chunk(a, chunk(7, 0, &[0; 10], 30), 100)), 10);
        // Peer B sends offset 0 of the same digest: it starts its own upload and leaves
        // A's in place.
        assert_eq!(partial(cache.chunk(b, chunk(7, 0, &[1; 5], 30), 101)), 5);
        assert_eq!(partial(cache.chunk(a, chunk(7, 10, &[0; 10], 30), 102)), 20);
        // A third peer cannot evict either upload while they are active...
        let e = cache.chunk(c, chunk(9, 0, &[0; 5], 30), 110).err().unwrap();
        assert_eq!(e.code, ErrorCode::Busy);
        assert_eq!(partial(cache.chunk(a, chunk(7, 20, &[0; 5], 30), 111)), 25);
        // ...only one idle for a minute (B's).
        assert_eq!(
            partial(cache.chunk(c, chunk(9, 0, &[0; 5], 30), 101 + IDLE_UPLOAD_SECS)),
            5
        );
        let e = cache.chunk(b, chunk(7, 5, &[1; 5], 30), 170).err().unwrap();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        // A's upload completes untouched.
        match cache.chunk(a, chunk(7, 25, &[0; 5], 30), 171).unwrap() {
            ChunkOutcome::Complete(bytes) => assert_eq!(bytes, vec![0; 30]),
            _ => panic!("A's upload did not complete"),
        }
    }
}
