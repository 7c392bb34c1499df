#!/usr/bin/env python3
"""Side-by-side timing of Flower's SecAgg+ primitives (the `flwr` package from PyPI).

Flower does not expose its SecAgg+ workflow as a function that runs without its
simulation engine and message plumbing, so this script calls the primitives its
`secaggplus` client and server workflow code uses, in the same order and number, for the
same n, m, dropout and neighbour count as `quorate bench secagg`:

client: two key pairs (P-384), per neighbour one ECDH+HKDF for the share key, Shamir
shares of the mask secret key and of the self-mask seed (flwr.common.secure_aggregation
.crypto.shamir.create_shares), Fernet encryption of each neighbour's shares, one ECDH
for each pairwise mask, and pseudo_rand_gen (NumPy RandomState) for the self mask and
each pairwise mask, added mod 2^32.
server: for each dropped client, Shamir combine of its mask secret key, then per
surviving neighbour one ECDH and one pseudo_rand_gen mask; for each survivor, Shamir
combine of its seed and its self mask. Single-threaded, as Flower's server is.

What is not measured: Flower's message transport, serialisation and its key-signature
checks (Flower's SecAgg+ has none), so Flower's numbers are a lower bound on its cost.
"""
import argparse
import os
import time

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
    decrypt,
    encrypt,
    generate_shared_key,
)
from flwr.common.secure_aggregation.secaggplus_utils import (
    pseudo_rand_gen,
    share_keys_plaintext_concat,
)

MOD = 1 << 32


def keypair():
    sk = ec.generate_private_key(ec.SECP384R1())
    return sk, sk.public_key()


def sk_bytes(sk):
    return sk.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def client_work(k, m, t, peers):
    """One client's compute with k neighbours; returns seconds."""
    start = time.perf_counter()
    sk1, _ = keypair()
    sk2, _ = keypair()
    seed = os.urandom(32)
    b_shares = create_shares(seed, t, k + 1)
    sk_shares = create_shares(sk_bytes(sk2), t, k + 1)
    for j in range(k):
        key = generate_shared_key(sk1, peers[j][0])
        pt = share_keys_plaintext_concat(0, j + 1, b_shares[j + 1], sk_shares[j + 1])
        encrypt(key, pt)
    acc = np.zeros(m, dtype=np.int64)
    acc += pseudo_rand_gen(seed, MOD, [(m,)])[0]
    for j in range(k):
        shared = generate_shared_key(sk2, peers[j][1])
        mask = pseudo_rand_gen(shared, MOD, [(m,)])[0]
        acc = (acc + mask) % MOD
    return time.perf_counter() - start


def server_work(n, k, m, t, dropout):
    """Unmasking compute for n clients with `dropout` dropped after sharing keys."""
    dropped = int(round(dropout * n))
    survivors = n - dropped
    # Shares of a dropped client's key and of a survivor's seed (t of them each).
    sk2, _ = keypair()
    sk_shares = create_shares(sk_bytes(sk2), t, t)
    seed_shares = create_shares(os.urandom(32), t, t)
    peer_pk = keypair()[1]
    neighbours_alive = min(k, survivors)
    acc = np.zeros(m, dtype=np.int64)
    start = time.perf_counter()
    for _ in range(dropped):
        key_pem = combine_shares(sk_shares)
        sk = serialization.load_pem_private_key(key_pem, password=None)
        for _ in range(neighbours_alive):
            shared = generate_shared_key(sk, peer_pk)
            acc = (acc - pseudo_rand_gen(shared, MOD, [(m,)])[0]) % MOD
    for _ in range(survivors):
        seed = combine_shares(seed_shares)
        acc = (acc - pseudo_rand_gen(seed, MOD, [(m,)])[0]) % MOD
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--length", type=int, required=True)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--neighbours", type=int, default=None, help="k; default n-1 (full graph)")
    ap.add_argument("--threshold", type=int, default=None)
    ap.add_argument("--client-samples", type=int, default=3)
    a = ap.parse_args()
    n, m = a.clients, a.length
    k = a.neighbours if a.neighbours else n - 1
    t = a.threshold if a.threshold else (k // 2 + 1 if a.neighbours else n // 2 + 1)
    peers = [(keypair()[1], keypair()[1]) for _ in range(k)]
    c = min(client_work(k, m, min(t, k + 1), peers) for _ in range(a.client_samples))
    s = server_work(n, k, m, min(t, k + 1), a.dropout)
    print(f"flower secagg+ primitives: n={n} m={m} k={k} t={t} dropout={a.dropout:.2f}")
    print(f"flower client={c:.4f} s server={s:.4f} s (single thread; no transport, no signatures)")


if __name__ == "__main__":
    main()
