"""Verifies quorate batch receipts (SPEC section 5.3) without quorate's code.

Usage: verify_batch_receipt.py PUBKEY_PEM RECEIPT...
For each receipt: decodes [1, leaf, index, path, root] with cbor2, checks the signed batch
root with pycose and again with a hand-built RFC 9052 Sig_structure checked by
`cryptography`, recomputes the RFC 9162 root from the leaf hash, index, size and path, and
compares it with the signed one. Prints a JSON list of summaries (one per receipt, with
"ok" and, on failure, "error") and exits 0 only if every receipt verified.
"""
import hashlib
import json
import sys

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

# The RFC 9162 path walk (section 2.1.3.2), shared with the transparency-log check beside it.
from verify_tlog import root_from_path

ROOT_TYPE = "application/vnd.quorate.batch-root+cbor"
MAX_LEAVES = 1 << 20


def verify(data, public, raw):
    outer = cbor2.loads(data)
    assert isinstance(outer, list) and len(outer) == 5 and outer[0] == 1, "not [1, leaf, index, path, root]"
    _, leaf, index, path, root = outer
    # The signed root: pycose, then by hand.
    msg = Sign1Message.decode(root)
    msg.key = OKPKey(crv=Ed25519, x=raw)
    assert msg.verify_signature(), "pycose: bad signature on the batch root"
    tag = cbor2.loads(root)
    assert isinstance(tag, cbor2.CBORTag) and tag.tag == 18, "root is not a tagged COSE_Sign1"
    protected, unprotected, payload, signature = tag.value
    header = cbor2.loads(protected)
    assert header[1] in (-8, -19), "alg is not EdDSA"
    assert header[3] == ROOT_TYPE, f"content type {header[3]!r}"
    assert unprotected == {}, "unprotected header not empty"
    public.verify(signature, cbor2.dumps(["Signature1", protected, b"", payload]))
    body = cbor2.loads(payload)
    assert body[1] == 1, "batch root version"
    signed_root, size, issued_at = body[2], body[3], body[4]
    assert 1 <= size <= MAX_LEAVES, "batch size out of range"
    # The leaf is the receipt payload; its hash walks the path up to the signed root.
    assert all(isinstance(p, bytes) and len(p) == 32 for p in path), "a path hash is 32 bytes"
    computed = root_from_path(hashlib.sha256(b"\x00" + leaf).digest(), index, size, path)
    assert computed == signed_root, "the inclusion path does not lead to the signed root"
    p = cbor2.loads(leaf)
    return {
        "ok": True,
        "kid": header[4].hex(),
        "index": index,
        "size": size,
        "root": signed_root.hex(),
        "issued_at": issued_at,
        "job_id": p[2].hex(),
        "kind": p[4],
        "outputs": [[c[0], c[1].hex(), c[2]] for c in p[7]],
    }


def main() -> int:
    public = load_pem_public_key(open(sys.argv[1], "rb").read())
    assert isinstance(public, Ed25519PublicKey)
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    results = []
    for path in sys.argv[2:]:
        try:
            results.append(verify(open(path, "rb").read(), public, raw))
        except Exception as e:  # any failure is a rejection, reported by name
            results.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
    print(json.dumps(results))
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
