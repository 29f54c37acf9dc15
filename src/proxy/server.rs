//! The server loop: listeners, admission at `max_connections`, the PROXY
//! header, per-connection deadlines, and hyper serving each connection's
//! HTTP with [`Proxy::handle`] as the service.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{BoxError, Proxy, State, proxy_protocol};
use crate::conns::{Conn, Deadlines, Expiry, RESERVED_FDS, Slot, Watched, raise_open_files};

impl Proxy {
    pub(super) async fn accept_loop(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        graceful: Arc<hyper_util::server::graceful::GracefulShutdown>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let st = self.state();
        let p = &st.config.proxy;
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().max_buf_size(p.max_header_bytes.max(8192));
        builder
            .http2()
            .max_header_list_size(p.max_header_bytes as u32)
            .max_concurrent_streams(p.max_streams);
        drop(st);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Past max_connections the idlest connection makes room; when
            // all are busy, new ones wait in the kernel's backlog instead of
            // exhausting memory or file descriptors.
            let slot = self.conns.admit().await;
            let _ = stream.set_nodelay(true);
            let st = self.state();
            let p = &st.config.proxy;
            if p.proxy_protocol && !p.trusted.iter().any(|n| n.contains(&peer.ip())) {
                tracing::warn!(%peer, "closed: proxy_protocol is on and this peer is not in trusted_proxies");
                continue;
            }
            let proxy = Arc::clone(&self);
            let builder = builder.clone();
            let graceful = Arc::downgrade(&graceful);
            tokio::spawn(async move {
                proxy
                    .connection(&st, &builder, graceful, stream, peer, slot)
                    .await;
            });
        }
    }

    /// One visitor connection, in its own task: the PROXY header if one is
    /// due, then HTTP, until it ends or one of its deadlines passes.
    async fn connection(
        self: Arc<Self>,
        st: &State,
        builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
        graceful: std::sync::Weak<hyper_util::server::graceful::GracefulShutdown>,
        mut stream: tokio::net::TcpStream,
        peer: SocketAddr,
        slot: Slot,
    ) {
        let p = &st.config.proxy;
        let deadlines = Deadlines {
            request: p.request_timeout,
            keepalive: p.keepalive_timeout,
            send: p.send_timeout,
        };
        let mut visitor = peer;
        if p.proxy_protocol {
            // Read here, not in the accept loop, so a slow balancer never
            // holds up accepting others.
            match proxy_protocol::read_header(&mut stream, p.request_timeout).await {
                Ok(v) => visitor = v.unwrap_or(peer),
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closed before the request");
                    return;
                }
            }
        }
        // Shutting down already: the connection is not served.
        let Some(graceful) = graceful.upgrade() else {
            return;
        };
        let conn = Arc::clone(&slot.conn);
        let served = graceful.watch(Arc::clone(&self).serve(
            builder,
            Watched::new(stream, Arc::clone(&conn)),
            visitor,
            Arc::clone(&conn),
        ));
        drop(graceful);
        tokio::select! {
            r = served => if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            },
            why = conn.expired(&deadlines) => {
                let counts = &self.conns.counts;
                let counter = match why {
                    Expiry::Evicted => &counts.evicted,
                    Expiry::RequestHead => &counts.request_timeouts,
                    Expiry::Idle => &counts.idle_closed,
                    Expiry::SendStalled => &counts.send_timeouts,
                };
                // Evictions are counted when they are asked for.
                if why != Expiry::Evicted {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(%peer, reason = %why, "closed the connection");
            }
        }
        drop(slot);
    }

    /// One connection's HTTP, for the visitor at `peer`.
    fn serve(
        self: Arc<Self>,
        builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
        stream: Watched<tokio::net::TcpStream>,
        peer: SocketAddr,
        conn: Arc<Conn>,
    ) -> impl hyper_util::server::graceful::GracefulConnection<Error = BoxError> + use<> {
        let svc = hyper::service::service_fn(move |req| {
            let proxy = Arc::clone(&self);
            // Busy until the response body is done (or dropped).
            let busy = conn.begin();
            async move { Ok::<_, Infallible>(proxy.handle(req, peer, busy).await) }
        });
        builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned()
    }
}

/// The connection caps, shrunk to fit the open-file limit (raised to its
/// hard limit first): every visitor connection and every upstream socket is
/// a file descriptor, and running out of them stops `accept` and the
/// metrics listener too.
pub(super) fn fd_budget(max_connections: usize, max_upstream: usize) -> (usize, usize) {
    let budget = raise_open_files().saturating_sub(RESERVED_FDS).max(2) as usize;
    if max_connections.saturating_add(max_upstream) <= budget {
        return (max_connections, max_upstream);
    }
    let upstream = max_upstream.min(budget / 4).max(1);
    let visitors = max_connections.min(budget - upstream).max(1);
    tracing::warn!(
        max_connections,
        max_upstream_connections = max_upstream,
        open_files = budget + RESERVED_FDS as usize,
        "the open-file limit cannot hold max_connections + max_upstream_connections; serving {visitors} visitor and {upstream} upstream connections at once (raise LimitNOFILE to serve more)"
    );
    (visitors, upstream)
}
