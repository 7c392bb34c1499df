//! The one check of a member receipt (§15.4), used by the live aggregator when a member's
//! round-2 reply arrives (`super::aggregator`) and by the offline audit of an aggregate
//! receipt (`crate::ensemble_audit`, §15.5).
//!
//! A member receipt binds the member's masked input to the job: kind `ensemble-member`, the
//! job id and client nonce, the model the parameters list for the member, the parameters
//! digest as `policy`, the salted input commitments, and as its one output the plain
//! commitment to the packed masked vector (named [`MASKED_INPUT_NAME`]).

use quorate_crypto::PublicKey;
use quorate_crypto::tensor_digest::Digest32;

use super::MASKED_INPUT_NAME;
use super::messages::masked_tensor;
use crate::receipt::{self, Commitment, JOB_ID_LEN, JobKind, ReceiptPayload};
use crate::secagg::messages::{ClientBody, Limits, decode_client_message};
use crate::tensor::Tensor;

/// What a member receipt must be bound to (§15.4).
#[derive(Debug, Clone, Copy)]
pub struct MemberBinding<'a> {
    /// Job id.
    pub job_id: &'a [u8; JOB_ID_LEN],
    /// Client nonce.
    pub nonce: &'a [u8],
    /// The model the parameters list for this member.
    pub model: &'a Digest32,
    /// The job parameters' digest ([`super::EnsembleParams::digest`]).
    pub params: &'a Digest32,
    /// The salted commitments to the client's inputs, in input order.
    pub inputs: &'a [Commitment],
}

/// Why a member receipt does not hold up (§15.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberReceiptProblem {
    /// The receipt does not parse.
    #[error("member receipt: {0}")]
    Malformed(String),
    /// Its signature does not verify under the member's key.
    #[error("member receipt signature: {0}")]
    Signature(String),
    /// Not a member receipt, or one of another job.
    #[error("receipt is not a member receipt of this job")]
    OtherJob,
    /// Its `policy` is not the digest of the job parameters.
    #[error("receipt is bound to other job parameters")]
    Params,
    /// Its nonce or model differ from the job's.
    #[error("receipt nonce or model differs from the aggregate")]
    NonceOrModel,
    /// Its input commitments differ from the job's.
    #[error("receipt commits to another input")]
    Inputs,
    /// The envelope it accompanies holds no masked input.
    #[error("the envelope is not a masked input")]
    NotMaskedInput,
    /// Its output is not the commitment to the masked input.
    #[error("receipt does not commit to the masked input replayed")]
    MaskedInput,
}

/// The masked-input tensor a round-2 envelope carries (§15.4), or `None` when the envelope
/// does not decode under `limits` or carries another message.
pub fn masked_input_of(envelope: &[u8], limits: &Limits) -> Option<Tensor> {
    match decode_client_message(envelope, limits).ok()?.body {
        ClientBody::MaskedInput { packed } => masked_tensor(packed).ok(),
        _ => None,
    }
}

/// Checks a member receipt's payload (its signature already verified) against the job and
/// the masked input the member sent (§15.4).
pub fn check_member_receipt(
    p: &ReceiptPayload,
    job: &MemberBinding<'_>,
    masked: &Tensor,
) -> Result<(), MemberReceiptProblem> {
    if p.kind != JobKind::EnsembleMember || p.job_id != *job.job_id {
        return Err(MemberReceiptProblem::OtherJob);
    }
    if p.policy.as_ref() != Some(job.params) {
        return Err(MemberReceiptProblem::Params);
    }
    if p.nonce != job.nonce || p.model_digest != *job.model {
        return Err(MemberReceiptProblem::NonceOrModel);
    }
    if p.inputs != job.inputs {
        return Err(MemberReceiptProblem::Inputs);
    }
    match p.outputs.as_slice() {
        [c] if c.name == MASKED_INPUT_NAME && c.matches(masked, None) => Ok(()),
        _ => Err(MemberReceiptProblem::MaskedInput),
    }
}

/// Parses a member receipt, verifies it under the member's key, and checks it with
/// [`check_member_receipt`] against the round-2 `envelope` it accompanies.
pub fn verify_member_receipt(
    bytes: &[u8],
    member: &PublicKey,
    job: &MemberBinding<'_>,
    envelope: &[u8],
    limits: &Limits,
) -> Result<ReceiptPayload, MemberReceiptProblem> {
    let r = receipt::parse(bytes).map_err(|e| MemberReceiptProblem::Malformed(e.to_string()))?;
    r.sign1
        .verify(member)
        .map_err(|e| MemberReceiptProblem::Signature(e.to_string()))?;
    let masked = masked_input_of(envelope, limits).ok_or(MemberReceiptProblem::NotMaskedInput)?;
    check_member_receipt(&r.payload, job, &masked)?;
    Ok(r.payload)
}

#[cfg(test)]
mod tests {
    use quorate_crypto::SecretKey;

    use super::*;
    use crate::ensemble::{EnsembleParams, Mode};
    use crate::secagg::messages::encode_client_message;

    fn params() -> EnsembleParams {
        let members = (0..3u8)
            .map(|i| SecretKey::from_seed(&[i + 1; 32]).public_key())
            .collect();
        let aggregator = SecretKey::from_seed(&[99; 32]).public_key();
        EnsembleParams::new(
            Mode::Votes,
            [7; 32],
            aggregator,
            members,
            vec![[4; 32]; 3],
            2,
            2,
            None,
        )
        .unwrap()
    }

    /// A change to a good receipt payload.
    type Tamper = fn(&mut ReceiptPayload);

    /// A member receipt of member 0 over `packed`, its envelope, and the job it binds.
    fn setup() -> (SecretKey, EnsembleParams, Vec<u8>, ReceiptPayload) {
        let key = SecretKey::from_seed(&[1; 32]);
        let p = params();
        let packed = vec![0x5au8; p.round_config().packed_len()];
        let envelope = encode_client_message(
            &key,
            &p.round_config().digest(),
            0,
            &ClientBody::MaskedInput { packed: &packed },
        );
        let input = Tensor::from_f32("x", vec![1, 1], &[1.0]).unwrap();
        let payload = ReceiptPayload {
            job_id: [1; 16],
            nonce: vec![2; 32],
            kind: JobKind::EnsembleMember,
            model_digest: [4; 32],
            inputs: vec![Commitment::to(&input, Some(&[3; 32]))],
            outputs: vec![Commitment::to(&masked_tensor(&packed).unwrap(), None)],
            provider: "CPUExecutionProvider".into(),
            runtime: "test".into(),
            issued_at: 1,
            previous: None,
            policy: Some(p.digest()),
        };
        (key, p, envelope, payload)
    }

    #[test]
    fn every_binding_of_a_member_receipt_is_checked() {
        let (key, p, envelope, good) = setup();
        let limits = Limits::of(&p.round_config());
        let digest = p.digest();
        let inputs = good.inputs.clone();
        let job = MemberBinding {
            job_id: &[1; 16],
            nonce: &[2; 32],
            model: &[4; 32],
            params: &digest,
            inputs: &inputs,
        };
        let check = |payload: &ReceiptPayload| {
            let bytes = payload.sign(&key).unwrap();
            verify_member_receipt(&bytes, &key.public_key(), &job, &envelope, &limits)
        };
        assert!(check(&good).is_ok());
        let cases: Vec<(Tamper, MemberReceiptProblem)> = vec![
            (|p| p.kind = JobKind::Infer, MemberReceiptProblem::OtherJob),
            (|p| p.job_id = [9; 16], MemberReceiptProblem::OtherJob),
            (|p| p.policy = None, MemberReceiptProblem::Params),
            (
                |p| p.nonce = vec![8; 32],
                MemberReceiptProblem::NonceOrModel,
            ),
            (
                |p| p.model_digest = [8; 32],
                MemberReceiptProblem::NonceOrModel,
            ),
            (|p| p.inputs[0].salted = false, MemberReceiptProblem::Inputs),
            (|p| p.outputs.clear(), MemberReceiptProblem::MaskedInput),
            (
                |p| p.outputs[0].digest = [0; 32],
                MemberReceiptProblem::MaskedInput,
            ),
        ];
        for (i, (tamper, expected)) in cases.into_iter().enumerate() {
            let mut bad = good.clone();
            tamper(&mut bad);
            assert_eq!(check(&bad).unwrap_err(), expected, "case {i}");
        }
        // Signed by another key.
        let other = SecretKey::from_seed(&[2; 32]);
        let bytes = good.sign(&other).unwrap();
        assert!(matches!(
            verify_member_receipt(&bytes, &key.public_key(), &job, &envelope, &limits),
            Err(MemberReceiptProblem::Signature(_))
        ));
        // Accompanying something other than a masked input.
        let bytes = good.sign(&key).unwrap();
        assert_eq!(
            verify_member_receipt(&bytes, &key.public_key(), &job, b"\xa0", &limits),
            Err(MemberReceiptProblem::NotMaskedInput)
        );
    }
}
