//! The server loop: listeners, admission at `max_connections`, the PROXY
//! header, the TLS handshake on HTTPS listeners, per-connection deadlines,
//! and hyper serving each connection's HTTP with [`Proxy::handle`] as the
//! service.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{BoxError, Proxy, State, proxy_protocol};
use crate::conns::{Conn, Deadlines, RESERVED_FDS, Slot, Watched, raise_open_files};

/// What a connection is served over.
#[derive(Clone)]
pub(super) enum Transport {
    /// Plain HTTP (and h2c).
    Plain,
    /// HTTPS: a TLS handshake first.
    Tls(tokio_rustls::TlsAcceptor),
}

impl Proxy {
    pub(super) async fn accept_loop(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        transport: Transport,
        graceful: Arc<hyper_util::server::graceful::GracefulShutdown>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let st = self.state();
        let p = &st.config.proxy;
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // Half-closed: a client may shut its side once the request is sent
        // (nc, scripts, some HTTP/1.0 tools) and still wait for the answer,
        // which nginx and Apache give; hyper would drop the connection.
        builder
            .http1()
            .max_buf_size(p.max_header_bytes.max(8192))
            .half_close(true);
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
            // exhausting memory or file descriptors. A TLS handshake holds
            // a slot too, so half-open handshakes are bounded the same way.
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
            let transport = transport.clone();
            tokio::spawn(async move {
                let conn = Accepted {
                    stream,
                    peer,
                    slot,
                    transport,
                };
                proxy.connection(&st, &builder, graceful, conn).await;
            });
        }
    }

    /// One visitor connection, in its own task: the PROXY header if one is
    /// due, the TLS handshake on an HTTPS listener, then HTTP, until it ends
    /// or one of its deadlines passes.
    async fn connection(
        self: Arc<Self>,
        st: &State,
        builder: &Builder,
        graceful: Weak<GracefulShutdown>,
        a: Accepted,
    ) {
        let p = &st.config.proxy;
        let Accepted {
            mut stream,
            peer,
            slot,
            transport,
        } = a;
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
        let serving = Serving {
            builder,
            graceful,
            visitor,
            peer,
            conn: Arc::clone(&slot.conn),
            deadlines: Deadlines {
                request: p.request_timeout,
                keepalive: p.keepalive_timeout,
                send: p.send_timeout,
            },
        };
        match transport {
            Transport::Plain => Arc::clone(&self).drive(serving, stream, false).await,
            Transport::Tls(acceptor) => {
                // A handshake not begun or not finished is idle: it makes
                // room when the slots are full, as an idle connection does.
                let tls = tokio::select! {
                    tls = self.handshake(&acceptor, stream, peer, p.request_timeout) => tls,
                    () = slot.conn.evicted() => None,
                };
                if let Some(tls) = tls {
                    Arc::clone(&self).drive(serving, tls, true).await;
                }
            }
        }
        drop(slot);
    }

    /// The TLS handshake, within `limit` (a slow one is a slowloris too):
    /// `None` when it failed, when plain HTTP came instead (answered with a
    /// 400 that says to use https://), or when it only answered an ACME
    /// TLS-ALPN-01 challenge.
    async fn handshake(
        &self,
        acceptor: &tokio_rustls::TlsAcceptor,
        mut stream: TcpStream,
        peer: SocketAddr,
        limit: Duration,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let tls = async {
            if super::tls::refused_plain_http(&mut stream).await {
                self.metrics.tls_plain_http.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match acceptor.accept(stream).await {
                Ok(s) => Some(s),
                Err(e) => {
                    self.metrics.tls_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
            }
        };
        let s = match tokio::time::timeout(limit, tls).await {
            Ok(s) => s?,
            Err(_) => {
                self.conns.counts.request_timeouts.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let alpn = s.get_ref().1.alpn_protocol();
        (alpn != Some(super::tls::ACME_TLS_ALPN)).then_some(s)
    }

    /// HTTP over `stream` until it ends or a deadline passes.
    async fn drive<S>(self: Arc<Self>, s: Serving<'_>, stream: S, https: bool)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Shutting down already: the connection is not served.
        let Some(graceful) = s.graceful.upgrade() else {
            return;
        };
        let conn = Arc::clone(&s.conn);
        let served = graceful.watch(Arc::clone(&self).serve(
            s.builder,
            Watched::new(stream, Arc::clone(&conn)),
            s.visitor,
            https,
            Arc::clone(&conn),
        ));
        drop(graceful);
        let peer = s.peer;
        tokio::select! {
            r = served => if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            },
            why = conn.expired(&s.deadlines) => {
                self.conns.count(why);
                tracing::debug!(%peer, reason = %why, "closed the connection");
            }
        }
    }

    /// One connection's HTTP, for the visitor at `peer`.
    fn serve<S>(
        self: Arc<Self>,
        builder: &Builder,
        stream: Watched<S>,
        peer: SocketAddr,
        https: bool,
        conn: Arc<Conn>,
    ) -> impl hyper_util::server::graceful::GracefulConnection<Error = BoxError> + use<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let svc = hyper::service::service_fn(move |req| {
            let proxy = Arc::clone(&self);
            // Busy until the response body is done (or dropped).
            let busy = conn.begin();
            async move { Ok::<_, Infallible>(proxy.handle(req, peer, https, busy).await) }
        });
        builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned()
    }
}

type Builder = hyper_util::server::conn::auto::Builder<TokioExecutor>;

/// A connection just accepted.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    transport: Transport,
}

/// What serving one connection's HTTP needs.
struct Serving<'a> {
    builder: &'a Builder,
    graceful: Weak<GracefulShutdown>,
    /// Who the requests are from (the peer, or the PROXY header's).
    visitor: SocketAddr,
    /// The socket peer, for the log.
    peer: SocketAddr,
    conn: Arc<Conn>,
    deadlines: Deadlines,
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
