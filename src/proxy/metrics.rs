//! Prometheus metrics of the proxy, served as text on the optional admin
//! listener (`[proxy] admin_listen`), never on the public one.

use std::fmt::Write;

use crate::metrics::Text;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A counter's name, help and value.
type Counter<'a> = (&'static str, &'static str, &'a AtomicU64);

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Counters shared by all requests.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Addresses munged in headers and bodies (a body's as it goes out).
    pub munged: Arc<AtomicU64>,
    /// Responses rewritten.
    pub rewritten: AtomicU64,
    /// 502 answers (web server unreachable).
    pub bad_gateway: AtomicU64,
    /// 504 answers (web server too slow).
    pub gateway_timeout: AtomicU64,
    /// Responses of a rewritten type passed through because of their charset or coding.
    pub unrewritable: AtomicU64,
    /// Responses declared UTF-16 whose bytes were not.
    pub charset_mismatch: Arc<AtomicU64>,
    /// Visit-log records dropped because the writer fell behind or the store failed.
    pub visits_dropped: Arc<AtomicU64>,
    /// Failed writes of the visit log (the store deleted, replaced, unreadable).
    pub store_faults: Arc<AtomicU64>,
    /// Rewritten bodies cut off because they expanded too much.
    pub expansion_cut: Arc<AtomicU64>,
    /// 408 answers: request bodies that came too slowly.
    pub upload_timeouts: AtomicU64,
    /// 503 answers: every upstream connection in use.
    pub upstream_busy: AtomicU64,
    /// Bait page fetches.
    pub bait_hits: AtomicU64,
    /// Requests from harvesters (User-Agent rule or caught by the bait).
    pub harvester_requests: AtomicU64,
    /// Visitors claiming to be crawlers, as the DNS judged them.
    pub crawlers: Arc<super::crawlers::Counts>,
    /// TLS handshakes that failed.
    pub tls_failed: AtomicU64,
    /// Plain HTTP sent to a TLS listener (answered 400).
    pub tls_plain_http: AtomicU64,
    /// ACME orders and the certificate's end.
    pub acme: Arc<super::acme::Counts>,
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

    /// The Prometheus text exposition, with the connection counts and the
    /// upstream connections open now.
    pub fn render(
        &self,
        conns: &crate::conns::Conns,
        upstream_open: usize,
        token_bytes: usize,
        gzip: Option<&crate::rewrite::GzipCache>,
    ) -> String {
        let mut t = Text::default();
        for (name, help, v) in self.counters() {
            t.counter(name, help, v.load(Ordering::Relaxed));
        }
        conns.render(&mut t, "addrmunge");
        t.gauge(
            "addrmunge_upstream_connections_open",
            "Connections to the web server open now (max_upstream_connections).",
            upstream_open as u64,
        );
        t.gauge(
            "addrmunge_token_cache_bytes",
            "Bytes the per-visitor token cache holds now (token_cache_bytes bounds it).",
            token_bytes as u64,
        );
        let (reused, compressed) = gzip.map_or((0, 0), |g| g.counts());
        t.counter(
            "addrmunge_gzip_stretches_reused_total",
            "Stretches of rewritten pages sent gzipped as compressed for an earlier response.",
            reused,
        );
        t.counter(
            "addrmunge_gzip_stretches_compressed_total",
            "Stretches of rewritten pages compressed for gzip and looked for in the cache first.",
            compressed,
        );
        t.gauge(
            "addrmunge_gzip_cache_bytes",
            "Bytes of compressed stretches kept for gzip now (gzip_cache_bytes bounds it).",
            gzip.map_or(0, |g| g.held()) as u64,
        );
        t.gauge(
            "addrmunge_acme_certificate_expiry_seconds",
            "When the ACME certificate in use ends, Unix seconds (0: none yet).",
            self.acme.not_after.load(Ordering::Relaxed).max(0) as u64,
        );
        self.histogram(&mut t);
        t.finish()
    }

    /// Every counter: name, help and value.
    fn counters(&self) -> impl Iterator<Item = Counter<'_>> {
        self.traffic_counters()
            .into_iter()
            .chain(self.body_counters())
            .chain(self.defence_counters())
            .chain(self.tls_counters())
    }

    /// Requests, addresses and the web server's answers.
    fn traffic_counters(&self) -> [Counter<'_>; 7] {
        [
            ("addrmunge_requests_total", "Requests answered.", &self.requests),
            (
                "addrmunge_addresses_munged_total",
                "Addresses munged in responses.",
                &self.munged,
            ),
            (
                "addrmunge_responses_rewritten_total",
                "Responses whose body went through the scanner.",
                &self.rewritten,
            ),
            (
                "addrmunge_upstream_unreachable_total",
                "502 answers: the web server could not be reached.",
                &self.bad_gateway,
            ),
            (
                "addrmunge_upstream_timeouts_total",
                "504 answers: the web server was too slow.",
                &self.gateway_timeout,
            ),
            (
                "addrmunge_upstream_busy_total",
                "503 answers: every upstream connection was in use (max_upstream_connections).",
                &self.upstream_busy,
            ),
            (
                "addrmunge_upload_timeouts_total",
                "408 answers: request bodies slower than upload_min_rate.",
                &self.upload_timeouts,
            ),
        ]
    }

    /// Bodies the pipeline could not rewrite or cut off, and the visit log.
    fn body_counters(&self) -> [Counter<'_>; 5] {
        [
            (
                "addrmunge_unrewritable_total",
                "Responses of a rewritten type passed through unrewritten (charset or content coding).",
                &self.unrewritable,
            ),
            (
                "addrmunge_charset_mismatch_total",
                "Responses declared UTF-16 that were not: scanned as ASCII-compatible bytes instead.",
                &self.charset_mismatch,
            ),
            (
                "addrmunge_decoded_too_large_total",
                "Rewritten bodies cut off for expanding past max_decoded_bytes or max_decoded_ratio.",
                &self.expansion_cut,
            ),
            (
                "addrmunge_visit_log_dropped_total",
                "Visit-log records dropped because the store fell behind or failed (responses are never slowed).",
                &self.visits_dropped,
            ),
            (
                "addrmunge_store_faults_total",
                "Failed writes of the visit log: the state store unreadable, deleted or replaced.",
                &self.store_faults,
            ),
        ]
    }

    /// Harvesters and search engines' crawlers.
    fn defence_counters(&self) -> [Counter<'_>; 5] {
        [
            ("addrmunge_bait_hits_total", "Bait page fetches.", &self.bait_hits),
            (
                "addrmunge_harvester_requests_total",
                "Requests from harvesters (User-Agent rules or caught by the bait page).",
                &self.harvester_requests,
            ),
            (
                "addrmunge_crawlers_verified_total",
                "Visitors claiming to be a search engine's crawler that the DNS confirmed (crawler IDs).",
                &self.crawlers.verified,
            ),
            (
                "addrmunge_crawlers_refuted_total",
                "Visitors claiming to be a search engine's crawler that are not (visitor IDs).",
                &self.crawlers.refuted,
            ),
            (
                "addrmunge_crawler_lookups_failed_total",
                "Crawler checks the DNS did not answer (asked again after 5 minutes).",
                &self.crawlers.failed,
            ),
        ]
    }

    /// TLS handshakes and ACME.
    fn tls_counters(&self) -> [Counter<'_>; 4] {
        [
            (
                "addrmunge_tls_handshake_failures_total",
                "TLS handshakes that failed (no shared version or suite, no certificate for the name, a broken client).",
                &self.tls_failed,
            ),
            (
                "addrmunge_tls_plain_http_total",
                "Plain HTTP sent to a TLS listener, answered 400 (use https://).",
                &self.tls_plain_http,
            ),
            (
                "addrmunge_acme_certificates_issued_total",
                "Certificates the ACME CA issued (first ones and renewals).",
                &self.acme.issued,
            ),
            (
                "addrmunge_acme_failures_total",
                "ACME orders that failed; the certificate in use is still served.",
                &self.acme.failed,
            ),
        ]
    }

    /// The response-header latency histogram.
    fn histogram(&self, t: &mut Text) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let o = t.raw();
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
    }
}
