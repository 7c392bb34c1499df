//! Why a model could not be split (§13.1): every message names the tensor, node or cut at
//! fault.

use super::{MAX_MODEL_LEN, MAX_TOTAL_STAGE_LEN};

/// Why a model could not be split. Every message names the tensor, node or cut at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// The file is larger than [`MAX_MODEL_LEN`].
    #[error(
        "the model is {len} bytes; quorate split reads models of at most {MAX_MODEL_LEN} bytes"
    )]
    TooLarge {
        /// Its length.
        len: u64,
    },
    /// The bytes are not an ONNX `ModelProto`.
    #[error("not an ONNX model: {0}")]
    Decode(String),
    /// The model has no graph, or one without nodes.
    #[error("the model has no graph to split")]
    NoGraph,
    /// The graph breaks an ONNX rule (§13.1: inputs are checked before anything is cut).
    #[error("malformed ONNX graph: {0}")]
    Malformed(String),
    /// A tensor's data lives in an external file, which the stage models could not find.
    #[error(
        "tensor {0:?} keeps its data in an external file; quorate split needs a self-contained \
         model (save it with the weights inside, e.g. onnx.save(model, path, save_as_external_data=False))"
    )]
    ExternalData(String),
    /// `--at` named no tensor.
    #[error("no cut given: name at least one tensor, e.g. --at h1")]
    NoCuts,
    /// An empty name in the cut list.
    #[error("empty tensor name in the cut list (a doubled or trailing ',' or '+')")]
    EmptyName,
    /// The same tensor named twice.
    #[error("tensor {0:?} is named twice in the cut list")]
    Duplicate(String),
    /// The name is not a tensor computed by a node of the main graph.
    #[error("{name:?} is not a tensor of the graph{hint}")]
    UnknownTensor {
        /// The name given.
        name: String,
        /// What could be meant, with a leading separator, or empty.
        hint: String,
    },
    /// A cut at a graph input: the stage before it would be empty.
    #[error("{0:?} is a graph input; cut at a tensor computed inside the graph")]
    CutAtGraphInput(String),
    /// A cut at a graph output: the stage after it would be empty.
    #[error("{0:?} is a graph output; the last stage ends there anyway, cut at an earlier tensor")]
    CutAtGraphOutput(String),
    /// A cut at an initializer or the output of a `Constant` node.
    #[error(
        "{0:?} is a constant (an initializer or a Constant node's output); constants are copied \
         into every stage that uses them, cut at a computed tensor"
    )]
    CutAtConstant(String),
    /// The cuts are not in an order the graph computes them.
    #[error(
        "cut {later:?} is needed before cut {earlier:?} (or computed by the same node); {hint}"
    )]
    OutOfOrder {
        /// The cut given later in the list.
        later: String,
        /// The cut given earlier whose stage already computes `later`.
        earlier: String,
        /// An order that works, or how to regroup.
        hint: String,
    },
    /// A tensor crossing a cut has no declared type and none could be inferred, so the stage
    /// interface cannot be written.
    #[error(
        "the type of tensor {0:?} is unknown (it is not in the graph's value_info); run ONNX shape \
         inference on the model first (onnx.shape_inference.infer_shapes) or cut elsewhere"
    )]
    UnknownType(String),
    /// A tensor crossing a cut has no declared type, and type inference (§13.1) stopped at a
    /// node whose output types it cannot derive (an operator it does not know, or one of
    /// another domain).
    #[error(
        "the type of tensor {name:?} is unknown: it is not in the graph's value_info and type \
         inference stopped at node {node}, whose output types quorate cannot derive; declare the \
         type (run ONNX shape inference on the model first: onnx.shape_inference.infer_shapes) \
         or cut elsewhere"
    )]
    TypeNotInferred {
        /// The tensor.
        name: String,
        /// The node where inference stopped, with its operator.
        node: String,
    },
    /// With `--no-carry`: a tensor crosses a cut without being part of it.
    #[error(
        "the cuts do not separate the graph: {0}; add those tensors to the cut with '+', \
         or drop --no-carry to pass them on automatically"
    )]
    NotSeparating(String),
    /// Every node is computed before the last cut.
    #[error("no node is left after the last cut {0:?}; remove it")]
    EmptyLastStage(String),
    /// A graph output the split does not handle.
    #[error(
        "graph output {0:?} is a graph input passed straight through; quorate split cannot place it"
    )]
    PassThroughOutput(String),
    /// The stage models together would exceed [`MAX_TOTAL_STAGE_LEN`].
    #[error("the stage models would total more than {MAX_TOTAL_STAGE_LEN} bytes")]
    OutputTooLarge,
}
