//! Screening of incoming connections before any public-key work (§7.3.1, finding L4):
//! address validation by Retry, and the bound on handshakes in progress.

use super::*;

#[tokio::test]
async fn attack_l4_a_spoofed_address_costs_no_handshake_it_is_validated_by_retry_first() {
    bounded(async {
        let client_key = secret(101).public_key();
        let mut server = start_server(100, &[client_key], TransportSettings::default());
        let endpoint = client(101);
        let conn = endpoint.connect(server.addr, &server.key).await.unwrap();
        assert_eq!(
            conn.request(b"hi", REQ).await.unwrap(),
            echoed(&client_key, b"hi")
        );
        assert_eq!(
            server.next_event().await,
            Seen::Connected(client_key.key_id())
        );
        let port = endpoint.local_addr().unwrap().port();
        let validated = server.validated.lock().unwrap().clone();
        assert_eq!(
            validated.iter().map(SocketAddr::port).collect::<Vec<_>>(),
            [port],
            "exactly one Retry, to the client's address, before its handshake"
        );

        // With validation off (a setting, for links where the extra round trip matters) the
        // handshake starts on the first Initial.
        let unvalidated = TransportSettings {
            validate_addresses: false,
            ..TransportSettings::default()
        };
        let mut server = start_server(100, &[client_key], unvalidated);
        client(101).connect(server.addr, &server.key).await.unwrap();
        assert_eq!(
            server.next_event().await,
            Seen::Connected(client_key.key_id())
        );
        assert!(server.validated.lock().unwrap().is_empty());
    })
    .await;
}

/// A server-certificate verifier that reports it was reached, then blocks until released and
/// refuses: the server's side of the handshake stays in progress meanwhile.
#[derive(Debug)]
struct StallingVerifier {
    reached: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    inner: PinnedVerifier,
}

impl rustls::client::danger::ServerCertVerifier for StallingVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let _ = self.reached.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv_timeout(BOUND);
        Err(rustls::Error::General("stalled on purpose".into()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[tokio::test]
async fn attack_l4_a_handshake_flood_beyond_the_limit_is_refused_before_key_agreement() {
    bounded(async {
        let stalled_key = secret(111).public_key();
        let client_key = secret(112).public_key();
        let limited = TransportSettings {
            max_concurrent_handshakes: 1,
            ..TransportSettings::default()
        };
        let mut server = start_server(110, &[stalled_key, client_key], limited);

        // A peer that starts a handshake and does not finish it holds the only slot. It runs
        // on a thread of its own, since its verifier blocks.
        let (reached_tx, reached_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let mut tls =
            crate::tls::client_config(&identity(111), server.key, Verdict::default(), crate::ALPN)
                .unwrap();
        tls.dangerous()
            .set_certificate_verifier(Arc::new(StallingVerifier {
                reached: std::sync::Mutex::new(reached_tx),
                release: std::sync::Mutex::new(release_rx),
                inner: PinnedVerifier::new(
                    PinnedKeys::from_keys([server.key]),
                    provider(),
                    Verdict::default(),
                ),
            }));
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
        let addr = server.addr;
        let staller = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let endpoint = quinn::Endpoint::client(loopback()).unwrap();
                let attempt = endpoint
                    .connect_with(quinn::ClientConfig::new(Arc::new(quic)), addr, "x.invalid")
                    .unwrap()
                    .await;
                attempt.is_err()
            })
        });
        tokio::task::spawn_blocking(move || reached_rx.recv_timeout(BOUND))
            .await
            .unwrap()
            .expect("the stalling peer reached the server's certificate");

        // Meanwhile a pinned client is refused before the server spends anything on it.
        let refused = client(112).connect(server.addr, &server.key).await;
        assert!(refused.is_err(), "refused while the slot is taken");
        assert_eq!(server.next_event().await, Seen::TooManyHandshakes(1));
        assert_eq!(server.calls.load(Ordering::SeqCst), 0);

        // Once the stalled handshake ends, the slot is free again.
        release_tx.send(()).unwrap();
        let staller_failed = tokio::task::spawn_blocking(move || staller.join().unwrap())
            .await
            .unwrap();
        assert!(staller_failed, "the stalled handshake never completed");
        let conn = client(112).connect(server.addr, &server.key).await.unwrap();
        assert_eq!(
            conn.request(b"x", REQ).await.unwrap(),
            echoed(&client_key, b"x")
        );
        loop {
            match server.next_event().await {
                Seen::Connected(k) if k == client_key.key_id() => break,
                Seen::Connected(k) => panic!("unexpected peer {k}"),
                _ => {}
            }
        }
    })
    .await;
}
