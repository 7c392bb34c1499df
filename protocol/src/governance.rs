//! Mesh governance (§10.6): the decisions that say who can be convicted and what an ensemble
//! member may reveal. They belong to the roster authority and are signed into the roster
//! (field 7); a client or an aggregator chooses within them, never outside them (§17).
//!
//! - **Verification rules**, per model or for every model: the comparison policies a verified
//!   job may use (§14.2), each with the *scope* of the witnesses it admits, and the smallest
//!   quorum that may accept a result or convict a node.
//! - **The ensemble rule**: the fewest members and the lowest threshold a private ensemble
//!   may have (§15.2).
//!
//! A roster without field 7 is governed by [`Governance::default`], which protects honest
//! nodes first: only `exact` and `default` among receipts of the same provider and runtime,
//! a quorum of at least 2, and ensembles of at least 3 members with threshold at least 2.

use ciborium::value::Value;
use quorate_crypto::tensor_digest::Digest32;

use crate::cbor::read::{self, FieldError};
use crate::policy::{MAX_POLICY_LEN, Policy};

/// Most verification rules in a roster.
pub const MAX_RULES: usize = 256;
/// Most policies one rule grants.
pub const MAX_GRANTS: usize = 16;
/// The smallest quorum governance may set: one witness never convicts another (§14.4).
pub const MIN_QUORUM: u64 = 2;
/// The smallest ensemble governance may allow (§15.2).
pub const MIN_MEMBERS: u32 = 3;

/// Which witnesses a policy admits against an accused node (§10.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only receipts whose provider and runtime strings equal the accused's: outputs of one
    /// provider and runtime are reproducible, so a difference is a fault.
    SameProvider,
    /// Receipts of any provider and runtime: the tolerance covers honest drift across them
    /// (a calibrated policy, §14.3).
    AnyProvider,
}

impl Scope {
    fn code(self) -> u64 {
        match self {
            Scope::SameProvider => 1,
            Scope::AnyProvider => 2,
        }
    }

    fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(Scope::SameProvider),
            2 => Some(Scope::AnyProvider),
            _ => None,
        }
    }

    /// The name used in roster drafts and reports: `same_provider` or `any_provider`.
    pub fn name(self) -> &'static str {
        match self {
            Scope::SameProvider => "same_provider",
            Scope::AnyProvider => "any_provider",
        }
    }

    /// Parses [`Scope::name`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "same_provider" => Some(Scope::SameProvider),
            "any_provider" => Some(Scope::AnyProvider),
            _ => None,
        }
    }

    /// Whether a witness that ran on `witness` (provider, runtime) may testify against a node
    /// that ran on `accused`.
    pub fn admits(self, witness: (&str, &str), accused: (&str, &str)) -> bool {
        match self {
            Scope::SameProvider => witness == accused,
            Scope::AnyProvider => true,
        }
    }
}

/// One policy a rule allows, with the witnesses it admits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Grant {
    /// The comparison policy (§14.2).
    pub policy: Policy,
    /// Whose receipts count as witnesses under it.
    pub scope: Scope,
}

/// What verified jobs on one model (or on every model) may use.
#[derive(Clone, Debug, PartialEq)]
pub struct VerificationRule {
    /// The model digest, or `None` for every model no other rule names.
    pub model: Option<Digest32>,
    /// The policies allowed, at most [`MAX_GRANTS`].
    pub grants: Vec<Grant>,
    /// The smallest quorum that may accept a result or convict a node, at least
    /// [`MIN_QUORUM`].
    pub min_quorum: u64,
}

/// What private ensembles may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnsembleRule {
    /// The fewest members an ensemble job may have, at least [`MIN_MEMBERS`].
    pub min_members: u32,
    /// The lowest SecAgg threshold it may use, at least 2.
    pub min_threshold: u32,
}

/// The governance of a mesh (§10.6).
#[derive(Clone, Debug, PartialEq)]
pub struct Governance {
    /// Verification rules; at most one per model and at most one for every model.
    pub verification: Vec<VerificationRule>,
    /// The ensemble rule.
    pub ensemble: EnsembleRule,
}

impl Default for Governance {
    fn default() -> Self {
        Self {
            verification: vec![VerificationRule {
                model: None,
                grants: vec![
                    Grant {
                        policy: Policy::Exact,
                        scope: Scope::SameProvider,
                    },
                    Grant {
                        policy: Policy::Default,
                        scope: Scope::SameProvider,
                    },
                ],
                min_quorum: MIN_QUORUM,
            }],
            ensemble: EnsembleRule {
                min_members: MIN_MEMBERS,
                min_threshold: 2,
            },
        }
    }
}

/// Why a job or an artefact falls outside the mesh's governance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GovernanceError {
    /// No rule covers the model.
    #[error("the roster's governance allows no verified job on model sha256:{0}")]
    NoRule(String),
    /// The policy is not among those the rule allows.
    #[error(
        "policy {policy} is not allowed for this model by the roster's governance (allowed: {allowed})"
    )]
    PolicyNotAllowed {
        /// The policy asked for.
        policy: String,
        /// The policies allowed.
        allowed: String,
    },
    /// The quorum is below the rule's minimum.
    #[error("quorum {quorum} is below the minimum of {min} set by the roster's governance")]
    QuorumTooSmall {
        /// The quorum asked for.
        quorum: u64,
        /// The minimum.
        min: u64,
    },
    /// An ensemble with too few members or too low a threshold.
    #[error(
        "an ensemble of {members} members with threshold {threshold} is below the roster's minimum of {min_members} members and threshold {min_threshold}"
    )]
    EnsembleTooSmall {
        /// Members asked for.
        members: u32,
        /// Threshold asked for.
        threshold: u32,
        /// Minimum members.
        min_members: u32,
        /// Minimum threshold.
        min_threshold: u32,
    },
}

impl Governance {
    /// The rule for `model`: the one naming it, else the one for every model.
    pub fn rule_for(&self, model: &Digest32) -> Option<&VerificationRule> {
        self.verification
            .iter()
            .find(|r| r.model.as_ref() == Some(model))
            .or_else(|| self.verification.iter().find(|r| r.model.is_none()))
    }

    /// The grant of `policy` on `model`, with the rule's minimum quorum.
    pub fn grant(
        &self,
        model: &Digest32,
        policy: &Policy,
    ) -> Result<(Grant, u64), GovernanceError> {
        let rule = self
            .rule_for(model)
            .ok_or_else(|| GovernanceError::NoRule(hex::encode(model)))?;
        rule.grants
            .iter()
            .find(|g| g.policy == *policy)
            .map(|g| (*g, rule.min_quorum))
            .ok_or_else(|| GovernanceError::PolicyNotAllowed {
                policy: policy.describe(),
                allowed: rule
                    .grants
                    .iter()
                    .map(|g| format!("{} ({})", g.policy.describe(), g.scope.name()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Whether a request binding policy digest `digest` may run on `model` (a node's check,
    /// §14.5: nodes see only the digest).
    pub fn allows_digest(
        &self,
        model: &Digest32,
        digest: &Digest32,
    ) -> Result<(), GovernanceError> {
        let rule = self
            .rule_for(model)
            .ok_or_else(|| GovernanceError::NoRule(hex::encode(model)))?;
        if rule
            .grants
            .iter()
            .any(|g| g.policy.digest().is_ok_and(|d| d == *digest))
        {
            return Ok(());
        }
        Err(GovernanceError::PolicyNotAllowed {
            policy: format!("sha256:{}", hex::encode(digest)),
            allowed: rule
                .grants
                .iter()
                .map(|g| g.policy.describe())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Checks a quorum against the rule of `model`.
    pub fn check_quorum(&self, model: &Digest32, quorum: u64) -> Result<(), GovernanceError> {
        let min = self.rule_for(model).map_or(MIN_QUORUM, |r| r.min_quorum);
        if quorum < min {
            return Err(GovernanceError::QuorumTooSmall { quorum, min });
        }
        Ok(())
    }

    /// Checks an ensemble's size and threshold against the ensemble rule.
    pub fn check_ensemble(&self, members: u32, threshold: u32) -> Result<(), GovernanceError> {
        let r = self.ensemble;
        if members < r.min_members || threshold < r.min_threshold {
            return Err(GovernanceError::EnsembleTooSmall {
                members,
                threshold,
                min_members: r.min_members,
                min_threshold: r.min_threshold,
            });
        }
        Ok(())
    }

    /// The CBOR value of roster field 7 (§10.6).
    pub fn to_value(&self) -> Result<Value, FieldError> {
        let rules = self
            .verification
            .iter()
            .map(|r| {
                let grants = r
                    .grants
                    .iter()
                    .map(|g| {
                        let policy = g
                            .policy
                            .to_cbor()
                            .map_err(|e| read_err("policy", e.to_string()))?;
                        Ok(Value::Map(vec![
                            (read::int(1), Value::Bytes(policy)),
                            (read::int(2), read::int(g.scope.code())),
                        ]))
                    })
                    .collect::<Result<Vec<_>, FieldError>>()?;
                Ok(Value::Map(vec![
                    (
                        read::int(1),
                        r.model.map_or(Value::Null, |m| Value::Bytes(m.to_vec())),
                    ),
                    (read::int(2), Value::Array(grants)),
                    (read::int(3), read::int(r.min_quorum)),
                ]))
            })
            .collect::<Result<Vec<_>, FieldError>>()?;
        Ok(Value::Map(vec![
            (read::int(1), Value::Array(rules)),
            (
                read::int(2),
                Value::Map(vec![
                    (
                        read::int(1),
                        read::int(u64::from(self.ensemble.min_members)),
                    ),
                    (
                        read::int(2),
                        read::int(u64::from(self.ensemble.min_threshold)),
                    ),
                ]),
            ),
        ]))
    }

    /// Strict decoding of roster field 7, with the rules' invariants checked.
    pub fn from_value(v: &Value) -> Result<Self, FieldError> {
        let m = read::int_map(v, "governance", &[1, 2])?;
        if m.len() != 2 {
            return Err(read_err("governance", "fields 1 and 2 are required"));
        }
        let mut verification: Vec<VerificationRule> = Vec::new();
        for r in read::array(m[0].1, "verification rules", MAX_RULES)? {
            let f = read::int_map(r, "verification rule", &[1, 2, 3])?;
            if f.len() != 3 {
                return Err(read_err("verification rule", "fields 1 to 3 are required"));
            }
            let model = match f[0].1 {
                Value::Null => None,
                v => Some(read::bytes_n::<32>(v, "rule model")?),
            };
            if verification.iter().any(|x| x.model == model) {
                return Err(read_err("verification rules", "two rules for one model"));
            }
            let mut grants: Vec<Grant> = Vec::new();
            for g in read::array(f[1].1, "grants", MAX_GRANTS)? {
                let gf = read::int_map(g, "grant", &[1, 2])?;
                if gf.len() != 2 {
                    return Err(read_err("grant", "fields 1 and 2 are required"));
                }
                let bytes = read::bytes_range(gf[0].1, "grant policy", 1, MAX_POLICY_LEN)?;
                let policy = Policy::from_cbor(bytes)
                    .map_err(|e| read_err("grant policy", e.to_string()))?;
                let scope = Scope::from_code(read::uint(gf[1].1, "grant scope")?)
                    .ok_or_else(|| read_err("grant scope", "must be 1 or 2"))?;
                if grants.iter().any(|x| x.policy == policy) {
                    return Err(read_err("grants", "a policy is granted twice"));
                }
                grants.push(Grant { policy, scope });
            }
            if grants.is_empty() {
                return Err(read_err("grants", "a rule grants at least one policy"));
            }
            let min_quorum = read::uint(f[2].1, "min quorum")?;
            if min_quorum < MIN_QUORUM {
                return Err(read_err("min quorum", "must be at least 2"));
            }
            verification.push(VerificationRule {
                model,
                grants,
                min_quorum,
            });
        }
        let e = read::int_map(m[1].1, "ensemble rule", &[1, 2])?;
        if e.len() != 2 {
            return Err(read_err("ensemble rule", "fields 1 and 2 are required"));
        }
        let small = |v: &Value, field: &'static str| -> Result<u32, FieldError> {
            u32::try_from(read::uint(v, field)?).map_err(|_| read_err(field, "too large"))
        };
        let ensemble = EnsembleRule {
            min_members: small(e[0].1, "min members")?,
            min_threshold: small(e[1].1, "min threshold")?,
        };
        if ensemble.min_members < MIN_MEMBERS || ensemble.min_threshold < 2 {
            return Err(read_err(
                "ensemble rule",
                "at least 3 members and threshold 2",
            ));
        }
        Ok(Self {
            verification,
            ensemble,
        })
    }
}

fn read_err(field: &'static str, why: impl Into<String>) -> FieldError {
    FieldError {
        field,
        problem: why.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn calibrated() -> Governance {
        Governance {
            verification: vec![
                VerificationRule {
                    model: Some([7; 32]),
                    grants: vec![Grant {
                        policy: Policy::Tolerance {
                            atol: 0.02,
                            rtol: 0.0,
                        },
                        scope: Scope::AnyProvider,
                    }],
                    min_quorum: 3,
                },
                Governance::default().verification.remove(0),
            ],
            ensemble: EnsembleRule {
                min_members: 5,
                min_threshold: 3,
            },
        }
    }

    #[test]
    fn governance_round_trips_and_rules_are_found_by_model() {
        let g = calibrated();
        let back = Governance::from_value(&g.to_value().unwrap()).unwrap();
        assert_eq!(back, g);
        assert_eq!(g.rule_for(&[7; 32]).unwrap().min_quorum, 3);
        assert_eq!(g.rule_for(&[8; 32]).unwrap().model, None);
        let tol = Policy::Tolerance {
            atol: 0.02,
            rtol: 0.0,
        };
        assert_eq!(g.grant(&[7; 32], &tol).unwrap().0.scope, Scope::AnyProvider);
        assert!(matches!(
            g.grant(&[7; 32], &Policy::Exact),
            Err(GovernanceError::PolicyNotAllowed { .. })
        ));
        assert!(g.grant(&[8; 32], &Policy::Exact).is_ok());
        assert!(g.grant(&[8; 32], &tol).is_err());
        assert!(g.allows_digest(&[7; 32], &tol.digest().unwrap()).is_ok());
        assert!(g.allows_digest(&[8; 32], &tol.digest().unwrap()).is_err());
        assert!(g.check_quorum(&[7; 32], 2).is_err());
        assert!(g.check_quorum(&[7; 32], 3).is_ok());
        assert!(g.check_ensemble(4, 3).is_err());
        assert!(g.check_ensemble(5, 2).is_err());
        assert!(g.check_ensemble(5, 3).is_ok());
    }

    #[test]
    fn rules_that_would_let_one_witness_convict_are_refused() {
        let mut g = Governance::default();
        g.verification[0].min_quorum = 1;
        let v = g.to_value().unwrap();
        assert!(Governance::from_value(&v).is_err());
        let mut g = Governance::default();
        g.ensemble.min_members = 2;
        assert!(Governance::from_value(&g.to_value().unwrap()).is_err());
        let mut g = Governance::default();
        g.verification.push(g.verification[0].clone());
        assert!(Governance::from_value(&g.to_value().unwrap()).is_err());
        let mut g = Governance::default();
        g.verification[0].grants.clear();
        assert!(Governance::from_value(&g.to_value().unwrap()).is_err());
    }

    #[test]
    fn same_provider_scope_admits_only_identical_provider_and_runtime() {
        let cpu = ("CPUExecutionProvider", "onnxruntime 1.31.1");
        let ov = ("OpenVINOExecutionProvider:CPU:bf16", "onnxruntime 1.31.1");
        assert!(Scope::SameProvider.admits(cpu, cpu));
        assert!(!Scope::SameProvider.admits(ov, cpu));
        assert!(Scope::AnyProvider.admits(ov, cpu));
    }
}
