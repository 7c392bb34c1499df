"""Verifies a quorate receipt with two independent COSE/Ed25519 implementations.

Usage: verify_receipt.py RECEIPT PUBKEY_PEM
Prints a JSON summary of the payload and exits 0 if both pycose and a hand-built
RFC 9052 Sig_structure checked with `cryptography` accept the signature; 1 otherwise.
"""
import json
import sys

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message


def main() -> int:
    receipt = open(sys.argv[1], "rb").read()
    public = load_pem_public_key(open(sys.argv[2], "rb").read())
    assert isinstance(public, Ed25519PublicKey)
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)

    # 1. pycose.
    try:
        msg = Sign1Message.decode(receipt)
        msg.key = OKPKey(crv=Ed25519, x=raw)
        pycose_ok = bool(msg.verify_signature())
    except Exception as e:  # any decoding failure is a rejection
        print(f"pycose rejected: {e}", file=sys.stderr)
        pycose_ok = False

    # 2. cbor2 + cryptography, Sig_structure built by hand (RFC 9052 section 4.4).
    try:
        tag = cbor2.loads(receipt)
        assert isinstance(tag, cbor2.CBORTag) and tag.tag == 18, "not a tagged COSE_Sign1"
        protected, unprotected, payload, signature = tag.value
        header = cbor2.loads(protected)
        assert header[1] in (-8, -19), "alg is not EdDSA"
        tbs = cbor2.dumps(["Signature1", protected, b"", payload])
        public.verify(signature, tbs)
        manual_ok = True
    except (InvalidSignature, AssertionError, ValueError, TypeError, cbor2.CBORDecodeError) as e:
        print(f"cryptography rejected: {e!r}", file=sys.stderr)
        manual_ok = False

    summary = {"pycose": pycose_ok, "manual": manual_ok}
    if manual_ok:
        body = cbor2.loads(payload)
        summary.update(
            kid=header[4].hex(),
            content_type=header[3],
            version=body[1],
            job_id=body[2].hex(),
            kind=body[4],
            model_digest=body[5].hex(),
            outputs=[[c[0], c[1].hex(), c[2]] for c in body[7]],
        )
    print(json.dumps(summary))
    return 0 if pycose_ok and manual_ok else 1


if __name__ == "__main__":
    sys.exit(main())
