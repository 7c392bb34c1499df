"""Held-out accuracy of the private ensemble of hospital-1..5 with distributed DP (spec §15.6).

Runs the bundled ONNX members with onnxruntime on the held-out split of models/generate.py,
applies exactly the ensemble encoding of §15.2 (mean: round(p * 2^16); votes: one-hot argmax)
and per-member Skellam noise with the μ of §15.6, and reports the accuracy of the decoded
ensemble averaged over noise draws. The calibration below re-implements §15.6 and is checked
against spec/vectors/v1/ensemble/dp.json (computed by the Rust implementation).

    third_party/venv-models/bin/python models/ensemble_dp_accuracy.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate  # noqa: E402  (the data split of the bundled models)


def orders():
    return [1.0 + 0.05 * (i + 1) for i in range(400)] + [float(a) for a in range(21, 513)]


def epsilon(mu, d1, d2, delta):
    best = math.inf
    for a in orders():
        rdp = a * d2 * d2 / (4 * mu) + min((2 * a * d2 * d2 + 6 * d1) / (16 * mu * mu), 3 * d1 / (4 * mu))
        best = min(best, rdp + math.log(1 / delta) / (a - 1))
    return best


def sensitivity(mode, classes, scale_bits=16):
    if mode == "votes":
        return 2.0, math.sqrt(2.0)
    s = float(1 << scale_bits)
    return 2 * s + classes, math.sqrt(2) * s + math.sqrt(classes)


def calibrate(eps, delta, mode, classes, members):
    d1, d2 = sensitivity(mode, classes)
    lo = hi = 1e-6
    while epsilon(hi, d1, d2, delta) > eps:
        hi *= 2
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if epsilon(mid, d1, d2, delta) > eps:
            lo = mid
        else:
            hi = mid
    return max(1, math.ceil(hi / members * 1000)) / 1000.0


def main() -> None:
    vectors = json.loads((HERE.parent / "spec/vectors/v1/ensemble/dp.json").read_text())
    for c in vectors["cases"]:
        mu = calibrate(c["epsilon"], c["delta"], c["mode"], c["classes"], c["members"])
        assert round(mu * 1000) == c["mu_milli"], (c, mu)
    d = generate.Data()
    probs = []
    for k in range(1, 6):
        sess = ort.InferenceSession(str(HERE / f"hospital-{k}.onnx"), providers=["CPUExecutionProvider"])
        probs.append(sess.run(["probabilities"], {"features": d.X_test32})[0].astype(np.float64))
    probs = np.stack(probs)  # [5, rows, 2]
    y = d.y_test
    rng = np.random.default_rng(20261123)
    draws = 200
    scale = float(1 << 16)
    q = np.rint(probs * scale)  # §15.2 fixed point (offsets cancel in the decision)
    votes = np.eye(2)[np.argmax(probs, axis=2)]
    plain_mean = np.mean(np.argmax(q.sum(axis=0), axis=1) == y)
    plain_votes = np.mean(np.argmax(votes.sum(axis=0), axis=1) == y)
    print(f"rows {len(y)}; no DP: mean {plain_mean:.4f}, votes {plain_votes:.4f}")
    print("| ε (δ = 1e-5, 5 members) | mean: μ per member | mean accuracy | votes: μ per member | votes accuracy |")
    print("|---|---|---|---|---|")
    for eps in [0.5, 1.0, 2.0, 4.0, 8.0]:
        row = [f"{eps}"]
        for mode, base in [("mean", q), ("votes", votes)]:
            mu = calibrate(eps, 1e-5, mode, 2, 5)
            accs = []
            for _ in range(draws):
                noise = rng.poisson(mu, size=base.shape) - rng.poisson(mu, size=base.shape)
                total = (base + noise).sum(axis=0)
                accs.append(np.mean(np.argmax(total, axis=1) == y))
            row += [f"{mu:g}", f"{np.mean(accs):.4f} ± {np.std(accs):.4f}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
