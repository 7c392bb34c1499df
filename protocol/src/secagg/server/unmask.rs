//! The server's final unmasking (§9.5.5): Shamir reconstruction of the secrets of survivors
//! and dropped clients, key agreement with the dropped, and mask regeneration on `threads`
//! threads.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use quorate_crypto::secagg::ka::{KaPublicKey, KaSecretKey};
use quorate_crypto::secagg::kdf::{self, PrgSeed};
use quorate_crypto::secagg::prg::{self, Sign};
use quorate_crypto::secagg::shamir::{Interpolator, SecretScalar, Share};

use crate::secagg::messages::ShareValue;

use super::{AbortReason, Aggregate, Server, Unmasked};

/// A worker's accumulator, keystream bytes and key agreements.
type WorkerResult = (Vec<u64>, u64, u64);

/// Mask tasks a worker takes at once when regenerating masks: large enough that the
/// accumulator pass per batch is cheap, small enough (a few milliseconds of work) that
/// the workers finish together.
const REGENERATION_BATCH: usize = 64;
/// Fewest secrets worth a reconstruction thread of their own: one interpolation from cached
/// Lagrange coefficients costs about a microsecond, and spawning a thread tens of them.
const SECRETS_PER_THREAD: usize = 256;

/// The workers worth starting for `tasks` tasks when each should get at least `per_thread`
/// of them, up to `threads`: a small job (a five-member ensemble) runs on the calling thread
/// instead of paying for threads that would have nothing to do.
fn workers(threads: usize, tasks: usize, per_thread: usize) -> usize {
    threads.min(tasks.div_ceil(per_thread)).max(1)
}

/// One mask the server regenerates: a survivor's self mask, or the pairwise mask between a
/// dropped client (whose mask key was reconstructed) and a survivor.
enum Task {
    SelfMask(PrgSeed),
    Pairwise {
        sk: Arc<KaSecretKey>,
        dropped: u32,
        survivor: u32,
        pk: KaPublicKey,
    },
}

/// The PRG seed and sign of one regeneration task; counts the key agreement it performs.
fn task_seed(
    t: &Task,
    digest: &[u8; 32],
    agreements: &mut u64,
) -> Result<(PrgSeed, Sign), AbortReason> {
    match t {
        Task::SelfMask(seed) => Ok((PrgSeed::from_bytes(*seed.as_bytes()), Sign::Subtract)),
        Task::Pairwise {
            sk,
            dropped,
            survivor,
            pk,
        } => {
            let shared = sk
                .agree(pk)
                .map_err(|e| AbortReason::Crypto(e.to_string()))?;
            *agreements += 1;
            // The survivor added +mask if survivor < dropped, −mask otherwise.
            let sign = if survivor < dropped {
                Sign::Subtract
            } else {
                Sign::Add
            };
            Ok((
                kdf::pairwise_mask_seed(shared.as_bytes(), digest, *survivor, *dropped),
                sign,
            ))
        }
    }
}

impl Server {
    /// Reconstructs every needed secret from exactly `t` shares (the holders with the
    /// smallest indices), checking each against its public key or commitment.
    fn reconstruct_all(
        &self,
        pick: impl Fn(&Unmasked) -> &[(u32, ShareValue)] + Sync,
        owners: &[u32],
    ) -> Result<Vec<SecretScalar>, AbortReason> {
        let t = self.cfg.threshold;
        // owner -> (holder x, share)
        let mut per_owner: HashMap<u32, Vec<(u32, &ShareValue)>> =
            owners.iter().map(|&o| (o, Vec::new())).collect();
        for (w, un) in &self.unmasked {
            for (o, s) in pick(un) {
                if let Some(v) = per_owner.get_mut(o) {
                    v.push((w + 1, s));
                }
            }
        }
        let mut jobs = Vec::with_capacity(owners.len());
        for &o in owners {
            let v = per_owner.remove(&o).unwrap_or_default();
            if v.len() < t {
                return Err(AbortReason::TooFewShares {
                    owner: o,
                    have: v.len(),
                    need: t,
                });
            }
            jobs.push((o, v.into_iter().take(t).collect::<Vec<_>>()));
        }
        let threads = workers(self.threads, jobs.len(), SECRETS_PER_THREAD);
        let chunk = jobs.len().div_ceil(threads).max(1);
        let results: Vec<Result<Vec<SecretScalar>, AbortReason>> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| {
                    worker(s, threads == 1, move || {
                        let mut cache: HashMap<Vec<u32>, Interpolator> = HashMap::new();
                        let mut out = Vec::with_capacity(part.len());
                        for (_, shares) in part {
                            let xs: Vec<u32> = shares.iter().map(|(x, _)| *x).collect();
                            let ys: Vec<Share> = shares
                                .iter()
                                .map(|(x, v)| Share::from_bytes(*x, &v.0))
                                .collect::<Result<_, _>>()
                                .map_err(|e| AbortReason::Crypto(e.to_string()))?;
                            if !cache.contains_key(&xs) {
                                let i = Interpolator::new(&xs)
                                    .map_err(|e| AbortReason::Crypto(e.to_string()))?;
                                cache.insert(xs.clone(), i);
                            }
                            let interp = cache
                                .get(&xs)
                                .ok_or(AbortReason::Crypto("interpolator".into()))?;
                            let refs: Vec<&Share> = ys.iter().collect();
                            out.push(
                                interp
                                    .interpolate(&refs)
                                    .map_err(|e| AbortReason::Crypto(e.to_string()))?,
                            );
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(AbortReason::Crypto("worker panicked".into())))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(owners.len());
        for r in results {
            out.extend(r?);
        }
        Ok(out)
    }

    /// The final unmasking (§9.5.5, server side).
    pub(super) fn unmask(&mut self) -> Result<Aggregate, AbortReason> {
        let graph = self
            .graph
            .clone()
            .ok_or(AbortReason::Crypto("no graph".into()))?;
        let u3 = self.u3.clone();
        let dropped2: Vec<u32> = self
            .shared
            .keys()
            .copied()
            .filter(|v| u3.binary_search(v).is_err())
            .collect();
        let self_secrets = self.reconstruct_all(|u| &u.self_mask, &u3)?;
        let mask_secrets = self.reconstruct_all(|u| &u.mask_key, &dropped2)?;
        let mut tasks = Vec::new();
        for (o, secret) in u3.iter().zip(&self_secrets) {
            let sb = secret.to_bytes();
            let commitment = self.shared.get(o).map(|s| s.commitment).unwrap_or([0; 32]);
            if kdf::self_mask_commitment(&sb, &self.digest, *o) != commitment {
                return Err(AbortReason::ReconstructionMismatch {
                    owner: *o,
                    what: "self-mask commitment",
                });
            }
            tasks.push(Task::SelfMask(kdf::self_mask_seed(&sb, &self.digest, *o)));
        }
        let mut keygens = 0;
        for (d, secret) in dropped2.iter().zip(&mask_secrets) {
            let sk = KaSecretKey::from_bytes(&kdf::mask_key_private(
                &secret.to_bytes(),
                &self.digest,
                *d,
            ));
            keygens += 1;
            if Some(sk.public_key()) != self.advertised.get(d).map(|a| a.mask_pk) {
                return Err(AbortReason::ReconstructionMismatch {
                    owner: *d,
                    what: "mask public key",
                });
            }
            let sk = Arc::new(sk);
            for u in graph.neighbours(*d) {
                if u3.binary_search(&u).is_ok()
                    && let Some(a) = self.advertised.get(&u)
                {
                    tasks.push(Task::Pairwise {
                        sk: sk.clone(),
                        dropped: *d,
                        survivor: u,
                        pk: a.mask_pk,
                    });
                }
            }
        }
        let bits = self.cfg.modulus_bits;
        let len = self.cfg.vector_len;
        let digest = self.digest;
        // A worker takes batches of REGENERATION_BATCH tasks: more workers than batches would
        // find none.
        let threads = workers(self.threads, tasks.len(), REGENERATION_BATCH);
        // Workers take batches of tasks from a shared cursor rather than a fixed share, so a
        // core that is busy with something else slows its worker without holding up the
        // round: the others take over the remaining batches. The sum is the same whatever
        // the split (addition mod 2^64 commutes).
        let cursor = AtomicUsize::new(0);
        let results: Vec<Result<WorkerResult, AbortReason>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    worker(s, threads == 1, || {
                        let mut acc = vec![0u64; len];
                        let (mut bytes, mut agreements) = (0u64, 0u64);
                        loop {
                            let from = cursor.fetch_add(REGENERATION_BATCH, Ordering::Relaxed);
                            let Some(batch) = tasks.get(from..) else {
                                break;
                            };
                            let batch = &batch[..batch.len().min(REGENERATION_BATCH)];
                            if batch.is_empty() {
                                break;
                            }
                            let mut seeds = Vec::with_capacity(batch.len());
                            for t in batch {
                                seeds.push(task_seed(t, &digest, &mut agreements)?);
                            }
                            bytes += prg::accumulate_many(&seeds, &mut acc, bits)
                                .map_err(|e| AbortReason::Crypto(e.to_string()))?;
                        }
                        Ok((acc, bytes, agreements))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(AbortReason::Crypto("worker panicked".into())))
                })
                .collect()
        });
        let mut sum = std::mem::take(&mut self.sum);
        for r in results {
            let (acc, bytes, agreements) = r?;
            for (s, a) in sum.iter_mut().zip(&acc) {
                *s = s.wrapping_add(*a);
            }
            self.counters.mask_bytes += bytes;
            self.counters.x25519_agreements += agreements;
        }
        self.counters.masks += tasks.len() as u64;
        self.counters.x25519_keygens += keygens;
        prg::reduce(&mut sum, bits);
        let dropped = (0..self.cfg.clients() as u32)
            .filter(|v| u3.binary_search(v).is_err())
            .collect();
        Ok(Aggregate {
            sum,
            contributors: u3,
            dropped,
        })
    }
}

/// A scoped worker thread, or, when there is one worker, its result computed on this thread:
/// wasm32, where the offline verifier replays transcripts (§15.5) in a browser, cannot spawn
/// threads.
enum Worker<'scope, T> {
    Thread(std::thread::ScopedJoinHandle<'scope, T>),
    Done(T),
}

impl<T> Worker<'_, T> {
    fn join(self) -> std::thread::Result<T> {
        match self {
            Worker::Thread(h) => h.join(),
            Worker::Done(t) => Ok(t),
        }
    }
}

fn worker<'scope, T: Send + 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    here: bool,
    f: impl FnOnce() -> T + Send + 'scope,
) -> Worker<'scope, T> {
    if here {
        Worker::Done(f())
    } else {
        Worker::Thread(s.spawn(f))
    }
}

#[cfg(test)]
mod tests {
    use super::workers;

    /// Threads go only to work that fills them; there is always one worker.
    #[test]
    fn workers_are_started_only_for_work_that_fills_them() {
        assert_eq!(workers(2, 5, 64), 1);
        assert_eq!(workers(2, 0, 64), 1);
        assert_eq!(workers(2, 64, 64), 1);
        assert_eq!(workers(2, 65, 64), 2);
        assert_eq!(workers(8, 400, 64), 7);
        assert_eq!(workers(1, 10_000, 64), 1);
        assert_eq!(workers(0, 10_000, 64), 1);
    }
}
