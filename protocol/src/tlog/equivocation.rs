//! Equivocation bundles (§18.7): two signed tree heads of one log and, when their sizes
//! differ, the node's consistency receipt between them. Only the node's own signed
//! statements can convict it (§18.8.5); this module only encodes and decodes.

use ciborium::value::Value;

use super::{ConsistencyReceipt, MAX_BUNDLE_LEN, TLOG_VERSION, TlogError, TreeHead};
use crate::cbor::{self, read};

/// An equivocation bundle as carried (§18.7). The documents are kept as their bytes, since
/// their signatures are what convicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EquivocationBundle {
    /// The first signed tree head (field 2).
    pub head_a: Vec<u8>,
    /// The second signed tree head (field 3).
    pub head_b: Vec<u8>,
    /// The node's consistency receipt between the two sizes (field 4), if any.
    pub consistency: Option<Vec<u8>>,
}

impl EquivocationBundle {
    /// Deterministic CBOR of the bundle.
    pub fn to_cbor(&self) -> Result<Vec<u8>, TlogError> {
        let mut m = vec![
            (read::int(1), read::int(TLOG_VERSION)),
            (read::int(2), Value::Bytes(self.head_a.clone())),
            (read::int(3), Value::Bytes(self.head_b.clone())),
        ];
        if let Some(c) = &self.consistency {
            m.push((read::int(4), Value::Bytes(c.clone())));
        }
        Ok(cbor::encode(&Value::Map(m))?)
    }

    /// Strict decoding (§18.8.5 step 1): every embedded document must itself decode.
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, TlogError> {
        let value = cbor::decode_deterministic(bytes, MAX_BUNDLE_LEN)?;
        let entries = read::int_map(&value, "equivocation bundle", &[1, 2, 3, 4])?;
        let get = |k: u64| entries.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let need =
            |k: u64| get(k).ok_or_else(|| TlogError::Field(format!("bundle field {k} is missing")));
        let version = read::uint(need(1)?, "version")?;
        if version != TLOG_VERSION {
            return Err(TlogError::Version(version));
        }
        let doc = |v: &Value, field: &'static str| -> Result<Vec<u8>, TlogError> {
            Ok(read::bytes_range(v, field, 1, MAX_BUNDLE_LEN)?.to_vec())
        };
        let bundle = Self {
            head_a: doc(need(2)?, "head a")?,
            head_b: doc(need(3)?, "head b")?,
            consistency: get(4).map(|v| doc(v, "consistency receipt")).transpose()?,
        };
        TreeHead::parse(&bundle.head_a)?;
        TreeHead::parse(&bundle.head_b)?;
        if let Some(c) = &bundle.consistency {
            ConsistencyReceipt::parse(c)?;
        }
        Ok(bundle)
    }
}
