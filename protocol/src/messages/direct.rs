//! The two messages of the hot path, an inference request and its response (§11.3), written
//! head by head in deterministic CBOR (§1.3, §11.1): their fields are numbered in order, so
//! no map needs sorting, and tensors and receipts are copied once, into the output, instead
//! of into a value tree and again into its canonical copy. Tests hold both equal to the
//! generic encoder.

use quorate_crypto::tensor_digest::{Digest32, SALT_LEN};

use super::{InferRequest, InferResponse, ty};
use crate::cbor::write;
use crate::tensor::Tensor;

/// An infer request, §11.3.
pub(super) fn infer_request(r: &InferRequest) -> Vec<u8> {
    let data: usize = r.inputs.iter().map(|t| t.data().len() + 64).sum();
    let mut out = Vec::with_capacity(256 + data);
    write::map(&mut out, 9);
    write::uint(&mut out, 1);
    write::uint(&mut out, ty::INFER);
    write::uint(&mut out, 2);
    write::bytes(&mut out, &r.job_id);
    write::uint(&mut out, 3);
    write::bytes(&mut out, &r.nonce);
    write::uint(&mut out, 4);
    write::uint(&mut out, r.kind.code());
    write::uint(&mut out, 5);
    write::bytes(&mut out, &r.model);
    write::uint(&mut out, 6);
    tensors(&mut out, &r.inputs);
    write::uint(&mut out, 7);
    salts(&mut out, r.input_salts.as_deref());
    write::uint(&mut out, 8);
    digest(&mut out, r.policy.as_ref());
    write::uint(&mut out, 9);
    digest(&mut out, r.previous.as_ref());
    out
}

/// An infer response, §11.3.
pub(super) fn infer_response(r: &InferResponse) -> Vec<u8> {
    let data: usize = r.outputs.iter().map(|t| t.data().len() + 64).sum();
    let promise = r.promise.as_ref().map_or(0, Vec::len);
    let mut out = Vec::with_capacity(128 + data + r.receipt.len() + promise);
    write::map(&mut out, if r.promise.is_some() { 5 } else { 4 });
    write::uint(&mut out, 1);
    write::uint(&mut out, ty::INFER_OK);
    write::uint(&mut out, 2);
    tensors(&mut out, &r.outputs);
    write::uint(&mut out, 3);
    salts(&mut out, r.output_salts.as_deref());
    write::uint(&mut out, 4);
    write::bytes(&mut out, &r.receipt);
    if let Some(p) = &r.promise {
        write::uint(&mut out, 5);
        write::bytes(&mut out, p);
    }
    out
}

/// `[* [name, dtype, shape, data]]`, as `common::tensor_value` builds it.
fn tensors(out: &mut Vec<u8>, list: &[Tensor]) {
    write::array(out, list.len());
    for t in list {
        write::array(out, 4);
        write::text(out, t.name());
        write::uint(out, u64::from(t.dtype().code()));
        write::array(out, t.shape().len());
        for d in t.shape() {
            write::uint(out, *d);
        }
        write::bytes(out, t.data());
    }
}

fn salts(out: &mut Vec<u8>, list: Option<&[[u8; SALT_LEN]]>) {
    match list {
        None => write::null(out),
        Some(list) => {
            write::array(out, list.len());
            for s in list {
                write::bytes(out, s);
            }
        }
    }
}

fn digest(out: &mut Vec<u8>, d: Option<&Digest32>) {
    match d {
        None => write::null(out),
        Some(d) => write::bytes(out, d),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use ciborium::value::Value;

    use super::*;
    use crate::cbor::{self, read};
    use crate::messages::common::tensors_value;
    use crate::receipt::JobKind;
    use crate::tensor::DType;

    fn generic(entries: Vec<(u64, Value)>) -> Vec<u8> {
        cbor::encode(&Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (read::int(k), v))
                .collect(),
        ))
        .unwrap()
    }

    fn bytes_or_null(b: Option<&[u8]>) -> Value {
        b.map_or(Value::Null, |b| Value::Bytes(b.to_vec()))
    }

    fn salts_value(s: Option<&[[u8; SALT_LEN]]>) -> Value {
        s.map_or(Value::Null, |s| {
            Value::Array(s.iter().map(|s| Value::Bytes(s.to_vec())).collect())
        })
    }

    fn tensor_sets() -> Vec<Vec<Tensor>> {
        let big = Tensor::new("x".repeat(256), DType::U8, vec![70_000], vec![3; 70_000]).unwrap();
        vec![
            vec![],
            vec![Tensor::from_f32("features", vec![1, 30], &[0.5; 30]).unwrap()],
            vec![
                Tensor::new("scalar", DType::I64, vec![], vec![1; 8]).unwrap(),
                Tensor::new("empty", DType::F32, vec![0, 4], vec![]).unwrap(),
                Tensor::new("wide", DType::U8, vec![1, 1, 1, 1, 300], vec![9; 300]).unwrap(),
                big,
            ],
        ]
    }

    #[test]
    fn infer_requests_are_the_generic_encoders() {
        for inputs in tensor_sets() {
            for (salted, policy, previous) in [
                (true, None, None),
                (false, Some([7u8; 32]), None),
                (true, Some([7u8; 32]), Some([8u8; 32])),
            ] {
                let r = InferRequest {
                    job_id: [1; 16],
                    nonce: vec![2; 40],
                    kind: if previous.is_some() {
                        JobKind::Stage
                    } else {
                        JobKind::Infer
                    },
                    model: [3; 32],
                    input_salts: salted.then(|| vec![[4; 32]; inputs.len()]),
                    inputs: inputs.clone(),
                    policy,
                    previous,
                };
                let want = generic(vec![
                    (1, read::int(ty::INFER)),
                    (2, Value::Bytes(r.job_id.to_vec())),
                    (3, Value::Bytes(r.nonce.clone())),
                    (4, read::int(r.kind.code())),
                    (5, Value::Bytes(r.model.to_vec())),
                    (6, tensors_value(&r.inputs)),
                    (7, salts_value(r.input_salts.as_deref())),
                    (8, bytes_or_null(r.policy.as_ref().map(|d| &d[..]))),
                    (9, bytes_or_null(r.previous.as_ref().map(|d| &d[..]))),
                ]);
                assert_eq!(infer_request(&r), want);
            }
        }
    }

    #[test]
    fn infer_responses_are_the_generic_encoders() {
        for outputs in tensor_sets() {
            for (salted, promise) in [(true, Some(vec![5u8; 120])), (false, None)] {
                let r = InferResponse {
                    output_salts: salted.then(|| vec![[6; 32]; outputs.len()]),
                    outputs: outputs.clone(),
                    receipt: vec![0xd2; 700],
                    promise,
                };
                let mut fields = vec![
                    (1, read::int(ty::INFER_OK)),
                    (2, tensors_value(&r.outputs)),
                    (3, salts_value(r.output_salts.as_deref())),
                    (4, Value::Bytes(r.receipt.clone())),
                ];
                if let Some(p) = &r.promise {
                    fields.push((5, Value::Bytes(p.clone())));
                }
                assert_eq!(infer_response(&r), generic(fields));
            }
        }
    }
}
