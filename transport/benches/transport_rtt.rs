//! Round-trip time of one small request over an established loopback connection (§7.5),
//! against raw loopback baselines measured in the same run:
//!
//! - `udp_echo`: one datagram each way over 127.0.0.1 (the floor for any UDP protocol);
//! - `tcp_echo`: a length-prefixed echo over an established TCP connection;
//! - `quic_request`: `PeerConnection::request` over quinn + TLS 1.3 with pinned Ed25519
//!   identities: a fresh bidirectional stream per request, one frame each way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quorate_crypto::SecretKey;
use quorate_transport::{PinnedKeys, TlsIdentity, TransportSettings, bind_client, bind_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAYLOAD: [u8; 64] = [0x5a; 64];
const TIMEOUT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn rtt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("loopback_rtt_64B");
    group.throughput(Throughput::Elements(1));

    // Baseline 1: UDP echo.
    let udp_client = rt.block_on(async {
        let server = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let _ = server.send_to(&buf[..n], from).await;
            }
        });
        let client = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
        client.connect(addr).await.unwrap();
        client
    });
    group.bench_function("udp_echo", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut buf = [0u8; 2048];
                let start = Instant::now();
                for _ in 0..iters {
                    udp_client.send(&PAYLOAD).await.unwrap();
                    let n = udp_client.recv(&mut buf).await.unwrap();
                    assert_eq!(n, PAYLOAD.len());
                }
                start.elapsed()
            })
        })
    });

    // Baseline 2: TCP echo of one length-prefixed message on an established connection.
    let tcp_client = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(loopback()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            sock.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; 4 + PAYLOAD.len()];
            while sock.read_exact(&mut buf).await.is_ok() {
                if sock.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
        let sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.set_nodelay(true).unwrap();
        tokio::sync::Mutex::new(sock)
    });
    group.bench_function("tcp_echo", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut sock = tcp_client.lock().await;
                let start = Instant::now();
                for _ in 0..iters {
                    let mut msg = (PAYLOAD.len() as u32).to_be_bytes().to_vec();
                    msg.extend_from_slice(&PAYLOAD);
                    sock.write_all(&msg).await.unwrap();
                    let mut back = vec![0u8; msg.len()];
                    sock.read_exact(&mut back).await.unwrap();
                }
                start.elapsed()
            })
        })
    });

    // quorate: one request per fresh stream over an established, mutually pinned connection.
    let (conn, _server) = rt.block_on(async {
        let server_id =
            Arc::new(TlsIdentity::from_secret_key(&SecretKey::from_seed(&[1; 32])).unwrap());
        let client_id =
            Arc::new(TlsIdentity::from_secret_key(&SecretKey::from_seed(&[2; 32])).unwrap());
        let server_key = server_id.public_key();
        let server = bind_server(
            loopback(),
            server_id,
            PinnedKeys::from_keys([client_id.public_key()]),
            TransportSettings::default(),
        )
        .unwrap();
        let addr = server.local_addr().unwrap();
        let serving = server.clone();
        tokio::spawn(async move { serving.serve(|_peer, request| async move { request }).await });
        let client = bind_client(loopback(), client_id, TransportSettings::default()).unwrap();
        let conn = client.connect(addr, &server_key).await.unwrap();
        (conn, (server, client))
    });
    group.bench_function("quic_request", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let response = conn.request(&PAYLOAD, TIMEOUT).await.unwrap();
                    assert_eq!(response.len(), PAYLOAD.len());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(200).measurement_time(Duration::from_secs(4));
    targets = rtt
}
criterion_main!(benches);
