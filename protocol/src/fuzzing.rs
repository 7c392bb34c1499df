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

/// Roster decoding (§10): `data` is tried both as a signed roster (every check up to the
/// signature, which a fuzzer cannot forge) and as the signed content itself, so the content
/// decoder is reached without a signature. Anything that decodes re-encodes to exactly the
/// same bytes (it was deterministic CBOR) and decodes again to the same roster.
pub fn roster(data: &[u8]) {
    use crate::roster::Roster;
    let authority = quorate_crypto::SecretKey::from_seed(&[1; 32]).public_key();
    let _ = Roster::verify(data, &authority, 1_763_900_000);
    if let Ok(r) = Roster::from_cbor(data) {
        let again = r.to_cbor().ok();
        assert_eq!(
            again.as_deref(),
            Some(data),
            "roster does not re-encode to its bytes"
        );
        let decoded = again.as_deref().map(Roster::from_cbor);
        assert_eq!(decoded, Some(Ok(r)), "roster does not round-trip");
    }
}

/// Mesh message decoding (§11): `data` is decoded as a request and as a response; anything
/// that decodes encodes to bytes that decode to the same message. Those bytes are `data`
/// itself, except for an error response with a code this version does not know, which
/// decodes as `internal` (§11.5).
pub fn messages(data: &[u8]) {
    use crate::messages::{ErrorCode, Request, Response};
    if let Ok(r) = Request::decode(data) {
        let bytes = r.encode().ok();
        assert_eq!(bytes.as_deref(), Some(data), "request does not re-encode");
        let again = bytes.and_then(|b| Request::decode(&b).ok());
        assert_eq!(again.as_ref(), Some(&r), "request does not round-trip");
    }
    if let Ok(r) = Response::decode(data) {
        let bytes = r.encode().ok();
        let unknown_code = matches!(&r, Response::Error(e) if e.code == ErrorCode::Internal);
        if !unknown_code {
            assert_eq!(bytes.as_deref(), Some(data), "response does not re-encode");
        }
        let again = bytes.and_then(|b| Response::decode(&b).ok());
        assert_eq!(again.as_ref(), Some(&r), "response does not round-trip");
    }
}

/// Encrypted-inference messages (§16): anything that decodes re-encodes to the same bytes, and
/// checking a decoded result's receipt never panics.
pub fn fhe_messages(data: &[u8]) {
    use crate::fhe::{Expected, FheRequest, FheResponse, check_receipt};
    use crate::messages::{Request, Response};
    if let Ok(Request::Fhe(r)) = Request::decode(data) {
        let again = Request::Fhe(r.clone()).encode().ok();
        assert_eq!(again.as_deref(), Some(data), "request does not re-encode");
        if let FheRequest::KeyChunk(c) = &r {
            assert!(
                c.offset + c.data.len() as u64 <= c.total_len,
                "chunk past the end"
            );
        }
    }
    if let Ok(Response::Fhe(r)) = Response::decode(data) {
        let again = Response::Fhe(r.clone()).encode().ok();
        assert_eq!(again.as_deref(), Some(data), "response does not re-encode");
        if let FheResponse::Result { receipt, .. } = &r {
            let key = quorate_crypto::SecretKey::from_seed(&[1; 32]).public_key();
            let expected = Expected {
                job_id: &[0; 16],
                nonce: &[0; 16],
                model: [0; 32],
                inputs: vec![],
                outputs: vec![],
            };
            let _ = check_receipt(receipt, &expected, &key);
        }
    }
}
