//! Promises of inclusion (§18.6): a node's signed word that every receipt it signs within a
//! window of time will be in a tree it signs a statement about no later than a deadline.
//! One promise covers every reply of its window, so a node signs one per window, not one
//! per receipt.

use ciborium::value::Value;
use quorate_crypto::{KeyId, SecretKey};

use super::signed_doc::{SignedDoc, encode_map, parse_map};
use super::{MAX_PROMISE_WINDOW_SECS, PROMISE_CONTENT_TYPE, TlogError};
use crate::cbor::read;
use crate::cose;

/// The payload of a promise (§18.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promise {
    /// The log's id: the signing node's key id.
    pub log_id: KeyId,
    /// Start of the window, Unix seconds: receipts issued at or after it are covered.
    pub from: u64,
    /// End of the window, Unix seconds, exclusive.
    pub until: u64,
    /// Unix seconds by which every covered receipt is in a tree the node signed.
    pub deadline: u64,
}

impl Promise {
    /// Deterministic CBOR of the §18.6 payload map.
    pub fn to_cbor(&self) -> Result<Vec<u8>, TlogError> {
        encode_map(vec![
            Value::Bytes(self.log_id.0.to_vec()),
            read::int(self.from),
            read::int(self.until),
            read::int(self.deadline),
        ])
    }

    /// Signs the promise with the log's key, whose id must be the log id.
    pub fn sign(&self, key: &SecretKey) -> Result<Vec<u8>, TlogError> {
        if key.public_key().key_id() != self.log_id {
            return Err(TlogError::Header(
                "a promise is signed by the key whose id is its log id".into(),
            ));
        }
        check_window(self.from, self.until, self.deadline)?;
        Ok(cose::sign(self.to_cbor()?, PROMISE_CONTENT_TYPE, key)?)
    }

    /// Parses a promise: the §4.1 profile with the promise content type, exactly fields 1
    /// to 5, version 1, log id = kid, `from < until ≤ deadline ≤ from + 3600`. The signature
    /// is not checked here.
    pub fn parse(bytes: &[u8]) -> Result<SignedDoc<Promise>, TlogError> {
        let (sign1, f) = parse_map(bytes, PROMISE_CONTENT_TYPE, 5)?;
        let from = read::uint(&f[2], "window start")?;
        let until = read::uint(&f[3], "window end")?;
        let deadline = read::uint(&f[4], "deadline")?;
        check_window(from, until, deadline)?;
        let body = Promise {
            log_id: sign1.kid,
            from,
            until,
            deadline,
        };
        Ok(SignedDoc { sign1, body })
    }

    /// Whether a receipt issued at `issued_at` falls in the window.
    pub fn covers(&self, issued_at: u64) -> bool {
        (self.from..self.until).contains(&issued_at)
    }
}

fn check_window(from: u64, until: u64, deadline: u64) -> Result<(), TlogError> {
    let within = deadline
        .checked_sub(from)
        .is_some_and(|w| w <= MAX_PROMISE_WINDOW_SECS);
    if from < until && until <= deadline && within {
        Ok(())
    } else {
        Err(TlogError::Field(format!(
            "a promise needs start < end ≤ deadline ≤ start + {MAX_PROMISE_WINDOW_SECS} s, not {from}, {until}, {deadline}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds_the_window() {
        let key = SecretKey::from_seed(&[3; 32]);
        let p = Promise {
            log_id: key.public_key().key_id(),
            from: 100,
            until: 105,
            deadline: 112,
        };
        let parsed = Promise::parse(&p.sign(&key).unwrap()).unwrap();
        assert_eq!(parsed.body, p);
        parsed.sign1.verify(&key.public_key()).unwrap();
        assert!(p.covers(100) && p.covers(104) && !p.covers(105) && !p.covers(99));
        for (from, until, deadline) in [
            (100, 100, 110),
            (100, 105, 104),
            (100, 105, 100 + MAX_PROMISE_WINDOW_SECS + 1),
            (105, 100, 110),
        ] {
            let bad = Promise {
                from,
                until,
                deadline,
                ..p
            };
            assert!(bad.sign(&key).is_err());
            let forged = cose::sign(bad.to_cbor().unwrap(), PROMISE_CONTENT_TYPE, &key).unwrap();
            assert!(matches!(Promise::parse(&forged), Err(TlogError::Field(_))));
        }
    }
}
