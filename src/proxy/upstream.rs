//! Where the web server is: `http://host:port` or a unix socket
//! (`unix:/run/nginx/site.sock`), and the connector the pooled client uses
//! for both. A unix upstream is addressed by a made-up authority derived
//! from its path (`u<hash>.unix.invalid`), so hyper's pool keeps its
//! connections apart from any other upstream's, also across reloads.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper::http::uri::{Authority, Scheme};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;

use crate::config::UpstreamAddr;

/// The web server the proxy forwards to, as hyper's pool addresses it.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The authority requests are addressed to, parsed once.
    pub authority: Authority,
    /// Where it is, as configured.
    pub addr: UpstreamAddr,
}

/// The suffix of the authorities that stand for unix sockets.
const UNIX_SUFFIX: &str = ".unix.invalid";

impl Upstream {
    /// The authority for `addr`: its own for `http://`, a stable made-up
    /// one per path for a unix socket.
    pub fn new(addr: &UpstreamAddr) -> Upstream {
        match addr {
            UpstreamAddr::Http(authority) => Upstream {
                authority: authority
                    .parse()
                    .expect("the config read it from a URI's authority"),
                addr: addr.clone(),
            },
            UpstreamAddr::Unix(path) => {
                // A stable name per path (FNV-1a): the pool must not mix sockets.
                let hash = path
                    .as_os_str()
                    .as_encoded_bytes()
                    .iter()
                    .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                    });
                Upstream {
                    authority: format!("u{hash:016x}{UNIX_SUFFIX}")
                        .parse()
                        .expect("a hash and a suffix make a host name"),
                    addr: addr.clone(),
                }
            }
        }
    }

    /// The URI of `path_and_query` on it, as hyper's pool wants it
    /// (absolute); `None` when the path is not one a URI can hold.
    pub fn uri(&self, path_and_query: &str) -> Option<Uri> {
        // From its parts, not a string made and parsed again: the
        // authority was parsed once, and this is every request.
        let mut parts = hyper::http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query.parse().ok()?);
        Uri::from_parts(parts).ok()
    }
}

/// A connection to the web server, over TCP or a unix socket, holding one
/// of the connector's permits for as long as it is open.
pub struct UpstreamIo {
    io: Io,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

enum Io {
    Tcp(TokioIo<tokio::net::TcpStream>),
    Unix(TokioIo<tokio::net::UnixStream>),
}

/// Every upstream connection is in use and none came free within
/// `connect_timeout` (`[proxy] max_upstream_connections`).
#[derive(Debug, thiserror::Error)]
#[error("all {0} connections to the web server are in use (max_upstream_connections)")]
pub struct UpstreamBusy(pub usize);

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Io::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_flush(cx),
            Io::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Io::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        match &self.io {
            Io::Tcp(s) => s.connected(),
            Io::Unix(s) => s.connected(),
        }
    }
}

/// Connects to `http://` upstreams with hyper-util's `HttpConnector` and
/// to the unix sockets [`register`](Self::register)ed with it.
/// At most `max` connections are open at once (HTTP/2 visitors can ask
/// for many at a time); a connection waits up to the connect timeout for a
/// free one.
#[derive(Clone)]
pub struct UpstreamConnector {
    http: HttpConnector,
    connect_timeout: Duration,
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
    /// Unix socket paths by the authority that stands for them; kept
    /// across reloads, as pooled connections may still use an old one.
    unix: Arc<RwLock<HashMap<String, PathBuf>>>,
}

impl UpstreamConnector {
    /// A connector that gives up connecting after `connect_timeout` and
    /// opens at most `max` connections at once.
    pub fn new(connect_timeout: Duration, max: usize) -> UpstreamConnector {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let max = max.max(1);
        UpstreamConnector {
            http,
            connect_timeout,
            permits: Arc::new(tokio::sync::Semaphore::new(max)),
            max,
            unix: Arc::default(),
        }
    }

    /// Makes `upstream`'s authority reach its unix socket, if it has one.
    pub fn register(&self, upstream: &Upstream) {
        if let UpstreamAddr::Unix(path) = &upstream.addr {
            self.unix
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(upstream.authority.to_string(), path.clone());
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (permits, timeout, max) = (Arc::clone(&self.permits), self.connect_timeout, self.max);
        let permit = async move {
            match tokio::time::timeout(timeout, permits.acquire_owned()).await {
                Ok(Ok(p)) => Ok(p),
                _ => Err(Box::new(UpstreamBusy(max)) as BoxError),
            }
        };
        let unix = uri.host().filter(|h| h.ends_with(UNIX_SUFFIX)).and_then(|h| {
            self.unix
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(h)
                .cloned()
        });
        match unix {
            Some(path) => Box::pin(async move {
                let permit = permit.await?;
                let s = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(&path))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out")
                    })??;
                Ok(UpstreamIo {
                    io: Io::Unix(TokioIo::new(s)),
                    _permit: permit,
                })
            }),
            None => {
                let mut http = self.http.clone();
                Box::pin(async move {
                    let permit = permit.await?;
                    Ok(UpstreamIo {
                        io: Io::Tcp(http.call(uri).await?),
                        _permit: permit,
                    })
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_upstreams_get_a_stable_authority_of_their_own() {
        let up = |t: &str| Upstream::new(&UpstreamAddr::parse(t).unwrap()).authority;
        assert_eq!(up("http://127.0.0.1:8081"), "127.0.0.1:8081");
        let (a, b) = (up("unix:/run/a.sock"), up("unix:/run/b.sock"));
        assert!(a.as_str().ends_with(UNIX_SUFFIX) && a != b, "{a} {b}");
        assert_eq!(up("unix:/run/a.sock"), a);
    }

    #[test]
    fn request_uris_are_those_a_written_out_uri_would_parse_to() {
        let up = Upstream::new(&UpstreamAddr::parse("http://127.0.0.1:8081").unwrap());
        for path in [
            "/",
            "/a/b.html?x=1&y=%20",
            "/mjd-id-abc@plover.com",
            "/%zz",
            "/a b",
            "/\u{e9}",
        ] {
            let written: Option<Uri> = format!("http://127.0.0.1:8081{path}").parse().ok();
            assert_eq!(up.uri(path), written, "{path}");
        }
        assert_eq!(up.uri("/a?b").unwrap().to_string(), "http://127.0.0.1:8081/a?b");
    }
}
