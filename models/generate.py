#!/usr/bin/env python3
"""Generate the bundled quorate models from scikit-learn's breast-cancer data.

Run from the repository root, inside the pinned environment
(see models/README.md):

    python models/generate.py            # (re)write every file in models/
    python models/generate.py --check    # regenerate in memory and fail unless
                                         # every file in models/ is byte-identical

Everything is deterministic: fixed seeds, single-threaded BLAS, ONNX graphs
built by hand with onnx.helper (no timestamps, fixed producer name/version).
Every ONNX file is verified with onnx.checker and onnxruntime against the
scikit-learn model it was built from; any failed check aborts the run with a
non-zero exit status.
"""

from __future__ import annotations

import os

# Single-threaded numerics, fixed before numpy is imported: multi-threaded
# BLAS reductions may sum in a different order from run to run.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_var] = "1"

import argparse
import hashlib
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import sklearn
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_breast_cancer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

# --------------------------------------------------------------------------
# Fixed parameters
# --------------------------------------------------------------------------

MODELS_DIR = Path(__file__).resolve().parent

PRODUCER_NAME = "quorate-models"
PRODUCER_VERSION = "1"
MODEL_DOMAIN = "org.quorate.models"
OPSET = 17
IR_VERSION = 8

EXPECTED_VERSIONS = {
    "numpy": "2.4.6",
    "scikit-learn": "1.9.1",
    "onnx": "1.23.2",
    "onnxruntime": "1.31.1",
}

SPLIT_SEED = 20240917  # stratified 80/20 train/test split
TEST_SIZE = 0.2
MLP_SEED = 1
MLP_HIDDEN = (32, 16, 8)
HOSPITAL_SPLIT_SEED = 5150  # five disjoint stratified parts of the training split
HOSPITAL_SEEDS = (11, 12, 13, 14, 15)
HOSPITAL_HIDDEN = (16, 8)
LOGISTIC_C = 1.0
QLINEAR_SPLIT_SEED = 3003  # three disjoint stratified parts of the training split
QLINEAR_FEATURES = 8
QLINEAR_LEVELS = 255  # features quantised to 0..=255
QLINEAR_W_MIN, QLINEAR_W_MAX = -8, 7
QLINEAR_SCORE_LIMIT = 32767
MAX_ITER = 5000

PROB_TOLERANCE = 1e-5

SAMPLE_TEST_POSITION = 0  # position in the test split of the single sample
BATCH_TEST_POSITIONS = (0, 1, 2, 3)

N_FEATURES = 30
CLASS_NAMES = ("malignant", "benign")  # sklearn target: 0 = malignant, 1 = benign

README_BEGIN = "<!-- BEGIN GENERATED: models/generate.py writes this block -->"
README_END = "<!-- END GENERATED -->"


class CheckFailed(RuntimeError):
    pass


def require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------


class Data:
    def __init__(self) -> None:
        ds = load_breast_cancer()
        require(ds.data.shape == (569, N_FEATURES), f"unexpected dataset shape {ds.data.shape}")
        require(tuple(ds.target_names) == CLASS_NAMES, f"unexpected class names {ds.target_names}")
        self.feature_names = [str(n) for n in ds.feature_names]
        X = np.ascontiguousarray(ds.data, dtype=np.float64)
        y = np.asarray(ds.target, dtype=np.int64)
        idx = np.arange(X.shape[0])
        self.idx_train, self.idx_test = train_test_split(
            idx, test_size=TEST_SIZE, stratify=y, random_state=SPLIT_SEED, shuffle=True
        )
        self.X_train, self.y_train = X[self.idx_train], y[self.idx_train]
        self.X_test, self.y_test = X[self.idx_test], y[self.idx_test]
        # What the ONNX models actually see: raw features as float32.
        self.X_test32 = self.X_test.astype(np.float32)


def stratified_parts(y: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """Disjoint, stratified index sets (positions into y) covering all of y."""
    skf = StratifiedKFold(n_splits=n, shuffle=True, random_state=seed)
    parts = [np.sort(test) for _, test in skf.split(np.zeros(len(y)), y)]
    union = np.concatenate(parts)
    require(len(union) == len(y) and len(np.unique(union)) == len(y), "parts are not a partition")
    return parts


# --------------------------------------------------------------------------
# ONNX construction
# --------------------------------------------------------------------------


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64).astype(np.float32))


def vinfo(name: str, width: int):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width])


def binary_logit_layer(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn a single-logit (sigmoid) output layer into a 2-logit softmax layer.

    softmax([-z/2, z/2])[1] = 1 / (1 + exp(-z)) = sigmoid(z), exactly.
    w: (in, 1), b: (1,)  ->  W: (in, 2), B: (2,)
    """
    w = np.asarray(w, dtype=np.float64).reshape(-1, 1)
    b = np.asarray(b, dtype=np.float64).reshape(1)
    W = np.concatenate([-w / 2.0, w / 2.0], axis=1)
    B = np.concatenate([-b / 2.0, b / 2.0])
    return W, B


def build_classifier(
    graph_name: str,
    doc: str,
    mean: np.ndarray,
    std: np.ndarray,
    layers: list[tuple[np.ndarray, np.ndarray]],
    hidden_names: list[str],
) -> onnx.ModelProto:
    """features -> centered -> scaled -> [Gemm -> Relu]* -> Gemm logits -> Softmax.

    layers[i] = (W (in, out), b (out,)); every layer but the last is followed
    by Relu. hidden_names[i] names the Relu output of layer i (h1, h2, ...);
    the Gemm output before it is "<name>_pre".
    """
    require(len(hidden_names) == len(layers) - 1, "one hidden name per hidden layer")
    inits = [
        numpy_helper.from_array(f32(mean), "input_mean"),
        numpy_helper.from_array(f32(std), "input_std"),
    ]
    nodes = [
        helper.make_node("Sub", ["features", "input_mean"], ["centered"], name="standardize_sub"),
        helper.make_node("Div", ["centered", "input_std"], ["scaled"], name="standardize_div"),
    ]
    value_info = [vinfo("centered", N_FEATURES), vinfo("scaled", N_FEATURES)]
    prev = "scaled"
    for i, (W, b) in enumerate(layers):
        k = i + 1
        W = np.asarray(W)
        b = np.asarray(b)
        require(W.ndim == 2 and b.shape == (W.shape[1],), f"layer {k}: bad shapes {W.shape} {b.shape}")
        wname, bname = f"fc{k}.weight", f"fc{k}.bias"
        inits += [numpy_helper.from_array(f32(W), wname), numpy_helper.from_array(f32(b), bname)]
        last = i == len(layers) - 1
        out = "logits" if last else f"{hidden_names[i]}_pre"
        nodes.append(
            helper.make_node("Gemm", [prev, wname, bname], [out], name=f"fc{k}", alpha=1.0, beta=1.0, transA=0, transB=0)
        )
        value_info.append(vinfo(out, W.shape[1]))
        if not last:
            h = hidden_names[i]
            nodes.append(helper.make_node("Relu", [out], [h], name=f"relu{k}"))
            value_info.append(vinfo(h, W.shape[1]))
            prev = h
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=-1))
    n_out = np.asarray(layers[-1][0]).shape[1]
    require(n_out == 2, "classifier must have 2 outputs")

    graph = helper.make_graph(
        nodes,
        graph_name,
        inputs=[vinfo("features", N_FEATURES)],
        outputs=[vinfo("probabilities", 2)],
        initializer=inits,
        value_info=value_info,
        doc_string=doc,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
        domain=MODEL_DOMAIN,
        model_version=1,
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    helper.set_model_props(
        model,
        {
            "classes": "0=malignant,1=benign",
            "dataset": "UCI Breast Cancer Wisconsin (Diagnostic), as shipped with scikit-learn",
            "input": "raw features, float32 [batch,30], sklearn load_breast_cancer column order",
        },
    )
    return model


def mlp_layers(clf: MLPClassifier) -> list[tuple[np.ndarray, np.ndarray]]:
    require(clf.out_activation_ == "logistic" and clf.n_outputs_ == 1, "expected a binary MLP")
    require(clf.activation == "relu", "expected relu activations")
    layers = [(W, b) for W, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1])]
    layers.append(binary_logit_layer(clf.coefs_[-1], clf.intercepts_[-1]))
    return layers


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def ort_session(model_bytes: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def ort_run(model_bytes: bytes, x: np.ndarray, output: str = "probabilities", input_name: str = "features") -> np.ndarray:
    return ort_session(model_bytes).run([output], {input_name: x})[0]


def check_onnx(name: str, model: onnx.ModelProto, reference_proba: np.ndarray, x32: np.ndarray) -> bytes:
    data = model.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    require(model.ir_version == IR_VERSION, f"{name}: ir_version {model.ir_version}")
    require(
        [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)],
        f"{name}: opset_import {model.opset_import}",
    )
    sess = ort_session(data)
    ins, outs = sess.get_inputs(), sess.get_outputs()
    require(
        [(i.name, i.type, i.shape) for i in ins] == [("features", "tensor(float)", ["batch", N_FEATURES])],
        f"{name}: unexpected inputs {[(i.name, i.type, i.shape) for i in ins]}",
    )
    require(
        [(o.name, o.type, o.shape) for o in outs] == [("probabilities", "tensor(float)", ["batch", 2])],
        f"{name}: unexpected outputs {[(o.name, o.type, o.shape) for o in outs]}",
    )
    got = sess.run(["probabilities"], {"features": x32})[0]
    require(got.dtype == np.float32 and got.shape == reference_proba.shape, f"{name}: output {got.dtype} {got.shape}")
    err = float(np.max(np.abs(got.astype(np.float64) - reference_proba)))
    require(err <= PROB_TOLERANCE, f"{name}: onnxruntime differs from sklearn predict_proba by {err:.3e}")
    # Single-row runs must agree with the batched run (batch dim is symbolic).
    for r in (0, len(x32) - 1):
        one = sess.run(["probabilities"], {"features": x32[r : r + 1]})[0]
        require(np.max(np.abs(one - got[r : r + 1])) <= 1e-6, f"{name}: batch-1 run differs on row {r}")
    print(f"  {name}: checker ok, onnxruntime vs sklearn max |diff| = {err:.2e}")
    return data


def check_cut_points(model: onnx.ModelProto, cuts: list[str], x32: np.ndarray) -> None:
    """Each cut tensor must separate the graph: the only non-constant tensor
    flowing from the nodes before its producer to the nodes after it. Then
    extract the stages and check their composition reproduces the model."""
    g = model.graph
    consts = {t.name for t in g.initializer}
    for cut in cuts:
        producer = [i for i, n in enumerate(g.node) if cut in n.output]
        require(len(producer) == 1, f"cut {cut}: {len(producer)} producers")
        p = producer[0]
        before = {"features"} | {o for n in g.node[: p + 1] for o in n.output}
        crossing = {i for n in g.node[p + 1 :] for i in n.input if i in before and i not in consts}
        require(crossing == {cut}, f"cut {cut} does not separate the graph: {sorted(crossing)} cross it")
    full = model.SerializeToString()
    want = ort_run(full, x32)
    boundaries = ["features"] + cuts + ["probabilities"]
    cur = x32
    for a, b in zip(boundaries[:-1], boundaries[1:]):
        stage = onnx.utils.Extractor(model).extract_model([a], [b])
        stage.ir_version = IR_VERSION
        onnx.checker.check_model(stage, full_check=True)
        cur = ort_run(stage.SerializeToString(), cur, output=b, input_name=a)
    require(np.array_equal(cur, want), "staged execution differs from the full model")
    print(f"  mlp.onnx: cut points {', '.join(cuts)} each separate the graph; staged run == full run")


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(y)))


def fit_quiet(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, y)
    return est


# --------------------------------------------------------------------------
# Quantised linear models
# --------------------------------------------------------------------------


def quantize(X: np.ndarray, fmin: np.ndarray, fmax: np.ndarray) -> np.ndarray:
    """q = clamp(floor((x - min) / (max - min) * 255 + 0.5), 0, 255), in float64,
    element by element in exactly this order (so a Rust f64 port is bit-exact)."""
    t = (np.asarray(X, dtype=np.float64) - fmin) / (fmax - fmin) * float(QLINEAR_LEVELS)
    q = np.floor(t + 0.5)
    return np.clip(q, 0, QLINEAR_LEVELS).astype(np.int64)


def qscore(q: np.ndarray, weights: np.ndarray, bias: int) -> np.ndarray:
    q = np.asarray(q, dtype=np.int64)
    return int(bias) + q @ np.asarray(weights, dtype=np.int64)


def train_qlinear(q: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Logistic regression on the quantised features, then integer weights in
    [-8, 7] and an integer bias; the scale is chosen on the model's own
    training part (largest scale among those with the best accuracy)."""
    qf = q.astype(np.float64)
    mu, sd = qf.mean(axis=0), qf.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    lr = fit_quiet(LogisticRegression(C=LOGISTIC_C, max_iter=MAX_ITER), (qf - mu) / sd, y)
    wz, bz = lr.coef_[0], float(lr.intercept_[0])
    wq = wz / sd  # weights on q
    bq = bz - float(np.sum(wz * mu / sd))
    pos = wq[wq > 0].max(initial=0.0)
    neg = (-wq[wq < 0]).max(initial=0.0)
    limits = [QLINEAR_W_MAX / pos if pos > 0 else np.inf, -QLINEAR_W_MIN / neg if neg > 0 else np.inf]
    kmax = min(limits)
    require(np.isfinite(kmax), "degenerate logistic weights")
    best = None
    for step in range(1, 401):
        k = kmax * step / 400.0
        w = np.clip(np.round(wq * k), QLINEAR_W_MIN, QLINEAR_W_MAX).astype(np.int64)
        if not np.any(w):
            continue
        b = int(np.round(bq * k))
        acc = accuracy(qscore(q, w, b) > 0, y)
        if best is None or acc >= best[2]:
            best = (w, b, acc)
    require(best is not None, "no usable integer scale")
    return best


# --------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------


def exact_floats(a) -> list:
    """float32/float64 values as JSON numbers that parse back to the same bits
    (a float32 is written as the float64 holding exactly its value)."""
    return [float(v) for v in np.asarray(a).reshape(-1)]


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()


def npy_bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a, dtype="<f4")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def tensors_json(x32: np.ndarray) -> bytes:
    return json_bytes(
        {"tensors": [{"name": "features", "dtype": "float32", "shape": list(x32.shape), "data": exact_floats(x32)}]}
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_versions(allow_mismatch: bool) -> None:
    have = {
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
    }
    bad = {k: (have[k], v) for k, v in EXPECTED_VERSIONS.items() if have[k] != v}
    if bad:
        msg = ", ".join(f"{k} {h} (pinned {p})" for k, (h, p) in bad.items())
        if not allow_mismatch:
            raise CheckFailed(f"package versions differ from models/requirements.txt: {msg}")
        print(f"warning: {msg}; outputs may not match the committed files", file=sys.stderr)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def generate() -> tuple[dict[str, bytes], dict]:
    """Return {relative path: file bytes} and a summary for the README."""
    files: dict[str, bytes] = {}
    summary: dict = {}
    d = Data()
    print(f"dataset: {len(d.idx_train)} train / {len(d.idx_test)} test rows (stratified, random_state={SPLIT_SEED})")
    summary["split"] = (len(d.idx_train), len(d.idx_test))

    # ---- main MLP ----------------------------------------------------------
    scaler = StandardScaler().fit(d.X_train)
    mlp = fit_quiet(
        MLPClassifier(hidden_layer_sizes=MLP_HIDDEN, activation="relu", solver="adam", random_state=MLP_SEED, max_iter=MAX_ITER),
        scaler.transform(d.X_train),
        d.y_train,
    )
    mlp_proba = mlp.predict_proba(scaler.transform(d.X_test))
    mlp_model = build_classifier(
        "quorate_mlp",
        "Breast-cancer (Wisconsin diagnostic) MLP 30-32-16-8-2; input raw features, output [P(malignant), P(benign)].",
        scaler.mean_,
        scaler.scale_,
        mlp_layers(mlp),
        ["h1", "h2", "h3"],
    )
    files["mlp.onnx"] = check_onnx("mlp.onnx", mlp_model, mlp_proba, d.X_test32)
    check_cut_points(mlp_model, ["h1", "h2", "h3"], d.X_test32)
    summary["mlp"] = (accuracy(mlp.predict(scaler.transform(d.X_test)), d.y_test), mlp.n_iter_)

    # ---- logistic regression ------------------------------------------------
    Xs_train = scaler.transform(d.X_train)
    logreg = fit_quiet(LogisticRegression(C=LOGISTIC_C, max_iter=MAX_ITER), Xs_train, d.y_train)
    lr_proba = logreg.predict_proba(scaler.transform(d.X_test))
    W, B = binary_logit_layer(logreg.coef_.T, logreg.intercept_)
    lr_model = build_classifier(
        "quorate_logistic",
        "Breast-cancer (Wisconsin diagnostic) logistic regression; input raw features, output [P(malignant), P(benign)].",
        scaler.mean_,
        scaler.scale_,
        [(W, B)],
        [],
    )
    files["logistic.onnx"] = check_onnx("logistic.onnx", lr_model, lr_proba, d.X_test32)
    summary["logistic"] = accuracy(logreg.predict(scaler.transform(d.X_test)), d.y_test)

    # ---- five member hospitals ---------------------------------------------
    parts = stratified_parts(d.y_train, 5, HOSPITAL_SPLIT_SEED)
    hosp = []
    probs = []
    for k, (part, seed) in enumerate(zip(parts, HOSPITAL_SEEDS), start=1):
        Xp, yp = d.X_train[part], d.y_train[part]
        sc = StandardScaler().fit(Xp)
        clf = fit_quiet(
            MLPClassifier(hidden_layer_sizes=HOSPITAL_HIDDEN, activation="relu", solver="adam", random_state=seed, max_iter=MAX_ITER),
            sc.transform(Xp),
            yp,
        )
        p = clf.predict_proba(sc.transform(d.X_test))
        name = f"hospital-{k}.onnx"
        model = build_classifier(
            f"quorate_hospital_{k}",
            f"Member hospital {k}: MLP 30-16-8-2 trained on part {k} of 5 of the training split; "
            "input raw features, output [P(malignant), P(benign)].",
            sc.mean_,
            sc.scale_,
            mlp_layers(clf),
            ["h1", "h2"],
        )
        files[name] = check_onnx(name, model, p, d.X_test32)
        acc = accuracy(clf.predict(sc.transform(d.X_test)), d.y_test)
        hosp.append((name, len(part), int(yp.sum()), seed, acc, clf.n_iter_))
        probs.append(ort_run(files[name], d.X_test32).astype(np.float64))
    ens = np.mean(probs, axis=0)
    summary["hospitals"] = hosp
    summary["ensemble"] = accuracy(np.argmax(ens, axis=1), d.y_test)

    # ---- quantised linear models -------------------------------------------
    top = np.argsort(-np.abs(logreg.coef_[0]), kind="stable")[:QLINEAR_FEATURES]
    feat_idx = np.sort(top)
    fmin = d.X_train[:, feat_idx].min(axis=0)
    fmax = d.X_train[:, feat_idx].max(axis=0)
    require(np.all(fmax > fmin), "constant qlinear feature")
    q_train = quantize(d.X_train[:, feat_idx], fmin, fmax)
    q_test = quantize(d.X_test[:, feat_idx], fmin, fmax)
    qparts = stratified_parts(d.y_train, 3, QLINEAR_SPLIT_SEED)
    qmodels = []
    qsum = np.zeros(len(d.y_test), dtype=np.int64)
    bias_limit = QLINEAR_SCORE_LIMIT - QLINEAR_FEATURES * QLINEAR_LEVELS * max(-QLINEAR_W_MIN, QLINEAR_W_MAX)
    for k, part in enumerate(qparts, start=1):
        w, b, train_acc = train_qlinear(q_train[part], d.y_train[part])
        require(np.all((w >= QLINEAR_W_MIN) & (w <= QLINEAR_W_MAX)), "weight out of range")
        require(abs(b) <= bias_limit, f"qlinear-{k}: |bias| {b} > {bias_limit}")
        s = qscore(q_test, w, b)
        require(np.max(np.abs(s)) <= QLINEAR_SCORE_LIMIT, "score out of range")
        qsum += s
        name = f"qlinear-{k}.json"
        files[name] = json_bytes(
            {
                "format": "quorate-qlinear/1",
                "name": f"qlinear-{k}",
                "feature_indices": [int(i) for i in feat_idx],
                "feature_min": exact_floats(fmin),
                "feature_max": exact_floats(fmax),
                "weights": [int(v) for v in w],
                "bias": int(b),
                "positive_class": "benign",
            }
        )
        qmodels.append((name, len(part), [int(v) for v in w], int(b), accuracy(s > 0, d.y_test)))
    summary["qlinear_features"] = [(int(i), d.feature_names[i]) for i in feat_idx]
    summary["qlinear"] = qmodels
    summary["qlinear_sum"] = accuracy(qsum > 0, d.y_test)

    # ---- samples ------------------------------------------------------------
    r = SAMPLE_TEST_POSITION
    x1 = d.X_test32[r : r + 1]
    xb = d.X_test32[list(BATCH_TEST_POSITIONS)]
    files["samples/features.npy"] = npy_bytes(x1)
    files["samples/features.json"] = tensors_json(x1)
    files["samples/features-batch4.npy"] = npy_bytes(xb)
    files["samples/features-batch4.json"] = tensors_json(xb)
    files["samples/qlinear-features.json"] = json_bytes({"features": exact_floats(d.X_test[r])})
    onnx_names = [n for n in files if n.endswith(".onnx")]
    files["samples/expected.json"] = json_bytes(
        {n: [exact_floats(row) for row in ort_run(files[n], x1)] for n in onnx_names}
    )
    files["samples/expected-batch4.json"] = json_bytes(
        {n: [exact_floats(row) for row in ort_run(files[n], xb)] for n in onnx_names}
    )
    q1 = quantize(d.X_test[r : r + 1, feat_idx], fmin, fmax)[0]
    scores = {}
    for k in range(1, 4):
        m = json.loads(files[f"qlinear-{k}.json"])
        scores[f"qlinear-{k}.json"] = int(qscore(q1, np.array(m["weights"]), m["bias"]))
    total = sum(scores.values())
    files["samples/qlinear-expected.json"] = json_bytes(
        {
            "quantized": [int(v) for v in q1],
            "scores": scores,
            "sum": int(total),
            "class": CLASS_NAMES[int(total > 0)],
        }
    )
    summary["sample"] = {
        "test_position": r,
        "dataset_row": int(d.idx_test[r]),
        "label": CLASS_NAMES[int(d.y_test[r])],
        "batch_rows": [int(d.idx_test[i]) for i in BATCH_TEST_POSITIONS],
        "batch_labels": [CLASS_NAMES[int(d.y_test[i])] for i in BATCH_TEST_POSITIONS],
    }
    return files, summary


def readme_block(files: dict[str, bytes], s: dict) -> str:
    ntr, nte = s["split"]
    L = [README_BEGIN, ""]
    L.append(f"### Held-out accuracy ({nte} test rows; trained on the {ntr}-row training split or parts of it)")
    L.append("")
    L.append("| model | trained on | test accuracy |")
    L.append("| --- | --- | --- |")
    acc, it = s["mlp"]
    L.append(f"| `mlp.onnx` | training split ({ntr} rows), {it} epochs | {acc:.4f} |")
    L.append(f"| `logistic.onnx` | training split ({ntr} rows) | {s['logistic']:.4f} |")
    for name, n, npos, seed, acc, it in s["hospitals"]:
        L.append(f"| `{name}` | part of {n} rows ({npos} benign), seed {seed}, {it} epochs | {acc:.4f} |")
    L.append(f"| ensemble of `hospital-1..5` (mean probabilities, argmax) | | {s['ensemble']:.4f} |")
    for name, n, w, b, acc in s["qlinear"]:
        L.append(f"| `{name}` (integer score > 0) | third of {n} rows; weights {w}, bias {b} | {acc:.4f} |")
    L.append(f"| sum of the three qlinear scores > 0 | | {s['qlinear_sum']:.4f} |")
    L.append("")
    feats = ", ".join(f"{i} ({n})" for i, n in s["qlinear_features"])
    L.append(f"qlinear feature subset (`feature_indices`): {feats}.")
    L.append("")
    sm = s["sample"]
    L.append(
        f"Sample: `samples/features.*` and `samples/qlinear-features.json` hold test-split position "
        f"{sm['test_position']}, which is row {sm['dataset_row']} of `load_breast_cancer()` (label: {sm['label']}). "
        f"`samples/features-batch4.*` hold dataset rows {sm['batch_rows']} (labels: {', '.join(sm['batch_labels'])})."
    )
    L.append("")
    L.append("### SHA-256")
    L.append("")
    L.append("| file | sha256 |")
    L.append("| --- | --- |")
    for name in sorted(files):
        L.append(f"| `{name}` | `{sha256(files[name])}` |")
    L.append("")
    L.append(README_END)
    return "\n".join(L)


def render_readme(template: str, block: str) -> str:
    a = template.find(README_BEGIN)
    b = template.find(README_END)
    require(a >= 0 and b > a, "models/README.md lacks the generated-block markers")
    return template[:a] + block + template[b + len(README_END) :]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="regenerate in memory and compare with the files in models/ (writes nothing)")
    ap.add_argument("--allow-version-mismatch", action="store_true", help="do not fail when package versions differ from the pins")
    args = ap.parse_args()

    try:
        check_versions(args.allow_version_mismatch)
        files, summary = generate()
        files["SHA256SUMS"] = "".join(f"{sha256(files[n])}  {n}\n" for n in sorted(files)).encode()
        readme_path = MODELS_DIR / "README.md"
        require(readme_path.exists(), f"{readme_path} is missing")
        readme = render_readme(readme_path.read_text(), readme_block(files, summary)).encode()
        files["README.md"] = readme
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1

    print()
    for name in sorted(files):
        if name != "README.md":
            print(f"{sha256(files[name])}  models/{name}  ({len(files[name])} bytes)")
    print()
    acc, _ = summary["mlp"]
    print(f"accuracy: mlp {acc:.4f}, logistic {summary['logistic']:.4f}")
    for name, _, _, _, acc, _ in summary["hospitals"]:
        print(f"accuracy: {name} {acc:.4f}")
    print(f"accuracy: hospital ensemble {summary['ensemble']:.4f}")
    for name, _, _, _, acc in summary["qlinear"]:
        print(f"accuracy: {name} {acc:.4f}")
    print(f"accuracy: qlinear sum {summary['qlinear_sum']:.4f}")

    if args.check:
        diffs = []
        for name, data in sorted(files.items()):
            p = MODELS_DIR / name
            if not p.exists() or p.read_bytes() != data:
                diffs.append(name)
        if diffs:
            print(f"FAILED: regenerated files differ from models/: {', '.join(diffs)}", file=sys.stderr)
            return 1
        print("check: every file in models/ is byte-identical to a fresh generation")
        return 0

    for name, data in files.items():
        p = MODELS_DIR / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    print(f"wrote {len(files)} files under {MODELS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
