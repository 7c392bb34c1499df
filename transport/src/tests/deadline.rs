//! The client's response deadline over real QUIC (§7.6.1): a node slower than the compute
//! budget but within the network allowance is still waited for, and one that never answers
//! is given up on, never before the budget plus the allowance. Only lower bounds on elapsed
//! time are asserted (timers never fire early), apart from one slack of 700 ms.

use std::time::Instant;

use super::*;
use crate::deadline::RESPONSE_MARGIN_FLOOR;

/// A server whose handler waits `request[0] × 100 ms` before echoing.
fn slow_server(seed: u8, client: PublicKey) -> (MeshEndpoint, SocketAddr, PublicKey) {
    let identity = identity(seed);
    let key = identity.public_key();
    let endpoint = bind_server(
        loopback(),
        identity,
        PinnedKeys::from_keys([client]),
        TransportSettings::default(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let serving = endpoint.clone();
    tokio::spawn(async move {
        serving
            .serve(|_peer: PublicKey, request: Vec<u8>| async move {
                let tenths = u64::from(request.first().copied().unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(100 * tenths)).await;
                request
            })
            .await;
    });
    (endpoint, addr, key)
}

#[tokio::test]
async fn a_response_later_than_the_budget_but_within_the_network_allowance_is_taken() {
    bounded(async {
        let (server, addr, key) = slow_server(120, secret(121).public_key());
        let client = client(121);
        let conn = client.connect(addr, &key).await.unwrap();
        // Budget zero: the loopback RTT is far below the floor, so the client waits 1 s; the
        // node answers after 300 ms.
        assert_eq!(
            conn.request_within(&[3], Duration::ZERO).await.unwrap(),
            [3]
        );
        assert!(conn.rtt() < RESPONSE_MARGIN_FLOOR);
        server.close();
    })
    .await;
}

#[tokio::test]
async fn a_node_that_never_answers_is_given_up_on_after_budget_plus_allowance() {
    bounded(async {
        let (server, addr, key) = slow_server(122, secret(123).public_key());
        let client = client(123);
        let conn = client.connect(addr, &key).await.unwrap();
        let budget = Duration::from_millis(500);
        let start = Instant::now();
        // The handler would take 25.5 s, beyond any bound here.
        let err = conn.request_within(&[255], budget).await.unwrap_err();
        let waited = start.elapsed();
        match err {
            TransportError::Timeout { after, .. } => {
                assert!(after >= budget + RESPONSE_MARGIN_FLOOR, "{after:?}")
            }
            other => panic!("expected a timeout, got {other}"),
        }
        assert!(waited >= budget + RESPONSE_MARGIN_FLOOR, "{waited:?}");
        server.close();
    })
    .await;
}
