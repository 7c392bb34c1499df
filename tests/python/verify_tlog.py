"""Checks a quorate inclusion receipt and signed tree head from raw bytes (spec §18.8).

Usage: verify_tlog.py VECTOR_JSON
The vector holds the log's raw Ed25519 public key, a signed tree head, and a receipt that
carries its RFC 9942 inclusion receipt in unprotected header 394. Independently of the Rust
code, this script verifies the head's COSE_Sign1, rebuilds the receipt's leaf (the receipt
with an empty unprotected header, §18.1), recomputes the RFC 9162 root from the leaf and
the inclusion path by hand, verifies the inclusion receipt's signature over that detached
root (with pycose too), and requires the head to sign the same size and root.
Prints a JSON summary and exits 0 when everything holds, 1 otherwise.
"""
import hashlib
import json
import sys

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message

HEAD_TYPE = "application/vnd.quorate.tree-head+cbor"
TREE_SIZE, ISSUED_AT = -65537, -65538


def sign1(data):
    tag = cbor2.loads(data)
    assert isinstance(tag, cbor2.CBORTag) and tag.tag == 18, "not a tagged COSE_Sign1"
    assert len(tag.value) == 4, "COSE_Sign1 has four parts"
    return tag.value


def check_sig(key, protected, payload, signature):
    key.verify(signature, cbor2.dumps(["Signature1", protected, b"", payload]))


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_path(leaf, index, size, path):
    """RFC 9162 section 2.1.3.2."""
    assert 0 <= index < size, "leaf index outside the tree"
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0, "path too long"
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "path too short"
    return r


def main() -> int:
    v = json.load(open(sys.argv[1]))
    raw_key = bytes.fromhex(v["public_key"])
    key = Ed25519PublicKey.from_public_bytes(raw_key)
    try:
        # The signed tree head (§18.3).
        protected, unprotected, payload, signature = sign1(bytes.fromhex(v["head"]))
        header = cbor2.loads(protected)
        assert header[1] in (-8, -19) and header[3] == HEAD_TYPE, "head profile"
        assert unprotected == {}, "head unprotected header"
        check_sig(key, protected, payload, signature)
        head = cbor2.loads(payload)
        assert head[1] == 1 and head[2] == header[4], "head version or log id"
        size, root = head[3], head[4]

        # The receipt and its leaf (§18.1).
        receipt = bytes.fromhex(v["receipt"])
        r_prot, r_unprot, r_payload, r_sig = sign1(receipt)
        check_sig(key, r_prot, r_payload, r_sig)
        leaf = cbor2.dumps(cbor2.CBORTag(18, [r_prot, {}, r_payload, r_sig]), canonical=True)
        leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()

        # The inclusion receipt in header 394 (§18.4, RFC 9942).
        (inclusion,) = r_unprot[394]
        i_prot, i_unprot, i_payload, i_sig = sign1(inclusion)
        assert i_payload is None, "the root must be detached"
        ih = cbor2.loads(i_prot)
        assert ih[395] == 1, "vds is not RFC9162_SHA256"
        assert ih[4] == header[4], "inclusion receipt from another log"
        (proof,) = i_unprot[396][-1]
        tree_size, index, path = cbor2.loads(proof)
        assert tree_size == ih[TREE_SIZE], "the proof's size is not the signed size"
        computed = root_from_path(leaf_hash, index, tree_size, path)
        check_sig(key, i_prot, computed, i_sig)

        # pycose agrees on the detached-payload signature.
        msg = Sign1Message.decode(inclusion)
        msg.key = OKPKey(crv=Ed25519, x=raw_key)
        assert msg.verify_signature(detached_payload=computed), "pycose rejected"

        assert (tree_size, computed) == (size, root), "inclusion receipt and head disagree"
    except Exception as e:  # any failure is a rejection
        print(f"rejected: {e!r}", file=sys.stderr)
        return 1
    print(json.dumps({"tree_size": size, "root": root.hex(), "leaf_index": index,
                      "issued_at": ih[ISSUED_AT], "log_id": header[4].hex()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
