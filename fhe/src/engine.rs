//! The TFHE computations of §16 with tfhe-rs 1.8 (high-level integer API, default parameters
//! `PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128`), and the bounded (de)serialization of
//! every key and ciphertext that crosses the wire (`tfhe::safe_serialization`, §16.2).

use anyhow::{Context, anyhow, ensure};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tfhe::conformance::ListSizeConstraint;
use tfhe::named::Named;
use tfhe::prelude::*;
use tfhe::safe_serialization::{safe_deserialize, safe_deserialize_conformant, safe_serialize};
use tfhe::{
    ClientKey, CompactCiphertextList, CompactCiphertextListConformanceParams, CompactPublicKey,
    CompressedServerKey, Config, ConfigBuilder, FheInt16, FheInt32, ServerKey, Unversionize,
    Versionize,
};

use crate::qlinear::{FEATURES, PLANES, QLinear, planes};
use quorate_protocol::fhe::{
    MAX_INPUT_CIPHERTEXT_LEN, MAX_SCORE_CIPHERTEXT_LEN, MAX_SERVER_KEY_LEN,
};

/// The parameter set every key uses (§16.7).
pub const PARAMETERS: &str = "PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128";
/// The runtime label written into receipts (§16.6).
pub const RUNTIME: &str = "tfhe-rs 1.8.2 PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128";
/// Largest serialized client key read back from disk.
pub const MAX_CLIENT_KEY_LEN: u64 = 1 << 20;
/// Largest serialized compact public key.
pub const MAX_PUBLIC_KEY_LEN: u64 = 1 << 20;
/// Values in one encrypted input: every pre-shifted plane of every feature.
pub const INPUT_VALUES: usize = FEATURES * PLANES;

/// tfhe's default configuration (the 128-bit parameter set named in [`PARAMETERS`]).
pub fn config() -> Config {
    ConfigBuilder::default().build()
}

/// A fresh key set.
pub struct KeySet {
    /// The client's secret key.
    pub client: ClientKey,
    /// The compressed server (evaluation) key that nodes receive.
    pub server: CompressedServerKey,
    /// The compact public key the client encrypts with.
    pub public: CompactPublicKey,
}

/// Generates a key set; `progress` hears about each step, as it takes seconds.
pub fn keygen(progress: &mut dyn FnMut(&str)) -> KeySet {
    progress("client key");
    let client = ClientKey::generate(config());
    progress("compressed server key (a few seconds)");
    let server = CompressedServerKey::new(&client);
    progress("compact public key");
    let public = CompactPublicKey::new(&client);
    KeySet {
        client,
        server,
        public,
    }
}

/// A client key and its compact public key only (no server key): cheap, for encrypting under
/// a key no node holds.
pub fn client_and_public() -> (ClientKey, CompactPublicKey) {
    let client = ClientKey::generate(config());
    let public = CompactPublicKey::new(&client);
    (client, public)
}

/// `safe_serialize` with a size limit.
pub fn to_bytes<T: Serialize + Versionize + Named>(v: &T, limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    safe_serialize(v, &mut out, limit).map_err(|e| anyhow!("cannot serialize: {e}"))?;
    Ok(out)
}

/// `safe_deserialize` with a size limit, for objects without a conformance check.
pub fn from_bytes<T: DeserializeOwned + Unversionize + Named>(
    bytes: &[u8],
    limit: u64,
    what: &str,
) -> anyhow::Result<T> {
    ensure!(
        bytes.len() as u64 <= limit,
        "{what} is larger than {limit} bytes"
    );
    safe_deserialize(bytes, limit).map_err(|e| anyhow!("{what} does not decode: {e}"))
}

/// Reads a compressed server key received from a client, checked against the parameters.
pub fn server_key_from_bytes(bytes: &[u8]) -> anyhow::Result<CompressedServerKey> {
    ensure!(
        bytes.len() as u64 <= MAX_SERVER_KEY_LEN,
        "the server key is larger than {MAX_SERVER_KEY_LEN} bytes"
    );
    let params: <CompressedServerKey as ParameterSetConformant>::ParameterSet = config().into();
    safe_deserialize_conformant(bytes, MAX_SERVER_KEY_LEN, &params)
        .map_err(|e| anyhow!("not a compressed server key for parameters {PARAMETERS}: {e}"))
}

/// Encrypts the pre-shifted planes of quantized features (unpacked compact list, §16.2).
pub fn encrypt_input(public: &CompactPublicKey, q: &[u16; FEATURES]) -> anyhow::Result<Vec<u8>> {
    let values: Vec<i16> = planes(q).into_iter().map(|v| v as i16).collect();
    let list = CompactCiphertextList::builder(public)
        .extend(values.into_iter())
        .build();
    to_bytes(&list, MAX_INPUT_CIPHERTEXT_LEN as u64)
}

/// Decodes and expands an input list: exactly [`INPUT_VALUES`] unpacked `FheInt16` values.
/// The server key must be set on this thread.
pub fn decode_input(bytes: &[u8]) -> anyhow::Result<Vec<FheInt16>> {
    let params = config()
        .public_key_encryption_parameters()
        .map_err(|e| anyhow!("{e}"))?;
    let conformance = CompactCiphertextListConformanceParams::from_parameters_and_size_constraint(
        params,
        ListSizeConstraint::exact_size(INPUT_VALUES),
    )
    .allow_unpacked();
    let list: CompactCiphertextList =
        safe_deserialize_conformant(bytes, MAX_INPUT_CIPHERTEXT_LEN as u64, &conformance)
            .map_err(|e| anyhow!("the input ciphertext list does not decode: {e}"))?;
    ensure!(
        list.len() == INPUT_VALUES,
        "the input list holds {} values, expected {INPUT_VALUES}",
        list.len()
    );
    let expanded = list
        .expand()
        .map_err(|e| anyhow!("cannot expand the input list: {e}"))?;
    (0..INPUT_VALUES)
        .map(|i| {
            expanded
                .get::<FheInt16>(i)
                .map_err(|e| anyhow!("input value {i}: {e}"))?
                .with_context(|| format!("input value {i} is missing"))
        })
        .collect()
}

/// The chosen formulation (§16.4): `(bias + Σ positive planes) - Σ negative planes`, two
/// multi-operand additions and one subtraction, widened to `FheInt32`.
pub fn eval_planes(model: &QLinear, input: &[FheInt16]) -> FheInt32 {
    let terms = model.plane_terms();
    let bias = FheInt16::encrypt_trivial(model.bias as i16);
    let positive: FheInt16 = std::iter::once(&bias)
        .chain(terms.positive.iter().map(|&i| &input[i]))
        .sum();
    let score = if terms.negative.is_empty() {
        positive
    } else {
        let negative: FheInt16 = terms.negative.iter().map(|&i| &input[i]).sum();
        positive - negative
    };
    FheInt32::cast_from(score)
}

/// The naive formulation, kept as the benchmark baseline: `bias + Σ q_i · w_i` with one
/// signed scalar multiplication per feature (plane 0 of each feature is `q_i`).
pub fn eval_naive(model: &QLinear, input: &[FheInt16]) -> FheInt32 {
    let products: Vec<FheInt16> = model
        .weights
        .iter()
        .enumerate()
        .map(|(i, &w)| &input[i * PLANES] * (w as i16))
        .collect();
    let bias = FheInt16::encrypt_trivial(model.bias as i16);
    let score: FheInt16 = std::iter::once(&bias).chain(products.iter()).sum();
    FheInt32::cast_from(score)
}

/// Decodes a score ciphertext (an `FheInt32`), checked against the server key's parameters.
pub fn decode_score(bytes: &[u8], key: &ServerKey) -> anyhow::Result<FheInt32> {
    let params: <FheInt32 as ParameterSetConformant>::ParameterSet = key.into();
    safe_deserialize_conformant(bytes, MAX_SCORE_CIPHERTEXT_LEN as u64, &params)
        .map_err(|e| anyhow!("the score ciphertext does not decode: {e}"))
}

/// Serializes a score or sum ciphertext.
pub fn encode_score(v: &FheInt32) -> anyhow::Result<Vec<u8>> {
    to_bytes(v, MAX_SCORE_CIPHERTEXT_LEN as u64)
}

/// Adds encrypted scores (§16.5); the server key must be set on this thread.
pub fn aggregate(scores: &[FheInt32]) -> FheInt32 {
    scores.iter().sum()
}
