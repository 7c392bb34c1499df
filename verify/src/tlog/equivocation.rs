//! Convicting an equivocation bundle (§18.8.5).
//!
//! Only the node's own signatures convict. Every head and consistency receipt in a bundle
//! is a signed statement "my tree of `size` leaves has root `root`"; two such statements
//! with one size and two roots cannot both be true of an append-only log, and nobody but
//! the node can make them. Anything else — an unsigned proof that fails, two heads of
//! different sizes with no receipt, heads of two logs — proves nothing and convicts no one.

use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::Digest32;
use quorate_protocol::tlog::{EquivocationBundle, TlogError, TreeHead};

use super::{TlogVerifyError, verify_consistency_receipt, verify_tree_head};

/// The outcome of [`convict`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The bundle proves the log equivocated.
    Equivocated(Equivocation),
    /// The bundle proves nothing against the log.
    NotProven(NotProven),
}

/// What the node signed that cannot all be true (§18.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equivocation {
    /// The tree size both statements are about.
    pub size: u64,
    /// One signed root for it, and which document signed it.
    pub first: (Digest32, &'static str),
    /// The other signed root, and which document signed it.
    pub second: (Digest32, &'static str),
}

/// Why a bundle convicts no one (§18.8.5).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotProven {
    /// The bundle does not decode.
    Malformed(TlogError),
    /// The two heads belong to two different logs.
    DifferentLogs,
    /// A head or the consistency receipt is not validly signed by the log's key.
    NotSigned(TlogVerifyError),
    /// The heads are one tree: same size, same root.
    SameTree,
    /// The heads differ in size and the bundle has no consistency receipt: inconsistency
    /// cannot be shown offline.
    NoConsistencyReceipt,
    /// The consistency receipt links other sizes than the heads', and agrees with them.
    OtherSizes,
    /// The consistency receipt links the two heads: the log is consistent.
    Consistent,
}

/// Judges an equivocation bundle against the log's public key (§18.8.5).
pub fn convict(bundle: &[u8], key: &PublicKey) -> Verdict {
    match judge(bundle, key) {
        Ok(v) | Err(v) => v,
    }
}

fn judge(bundle: &[u8], key: &PublicKey) -> Result<Verdict, Verdict> {
    let not = |n: NotProven| Verdict::NotProven(n);
    let bundle = EquivocationBundle::from_cbor(bundle).map_err(|e| not(NotProven::Malformed(e)))?;
    let kid = |b: &[u8]| TreeHead::parse(b).map(|h| h.sign1.kid);
    let (kid_a, kid_b) = (kid(&bundle.head_a), kid(&bundle.head_b));
    match (kid_a, kid_b) {
        (Ok(a), Ok(b)) if a != b => return Err(not(NotProven::DifferentLogs)),
        (Err(e), _) | (_, Err(e)) => return Err(not(NotProven::Malformed(e))),
        _ => {}
    }
    let signed = |e: TlogVerifyError| not(NotProven::NotSigned(e));
    let a = verify_tree_head(&bundle.head_a, key).map_err(signed)?;
    let b = verify_tree_head(&bundle.head_b, key).map_err(signed)?;
    let (a, b) = if a.size <= b.size { (a, b) } else { (b, a) };
    let mut claims = vec![(a.size, a.root, "head"), (b.size, b.root, "head")];
    let consistency = match &bundle.consistency {
        Some(c) => Some(verify_consistency_receipt(c, key).map_err(signed)?),
        None => None,
    };
    if let Some(c) = &consistency {
        claims.push((c.old_size, c.old_root, "consistency receipt (older tree)"));
        claims.push((c.new_size, c.new_root, "consistency receipt (newer tree)"));
    }
    for (i, x) in claims.iter().enumerate() {
        for y in &claims[i + 1..] {
            if x.0 == y.0 && x.1 != y.1 {
                return Ok(Verdict::Equivocated(Equivocation {
                    size: x.0,
                    first: (x.1, x.2),
                    second: (y.1, y.2),
                }));
            }
        }
    }
    Ok(not(match consistency {
        _ if a.size == b.size => NotProven::SameTree,
        None => NotProven::NoConsistencyReceipt,
        Some(c) if (c.old_size, c.new_size) == (a.size, b.size) => NotProven::Consistent,
        Some(_) => NotProven::OtherSizes,
    }))
}
