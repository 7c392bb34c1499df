"""quorate.Mesh runs jobs on a real local mesh: `quorate node` processes on 127.0.0.1 started
from the configurations `quorate demo --keep` leaves, stopped at the end."""

import hashlib
import subprocess

import numpy as np
import pytest

import quorate
from conftest import ROOT

MODELS = ROOT / "models"


@pytest.fixture(scope="module")
def mesh_dir(tmp_path_factory, quorate_bin):
    out = tmp_path_factory.mktemp("mesh") / "demo"
    run = subprocess.run(
        [quorate_bin, "demo", "--nodes", "3", "--keep", str(out)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    nodes = []
    try:
        for cfg in sorted((out / "nodes").glob("*/node.toml")):
            log = open(cfg.with_name("node-restart.log"), "w")
            p = subprocess.Popen(
                [quorate_bin, "node", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=log, text=True
            )
            nodes.append(p)
            line = p.stdout.readline()
            assert "listening on" in line, f"{cfg.parent.name} printed {line!r}"
        yield out
    finally:
        for p in nodes:
            p.terminate()
        for p in nodes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def mesh(mesh_dir):
    return quorate.Mesh(
        mesh_dir / "roster.cose", mesh_dir / "admin.pub", mesh_dir / "keys" / "client.key", models=MODELS
    )


def features():
    return np.load(MODELS / "samples" / "features.npy")


def check_receipts_verify(result, mesh_dir, tmp_path):
    paths = []
    for name, r in result.receipts.items():
        p = tmp_path / f"{name}.cose"
        p.write_bytes(r.raw)
        paths.append(p)
    report = quorate.verify(paths, roster=mesh_dir / "roster.cose", admin=mesh_dir / "admin.pub")
    assert report.ok, report.lines
    return report


def test_one_inference_returns_numpy_outputs_and_a_receipt_that_verifies(mesh, mesh_dir, tmp_path):
    x = features()
    r = mesh.infer("mlp", {"features": x})
    probs = r.outputs["probabilities"]
    assert isinstance(probs, np.ndarray) and probs.dtype == np.float32
    assert probs.shape[0] == x.shape[0]
    assert np.allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert r.receipt.kind == "infer"
    assert r.receipt.model_digest == hashlib.sha256((MODELS / "mlp.onnx").read_bytes()).hexdigest()
    assert [o.name for o in r.receipt.outputs] == ["probabilities"]
    assert r.verdict["accepted_from"] in r.receipts
    assert r.evidence is None
    check_receipts_verify(r, mesh_dir, tmp_path)


def test_a_verified_job_on_three_replicas_agrees_and_every_receipt_verifies(mesh, mesh_dir, tmp_path):
    r = mesh.infer("mlp", {"features": features()}, replicas=3, policy="default")
    assert len(r.receipts) == 3
    assert r.verdict["quorum"] == 2
    assert len(r.verdict["agreeing"]) == 3 and r.verdict["disagreeing"] == []
    assert r.verdict["proven_wrong"] == [] and r.evidence is None
    assert len({rc.job_id for rc in r.receipts.values()}) == 1
    assert all(rc.policy_digest == r.verdict["policy_digest"] for rc in r.receipts.values())
    single = mesh.infer("mlp", {"features": features()}, node=r.verdict["accepted_from"])
    assert np.array_equal(single.outputs["probabilities"], r.outputs["probabilities"])
    report = check_receipts_verify(r, mesh_dir, tmp_path)
    assert len(report.receipts) == 3


def test_the_model_can_be_named_by_digest_or_file(mesh):
    digest = hashlib.sha256((MODELS / "mlp.onnx").read_bytes()).hexdigest()
    a = mesh.infer("sha256:" + digest, {"features": features()})
    b = mesh.infer(MODELS / "mlp.onnx", {"features": features()})
    assert a.receipt.model_digest == b.receipt.model_digest == digest


def test_failures_raise_with_the_reason(mesh, mesh_dir):
    with pytest.raises(quorate.MeshError, match="no reachable node serves model"):
        mesh.infer("ab" * 32, {"features": features()})
    with pytest.raises(quorate.MeshError, match="refused"):
        mesh.infer("mlp", {"not_an_input": features()}, node="node-1")
    with pytest.raises(quorate.MeshError, match="policy"):
        mesh.infer("mlp", {"features": features()}, replicas=3, policy="sometimes")
    with pytest.raises(quorate.MeshError, match="no node"):
        mesh.infer("mlp", {"features": features()}, node="node-99")
    with pytest.raises(ValueError, match="not a SHA-256 digest"):
        mesh.infer("no-such-model", {"features": features()})
    with pytest.raises(quorate.MeshError, match="roster"):
        quorate.Mesh(mesh_dir / "roster.cose", mesh_dir / "keys" / "client.key.pub", mesh_dir / "keys" / "client.key")


def test_a_private_ensemble_returns_the_mean_and_its_aggregate_receipt_audits(mesh, mesh_dir, tmp_path):
    members = ["node-1", "node-2", "node-3"]
    r = mesh.ensemble(members, {"features": features()}, mode="mean", classes=2)
    assert sorted(r.contributors) == members and r.dropped == []
    assert r.mean.shape == (2,)
    assert abs(float(r.mean.sum()) - 1.0) < 1e-3
    assert set(r.member_receipts) == set(members)
    assert all(rc.kind == "ensemble-member" for rc in r.member_receipts.values())
    aggregate = r.save(tmp_path / "ens")
    report = quorate.verify(aggregate, roster=mesh_dir / "roster.cose", admin=mesh_dir / "admin.pub")
    assert report.ok, report.lines
    assert report.aggregates[0].ok and "transcript replayed" in report.aggregates[0].detail
    votes = mesh.ensemble(members, {"features": features()}, mode="votes", classes=2)
    assert int(votes.votes.sum()) == 3


def test_an_ensemble_with_an_unknown_member_raises_with_the_reason(mesh):
    with pytest.raises(quorate.MeshError, match="no member"):
        mesh.ensemble(["node-1", "node-9"], {"features": features()})
    with pytest.raises(quorate.MeshError, match="mode"):
        mesh.ensemble(["node-1", "node-2"], {"features": features()}, mode="median")
