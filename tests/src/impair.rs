//! A user-space UDP link impairer, for kernels without `netem`.
//!
//! A [`Relay`] listens on one address and forwards every datagram to one upstream (a node),
//! NAT-like: each client source address gets its own upstream socket, and what comes back on
//! it is sent to that client from the listening address. Each direction applies, per
//! datagram and in this order:
//!
//! 1. the partition switch: while it is on, everything is dropped both ways, including
//!    datagrams already waiting out their delay;
//! 2. Bernoulli loss;
//! 3. a one-way delay plus uniform jitter, so datagrams sent close together overtake each
//!    other (reordering follows from jitter); with probability `reorder` a datagram is held
//!    back a further `delay + jitter` so that later ones certainly overtake it;
//! 4. duplication: with probability `duplicate` a second copy follows 1 ms later.
//!
//! Randomness comes from a seeded generator per direction, so the same seed draws the same
//! losses for the same traffic. Delivery times still depend on the scheduler, so tests of the
//! relay use generous bounds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

/// How one direction of a link misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// One-way delay (half the round trip it adds when both directions carry it).
    pub delay: Duration,
    /// Each datagram's delay is `delay` plus a uniform draw from `-jitter..=jitter`.
    pub jitter: Duration,
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back a further `delay + jitter`.
    pub reorder: f64,
}

impl Impairment {
    /// A perfect link.
    pub const NONE: Self = Self {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
    };

    /// A link adding `rtt` of round trip when both directions carry it.
    pub fn rtt(rtt: Duration) -> Self {
        Self {
            delay: rtt / 2,
            ..Self::NONE
        }
    }
}

/// What a relay did, per direction and in total.
#[derive(Debug, Default)]
pub struct Counters {
    /// Datagrams delivered (a duplicate counts once more).
    pub delivered: AtomicU64,
    /// Datagrams dropped by the loss draw.
    pub lost: AtomicU64,
    /// Datagrams dropped because of the partition.
    pub cut: AtomicU64,
    /// Extra copies sent.
    pub duplicated: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `(delivered, lost, cut, duplicated)` right now.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
            self.cut.load(Ordering::Relaxed),
            self.duplicated.load(Ordering::Relaxed),
        )
    }
}

/// The switches and counters of a relay, shared with its tasks.
#[derive(Debug, Default)]
pub struct Control {
    partitioned: AtomicBool,
    /// Client-to-upstream direction.
    pub forward: Counters,
    /// Upstream-to-client direction.
    pub backward: Counters,
}

impl Control {
    /// The counters of one direction (`forward`: towards the node).
    fn stats(&self, forward: bool) -> &Counters {
        if forward {
            &self.forward
        } else {
            &self.backward
        }
    }

    /// Whether the link is cut.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned.load(Ordering::SeqCst)
    }
}

/// A running relay; its tasks stop when it is dropped.
pub struct Relay {
    listen: SocketAddr,
    control: Arc<Control>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// The splitmix64 generator: tiny, seedable, good enough to draw losses and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform draw from `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether an event of probability `p` happens.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// What happens to one datagram: dropped (and why), or sent after these delays.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Dropped by the loss draw.
    Lost,
    /// Sent after each of these delays (two when duplicated).
    Send(Vec<Duration>),
}

/// Draws the fate of one datagram under `imp`.
pub fn draw(imp: &Impairment, rng: &mut Rng) -> Fate {
    if rng.chance(imp.loss) {
        return Fate::Lost;
    }
    let spread = imp.jitter.as_secs_f64();
    let offset = (rng.unit() * 2.0 - 1.0) * spread;
    let mut delay = (imp.delay.as_secs_f64() + offset).max(0.0);
    if rng.chance(imp.reorder) {
        delay += imp.delay.as_secs_f64() + spread;
    }
    let first = Duration::from_secs_f64(delay);
    if rng.chance(imp.duplicate) {
        Fate::Send(vec![first, first + Duration::from_millis(1)])
    } else {
        Fate::Send(vec![first])
    }
}

/// Largest UDP payload relayed.
const MAX_DATAGRAM: usize = 65_535;

impl Relay {
    /// Starts a relay listening on `listen` (port 0 for any) and forwarding to `upstream`
    /// from sockets bound on `upstream_from` (port chosen by the system). `forward` applies
    /// to datagrams towards the upstream, `backward` to the answers. Must be called inside a
    /// tokio runtime, which runs the relay until it is dropped.
    pub async fn start(
        listen: SocketAddr,
        upstream_from: IpAddr,
        upstream: SocketAddr,
        forward: Impairment,
        backward: Impairment,
        seed: u64,
    ) -> std::io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(listen).await?);
        let listen = socket.local_addr()?;
        let control = Arc::new(Control::default());
        let tasks = Arc::new(std::sync::Mutex::new(Vec::new()));
        let relay = Self {
            listen,
            control: Arc::clone(&control),
            tasks: Arc::clone(&tasks),
        };
        let front = ForwardLoop {
            socket,
            upstream_from,
            upstream,
            forward,
            backward,
            seed,
            control,
            tasks: Arc::clone(&tasks),
        };
        let handle = tokio::spawn(front.run());
        lock(&tasks).push(handle);
        Ok(relay)
    }

    /// The address clients send to.
    pub fn address(&self) -> SocketAddr {
        self.listen
    }

    /// The relay's switches and counters.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Cuts the link (`true`) or restores it (`false`).
    pub fn partition(&self, on: bool) {
        self.control.partitioned.store(on, Ordering::SeqCst);
    }

    /// Cuts the link `after` from now for `length`, then restores it; returns at once.
    pub fn partition_later(&self, after: Duration, length: Duration) {
        let control = Arc::clone(&self.control);
        let handle = tokio::spawn(async move {
            tokio::time::sleep(after).await;
            control.partitioned.store(true, Ordering::SeqCst);
            tokio::time::sleep(length).await;
            control.partitioned.store(false, Ordering::SeqCst);
        });
        lock(&self.tasks).push(handle);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The listening side: receives from clients, forwards upstream.
struct ForwardLoop {
    socket: Arc<UdpSocket>,
    upstream_from: IpAddr,
    upstream: SocketAddr,
    forward: Impairment,
    backward: Impairment,
    seed: u64,
    control: Arc<Control>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl ForwardLoop {
    async fn run(self) {
        let mut rng = Rng::new(self.seed);
        let mut flows: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let Ok((n, client)) = self.socket.recv_from(&mut buf).await else {
                // ICMP errors surface here on some systems; the relay keeps going.
                continue;
            };
            let Some(out) = self.flow(&mut flows, client).await else {
                continue;
            };
            schedule(
                &self.forward,
                &mut rng,
                &self.control,
                true,
                buf[..n].to_vec(),
                out,
                None,
            );
        }
    }

    /// The upstream socket of `client`, created (with its return loop) on first use.
    async fn flow(
        &self,
        flows: &mut HashMap<SocketAddr, Arc<UdpSocket>>,
        client: SocketAddr,
    ) -> Option<Arc<UdpSocket>> {
        if let Some(s) = flows.get(&client) {
            return Some(Arc::clone(s));
        }
        let out = UdpSocket::bind(SocketAddr::new(self.upstream_from, 0))
            .await
            .ok()?;
        out.connect(self.upstream).await.ok()?;
        let out = Arc::new(out);
        flows.insert(client, Arc::clone(&out));
        let back = BackwardLoop {
            from: Arc::clone(&out),
            to: Arc::clone(&self.socket),
            client,
            imp: self.backward,
            // A different stream of draws per flow and direction.
            rng: Rng::new(self.seed ^ 0x5bd1_e995 ^ u64::from(client.port())),
            control: Arc::clone(&self.control),
        };
        lock(&self.tasks).push(tokio::spawn(back.run()));
        Some(out)
    }
}

/// The upstream side of one flow: receives the node's answers, sends them to the client.
struct BackwardLoop {
    from: Arc<UdpSocket>,
    to: Arc<UdpSocket>,
    client: SocketAddr,
    imp: Impairment,
    rng: Rng,
    control: Arc<Control>,
}

impl BackwardLoop {
    async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let Ok(n) = self.from.recv(&mut buf).await else {
                continue;
            };
            schedule(
                &self.imp,
                &mut self.rng,
                &self.control,
                false,
                buf[..n].to_vec(),
                Arc::clone(&self.to),
                Some(self.client),
            );
        }
    }
}

/// Applies `imp` to one datagram and sends it on `socket` (to `to`, or to the socket's
/// connected peer) when its time comes, unless the link is cut by then.
fn schedule(
    imp: &Impairment,
    rng: &mut Rng,
    control: &Arc<Control>,
    forward: bool,
    datagram: Vec<u8>,
    socket: Arc<UdpSocket>,
    to: Option<SocketAddr>,
) {
    let stats = control.stats(forward);
    if control.is_partitioned() {
        Counters::bump(&stats.cut);
        return;
    }
    let delays = match draw(imp, rng) {
        Fate::Lost => {
            Counters::bump(&stats.lost);
            return;
        }
        Fate::Send(d) => d,
    };
    if delays.len() > 1 {
        Counters::bump(&stats.duplicated);
    }
    let now = Instant::now();
    let control = Arc::clone(control);
    // One short task per datagram: each sleeps until its own time, so delays overlap.
    tokio::spawn(async move {
        for d in delays {
            tokio::time::sleep_until(now + d).await;
            let stats = control.stats(forward);
            if control.is_partitioned() {
                Counters::bump(&stats.cut);
                continue;
            }
            let sent = match to {
                Some(addr) => socket.send_to(&datagram, addr).await,
                None => socket.send(&datagram).await,
            };
            if sent.is_ok() {
                Counters::bump(&stats.delivered);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_near_their_rates() {
        let imp = Impairment {
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(5),
            loss: 0.1,
            duplicate: 0.05,
            reorder: 0.0,
        };
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..20_000)
                .map(|_| draw(&imp, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "the same seed draws the same fates");
        assert_ne!(a, run(8));
        let lost = a.iter().filter(|f| **f == Fate::Lost).count();
        let dup = a
            .iter()
            .filter(|f| matches!(f, Fate::Send(d) if d.len() == 2))
            .count();
        assert!((1_600..2_400).contains(&lost), "lost {lost} of 20000");
        assert!((700..1_300).contains(&dup), "duplicated {dup} of 20000");
        for f in &a {
            if let Fate::Send(d) = f {
                assert!(
                    d[0] >= Duration::from_millis(15) && d[0] <= Duration::from_millis(25),
                    "{d:?}"
                );
            }
        }
    }

    /// A UDP echo server on loopback; returns its address.
    async fn echo() -> SocketAddr {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut buf).await {
                let _ = s.send_to(&buf[..n], from).await;
            }
        });
        addr
    }

    async fn relay(forward: Impairment, backward: Impairment) -> Relay {
        let upstream = echo().await;
        let local = "127.0.0.1".parse().unwrap();
        Relay::start(
            "127.0.0.1:0".parse().unwrap(),
            local,
            upstream,
            forward,
            backward,
            42,
        )
        .await
        .unwrap()
    }

    /// Receives datagrams until none came for `quiet`.
    async fn drain(s: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(Ok(n)) = tokio::time::timeout(quiet, s.recv(&mut buf)).await {
            got.push(buf[..n].to_vec());
        }
        got
    }

    async fn client(relay: &Relay) -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(relay.address()).await.unwrap();
        s
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_live_relay_delays_both_ways() {
        rt().block_on(async {
            let r = relay(
                Impairment::rtt(Duration::from_millis(100)),
                Impairment::rtt(Duration::from_millis(100)),
            )
            .await;
            let c = client(&r).await;
            for _ in 0..3 {
                let start = std::time::Instant::now();
                c.send(b"ping").await.unwrap();
                let mut buf = [0u8; 16];
                let n = tokio::time::timeout(Duration::from_secs(10), c.recv(&mut buf))
                    .await
                    .expect("no echo within 10 s")
                    .unwrap();
                let rtt = start.elapsed();
                assert_eq!(&buf[..n], b"ping");
                // Timers never fire early; the upper bound only catches a relay that hangs.
                assert!(rtt >= Duration::from_millis(99), "{rtt:?}");
                assert!(rtt < Duration::from_secs(5), "{rtt:?}");
            }
        });
    }

    #[test]
    fn a_live_relay_loses_near_its_rate_and_duplicates() {
        rt().block_on(async {
            let lossy = Impairment {
                loss: 0.2,
                ..Impairment::NONE
            };
            let r = relay(lossy, Impairment::NONE).await;
            let c = Arc::new(client(&r).await);
            // Read while sending, and paced, so that no socket buffer overflows and only the
            // relay loses.
            let reader = tokio::spawn({
                let c = Arc::clone(&c);
                async move { drain(&c, Duration::from_secs(2)).await }
            });
            for batch in 0..20u32 {
                for i in 0..50u32 {
                    c.send(&(batch * 50 + i).to_be_bytes()).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let got = reader.await.unwrap();
            let (delivered, lost, cut, dup) = r.control().forward.snapshot();
            assert_eq!(delivered + lost, 1000, "every datagram reached the relay");
            assert!((140..=260).contains(&lost), "lost {lost} of 1000 at 20%");
            assert_eq!((cut, dup), (0, 0));
            assert_eq!(
                got.len() as u64,
                delivered,
                "the echo saw what was delivered"
            );

            let twice = Impairment {
                duplicate: 1.0,
                ..Impairment::NONE
            };
            let r = relay(twice, Impairment::NONE).await;
            let c = client(&r).await;
            for i in 0..20u32 {
                c.send(&i.to_be_bytes()).await.unwrap();
            }
            let got = drain(&c, Duration::from_secs(1)).await;
            assert_eq!(got.len(), 40, "each datagram arrives twice");
        });
    }

    #[test]
    fn a_live_relay_reorders_under_jitter() {
        rt().block_on(async {
            let jitter = Impairment {
                delay: Duration::from_millis(30),
                jitter: Duration::from_millis(25),
                ..Impairment::NONE
            };
            let r = relay(jitter, Impairment::NONE).await;
            let c = client(&r).await;
            for i in 0..100u32 {
                c.send(&i.to_be_bytes()).await.unwrap();
            }
            let got: Vec<u32> = drain(&c, Duration::from_secs(1))
                .await
                .iter()
                .map(|d| u32::from_be_bytes(d[..4].try_into().unwrap()))
                .collect();
            assert_eq!(got.len(), 100);
            assert!(got.windows(2).any(|w| w[0] > w[1]), "nothing was reordered");
        });
    }

    #[test]
    fn a_partition_drops_everything_until_it_heals() {
        rt().block_on(async {
            let r = relay(Impairment::NONE, Impairment::NONE).await;
            let c = client(&r).await;
            c.send(b"before").await.unwrap();
            assert_eq!(drain(&c, Duration::from_millis(500)).await.len(), 1);
            r.partition(true);
            for _ in 0..10 {
                c.send(b"during").await.unwrap();
            }
            assert!(drain(&c, Duration::from_millis(500)).await.is_empty());
            assert_eq!(r.control().forward.snapshot().2, 10, "all ten were cut");
            r.partition(false);
            c.send(b"after").await.unwrap();
            assert_eq!(drain(&c, Duration::from_millis(500)).await.len(), 1);

            // A timed partition comes and goes by itself.
            r.partition_later(Duration::from_millis(100), Duration::from_millis(300));
            let start = std::time::Instant::now();
            let (mut seen_on, mut healed) = (false, false);
            while start.elapsed() < Duration::from_secs(10) && !healed {
                let on = r.control().is_partitioned();
                seen_on |= on;
                healed = seen_on && !on;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(seen_on && healed, "the timed partition did not come and go");
        });
    }

    #[test]
    fn reorder_holds_a_datagram_back_past_the_jitter() {
        let imp = Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(2),
            reorder: 1.0,
            ..Impairment::NONE
        };
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            let Fate::Send(d) = draw(&imp, &mut rng) else {
                panic!("no loss configured")
            };
            assert!(d[0] >= Duration::from_millis(20), "{d:?}");
        }
    }
}
