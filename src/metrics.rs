//! Prometheus text exposition, and the admin listener both daemons serve it
//! on (`admin_listen`), never on a public listener.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::TokioIo;

/// Metrics text being written.
#[derive(Debug, Default)]
pub struct Text(String);

impl Text {
    /// A counter.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let _ = writeln!(
            self.0,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        let _ = writeln!(
            self.0,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }

    /// Raw lines (a histogram).
    pub fn raw(&mut self) -> &mut String {
        &mut self.0
    }

    /// The text.
    pub fn finish(self) -> String {
        self.0
    }
}

impl crate::conns::Conns {
    /// The connection gauges and counters, named `{prefix}_…`.
    pub fn render(&self, t: &mut Text, prefix: &str) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.counts;
        t.gauge(
            &format!("{prefix}_connections_open"),
            "Connections open now.",
            self.open() as u64,
        );
        t.counter(
            &format!("{prefix}_connections_evicted_total"),
            "Idle connections closed to make room at max_connections.",
            c.evicted.load(Relaxed),
        );
        t.counter(
            &format!("{prefix}_connections_waited_total"),
            "Connections that waited for a free slot (every connection busy at max_connections).",
            c.waited.load(Relaxed),
        );
        t.counter(
            &format!("{prefix}_request_timeouts_total"),
            "Connections closed for not sending a whole request in time.",
            c.request_timeouts.load(Relaxed),
        );
        t.counter(
            &format!("{prefix}_idle_closed_total"),
            "Connections closed after idling past their keep-alive timeout.",
            c.idle_closed.load(Relaxed),
        );
        t.counter(
            &format!("{prefix}_send_timeouts_total"),
            "Connections closed because the client stopped reading its response.",
            c.send_timeouts.load(Relaxed),
        );
    }
}

/// Serves `/metrics` (the text `render` makes) on `listener` until `stop`
/// changes. Accept errors (out of file descriptors) pause it briefly
/// instead of spinning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let render = Arc::clone(&render);
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let render = Arc::clone(&render);
            async move {
                let (status, body) = if req.uri().path() == "/metrics" {
                    (StatusCode::OK, render())
                } else {
                    (StatusCode::NOT_FOUND, "not found; try /metrics\n".to_owned())
                };
                let mut r = Response::new(Full::new(Bytes::from(body)));
                *r.status_mut() = status;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                Ok::<_, Infallible>(r)
            }
        });
        tokio::spawn(async move {
            // An admin client gets a few seconds, not forever.
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), conn).await;
        });
    }
}
