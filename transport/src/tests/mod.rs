//! Transport tests over real QUIC on 127.0.0.1 (§7), each bounded by a tokio timeout.
//! No test measures time: a limit that runs out is a failure, never an expected outcome.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quorate_crypto::{KeyId, PublicKey, SecretKey};
use quorate_protocol::wire::StreamCode;
use rustls::pki_types::CertificateDer;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::mpsc;

use crate::endpoint::{MeshEndpoint, ServerEvent, bind_client, bind_server};
use crate::settings::TransportSettings;
use crate::tls::{PeerRefusal, PinnedKeys, PinnedVerifier, TlsIdentity, Verdict, provider};
use crate::{TransportError, peer_key, public_key_of, request, request_with_limit};

/// Upper bound on any single test; reaching it fails the test.
const BOUND: Duration = Duration::from_secs(20);
/// Request timeout used by clients in these tests (never expected to run out).
const REQ: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn secret(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn identity(seed: u8) -> Arc<TlsIdentity> {
    Arc::new(TlsIdentity::from_secret_key(&secret(seed)).unwrap())
}

/// What the server's observer saw, reduced to comparable values.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Connected(KeyId),
    RefusedNotPinned(KeyId),
    NoCertificate,
    Alpn,
    PeerGaveUp,
    Abandoned(StreamCode),
    TooManyHandshakes(usize),
    OtherFailure(String),
}

struct Server {
    endpoint: MeshEndpoint,
    addr: SocketAddr,
    key: PublicKey,
    events: mpsc::UnboundedReceiver<Seen>,
    calls: Arc<AtomicUsize>,
    /// Addresses the server sent a Retry to (§7.3.1), apart from the other events.
    validated: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
}

impl Server {
    async fn next_event(&mut self) -> Seen {
        tokio::time::timeout(BOUND, self.events.recv())
            .await
            .expect("server event within bound")
            .expect("observer alive")
    }
}

/// A server on loopback whose handler answers `client key || request`.
fn start_server(seed: u8, pinned: &[PublicKey], settings: TransportSettings) -> Server {
    let identity = identity(seed);
    let key = identity.public_key();
    let (tx, events) = mpsc::unbounded_channel();
    let validated = Arc::new(std::sync::Mutex::new(Vec::new()));
    let validations = Arc::clone(&validated);
    let endpoint = bind_server(
        loopback(),
        identity,
        PinnedKeys::from_keys(pinned.iter().copied()),
        settings,
    )
    .unwrap();
    endpoint.set_observer(Arc::new(move |event: &ServerEvent| {
        let seen = match event {
            ServerEvent::AddressValidation { remote } => {
                validations.lock().unwrap().push(*remote);
                return;
            }
            ServerEvent::HandshakeFailed {
                error: TransportError::TooManyHandshakes { limit },
                ..
            } => Seen::TooManyHandshakes(*limit),
            ServerEvent::Connected { peer, .. } => Seen::Connected(*peer),
            ServerEvent::HandshakeFailed { error, .. } => match error {
                TransportError::RefusedIdentity(PeerRefusal::NotPinned { key_id }) => {
                    Seen::RefusedNotPinned(*key_id)
                }
                TransportError::RefusedIdentity(PeerRefusal::ChainLength(0)) => Seen::NoCertificate,
                TransportError::AlpnMismatch => Seen::Alpn,
                TransportError::RefusedByPeer { .. } => Seen::PeerGaveUp,
                other => Seen::OtherFailure(other.to_string()),
            },
            ServerEvent::StreamAbandoned { code, .. } => Seen::Abandoned(*code),
        };
        let _ = tx.send(seen);
    }));
    let addr = endpoint.local_addr().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let serving = endpoint.clone();
    let counter = Arc::clone(&calls);
    tokio::spawn(async move {
        serving
            .serve(move |peer: PublicKey, request: Vec<u8>| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut response = peer.to_bytes().to_vec();
                    response.extend_from_slice(&request);
                    response
                }
            })
            .await;
    });
    Server {
        endpoint,
        addr,
        key,
        events,
        calls,
        validated,
    }
}

fn client(seed: u8) -> MeshEndpoint {
    bind_client(loopback(), identity(seed), TransportSettings::default()).unwrap()
}

fn echoed(client_key: &PublicKey, payload: &[u8]) -> Vec<u8> {
    let mut v = client_key.to_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test finished within bound")
}

#[test]
fn certificate_carries_the_node_key_and_only_it() {
    let sk = secret(1);
    let id = TlsIdentity::from_secret_key(&sk).unwrap();
    assert_eq!(id.public_key(), sk.public_key());
    assert_eq!(public_key_of(id.certificate_der()), Ok(sk.public_key()));
    let other = TlsIdentity::from_secret_key(&secret(2)).unwrap();
    assert_ne!(public_key_of(other.certificate_der()), Ok(sk.public_key()));
    // Debug output names the key id only.
    let shown = format!("{id:?}");
    assert!(
        shown.contains(&sk.public_key().key_id().to_string()),
        "{shown}"
    );
}

#[test]
fn non_ed25519_and_malformed_certificates_are_refused() {
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x.invalid".to_string()])
        .unwrap()
        .self_signed(&p256)
        .unwrap();
    assert_eq!(public_key_of(cert.der()), Err(PeerRefusal::NotEd25519));
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
    assert_eq!(
        public_key_of(&garbage),
        Err(PeerRefusal::MalformedCertificate)
    );
    let mut truncated = identity(1).certificate_der().to_vec();
    truncated.truncate(truncated.len() - 1);
    assert_eq!(
        public_key_of(&CertificateDer::from(truncated)),
        Err(PeerRefusal::MalformedCertificate)
    );
}

#[test]
fn pinned_keys_are_shared_and_updatable() {
    let a = secret(1).public_key();
    let b = secret(2).public_key();
    let pins = PinnedKeys::new();
    let shared = pins.clone();
    assert!(pins.is_empty());
    assert!(pins.insert(a));
    assert!(!pins.insert(a));
    assert!(shared.contains(&a));
    shared.replace([b]);
    assert!(!pins.contains(&a) && pins.contains(&b));
    assert!(pins.remove(&b));
    assert_eq!(pins.len(), 0);
}

#[test]
fn verifier_refuses_chains_schemes_tls12_and_bad_signatures() {
    use rustls::client::danger::ServerCertVerifier;

    let id = identity(1);
    let cert = id.certificate_der().clone();
    let verdict = Verdict::default();
    let v = PinnedVerifier::new(
        PinnedKeys::from_keys([id.public_key()]),
        provider(),
        verdict.clone(),
    );
    assert_eq!(v.supported_verify_schemes(), vec![SignatureScheme::ED25519]);
    let name = rustls::pki_types::ServerName::try_from("x.invalid").unwrap();
    let now = rustls::pki_types::UnixTime::now();
    assert!(v.verify_server_cert(&cert, &[], &name, &[], now).is_ok());
    // A chain of two certificates.
    assert!(
        v.verify_server_cert(&cert, std::slice::from_ref(&cert), &name, &[], now)
            .is_err()
    );
    assert_eq!(verdict.refusal(), Some(PeerRefusal::ChainLength(2)));

    let message = b"tls13 transcript stand-in";
    let good = secret(1).sign(message).0.to_vec();
    let sig = |scheme: SignatureScheme, bytes: Vec<u8>| {
        // rustls builds this struct only by decoding its TLS encoding (RFC 8446 §4.4.3):
        // scheme (u16), length (u16), signature.
        use rustls::internal::msgs::codec::{Codec, Reader};
        let mut wire = u16::from(scheme).to_be_bytes().to_vec();
        wire.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        wire.extend_from_slice(&bytes);
        DigitallySignedStruct::read(&mut Reader::init(&wire)).unwrap()
    };
    assert!(
        v.verify_tls13_signature(message, &cert, &sig(SignatureScheme::ED25519, good.clone()))
            .is_ok()
    );
    for (scheme, bytes, refusal) in [
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            good.clone(),
            PeerRefusal::SignatureScheme(0x0403),
        ),
        (
            SignatureScheme::ED25519,
            secret(2).sign(message).0.to_vec(),
            PeerRefusal::BadHandshakeSignature,
        ),
    ] {
        let verdict = Verdict::default();
        let v = PinnedVerifier::new(
            PinnedKeys::from_keys([id.public_key()]),
            provider(),
            verdict.clone(),
        );
        assert!(
            v.verify_tls13_signature(message, &cert, &sig(scheme, bytes))
                .is_err()
        );
        assert_eq!(verdict.refusal(), Some(refusal));
    }
    assert!(
        v.verify_tls12_signature(message, &cert, &sig(SignatureScheme::ED25519, good))
            .is_err()
    );
    // A correct signature from an unpinned key is refused on the pin alone.
    let stranger = identity(3);
    let verdict = Verdict::default();
    let v = PinnedVerifier::new(
        PinnedKeys::from_keys([id.public_key()]),
        provider(),
        verdict.clone(),
    );
    let signed = secret(3).sign(message).0.to_vec();
    assert!(
        v.verify_tls13_signature(
            message,
            stranger.certificate_der(),
            &sig(SignatureScheme::ED25519, signed)
        )
        .is_err()
    );
    assert_eq!(
        verdict.refusal(),
        Some(PeerRefusal::NotPinned {
            key_id: stranger.public_key().key_id()
        })
    );
}

#[tokio::test]
async fn mutual_handshake_and_round_trip_teach_both_sides_the_peer_key() {
    bounded(async {
        let client_key = secret(11).public_key();
        let mut server = start_server(10, &[client_key], TransportSettings::default());
        let client = client(11);
        let conn = client.connect(server.addr, &server.key).await.unwrap();
        // The client learned the server's key from the handshake.
        assert_eq!(conn.peer(), server.key);
        assert_eq!(peer_key(conn.connection()), Some(server.key));
        // The server learned the client's key: its handler echoes it.
        let response = conn.request(b"hello", REQ).await.unwrap();
        assert_eq!(response, echoed(&client_key, b"hello"));
        assert_eq!(
            server.next_event().await,
            Seen::Connected(client_key.key_id())
        );
        // Empty and large payloads, through the free function.
        let big = vec![0xa5u8; 1 << 20];
        assert_eq!(
            request(conn.connection(), &[], REQ).await.unwrap(),
            echoed(&client_key, &[])
        );
        assert_eq!(
            request(conn.connection(), &big, REQ).await.unwrap(),
            echoed(&client_key, &big)
        );
        assert_eq!(server.calls.load(Ordering::SeqCst), 3);
        server.endpoint.close();
    })
    .await;
}

#[tokio::test]
async fn server_accept_returns_the_proven_client_key() {
    bounded(async {
        let server_id = identity(20);
        let server_key = server_id.public_key();
        let client_key = secret(21).public_key();
        let server = bind_server(
            loopback(),
            server_id,
            PinnedKeys::from_keys([client_key]),
            TransportSettings::default(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let client = client(21);
        let (accepted, connected) =
            tokio::join!(server.accept(), client.connect(addr, &server_key));
        let accepted = accepted.expect("endpoint open").unwrap();
        assert_eq!(accepted.peer(), client_key);
        assert_eq!(peer_key(accepted.connection()), Some(client_key));
        assert_eq!(connected.unwrap().peer(), server_key);
    })
    .await;
}

#[tokio::test]
async fn client_not_pinned_by_the_server_is_refused() {
    bounded(async {
        let pinned_other = secret(99).public_key();
        let mut server = start_server(30, &[pinned_other], TransportSettings::default());
        let stranger = client(31);
        let stranger_key = stranger.public_key();
        // TLS 1.3 client authentication is the client's last flight: the refusal arrives
        // either as a failed connect or on the first request.
        let outcome = match stranger.connect(server.addr, &server.key).await {
            Err(e) => Err(e),
            Ok(conn) => conn.request(b"let me in", REQ).await,
        };
        assert!(
            matches!(outcome, Err(TransportError::RefusedByPeer { .. })),
            "{outcome:?}"
        );
        assert_eq!(
            server.next_event().await,
            Seen::RefusedNotPinned(stranger_key.key_id())
        );
        assert_eq!(server.calls.load(Ordering::SeqCst), 0);
    })
    .await;
}

#[tokio::test]
async fn pinning_a_key_later_admits_it_for_new_handshakes() {
    bounded(async {
        let mut server = start_server(32, &[], TransportSettings::default());
        let late = client(33);
        let refused = match late.connect(server.addr, &server.key).await {
            Err(e) => Err(e),
            Ok(conn) => conn.request(b"x", REQ).await,
        };
        assert!(refused.is_err());
        assert!(matches!(
            server.next_event().await,
            Seen::RefusedNotPinned(_)
        ));
        assert!(server.endpoint.pinned().insert(late.public_key()));
        let conn = late.connect(server.addr, &server.key).await.unwrap();
        assert_eq!(
            conn.request(b"x", REQ).await.unwrap(),
            echoed(&late.public_key(), b"x")
        );
    })
    .await;
}

#[tokio::test]
async fn removing_a_key_closes_its_open_connections_and_refuses_new_ones() {
    bounded(async {
        let kept = client(41);
        let removed = client(42);
        let mut server = start_server(
            40,
            &[kept.public_key(), removed.public_key()],
            TransportSettings::default(),
        );
        let kept_conn = kept.connect(server.addr, &server.key).await.unwrap();
        let removed_conn = removed.connect(server.addr, &server.key).await.unwrap();
        for (c, conn) in [(&kept, &kept_conn), (&removed, &removed_conn)] {
            assert_eq!(
                conn.request(b"hi", REQ).await.unwrap(),
                echoed(&c.public_key(), b"hi")
            );
        }
        assert!(matches!(server.next_event().await, Seen::Connected(_)));
        assert!(matches!(server.next_event().await, Seen::Connected(_)));
        assert_eq!(server.endpoint.live_connections(), 2);

        // A new roster without `removed` (§10.3): pinned set first, then the sweep.
        server.endpoint.pinned().replace([kept.public_key()]);
        assert_eq!(server.endpoint.close_unpinned("revoked in a test"), 1);
        let closed = removed_conn.connection().closed().await;
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(c)
                if c.error_code.into_inner() == 3 && &c.reason[..] == b"revoked in a test"),
            "{closed:?}"
        );
        let err = removed_conn.request(b"again", REQ).await.unwrap_err();
        assert!(
            matches!(&err, TransportError::Revoked { reason } if reason == "revoked in a test"),
            "{err:?}"
        );
        assert!(err.to_string().contains("no longer on its roster"), "{err}");
        // A new handshake with the removed key is refused.
        let again = match removed.connect(server.addr, &server.key).await {
            Err(e) => Err(e),
            Ok(conn) => conn.request(b"x", REQ).await,
        };
        assert!(
            matches!(again, Err(TransportError::RefusedByPeer { .. })),
            "{again:?}"
        );
        assert_eq!(
            server.next_event().await,
            Seen::RefusedNotPinned(removed.public_key().key_id())
        );
        // The kept key's connection was left alone.
        assert_eq!(
            kept_conn.request(b"still", REQ).await.unwrap(),
            echoed(&kept.public_key(), b"still")
        );
        assert_eq!(server.endpoint.close_unpinned("nothing to do"), 0);
    })
    .await;
}

#[tokio::test]
async fn an_endpoint_that_admits_nobody_refuses_before_the_handshake() {
    bounded(async {
        let c = client(44);
        let mut server = start_server(43, &[c.public_key()], TransportSettings::default());
        let open = c.connect(server.addr, &server.key).await.unwrap();
        assert!(matches!(server.next_event().await, Seen::Connected(_)));
        let admitting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&admitting);
        server.endpoint.set_admission(Arc::new(move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("roster expired in a test".to_string())
            }
        }));
        let err = c.connect(server.addr, &server.key).await.unwrap_err();
        assert!(matches!(err, TransportError::ConnectionRefused), "{err:?}");
        assert_eq!(
            server.next_event().await,
            Seen::OtherFailure("not accepting connections: roster expired in a test".into())
        );
        // An established connection is not cut by the admission check.
        assert_eq!(
            open.request(b"x", REQ).await.unwrap(),
            echoed(&c.public_key(), b"x")
        );
        admitting.store(true, Ordering::SeqCst);
        let conn = c.connect(server.addr, &server.key).await.unwrap();
        assert_eq!(
            conn.request(b"y", REQ).await.unwrap(),
            echoed(&c.public_key(), b"y")
        );
    })
    .await;
}

#[tokio::test]
async fn client_without_a_certificate_is_refused() {
    bounded(async {
        let mut server = start_server(35, &[secret(36).public_key()], TransportSettings::default());
        // A client that verifies the server properly but presents no certificate.
        let tls = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(
                PinnedKeys::from_keys([server.key]),
                provider(),
                Verdict::default(),
            )))
            .with_no_client_auth();
        let mut tls = tls;
        tls.alpn_protocols = vec![super::ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
        let endpoint = quinn::Endpoint::client(loopback()).unwrap();
        let outcome: Result<(), quinn::ConnectionError> = match endpoint
            .connect_with(quinn::ClientConfig::new(Arc::new(quic)), server.addr, "x.invalid")
            .unwrap()
            .await
        {
            Err(e) => Err(e),
            Ok(conn) => match conn.open_bi().await {
                Err(e) => Err(e),
                Ok((mut send, mut recv)) => {
                    let _ = send.write_all(b"\0\0\0\0").await;
                    let _ = send.finish();
                    match recv.read_to_end(64).await {
                        Err(quinn::ReadToEndError::Read(quinn::ReadError::ConnectionLost(e))) => Err(e),
                        other => panic!("expected the connection to be refused, got {other:?}"),
                    }
                }
            },
        };
        let closed = outcome.expect_err("refused");
        assert!(
            matches!(&closed, quinn::ConnectionError::ConnectionClosed(c) if u64::from(c.error_code) == 0x100 + 116),
            "{closed:?}"
        );
        assert_eq!(server.next_event().await, Seen::NoCertificate);
        assert_eq!(server.calls.load(Ordering::SeqCst), 0);
    })
    .await;
}

#[tokio::test]
async fn server_with_an_unexpected_key_is_refused_by_the_client() {
    bounded(async {
        let client_key = secret(41).public_key();
        let mut server = start_server(40, &[client_key], TransportSettings::default());
        let client = client(41);
        let expected = secret(42).public_key();
        let err = client.connect(server.addr, &expected).await.unwrap_err();
        match err {
            TransportError::UnexpectedPeer {
                expected: e,
                presented,
            } => {
                assert_eq!(e, expected.key_id());
                assert_eq!(presented, server.key.key_id());
            }
            other => panic!("expected UnexpectedPeer, got {other:?}"),
        }
        // The server saw the client abort the handshake, and served nothing.
        assert_eq!(server.next_event().await, Seen::PeerGaveUp);
        assert_eq!(server.calls.load(Ordering::SeqCst), 0);
    })
    .await;
}

#[tokio::test]
async fn wrong_alpn_is_refused() {
    bounded(async {
        let client_key = secret(51).public_key();
        let mut server = start_server(50, &[client_key], TransportSettings::default());
        let client = client(51);
        let err = client
            .connect_with_alpn(server.addr, &server.key, b"quorate/0")
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::AlpnMismatch), "{err:?}");
        assert_eq!(server.next_event().await, Seen::Alpn);
        // The right ALPN still works afterwards.
        let conn = client.connect(server.addr, &server.key).await.unwrap();
        assert_eq!(conn.peer(), server.key);
    })
    .await;
}

#[tokio::test]
async fn oversized_request_is_refused_and_the_server_keeps_serving() {
    bounded(async {
        let client_key = secret(61).public_key();
        let settings = TransportSettings {
            max_request_len: 1024,
            // Long enough that only the header check can explain a prompt refusal.
            request_timeout: Duration::from_secs(3600),
            ..TransportSettings::default()
        };
        let mut server = start_server(60, &[client_key], settings);
        let client = client(61);
        let conn = client.connect(server.addr, &server.key).await.unwrap();
        assert_eq!(server.next_event().await, Seen::Connected(client_key.key_id()));

        let err = conn.request(&vec![1u8; 4096], REQ).await.unwrap_err();
        assert!(
            matches!(err, TransportError::PeerAbandoned(StreamCode::FrameTooLarge)),
            "{err:?}"
        );
        assert_eq!(
            server.next_event().await,
            Seen::Abandoned(StreamCode::FrameTooLarge)
        );

        // A header announcing 4 GiB, with no payload and the stream left open: refused on
        // the header alone (the request timeout above is far beyond the test bound).
        let (mut send, mut recv) = conn.connection().open_bi().await.unwrap();
        send.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        let read = recv.read_to_end(64).await;
        assert!(
            matches!(read, Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) if code.into_inner() == u64::from(StreamCode::FrameTooLarge.code())),
            "{read:?}"
        );
        assert_eq!(
            server.next_event().await,
            Seen::Abandoned(StreamCode::FrameTooLarge)
        );

        // Same connection, valid request: answered.
        assert_eq!(
            conn.request(b"still there?", REQ).await.unwrap(),
            echoed(&client_key, b"still there?")
        );
        // Exactly at the limit: accepted.
        let at_limit = vec![2u8; 1024];
        assert_eq!(
            conn.request(&at_limit, REQ).await.unwrap(),
            echoed(&client_key, &at_limit)
        );
        assert_eq!(server.calls.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_are_refused_with_a_code() {
    bounded(async {
        let client_key = secret(71).public_key();
        let mut server = start_server(70, &[client_key], TransportSettings::default());
        let client = client(71);
        let conn = client.connect(server.addr, &server.key).await.unwrap();
        assert_eq!(server.next_event().await, Seen::Connected(client_key.key_id()));
        for raw in [
            // Trailing octet after a complete frame.
            b"\0\0\0\x02hi!".to_vec(),
            // Payload shorter than announced, then end of stream.
            b"\0\0\0\x0ahello".to_vec(),
            // Header cut short.
            b"\0\0".to_vec(),
            // Nothing at all.
            Vec::new(),
        ] {
            let (mut send, mut recv) = conn.connection().open_bi().await.unwrap();
            send.write_all(&raw).await.unwrap();
            send.finish().unwrap();
            let read = recv.read_to_end(64).await;
            assert!(
                matches!(&read, Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) if code.into_inner() == u64::from(StreamCode::MalformedFrame.code())),
                "{raw:?}: {read:?}"
            );
            assert_eq!(
                server.next_event().await,
                Seen::Abandoned(StreamCode::MalformedFrame)
            );
        }
        assert_eq!(server.calls.load(Ordering::SeqCst), 0);
        assert_eq!(
            conn.request(b"ok", REQ).await.unwrap(),
            echoed(&client_key, b"ok")
        );
    })
    .await;
}

#[tokio::test]
async fn response_larger_than_the_callers_limit_is_refused() {
    bounded(async {
        let client_key = secret(81).public_key();
        let server = start_server(80, &[client_key], TransportSettings::default());
        let client = client(81);
        let conn = client.connect(server.addr, &server.key).await.unwrap();
        // The response is 32 octets of key plus the payload: 132 > 100.
        let err = request_with_limit(conn.connection(), &[0u8; 100], 100, REQ)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TransportError::FrameTooLarge { len: 132, max: 100 }),
            "{err:?}"
        );
        assert_eq!(
            request_with_limit(conn.connection(), &[0u8; 68], 100, REQ)
                .await
                .unwrap()
                .len(),
            100
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_requests_are_all_answered() {
    bounded(async {
        let keys = [secret(91).public_key(), secret(92).public_key()];
        let server = start_server(90, &keys, TransportSettings::default());
        let mut tasks = tokio::task::JoinSet::new();
        for (i, seed) in [91u8, 92].into_iter().enumerate() {
            let conn = client(seed)
                .connect(server.addr, &server.key)
                .await
                .unwrap();
            for j in 0..10u32 {
                let conn = conn.clone();
                let key = keys[i];
                tasks.spawn(async move {
                    let payload = format!("request {seed}/{j}").into_bytes();
                    let response = conn.request(&payload, REQ).await.unwrap();
                    assert_eq!(response, echoed(&key, &payload));
                });
            }
        }
        let mut done = 0;
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
            done += 1;
        }
        assert_eq!(done, 20);
        assert_eq!(server.calls.load(Ordering::SeqCst), 20);
    })
    .await;
}

#[test]
fn settings_are_validated() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let too_big = TransportSettings {
            max_request_len: quorate_protocol::wire::MAX_FRAME_LEN + 1,
            ..TransportSettings::default()
        };
        assert!(matches!(
            bind_server(loopback(), identity(1), PinnedKeys::new(), too_big),
            Err(TransportError::InvalidSettings(_))
        ));
        let keep_alive_too_slow = TransportSettings {
            keep_alive: Some(Duration::from_secs(60)),
            ..TransportSettings::default()
        };
        assert!(matches!(
            bind_client(loopback(), identity(1), keep_alive_too_slow),
            Err(TransportError::InvalidSettings(_))
        ));
        let no_handshakes = TransportSettings {
            max_concurrent_handshakes: 0,
            ..TransportSettings::default()
        };
        assert!(matches!(
            bind_server(loopback(), identity(1), PinnedKeys::new(), no_handshakes),
            Err(TransportError::InvalidSettings(_))
        ));
    });
}

mod deadline;
mod screening;
