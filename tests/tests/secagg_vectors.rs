//! Known-answer vectors of secure aggregation (§9.9): `spec/vectors/secagg/*.json`.
//! Every good file must check and every `_bad_` twin must fail. With
//! `QUORATE_REGENERATE_VECTORS=1` this test first rewrites them (it is their generator).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quorate_crypto::secagg::kdf::{self, PrgSeed};
use quorate_crypto::secagg::prg;
use quorate_crypto::secagg::rng::DeterministicRng;
use quorate_crypto::secagg::shamir::{self, SecretScalar, Share};
use quorate_protocol::secagg::config::{GraphKind, RoundConfig};
use quorate_protocol::secagg::graph;
use quorate_protocol::secagg::messages::Round;
use quorate_protocol::secagg::server::Outcome;
use quorate_protocol::secagg::sim;
use serde_json::{Value, json};

const GENERATOR: &str = "tests/tests/secagg_vectors.rs (QUORATE_REGENERATE_VECTORS=1 cargo test -p quorate-tests --test secagg_vectors)";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/secagg")
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    h(v).try_into().expect("length")
}

fn u(v: &Value) -> u64 {
    v.as_str().expect("decimal string").parse().expect("u64")
}

// ---------- PRG ----------

fn gen_prg() -> Value {
    let cases: Vec<Value> = [
        ([0u8; 16], 64u32, 6usize),
        ([0x2b; 16], 32, 8),
        ([7; 16], 13, 10),
        ([0xff; 16], 1, 16),
        ([1; 16], 48, 3),
    ]
    .iter()
    .map(|(seed, bits, len)| {
        let m = prg::expand(&PrgSeed::from_bytes(*seed), *len, *bits).expect("expand");
        json!({"seed": hex::encode(seed), "bits": bits, "len": len,
                   "mask": m.iter().map(|x| x.to_string()).collect::<Vec<_>>()})
    })
    .collect();
    json!({"description": "AES-128-CTR mask expansion (§9.4.3); elements as decimal strings",
           "generated_by": GENERATOR, "cases": cases})
}

fn check_prg(v: &Value) -> Result<(), String> {
    for c in v["cases"].as_array().ok_or("cases")? {
        let bits = c["bits"].as_u64().ok_or("bits")? as u32;
        let len = c["len"].as_u64().ok_or("len")? as usize;
        let m = prg::expand(&PrgSeed::from_bytes(arr(&c["seed"])), len, bits)
            .map_err(|e| e.to_string())?;
        let want: Vec<u64> = c["mask"].as_array().ok_or("mask")?.iter().map(u).collect();
        if m != want {
            return Err(format!("mask mismatch for seed {}", c["seed"]));
        }
    }
    Ok(())
}

// ---------- KDF ----------

fn gen_kdf() -> Value {
    let shared = [0x11u8; 32];
    let round = [0x22u8; 32];
    let secret = [0x33u8; 32];
    let members: Vec<u32> = vec![0, 2, 3, 7];
    let (commitments, reveals) = graph_contributions(&round, &members);
    json!({
        "description": "HKDF-SHA256 derivations, the self-mask commitment, the graph commitments of the members' contributions `r = [0x40 + index; 32]` and the graph seed (§9.4.2, §9.5.7)",
        "generated_by": GENERATOR,
        "shared": hex::encode(shared), "round": hex::encode(round), "secret": hex::encode(secret),
        "a": 3, "b": 9, "members": members,
        "pairwise_mask_seed": hex::encode(kdf::pairwise_mask_seed(&shared, &round, 3, 9).as_bytes()),
        "self_mask_seed": hex::encode(kdf::self_mask_seed(&secret, &round, 3).as_bytes()),
        "share_key_a_to_b": hex::encode(kdf::share_encryption_key(&shared, &round, 3, 9).as_bytes()),
        "mask_key_private": hex::encode(*kdf::mask_key_private(&secret, &round, 3)),
        "self_mask_commitment": hex::encode(kdf::self_mask_commitment(&secret, &round, 3)),
        "graph_commitments": commitments.iter().map(|(i, c)| json!([i, hex::encode(c)])).collect::<Vec<_>>(),
        "graph_seed": hex::encode(graph::contributed_seed(&round, &commitments, &reveals)),
    })
}

/// The contributions `r_i = [0x40 + i; 32]` of `members` and their commitments.
#[allow(clippy::type_complexity)]
fn graph_contributions(
    round: &[u8; 32],
    members: &[u32],
) -> (Vec<(u32, [u8; 32])>, Vec<(u32, [u8; 32])>) {
    let reveals: Vec<(u32, [u8; 32])> = members
        .iter()
        .map(|&m| (m, [0x40u8.wrapping_add(m as u8); 32]))
        .collect();
    let commitments = reveals
        .iter()
        .map(|(i, r)| (*i, kdf::graph_commitment(r, round, *i)))
        .collect();
    (commitments, reveals)
}

fn check_kdf(v: &Value) -> Result<(), String> {
    let (shared, round, secret) = (
        arr::<32>(&v["shared"]),
        arr::<32>(&v["round"]),
        arr::<32>(&v["secret"]),
    );
    let a = v["a"].as_u64().ok_or("a")? as u32;
    let b = v["b"].as_u64().ok_or("b")? as u32;
    let members: Vec<u32> = v["members"]
        .as_array()
        .ok_or("members")?
        .iter()
        .filter_map(|m| m.as_u64())
        .map(|m| m as u32)
        .collect();
    let (commitments, reveals) = graph_contributions(&round, &members);
    let listed: Vec<(u64, Vec<u8>)> = v["graph_commitments"]
        .as_array()
        .ok_or("graph_commitments")?
        .iter()
        .map(|p| (p[0].as_u64().unwrap_or(u64::MAX), h(&p[1])))
        .collect();
    if listed
        != commitments
            .iter()
            .map(|(i, c)| (u64::from(*i), c.to_vec()))
            .collect::<Vec<_>>()
    {
        return Err("graph_commitments mismatch".into());
    }
    let checks: [(&str, Vec<u8>); 6] = [
        (
            "pairwise_mask_seed",
            kdf::pairwise_mask_seed(&shared, &round, a, b)
                .as_bytes()
                .to_vec(),
        ),
        (
            "self_mask_seed",
            kdf::self_mask_seed(&secret, &round, a).as_bytes().to_vec(),
        ),
        (
            "share_key_a_to_b",
            kdf::share_encryption_key(&shared, &round, a, b)
                .as_bytes()
                .to_vec(),
        ),
        (
            "mask_key_private",
            kdf::mask_key_private(&secret, &round, a).to_vec(),
        ),
        (
            "self_mask_commitment",
            kdf::self_mask_commitment(&secret, &round, a).to_vec(),
        ),
        (
            "graph_seed",
            graph::contributed_seed(&round, &commitments, &reveals).to_vec(),
        ),
    ];
    for (name, got) in checks {
        if h(&v[name]) != got {
            return Err(format!("{name} mismatch"));
        }
    }
    Ok(())
}

// ---------- Shamir ----------

fn gen_shamir() -> Value {
    let rng_seed = [0x44u8; 32];
    let mut rng = DeterministicRng::from_seed(&rng_seed);
    let secret = SecretScalar::random(&mut rng).expect("secret");
    let xs: Vec<u32> = vec![1, 2, 4, 5, 9];
    let shares = shamir::split(&secret, 3, &xs, &mut rng).expect("split");
    json!({
        "description": "Shamir 3-of-5 over the Ed25519 scalar field (§9.4.4): the secret and the polynomial's coefficients are drawn from the deterministic generator (§9.4.6) seeded with rng_seed, in that order",
        "generated_by": GENERATOR,
        "rng_seed": hex::encode(rng_seed), "threshold": 3, "xs": xs,
        "secret": hex::encode(*secret.to_bytes()),
        "shares": shares.iter().map(|s| json!([s.x, hex::encode(*s.value_bytes())])).collect::<Vec<_>>(),
    })
}

fn check_shamir(v: &Value) -> Result<(), String> {
    let mut rng = DeterministicRng::from_seed(&arr(&v["rng_seed"]));
    let secret = SecretScalar::random(&mut rng).map_err(|e| e.to_string())?;
    if secret.to_bytes().to_vec() != h(&v["secret"]) {
        return Err("secret mismatch".into());
    }
    let t = v["threshold"].as_u64().ok_or("threshold")? as usize;
    let xs: Vec<u32> = v["xs"]
        .as_array()
        .ok_or("xs")?
        .iter()
        .filter_map(|x| x.as_u64())
        .map(|x| x as u32)
        .collect();
    let shares = shamir::split(&secret, t, &xs, &mut rng).map_err(|e| e.to_string())?;
    let listed = v["shares"].as_array().ok_or("shares")?;
    for (s, l) in shares.iter().zip(listed) {
        if u64::from(s.x) != l[0].as_u64().unwrap_or(0) || s.value_bytes().to_vec() != h(&l[1]) {
            return Err(format!("share at x = {} mismatch", s.x));
        }
    }
    // Every t-subset of the listed shares reconstructs the secret.
    for start in 0..=listed.len() - t {
        let pick: Vec<Share> = listed[start..start + t]
            .iter()
            .map(|l| {
                Share::from_bytes(l[0].as_u64().unwrap_or(0) as u32, &arr(&l[1]))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        if !shamir::reconstruct(&pick)
            .map_err(|e| e.to_string())?
            .ct_eq(&secret)
        {
            return Err("reconstruction mismatch".into());
        }
    }
    Ok(())
}

// ---------- One complete round ----------

/// The vector round: 4 clients and a full graph, or 5 clients and a sparse graph of degree
/// 2; the last client drops after ShareKeys.
fn round_setup(
    seed: &[u8; 32],
    sparse: bool,
) -> (Arc<RoundConfig>, Vec<Vec<u64>>, Vec<Option<Round>>) {
    let n = if sparse { 5 } else { 4 };
    let cfg = Arc::new(RoundConfig {
        session_id: *seed,
        roster: (0..n as u32)
            .map(|i| sim::identity(seed, i).public_key())
            .collect(),
        vector_len: 3,
        modulus_bits: 13,
        threshold: 2,
        min_survivors: 2,
        graph: if sparse {
            GraphKind::Sparse { degree: 2 }
        } else {
            GraphKind::Full
        },
        // n · max_input < 2^13 (§9.7.4).
        max_input: if sparse { 1600 } else { 2000 },
    });
    let mut inputs = vec![
        vec![1, 2, 3],
        vec![1000, 0, 7],
        vec![5, 5, 5],
        vec![2000, 1999, 0],
    ];
    if sparse {
        inputs[3] = vec![1600, 1599, 0];
        inputs.insert(3, vec![17, 0, 1]);
    }
    let mut drops = vec![None; n];
    drops[n - 1] = Some(Round::MaskedInputCollection);
    (cfg, inputs, drops)
}

fn gen_round() -> Value {
    gen_round_of(false)
}

fn gen_round_sparse() -> Value {
    gen_round_of(true)
}

fn check_round_sparse(v: &Value) -> Result<(), String> {
    check_round_of(v, true)
}

fn check_round(v: &Value) -> Result<(), String> {
    check_round_of(v, false)
}

fn gen_round_of(sparse: bool) -> Value {
    let seed = [if sparse { 0x56u8 } else { 0x55u8 }; 32];
    let (cfg, inputs, drops) = round_setup(&seed, sparse);
    let res = sim::run(&cfg, &seed, &inputs, &drops, &mut |_| {}).expect("round");
    let Outcome::Sum(agg) = res.outcome else {
        panic!("vector round aborted")
    };
    let description = if sparse {
        "One complete SecAgg+ round (§9.5, §9.5.7): 5 clients, m = 3, b = 13, t = 2, sparse graph of degree 2 drawn from the clients' committed graph contributions; client 4 drops after ShareKeys. Identities and client randomness come from the simulation seed (protocol/src/secagg/sim.rs: identity, rng_seed); timeouts are virtual"
    } else {
        "One complete SecAgg round (§9.5): 4 clients, m = 3, b = 13, t = 2, full graph; client 3 drops after ShareKeys. Identities and client randomness come from the simulation seed (protocol/src/secagg/sim.rs: identity, rng_seed); timeouts are virtual"
    };
    json!({
        "description": description,
        "generated_by": GENERATOR,
        "seed": hex::encode(seed),
        "round_digest": hex::encode(cfg.digest()),
        "inputs": inputs,
        "dropped_before_masked_input": [inputs.len() - 1],
        "client_messages": res.client_messages.iter().map(|(s, m)| json!([s, hex::encode(m)])).collect::<Vec<_>>(),
        "server_messages": res.server_messages.iter().map(|o| json!([o.to, hex::encode(&o.bytes)])).collect::<Vec<_>>(),
        "contributors": agg.contributors,
        "sum": agg.sum,
    })
}

fn check_round_of(v: &Value, sparse: bool) -> Result<(), String> {
    let seed = arr::<32>(&v["seed"]);
    let (cfg, inputs, drops) = round_setup(&seed, sparse);
    if h(&v["round_digest"]) != cfg.digest() {
        return Err("round digest mismatch".into());
    }
    let res = sim::run(&cfg, &seed, &inputs, &drops, &mut |_| {})?;
    let cm = v["client_messages"].as_array().ok_or("client_messages")?;
    if cm.len() != res.client_messages.len() {
        return Err("client message count".into());
    }
    for ((s, m), l) in res.client_messages.iter().zip(cm) {
        if u64::from(*s) != l[0].as_u64().unwrap_or(u64::MAX) || *m != h(&l[1]) {
            return Err(format!("client message of {s} differs"));
        }
    }
    let sm = v["server_messages"].as_array().ok_or("server_messages")?;
    if sm.len() != res.server_messages.len()
        || res
            .server_messages
            .iter()
            .zip(sm)
            .any(|(o, l)| o.bytes != h(&l[1]))
    {
        return Err("server messages differ".into());
    }
    let Outcome::Sum(agg) = res.outcome else {
        return Err("round aborted".into());
    };
    let want: Vec<u64> = v["sum"]
        .as_array()
        .ok_or("sum")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let contributors: Vec<u64> = v["contributors"]
        .as_array()
        .ok_or("contributors")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    if agg.sum != want
        || agg
            .contributors
            .iter()
            .map(|&c| u64::from(c))
            .ne(contributors)
    {
        return Err("sum or contributors differ".into());
    }
    // The sum is the plaintext sum of the survivors.
    let plain: Vec<u64> = (0..3)
        .map(|j| inputs[..inputs.len() - 1].iter().map(|x| x[j]).sum::<u64>() % 8192)
        .collect();
    if want != plain {
        return Err("stored sum is not the plaintext sum".into());
    }
    Ok(())
}

// ---------- Bad twins: one field changed in each ----------

fn make_bad(name: &str, mut v: Value) -> Value {
    match name {
        "prg" => v["cases"][1]["mask"][3] = json!("12345"),
        "kdf" => v["pairwise_mask_seed"] = json!(hex::encode([0u8; 16])),
        "shamir" => {
            let s = v["shares"][2][1].as_str().unwrap_or_default().to_string();
            let mut b = hex::decode(s).unwrap_or_default();
            b[0] ^= 1;
            v["shares"][2][1] = json!(hex::encode(b));
        }
        _ => v["sum"][1] = json!(v["sum"][1].as_u64().unwrap_or(0) + 1),
    }
    v["description"] = json!(format!(
        "NEGATIVE twin: must fail. {}",
        v["description"].as_str().unwrap_or("")
    ));
    v
}

type Check = fn(&Value) -> Result<(), String>;
/// A vector set: its name, its generator and its checker.
type VectorSet = (&'static str, fn() -> Value, Check);

#[test]
fn secagg_vectors() {
    let sets: [VectorSet; 5] = [
        ("prg", gen_prg, check_prg),
        ("kdf", gen_kdf, check_kdf),
        ("shamir", gen_shamir, check_shamir),
        ("round", gen_round, check_round),
        ("round_sparse", gen_round_sparse, check_round_sparse),
    ];
    if std::env::var("QUORATE_REGENERATE_VECTORS").as_deref() == Ok("1") {
        std::fs::create_dir_all(dir()).expect("vector dir");
        for (name, generate, _) in &sets {
            let good = generate();
            let bad = make_bad(name, good.clone());
            let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("json") + "\n";
            std::fs::write(dir().join(format!("{name}.json")), pretty(&good)).expect("write");
            std::fs::write(dir().join(format!("{name}_bad_1.json")), pretty(&bad)).expect("write");
        }
    }
    for (name, _, check) in &sets {
        let read = |f: String| -> Value {
            let text =
                std::fs::read_to_string(dir().join(&f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"))
        };
        let good = read(format!("{name}.json"));
        assert!(
            good["generated_by"].is_string(),
            "{name}: generated_by missing"
        );
        check(&good).unwrap_or_else(|e| panic!("{name}.json: {e}"));
        let bad = read(format!("{name}_bad_1.json"));
        assert!(
            check(&bad).is_err(),
            "{name}_bad_1.json unexpectedly passes"
        );
    }
}
