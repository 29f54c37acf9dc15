//! Prometheus metrics of the proxy, served as text on the optional admin
//! listener (`[proxy] admin_listen`), never on the public one.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Counters shared by all requests.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Addresses munged (counted when a rewritten body ends).
    pub munged: Arc<AtomicU64>,
    /// Responses rewritten.
    pub rewritten: AtomicU64,
    /// 502 answers (web server unreachable).
    pub bad_gateway: AtomicU64,
    /// 504 answers (web server too slow).
    pub gateway_timeout: AtomicU64,
    /// Responses of a rewritten type passed through because of their charset or coding.
    pub unrewritable: AtomicU64,
    /// Visit-log records dropped because the writer fell behind.
    pub visits_dropped: Arc<AtomicU64>,
    /// Bait page fetches.
    pub bait_hits: AtomicU64,
    /// Requests from harvesters (User-Agent rule or caught by the bait).
    pub harvester_requests: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_sum_us: AtomicU64,
    latency_count: AtomicU64,
}

impl Metrics {
    /// Records the time to response headers.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            "addrmunge_requests_total",
            "Requests answered.",
            get(&self.requests),
        );
        counter(
            "addrmunge_addresses_munged_total",
            "Addresses munged in responses.",
            get(&self.munged),
        );
        counter(
            "addrmunge_responses_rewritten_total",
            "Responses whose body went through the scanner.",
            get(&self.rewritten),
        );
        counter(
            "addrmunge_upstream_unreachable_total",
            "502 answers: the web server could not be reached.",
            get(&self.bad_gateway),
        );
        counter(
            "addrmunge_upstream_timeouts_total",
            "504 answers: the web server was too slow.",
            get(&self.gateway_timeout),
        );
        counter(
            "addrmunge_unrewritable_total",
            "Responses of a rewritten type passed through unrewritten (charset or content coding).",
            get(&self.unrewritable),
        );
        counter(
            "addrmunge_visit_log_dropped_total",
            "Visit-log records dropped because the store fell behind (responses are never slowed).",
            get(&self.visits_dropped),
        );
        counter(
            "addrmunge_bait_hits_total",
            "Bait page fetches.",
            get(&self.bait_hits),
        );
        counter(
            "addrmunge_harvester_requests_total",
            "Requests from harvesters (User-Agent rules or caught by the bait page).",
            get(&self.harvester_requests),
        );
        let name = "addrmunge_response_header_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} Time from request to response headers.\n# TYPE {name} histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(o, "{name}_bucket{{le=\"{b}\"}} {}", get(&self.buckets[i]));
        }
        let count = get(&self.latency_count);
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(o, "{name}_sum {}", get(&self.latency_sum_us) as f64 / 1e6);
        let _ = writeln!(o, "{name}_count {count}");
        o
    }
}
