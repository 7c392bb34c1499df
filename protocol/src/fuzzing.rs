//! Entry points for fuzz targets (`fuzz/`) and for the corpus replay test, so both drive
//! exactly the same code. Each asserts the round-trip property of what it decodes.

use crate::{batch_receipt, receipt, tensor_file};

/// Receipt decoding (§4, §5): anything that parses re-encodes to the same payload bytes, and
/// checking the signature never panics.
pub fn receipt(data: &[u8]) {
    if let Ok(r) = batch_receipt::parse_any(data) {
        let payload = r.payload();
        let again = payload
            .to_cbor()
            .ok()
            .and_then(|b| receipt::ReceiptPayload::from_cbor(&b).ok());
        assert_eq!(again.as_ref(), Some(payload), "payload does not round-trip");
        let key = quorate_crypto::SecretKey::from_seed(&[1; 32]).public_key();
        let _ = r.sign1().verify(&key);
    }
}

/// `.npy` decoding (§3.5): anything that parses writes back to a file that parses the same.
pub fn tensor_npy(data: &[u8]) {
    if let Ok(t) = tensor_file::parse_npy(data, "x") {
        let again = tensor_file::parse_npy(&tensor_file::to_npy(&t), "x");
        assert_eq!(again.as_ref(), Ok(&t), "npy does not round-trip");
    }
}

/// JSON tensor-list decoding (§3.5): anything that parses writes back to JSON that parses the same.
pub fn tensor_json(data: &[u8]) {
    if let Ok(list) = tensor_file::parse_json(data) {
        let doc = tensor_file::tensors_json(list.iter().map(|r| (&r.tensor, r.salt.as_ref())));
        let again = tensor_file::parse_json(doc.to_string().as_bytes());
        assert_eq!(again.as_ref(), Ok(&list), "tensor JSON does not round-trip");
    }
}
