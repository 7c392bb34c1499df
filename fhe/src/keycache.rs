//! A node's server-key cache (§16.3): chunked uploads assembled in order, checked against
//! their SHA-256, decoded with a size limit, and kept decompressed with least-recently-used
//! eviction. Sizes are bounded before anything is allocated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quorate_crypto::tensor_digest::{Digest32, sha256};
use quorate_protocol::fhe::KeyChunk;
use quorate_protocol::messages::{ErrorCode, ErrorFrame};
use tfhe::ServerKey;

use crate::engine;

/// Uploads assembled at once; a new one evicts the oldest.
const MAX_UPLOADS: usize = 2;

struct Upload {
    total_len: u64,
    data: Vec<u8>,
    started: u64,
}

#[derive(Default)]
struct Inner {
    uploads: HashMap<Digest32, Upload>,
    ready: HashMap<Digest32, (Arc<ServerKey>, u64)>,
    tick: u64,
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

    /// A cached key, marking it used.
    pub fn get(&self, digest: &Digest32) -> Option<Arc<ServerKey>> {
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        g.ready.get_mut(digest).map(|(k, used)| {
            *used = tick;
            k.clone()
        })
    }

    /// Takes one chunk (§16.3): chunks must arrive in order, with one total length.
    pub fn chunk(&self, c: KeyChunk) -> Result<ChunkOutcome, ErrorFrame> {
        let mut g = self.lock();
        if g.ready.contains_key(&c.key_digest) {
            return Ok(ChunkOutcome::Ready);
        }
        g.tick += 1;
        let tick = g.tick;
        if c.offset == 0 {
            if g.uploads.len() >= MAX_UPLOADS && !g.uploads.contains_key(&c.key_digest) {
                let oldest = g
                    .uploads
                    .iter()
                    .min_by_key(|(_, u)| u.started)
                    .map(|(d, _)| *d);
                if let Some(d) = oldest {
                    g.uploads.remove(&d);
                }
            }
            g.uploads.insert(
                c.key_digest,
                Upload {
                    total_len: c.total_len,
                    data: Vec::new(),
                    started: tick,
                },
            );
        }
        let Some(up) = g.uploads.get_mut(&c.key_digest) else {
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
            g.uploads.remove(&c.key_digest);
            return Err(err(ErrorCode::InvalidInput, msg));
        }
        up.data.extend_from_slice(&c.data);
        if (up.data.len() as u64) < up.total_len {
            return Ok(ChunkOutcome::Partial(up.data.len() as u64));
        }
        let done = g.uploads.remove(&c.key_digest).map(|u| u.data);
        Ok(ChunkOutcome::Complete(done.unwrap_or_default()))
    }

    /// Checks, decodes and decompresses a completed upload, then caches it (blocking: seconds).
    pub fn install(&self, digest: Digest32, bytes: &[u8]) -> Result<(), ErrorFrame> {
        if sha256(bytes) != digest {
            return Err(err(
                ErrorCode::InvalidInput,
                "the uploaded server key does not hash to the digest it was announced with",
            ));
        }
        let compressed = engine::server_key_from_bytes(bytes)
            .map_err(|e| err(ErrorCode::InvalidInput, format!("{e:#}")))?;
        let key = Arc::new(compressed.decompress());
        let mut g = self.lock();
        while g.ready.len() >= self.max_keys {
            let lru = g.ready.iter().min_by_key(|(_, (_, t))| *t).map(|(d, _)| *d);
            match lru {
                Some(d) => g.ready.remove(&d),
                None => break,
            };
        }
        g.tick += 1;
        let tick = g.tick;
        g.ready.insert(digest, (key, tick));
        Ok(())
    }
}
