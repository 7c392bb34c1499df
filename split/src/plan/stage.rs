//! What a split produces (§13.1): the stage models, their interfaces and the tensors
//! carried across cuts; and the options and cut lists it takes.

use super::SplitError;

/// One dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size (`batch`).
    Symbolic(String),
    /// A dimension with neither.
    Unknown,
}

/// Where a stage input comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// An input of the whole model, supplied by the client.
    GraphInput,
    /// An output of an earlier stage (1-based).
    Stage(usize),
}

/// Why a tensor is a stage output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// It was named in `--at`.
    Cut,
    /// It is an output of the whole model.
    GraphOutput,
    /// A later stage needs it although no cut names it (§13.1, carried tensors).
    Carried,
}

/// A stage input or output as declared in the stage model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type: `float32`, `int64`, …, or e.g. `sequence(float32)` for non-tensor values.
    pub dtype: String,
    /// Declared shape; `None` when the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

impl std::fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.dtype)?;
        match &self.shape {
            None => write!(f, "[unknown shape]"),
            Some(dims) => {
                let d: Vec<String> = dims
                    .iter()
                    .map(|d| match d {
                        Dim::Fixed(n) => n.to_string(),
                        Dim::Symbolic(s) => s.clone(),
                        Dim::Unknown => "?".to_string(),
                    })
                    .collect();
                write!(f, "[{}]", d.join(", "))
            }
        }
    }
}

/// One stage model.
#[derive(Clone, Debug)]
pub struct Stage {
    /// Position, from 1.
    pub index: usize,
    /// The encoded stage model.
    pub bytes: Vec<u8>,
    /// SHA-256 of `bytes`: the stage's model digest (§3.4).
    pub digest: [u8; 32],
    /// Number of nodes it computes (including copied `Constant` nodes).
    pub nodes: usize,
    /// Number of initializers copied into it.
    pub initializers: usize,
    /// Its inputs, in declaration order, with where each comes from.
    pub inputs: Vec<(TensorInfo, Source)>,
    /// Its outputs, in declaration order, with why each is one.
    pub outputs: Vec<(TensorInfo, Role)>,
}

/// A tensor passed on although no cut names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    /// Tensor name.
    pub name: String,
    /// The stage computing it.
    pub from: usize,
    /// The stages reading it.
    pub to: Vec<usize>,
}

/// The result of a split.
#[derive(Clone, Debug)]
pub struct Split {
    /// SHA-256 of the source model file.
    pub source_digest: [u8; 32],
    /// The stages, in pipeline order.
    pub stages: Vec<Stage>,
    /// Tensors carried across cuts that do not name them.
    pub carried: Vec<Carried>,
    /// `Some(n)` when the decoded model re-encodes to `n` bytes rather than the file's length:
    /// the file uses fields unknown to the bundled ONNX schema (dropped from the stages) or a
    /// non-canonical encoding.
    pub reencoded_len: Option<usize>,
}

/// Options of [`split_model`].
#[derive(Clone, Debug, Default)]
pub struct SplitOptions {
    /// Refuse cuts that do not separate the graph instead of carrying tensors across them.
    pub no_carry: bool,
}

/// Parses `--at`: boundaries separated by `,`, tensors of one boundary joined by `+`.
pub fn parse_cuts(spec: &str) -> Result<Vec<Vec<String>>, SplitError> {
    if spec.trim().is_empty() {
        return Err(SplitError::NoCuts);
    }
    spec.split(',')
        .map(|b| {
            b.split('+')
                .map(|t| {
                    let t = t.trim();
                    if t.is_empty() {
                        Err(SplitError::EmptyName)
                    } else {
                        Ok(t.to_string())
                    }
                })
                .collect()
        })
        .collect()
}

pub(super) fn display_cuts(cuts: &[Vec<String>]) -> String {
    cuts.iter()
        .map(|b| b.join("+"))
        .collect::<Vec<_>>()
        .join(",")
}
