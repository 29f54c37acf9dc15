//! Where the web server is: `http://host:port` or a unix socket
//! (`unix:/run/nginx/site.sock`), and the connector the pooled client uses
//! for both. A unix upstream is addressed by a made-up authority derived
//! from its path (`u<hash>.unix.invalid`), so hyper's pool keeps its
//! connections apart from any other upstream's, also across reloads.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;

/// The web server the proxy forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The authority requests are addressed to.
    pub authority: String,
}

/// The suffix of the authorities that stand for unix sockets.
const UNIX_SUFFIX: &str = ".unix.invalid";

/// Unix socket paths by the authority that stands for them.
fn unix_paths() -> &'static RwLock<HashMap<String, PathBuf>> {
    static PATHS: OnceLock<RwLock<HashMap<String, PathBuf>>> = OnceLock::new();
    PATHS.get_or_init(Default::default)
}

impl Upstream {
    /// Parses `http://host:port` or `unix:/absolute/path`.
    pub fn parse(text: &str) -> Result<Upstream, String> {
        let bad = || {
            format!(
                "'{text}' is not an upstream; write http://127.0.0.1:8081 or unix:/run/nginx/site.sock (https upstreams are not supported)"
            )
        };
        if let Some(path) = text.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(bad());
            }
            // A stable name per path (FNV-1a): the pool must not mix sockets.
            let hash = path
                .as_os_str()
                .as_encoded_bytes()
                .iter()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
            let authority = format!("u{hash:016x}{UNIX_SUFFIX}");
            unix_paths()
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(authority.clone(), path);
            return Ok(Upstream { authority });
        }
        let uri: Uri = text.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") || uri.path().len() > 1 || uri.query().is_some() {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?.to_string();
        Ok(Upstream { authority })
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
/// to the unix sockets that `Upstream::parse` registered.
/// At most `max` connections are open at once (HTTP/2 visitors can ask
/// for many at a time); a connection waits up to the connect timeout for a
/// free one.
#[derive(Clone)]
pub struct UpstreamConnector {
    http: HttpConnector,
    connect_timeout: Duration,
    permits: Arc<tokio::sync::Semaphore>,
    max: usize,
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
            unix_paths()
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
    fn parses_http_and_unix_upstreams() {
        assert_eq!(
            Upstream::parse("http://127.0.0.1:8081").unwrap().authority,
            "127.0.0.1:8081"
        );
        let a = Upstream::parse("unix:/run/a.sock").unwrap().authority;
        let b = Upstream::parse("unix:/run/b.sock").unwrap().authority;
        assert!(a.ends_with(UNIX_SUFFIX) && a != b, "{a} {b}");
        assert_eq!(Upstream::parse("unix:/run/a.sock").unwrap().authority, a);
        for bad in ["unix:run/a.sock", "https://x", "http://x/path", "127.0.0.1:8081"] {
            assert!(Upstream::parse(bad).unwrap_err().contains("unix:/run"), "{bad}");
        }
    }
}
