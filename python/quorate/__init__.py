"""quorate for Python: verify receipts offline, read them, and run verified jobs on a mesh.

    import quorate
    report = quorate.verify(["demo/receipts"], roster="demo/roster.cose", admin="demo/admin.pub")
    report.ok, report.receipts[0].signer, report.receipts[0].error

Verification is the Rust verifier of `quorate verify`, with the same fields, failure codes and
reasons as `quorate verify --json`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterable, Optional, Sequence, Union

from ._native import MalformedReceipt, MeshError, QuorateError, VerifyError
from . import _native

__all__ = [
    "verify",
    "Report",
    "Entry",
    "Receipt",
    "Commitment",
    "QuorateError",
    "VerifyError",
    "VerificationFailed",
    "MalformedReceipt",
    "MeshError",
    "Mesh",
    "InferResult",
    "EnsembleResult",
]

PathLike = Union[str, "os.PathLike[str]"]


class Entry(dict):
    """One entry of the report (a receipt, chain, aggregate or bundle): the fields of
    `quorate verify --json`, readable as keys or attributes (`entry.ok`, `entry["reason"]`);
    a field the CLI leaves out reads as None."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            return None


def _entries(items: Optional[list]) -> list:
    return [Entry(i) for i in items or []]


class VerificationFailed(VerifyError):
    """Raised by `verify(..., check=True)` when something did not verify. Carries the first
    failure's `path`, `code` (`bad_signature`, `malformed`, `unknown_key`, …) and `reason`,
    worded as `quorate verify` words them, and the whole `report`."""

    def __init__(self, report: "Report"):
        self.report = report
        first = report.failures()[0] if report.failures() else Entry()
        self.path = first.path
        self.code = first.error if isinstance(first.error, str) else None
        self.reason = first.reason or first.detail or first.error or "not verified"
        failed = len(report.failures())
        super().__init__(f"{failed} failed; first: {self.path}: {self.reason}")


class Report:
    """What `quorate verify --json` reports, plus its text lines.

    ok: everything verified (the command's exit status 0)
    receipts, chains, aggregates, bundles: lists of `Entry`
    lines: what `quorate verify` prints; notes: e.g. an expired roster
    json: the command's JSON document itself
    """

    def __init__(self, raw: dict):
        self.json: dict = raw["report"]
        self.ok: bool = bool(raw["ok"])
        self.lines: list = raw["lines"]
        self.notes: list = raw["notes"]
        self.receipts = _entries(self.json.get("receipts"))
        self.chains = _entries(self.json.get("chains"))
        self.aggregates = _entries(self.json.get("aggregates"))
        self.bundles = _entries(self.json.get("bundles"))

    def failures(self) -> list:
        """Every entry that did not verify."""
        return [e for e in self.receipts + self.chains + self.aggregates + self.bundles if not e.ok]

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return f"<quorate.Report ok={self.ok} {len(self.receipts)} receipts, {len(self.failures())} failures>"

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _paths(p: Union[PathLike, Iterable[PathLike], None]) -> list:
    if p is None:
        return []
    if isinstance(p, (str, bytes, os.PathLike)):
        return [os.fspath(p)]
    return [os.fspath(x) for x in p]


def verify(
    paths: Union[PathLike, Sequence[PathLike]],
    roster: Optional[PathLike] = None,
    admin: Optional[PathLike] = None,
    trust: Union[PathLike, Sequence[PathLike], None] = None,
    *,
    check: bool = False,
    now: Optional[int] = None,
) -> Report:
    """Verifies receipts, batch receipts, audit logs (*.qlog), chains (*.qchain), evidence
    bundles (*.bundle) and aggregate receipts, or directories of them, exactly as
    `quorate verify PATHS --roster ROSTER --admin ADMIN [--trust KEY…] --json` does.

    Raises VerifyError when verification cannot run (bad roster, key, or no files), with the
    command's message; with check=True also raises VerificationFailed when anything failed.
    `now` (Unix seconds) is when the roster's expiry is judged; default: the clock.
    """
    raw = json.loads(
        _native.verify_paths(
            _paths(paths),
            _paths(trust),
            os.fspath(roster) if roster is not None else None,
            os.fspath(admin) if admin is not None else None,
            int(time.time()) if now is None else int(now),
        )
    )
    report = Report(raw)
    if check and not report.ok:
        raise VerificationFailed(report)
    return report


class Commitment:
    """A receipt's commitment to one tensor: its name, SHA-256 digest (hex), and whether it is
    salted (§3.3)."""

    def __init__(self, d: dict):
        self.name: str = d["name"]
        self.digest: str = d["digest"]
        self.salted: bool = d["salted"]

    def __repr__(self) -> str:
        return f"Commitment({self.name!r}, sha256:{self.digest[:16]}…, salted={self.salted})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Commitment) and vars(self) == vars(other)


class Receipt:
    """A parsed receipt (COSE_Sign1, §4). Parsing checks the format, not the signature: use
    `verify` for that.

    job_id, nonce, model_digest, previous, policy_digest: hex; kind: e.g. "infer";
    inputs, outputs: lists of Commitment; provider, runtime: what ran it; issued_at: Unix
    seconds; kid: the signer's key id; form: "single" or "batch"; raw: the bytes.
    """

    def __init__(self, raw: bytes, fields: dict):
        self.raw = bytes(raw)
        self.form: str = fields["form"]
        self.kid: str = fields["kid"]
        self.job_id: str = fields["job_id"]
        self.nonce: str = fields["nonce"]
        self.kind: str = fields["kind"]
        self.model_digest: str = fields["model_digest"]
        self.inputs = [Commitment(c) for c in fields["inputs"]]
        self.outputs = [Commitment(c) for c in fields["outputs"]]
        self.provider: str = fields["provider"]
        self.runtime: str = fields["runtime"]
        self.issued_at: int = fields["issued_at"]
        self.previous: Optional[str] = fields["previous"]
        self.policy_digest: Optional[str] = fields["policy_digest"]

    @classmethod
    def from_bytes(cls, b: Union[bytes, bytearray, memoryview]) -> "Receipt":
        """Parses a receipt; raises MalformedReceipt with the reason `quorate verify` gives."""
        if not isinstance(b, (bytes, bytearray, memoryview)):
            raise TypeError(f"Receipt.from_bytes takes bytes, not {type(b).__name__}")
        b = bytes(b)
        return cls(b, json.loads(_native.parse_receipt(b)))

    @classmethod
    def from_file(cls, path: PathLike) -> "Receipt":
        """Reads and parses a receipt file."""
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def __repr__(self) -> str:
        return (
            f"<quorate.Receipt {self.kind} job {self.job_id[:16]}… by {self.kid}, "
            f"model sha256:{self.model_digest[:16]}…, {self.runtime} on {self.provider}>"
        )


def _model_digest(model: Union[str, bytes, "os.PathLike[str]"], models: Optional[PathLike]) -> bytes:
    """A model as its SHA-256 digest: 64 hex digits (optionally `sha256:`), an .onnx file, or
    a name looked up as NAME.onnx in `models`."""
    import hashlib

    if isinstance(model, (bytes, bytearray)) and len(model) == 32:
        return bytes(model)
    if isinstance(model, str):
        h = model[len("sha256:"):] if model.startswith("sha256:") else model
        if len(h) == 64:
            try:
                return bytes.fromhex(h)
            except ValueError:
                pass
    path = os.fspath(model)
    if not os.path.isfile(path) and models is not None:
        path = os.path.join(os.fspath(models), f"{model}.onnx")
    if not os.path.isfile(path):
        raise ValueError(
            f"model {model!r} is not a SHA-256 digest, an .onnx file, or a model in models={models!r}"
        )
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def _raw_inputs(inputs: dict) -> list:
    import numpy as np

    if not isinstance(inputs, dict) or not inputs:
        raise TypeError("inputs must be a non-empty dict of name -> numpy array")
    out = []
    for name, value in inputs.items():
        a = np.asarray(value)
        if a.dtype == np.float16 or a.dtype.kind not in "fiub":
            raise TypeError(f"input {name!r}: dtype {a.dtype} is not supported")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        out.append((str(name), a.dtype.name, [int(d) for d in a.shape], a.tobytes()))
    return out


class InferResult:
    """The result of `Mesh.infer`.

    outputs: dict of name -> numpy array (the accepted replica's)
    receipt: the accepted Receipt; receipts: dict of node name -> Receipt, one per replica
    verdict: dict (as `quorate infer --replicas` writes verdict.json): agreeing, disagreeing,
      proven_wrong, failed, quorum, policy, accepted_from, job_id
    evidence: the evidence bundle's bytes when replicas disagreed, else None
    """

    def __init__(self, verdict: str, outputs: list, receipt: bytes, receipts: list, evidence):
        import numpy as np

        self.verdict: dict = json.loads(verdict)
        self.outputs = {
            name: np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()
            for name, dtype, shape, data in outputs
        }
        self.receipt = Receipt.from_bytes(receipt)
        self.receipts = {name: Receipt.from_bytes(r) for name, r in receipts}
        self.evidence: Optional[bytes] = evidence

    def __repr__(self) -> str:
        return (
            f"<quorate.InferResult {sorted(self.outputs)} from {self.verdict['accepted_from']}, "
            f"{len(self.verdict['agreeing'])} agreeing>"
        )


class Mesh:
    """A client on a quorate mesh: `Mesh(roster, admin, key)` checks the roster against the
    roster authority's key and uses the client's secret key (which must be in the roster), as
    `quorate infer --roster --admin --key` does.

        mesh = quorate.Mesh("roster.cose", "admin.pub", "client.key", models="models")
        r = mesh.infer("mlp", {"features": x}, replicas=3, policy="default")
        r.outputs["probabilities"], r.receipt.job_id, r.verdict["agreeing"]
    """

    def __init__(
        self,
        roster: PathLike,
        admin: PathLike,
        key: PathLike,
        *,
        models: Optional[PathLike] = None,
        timeout: float = 30.0,
    ):
        self._native = _native.NativeMesh(os.fspath(roster), os.fspath(admin), os.fspath(key), float(timeout))
        self.models = models

    def nodes(self) -> list:
        """The roster's entries: dicts of name, role, kid, addresses."""
        return [
            {"name": n, "role": r, "kid": k, "addresses": a} for n, r, k, a in self._native.nodes()
        ]

    def infer(
        self,
        model: Union[str, bytes, "os.PathLike[str]"],
        inputs: dict,
        replicas: int = 1,
        policy: str = "default",
        quorum: Optional[int] = None,
        node: Optional[str] = None,
    ) -> InferResult:
        """Runs `model` (a digest, an .onnx file, or a name in `models`) on `inputs` (name ->
        numpy array). With replicas > 1 a verified job: the same input on that many distinct
        nodes, accepted when `quorum` (default: a strict majority) agree under `policy`
        (exact, default, or tolerance:atol=A,rtol=B); failed replicas are replaced and a node
        whose signed outputs disagree is named, with an evidence bundle. Every receipt is
        checked before anything is returned. Raises MeshError with the reason otherwise."""
        if not isinstance(replicas, int) or replicas < 1:
            raise ValueError("replicas must be a positive integer")
        digest = _model_digest(model, self.models)
        return InferResult(
            *self._native.infer(digest, _raw_inputs(inputs), replicas, policy, quorum, node)
        )

    def ensemble(
        self,
        members: Union[Sequence[str], dict],
        inputs: dict,
        mode: str = "mean",
        classes: int = 2,
        threshold: Optional[int] = None,
        dp: Optional[tuple] = None,
    ) -> "EnsembleResult":
        """A private ensemble (`quorate ensemble`): each member node runs its model on
        `inputs`, masks its output and takes part in secure aggregation; only the mean
        probabilities (mode="mean") or the vote counts (mode="votes") come back, never a
        member's own output. `members`: node names (each with its own model) or a dict of
        node name -> model (digest, .onnx file or name in `models`). `threshold`: members
        needed (default a strict majority); `dp`: (epsilon, delta) for distributed
        differential privacy. Raises MeshError with the reason when the round aborts."""
        if isinstance(members, dict):
            pairs = [(n, None if m is None else _model_digest(m, self.models)) for n, m in members.items()]
        else:
            pairs = [(n, None) for n in members]
        local = []
        if self.models is not None and os.path.isdir(os.fspath(self.models)):
            import hashlib

            for f in sorted(os.listdir(os.fspath(self.models))):
                if f.endswith(".onnx"):
                    with open(os.path.join(os.fspath(self.models), f), "rb") as fh:
                        local.append(hashlib.sha256(fh.read()).digest())
        return EnsembleResult(
            *self._native.ensemble(
                pairs, local, _raw_inputs(inputs), mode, int(classes), threshold,
                None if dp is None else (float(dp[0]), float(dp[1])),
            )
        )


class EnsembleResult:
    """The result of `Mesh.ensemble`.

    mean (mode "mean") or votes (mode "votes"): numpy array; result: the same, as a list
    contributors, dropped: member names; events: what happened in the round
    epsilon_calibrated, epsilon_achieved: with dp, else None
    aggregate: the aggregate Receipt bytes (signed by this client), transcript: its bytes,
    member_receipts: dict of member name -> Receipt
    save(dir): writes aggregate.cose, transcript.cbor and members/*.cose, which
    `quorate.verify(dir, ...)` and `quorate verify DIR` audit offline
    """

    def __init__(self, summary: str, aggregate: bytes, transcript: bytes, members: list):
        import numpy as np

        s = json.loads(summary)
        self.summary = s
        self.job_id: str = s["job_id"]
        self.mode: str = s["mode"]
        self.result: list = s["result"]
        self.mean = np.asarray(self.result) if self.mode == "mean" else None
        self.votes = np.asarray(self.result) if self.mode == "votes" else None
        self.contributors: list = s["contributors"]
        self.dropped: list = s["dropped"]
        self.events: list = s["events"]
        self.epsilon_calibrated = s["epsilon_calibrated"]
        self.epsilon_achieved = s["epsilon_achieved"]
        self.aggregate: bytes = bytes(aggregate)
        self.transcript: bytes = bytes(transcript)
        self._members = [(n, bytes(r)) for n, r in members]
        self.member_receipts = {n: Receipt.from_bytes(r) for n, r in self._members}

    def save(self, directory: PathLike) -> str:
        """Writes the folder `quorate ensemble --out` writes (less result.json); returns the
        aggregate receipt's path."""
        d = os.fspath(directory)
        os.makedirs(os.path.join(d, "members"), exist_ok=True)
        with open(os.path.join(d, "aggregate.cose"), "wb") as f:
            f.write(self.aggregate)
        with open(os.path.join(d, "transcript.cbor"), "wb") as f:
            f.write(self.transcript)
        for n, r in self._members:
            with open(os.path.join(d, "members", f"{n}.cose"), "wb") as f:
                f.write(r)
        return os.path.join(d, "aggregate.cose")

    def __repr__(self) -> str:
        return f"<quorate.EnsembleResult {self.mode} {self.result} from {self.contributors}>"
