//! The node's metrics for operators (§12.7), in the OpenMetrics text format that Prometheus
//! scrapes, served over HTTP on a local address the configuration names (`metrics_listen`).
//!
//! Nothing secret is exported: request kinds, outcomes (error-code names), latencies, the
//! audit log's size and fsync latency, the roster's serial and time to expiry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use quorate_protocol::messages::{ErrorCode, Request as MeshRequest, Response as MeshResponse};

/// Labels of one answered request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `health`, `infer`, `ensemble_start`, `ensemble_round`, `fhe`, or `undecodable`.
    pub kind: &'static str,
    /// `ok` or the §11.5 error name (`busy`, `storage_unavailable`, …).
    pub outcome: String,
}

/// Label of a latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// As in [`RequestLabels::kind`].
    pub kind: &'static str,
}

/// What the node exports; values read at scrape time come from `Sampled`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<KindLabel, Histogram>,
    in_flight: Gauge,
    audit_bytes: Gauge,
    roster_serial: Gauge,
    roster_expiry: Gauge,
}

/// What a scrape reads from the node at that moment.
pub struct Sample {
    /// Jobs holding a slot.
    pub in_flight: u64,
    /// Durable size of the audit log.
    pub audit_bytes: u64,
    /// Serial of the roster in use.
    pub roster_serial: u64,
    /// Seconds until it expires, negative once expired.
    pub roster_expiry_secs: i64,
}

/// Reads a [`Sample`] from the node.
pub type Sampled = Arc<dyn Fn() -> Sample + Send + Sync>;

fn latency_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(1e-4, 2.0, 18))
}

impl Metrics {
    /// Registers every metric; `fsync` is the audit log's fsync-latency histogram.
    pub fn new(fsync: Histogram) -> Self {
        let mut registry = Registry::with_prefix("quorate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by kind and outcome",
            requests.clone(),
        );
        let latency = Family::<KindLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from a decoded request to its encoded answer",
            latency.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "jobs_in_flight",
            "Jobs holding a slot now",
            in_flight.clone(),
        );
        let audit_bytes = Gauge::default();
        registry.register(
            "audit_log_bytes",
            "Bytes of the audit log's complete records (the file also holds zeros reserved ahead of them)",
            audit_bytes.clone(),
        );
        registry.register(
            "audit_fsync_seconds",
            "Time to write and fsync one group commit of receipts",
            fsync,
        );
        let roster_serial = Gauge::default();
        registry.register(
            "roster_serial",
            "Serial of the roster in use",
            roster_serial.clone(),
        );
        let roster_expiry = Gauge::default();
        registry.register(
            "roster_expiry_seconds",
            "Seconds until the roster in use expires (negative once expired)",
            roster_expiry.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            in_flight,
            audit_bytes,
            roster_serial,
            roster_expiry,
        }
    }

    /// Counts one answered request and its latency.
    pub fn observe(&self, kind: &'static str, response: &MeshResponse, took: Duration) {
        let outcome = outcome_name(response);
        self.requests
            .get_or_create(&RequestLabels { kind, outcome })
            .inc();
        self.latency
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }

    /// Counts a request refused before it was decoded or served, with its error.
    pub fn refused(&self, code: ErrorCode) {
        self.requests
            .get_or_create(&RequestLabels {
                kind: "any",
                outcome: error_name(code),
            })
            .inc();
    }

    /// The OpenMetrics text of every metric, after sampling the node.
    pub fn render(&self, sampled: &Sampled) -> String {
        let now = sampled();
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.in_flight.set(gauge(now.in_flight));
        self.audit_bytes.set(gauge(now.audit_bytes));
        self.roster_serial.set(gauge(now.roster_serial));
        self.roster_expiry.set(now.roster_expiry_secs);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The kind label of a decoded request.
pub fn request_kind<E>(request: &Result<MeshRequest, E>) -> &'static str {
    match request {
        Ok(MeshRequest::Health) => "health",
        Ok(MeshRequest::Infer(_)) => "infer",
        Ok(MeshRequest::EnsembleStart(_)) => "ensemble_start",
        Ok(MeshRequest::EnsembleRound(_)) => "ensemble_round",
        Ok(MeshRequest::EnsembleInput(_)) => "ensemble_input",
        Ok(MeshRequest::Fhe(_)) => "fhe",
        Ok(MeshRequest::Log(_)) => "log",
        Err(_) => "undecodable",
    }
}

/// `ok`, or the §11.5 name of the error a response carries.
pub fn outcome_name(response: &MeshResponse) -> String {
    match response {
        MeshResponse::Error(e) => error_name(e.code),
        _ => "ok".to_string(),
    }
}

/// `StorageUnavailable` → `storage_unavailable`, the §11.5 names.
fn error_name(code: ErrorCode) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Serves `GET /metrics` on `addr` until the task is dropped; anything else is a 404.
/// Returns the bound address (for port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    sampled: Sampled,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (metrics, sampled) = (metrics.clone(), sampled.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let answer = if req.uri().path() == "/metrics" {
                            Response::builder()
                                .header(
                                    "content-type",
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )
                                .body(Full::new(Bytes::from(metrics.render(&sampled))))
                        } else {
                            Response::builder()
                                .status(StatusCode::NOT_FOUND)
                                .body(Full::new(Bytes::from_static(b"only /metrics is served\n")))
                        };
                        async move { answer }
                    });
                // A client that misbehaves only loses its own connection.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorate_protocol::messages::ErrorFrame;

    #[test]
    fn requests_latency_and_sampled_values_are_rendered() {
        let fsync = latency_histogram();
        fsync.observe(0.002);
        let m = Metrics::new(fsync);
        m.observe(
            "infer",
            &MeshResponse::Error(ErrorFrame::new(ErrorCode::StorageUnavailable, "x")),
            Duration::from_millis(3),
        );
        m.observe(
            "health",
            &MeshResponse::Error(ErrorFrame::new(ErrorCode::Busy, "x")),
            Duration::from_millis(1),
        );
        m.refused(ErrorCode::NoValidRoster);
        let sampled: Sampled = Arc::new(|| Sample {
            in_flight: 2,
            audit_bytes: 4096,
            roster_serial: 7,
            roster_expiry_secs: -5,
        });
        let text = m.render(&sampled);
        for line in [
            "quorate_requests_total{kind=\"infer\",outcome=\"storage_unavailable\"} 1",
            "quorate_requests_total{kind=\"health\",outcome=\"busy\"} 1",
            "quorate_requests_total{kind=\"any\",outcome=\"no_valid_roster\"} 1",
            "quorate_request_duration_seconds_count{kind=\"infer\"} 1",
            "quorate_jobs_in_flight 2",
            "quorate_audit_log_bytes 4096",
            "quorate_audit_fsync_seconds_count 1",
            "quorate_roster_serial 7",
            "quorate_roster_expiry_seconds -5",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
