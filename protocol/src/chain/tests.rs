use quorate_crypto::SecretKey;
use quorate_crypto::tensor_digest::sha256;

use super::*;
use crate::receipt::Commitment;

fn c(name: &str, d: u8) -> Commitment {
    Commitment {
        name: name.into(),
        digest: [d; 32],
        salted: true,
    }
}

fn payload(model: u8, inputs: Vec<Commitment>, outputs: Vec<Commitment>) -> ReceiptPayload {
    ReceiptPayload {
        job_id: [7; 16],
        nonce: vec![1; 16],
        kind: JobKind::Stage,
        model_digest: [model; 32],
        inputs,
        outputs,
        provider: "CPUExecutionProvider".into(),
        runtime: "onnxruntime 1.23.2".into(),
        issued_at: 1_763_900_000,
        previous: None,
        policy: None,
    }
}

struct Fixture {
    keys: Vec<SecretKey>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            keys: (1..=4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect(),
        }
    }
    fn trusted(&self) -> impl Fn(&KeyId) -> Option<PublicKey> + '_ {
        |kid| {
            self.keys
                .iter()
                .map(SecretKey::public_key)
                .find(|k| k.key_id() == *kid)
        }
    }
    /// Three stages: x -> h1 -> h2 -> y, stage 2 run twice.
    fn chain(&self) -> ReceiptChain {
        let s1 = payload(1, vec![c("x", 10)], vec![c("h1", 11)])
            .sign(&self.keys[0])
            .unwrap();
        let mut p2 = payload(2, vec![c("h1", 11)], vec![c("h2", 12)]);
        p2.previous = Some(sha256(&s1));
        let s2 = p2.sign(&self.keys[1]).unwrap();
        let mut p2b = p2.clone();
        p2b.outputs = vec![c("h2", 13)];
        let s2b = p2b.sign(&self.keys[2]).unwrap();
        let mut p3 = payload(3, vec![c("h2", 12)], vec![c("y", 14)]);
        p3.previous = Some(sha256(&s2));
        let s3 = p3.sign(&self.keys[3]).unwrap();
        ReceiptChain {
            job_id: [7; 16],
            source: Some([9; 32]),
            stages: vec![
                ChainStage {
                    model: [1; 32],
                    receipts: vec![s1],
                },
                ChainStage {
                    model: [2; 32],
                    receipts: vec![s2, s2b],
                },
                ChainStage {
                    model: [3; 32],
                    receipts: vec![s3],
                },
            ],
        }
    }
}

#[test]
fn good_chain_verifies_and_round_trips() {
    let f = Fixture::new();
    let chain = f.chain();
    let bytes = chain.to_cbor().unwrap();
    assert_eq!(ReceiptChain::from_cbor(&bytes).unwrap(), chain);
    let checked = check_chain(&chain, Some(&chain.declared()), &f.trusted()).unwrap();
    assert_eq!(checked.stages.len(), 3);
    assert_eq!(checked.last().unwrap().payload.outputs[0].name, "y");
}

#[test]
fn first_broken_link_is_reported() {
    let f = Fixture::new();
    // Swapped stages 1 and 2: stage 1 now holds a receipt for model 2.
    let mut swapped = f.chain();
    swapped.stages.swap(0, 1);
    swapped.stages[0].model = [1; 32];
    swapped.stages[1].model = [2; 32];
    let e = check_chain(&swapped, None, &f.trusted()).unwrap_err();
    assert_eq!((e.stage, e.receipt), (1, 0));
    assert!(matches!(e.kind, BreakKind::WrongStageModel { .. }), "{e}");

    // Stage 3 re-signed with a previous pointing at the cross-check instead.
    let mut broken = f.chain();
    let s2b = broken.stages[1].receipts[1].clone();
    let mut p3 = payload(3, vec![c("h2", 12)], vec![c("y", 14)]);
    p3.previous = Some(sha256(&s2b));
    broken.stages[2].receipts[0] = p3.sign(&f.keys[3]).unwrap();
    let e = check_chain(&broken, None, &f.trusted()).unwrap_err();
    assert_eq!(e.stage, 3);
    assert!(matches!(e.kind, BreakKind::BrokenPrevious { .. }), "{e}");

    // Missing previous.
    let mut p3 = payload(3, vec![c("h2", 12)], vec![c("y", 14)]);
    p3.previous = None;
    broken.stages[2].receipts[0] = p3.sign(&f.keys[3]).unwrap();
    let e = check_chain(&broken, None, &f.trusted()).unwrap_err();
    assert_eq!(e.kind, BreakKind::MissingPrevious);

    // Stage 3 fed something else than stage 2's output: the activation link breaks.
    let mut p3 = payload(3, vec![c("h2", 13)], vec![c("y", 14)]);
    p3.previous = Some(sha256(&f.chain().stages[1].receipts[0]));
    broken.stages[2].receipts[0] = p3.sign(&f.keys[3]).unwrap();
    let e = check_chain(&broken, None, &f.trusted()).unwrap_err();
    assert_eq!(
        e.kind,
        BreakKind::BrokenActivation {
            name: "h2".into(),
            from: 2
        }
    );

    // A wrong declared pipeline.
    let chain = f.chain();
    let mut other = chain.declared();
    other.stages[1] = [8; 32];
    let e = check_chain(&chain, Some(&other), &f.trusted()).unwrap_err();
    assert_eq!(e.stage, 2);
    assert!(matches!(e.kind, BreakKind::DeclarationMismatch { .. }));
    other.stages.pop();
    let e = check_chain(&chain, Some(&other), &f.trusted()).unwrap_err();
    assert!(matches!(e.kind, BreakKind::StageCount { .. }));
}

#[test]
fn signatures_keys_and_replicas_are_checked() {
    let f = Fixture::new();
    let mut chain = f.chain();
    let last = chain.stages[2].receipts[0].len() - 1;
    chain.stages[2].receipts[0][last] ^= 1;
    let e = check_chain(&chain, None, &f.trusted()).unwrap_err();
    assert!(matches!(e.kind, BreakKind::BadSignature(_)), "{e}");

    let chain = f.chain();
    let only_first = |kid: &KeyId| {
        let k = f.keys[0].public_key();
        (k.key_id() == *kid).then_some(k)
    };
    let e = check_chain(&chain, None, &only_first).unwrap_err();
    assert_eq!((e.stage, e.receipt), (2, 0));
    assert!(matches!(e.kind, BreakKind::UnknownKey(_)));

    // A cross-check by the same node as the linked receipt.
    let mut chain = f.chain();
    let mut p = ReceiptPayload::from_cbor(
        &receipt::parse(&chain.stages[1].receipts[0])
            .unwrap()
            .sign1
            .payload,
    )
    .unwrap();
    p.nonce = vec![2; 16];
    chain.stages[1].receipts[1] = p.sign(&f.keys[1]).unwrap();
    let e = check_chain(&chain, None, &f.trusted()).unwrap_err();
    assert_eq!((e.stage, e.receipt), (2, 1));
    assert!(matches!(e.kind, BreakKind::RepeatedSigner(_)));

    // A cross-check on other inputs.
    p.inputs = vec![c("h1", 99)];
    chain.stages[1].receipts[1] = p.sign(&f.keys[2]).unwrap();
    let e = check_chain(&chain, None, &f.trusted()).unwrap_err();
    assert!(matches!(e.kind, BreakKind::BrokenActivation { .. }), "{e}");
}

#[test]
fn decoder_is_strict() {
    let f = Fixture::new();
    let bytes = f.chain().to_cbor().unwrap();
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        assert!(ReceiptChain::from_cbor(&bytes[..cut]).is_err());
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(ReceiptChain::from_cbor(&trailing).is_err());
    let mut empty = f.chain();
    empty.stages.clear();
    assert!(ReceiptChain::from_cbor(&empty.to_cbor().unwrap()).is_err());
    let mut no_receipts = f.chain();
    no_receipts.stages[0].receipts.clear();
    assert!(ReceiptChain::from_cbor(&no_receipts.to_cbor().unwrap()).is_err());
}
