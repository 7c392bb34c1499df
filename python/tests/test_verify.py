"""quorate.verify and quorate.Receipt give what `quorate verify --json` gives, on the artefacts
of a real mesh."""

import shutil

import pytest

import quorate
from conftest import cli_json


def keys(demo):
    return {"roster": demo / "roster.cose", "admin": demo / "admin.pub"}


def flipped(src, dst):
    b = bytearray(src.read_bytes())
    b[-10] ^= 0x01  # inside the signature, the last field of the COSE_Sign1
    dst.write_bytes(bytes(b))
    return dst


def test_the_demo_receipts_verify_with_the_clis_exact_report(demo, quorate_bin):
    report = quorate.verify([demo / "receipts"], **keys(demo))
    status, expected = cli_json(
        quorate_bin, demo / "receipts", "--roster", demo / "roster.cose", "--admin", demo / "admin.pub"
    )
    assert status == 0
    assert report.ok and bool(report)
    assert report.json == expected
    assert len(report.receipts) >= 3
    r = report.receipts[0]
    assert r.ok and r["ok"] and r.error is None
    assert r.signer.startswith("node-")
    assert {e.kind for e in report.receipts} >= {"infer", "ensemble-member"}
    assert report.lines[-1] == f"{len(report.receipts) + len(report.aggregates)} of {len(report.receipts) + len(report.aggregates)} receipts verified"


def test_the_aggregate_receipt_is_audited_from_its_transcript(demo):
    report = quorate.verify(demo / "receipts", **keys(demo))
    assert len(report.aggregates) == 1
    agg = report.aggregates[0]
    assert agg.ok, agg.detail
    assert "transcript replayed" in agg.detail
    assert agg.path.endswith("ensemble/aggregate.cose")


def test_every_audit_log_record_verifies(demo, quorate_bin):
    logs = sorted((demo / "nodes").glob("*/audit.qlog"))
    assert logs
    report = quorate.verify(logs, **keys(demo))
    assert report.ok
    assert any(r.path.endswith("audit.qlog#0") for r in report.receipts)
    assert report.json == cli_json(quorate_bin, *logs, "--roster", demo / "roster.cose", "--admin", demo / "admin.pub")[1]


def test_a_flipped_signature_byte_is_refused_with_the_clis_code_and_reason(demo, tmp_path, quorate_bin):
    bad = flipped(sorted((demo / "receipts").glob("*.cose"))[0], tmp_path / "tampered.cose")
    report = quorate.verify(bad, **keys(demo))
    assert not report.ok
    entry = report.receipts[0]
    assert entry.error == "bad_signature"
    assert entry.reason.startswith("bad signature: the receipt was altered")
    status, expected = cli_json(quorate_bin, bad, "--roster", demo / "roster.cose", "--admin", demo / "admin.pub")
    assert status == 1
    assert report.json == expected
    with pytest.raises(quorate.VerificationFailed) as e:
        quorate.verify(bad, check=True, **keys(demo))
    assert e.value.code == "bad_signature"
    assert e.value.path == str(bad)
    assert "bad signature" in str(e.value)


def test_a_receipt_signed_by_a_key_not_trusted_is_unknown_key(demo):
    receipt = sorted((demo / "receipts").glob("*.cose"))[0]
    report = quorate.verify(receipt, trust=[demo / "keys" / "client.key.pub"])
    assert report.receipts[0].error == "unknown_key"
    assert "not among the trusted keys" in report.receipts[0].reason


def test_trusting_the_node_key_alone_verifies_its_receipt(demo):
    receipt = demo / "receipts" / "mlp-node-1.cose"
    report = quorate.verify(receipt, trust=demo / "keys" / "node-1.key.pub")
    assert report.ok
    assert report.receipts[0].signer == "node-1.key.pub"


def test_a_truncated_receipt_is_malformed(demo, tmp_path):
    src = demo / "receipts" / "mlp-node-1.cose"
    cut = tmp_path / "cut.cose"
    cut.write_bytes(src.read_bytes()[:-20])
    report = quorate.verify(cut, **keys(demo))
    assert report.receipts[0].error == "malformed"


def test_a_roster_checked_against_the_wrong_authority_raises_the_clis_reason(demo):
    with pytest.raises(quorate.VerifyError) as e:
        quorate.verify(demo / "receipts", roster=demo / "roster.cose", admin=demo / "keys" / "client.key.pub")
    assert str(e.value).startswith(f"roster {demo / 'roster.cose'}:")


def test_bad_arguments_raise_clear_errors(demo, tmp_path):
    with pytest.raises(quorate.VerifyError, match="no trusted keys"):
        quorate.verify(demo / "receipts")
    with pytest.raises(quorate.VerifyError, match="needs admin="):
        quorate.verify(demo / "receipts", roster=demo / "roster.cose")
    with pytest.raises(quorate.VerifyError, match="no receipt files found"):
        quorate.verify(tmp_path, **keys(demo))
    not_a_key = tmp_path / "x.pub"
    not_a_key.write_text("hello")
    with pytest.raises(quorate.VerifyError, match="public key"):
        quorate.verify(demo / "receipts", roster=demo / "roster.cose", admin=not_a_key)
    with pytest.raises(quorate.VerifyError, match="cannot read"):
        quorate.verify(demo / "receipts", roster=demo / "missing.cose", admin=demo / "admin.pub")


def test_receipt_fields_match_the_verified_report(demo):
    path = demo / "receipts" / "mlp-node-1.cose"
    receipt = quorate.Receipt.from_bytes(path.read_bytes())
    entry = quorate.verify(path, **keys(demo)).receipts[0]
    assert receipt.job_id == entry.job_id
    assert receipt.kid == entry.kid
    assert receipt.kind == entry.kind == "infer"
    assert receipt.model_digest == entry.model_digest
    assert receipt.issued_at == entry.issued_at
    assert receipt.provider == entry.provider
    assert receipt.runtime == entry.runtime
    assert receipt.form == "single"
    assert [(o.name, o.digest, o.salted) for o in receipt.outputs] == [
        (o["name"], o["digest"], o["salted"]) for o in entry.outputs
    ]
    assert len(receipt.inputs) == 1 and receipt.inputs[0].salted
    assert len(bytes.fromhex(receipt.nonce)) >= 16
    assert receipt.raw == path.read_bytes()
    assert quorate.Receipt.from_file(path).job_id == receipt.job_id


def test_parsing_garbage_raises_malformed_receipt_with_the_reason():
    with pytest.raises(quorate.MalformedReceipt) as e:
        quorate.Receipt.from_bytes(b"\x00not a receipt")
    assert str(e.value).startswith("malformed:")
    assert isinstance(e.value, quorate.QuorateError)
    with pytest.raises(TypeError):
        quorate.Receipt.from_bytes("a string")
