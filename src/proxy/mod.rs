//! `addrmunge proxy`: a streaming HTTP/1.1 and HTTP/2 (h2c) reverse proxy
//! that rewrites the owner's addresses in responses of configured content
//! types, per visitor and day. Requests and every other response stream
//! through untouched.
//!
//! A request's life: accept (visitor = socket peer, or the rightmost
//! untrusted `X-Forwarded-For` hop when the peer is a trusted proxy) →
//! hop-by-hop headers stripped, `Via`/`X-Forwarded-*` added, validators of
//! ours translated back → pooled upstream client → response headers made
//! private to the visitor → body through [`crate::rewrite::Pipeline`] frame by
//! frame, inside the body's `poll_frame`, so nothing is buffered beyond one
//! chunk and a client that goes away drops (cancels) the upstream request.

pub mod acme;
mod audit;
pub use audit::{HEADER as AUDIT_HEADER, VISITOR_HEADER as AUDIT_VISITOR_HEADER};
mod body;
pub use body::ACCESS_TARGET;
pub mod crawlers;
pub mod harvest;
mod headers;
pub mod metrics;
mod pages;
pub mod proxy_protocol;
mod request;
mod server;
mod target;
pub mod tls;
pub mod upload;
pub mod upstream;
pub mod visitor;

pub use upstream::Upstream;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::Uri;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;
use crate::conns::Conns;
use crate::rewrite::{GzipCache, ServedLog, TokenCache};
use crate::scan::Matcher;
use crate::store::StoreSource;
use crate::token::KeyRing;
use harvest::{Caught, VisitLog};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The response body type of the proxy.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Everything a request needs; replaced whole on SIGHUP.
pub struct State {
    config: Config,
    keys: Arc<KeyRing>,
    matcher: Arc<Matcher>,
    upstream: Upstream,
    /// Who is a search engine's crawler, by the DNS.
    crawlers: Arc<crawlers::Verifier>,
}

impl State {
    /// Loads config and keys; `counts` are the crawler checks' metrics.
    pub fn load(path: &std::path::Path, counts: &Arc<crawlers::Counts>) -> anyhow::Result<State> {
        let config = Config::load(path)?;
        let keys = Arc::new(KeyRing::load(&config.key_file)?);
        let p = &config.proxy;
        let listens = !p.listen.is_empty() || !p.tls.listen.is_empty();
        let Some(upstream) = p.upstream.as_ref().filter(|_| listens) else {
            anyhow::bail!(crate::config::ConfigError::Invalid {
                path: config.path.clone(),
                key: "proxy".into(),
                message: "set listen = [\"127.0.0.1:8080\"] (or tls_listen) and upstream = \"http://127.0.0.1:8081\"".into(),
            });
        };
        Ok(State {
            matcher: Matcher::new(Arc::clone(&config.protection)),
            keys,
            upstream: Upstream::new(upstream),
            crawlers: Arc::new(crawlers::Verifier::new(&config.crawlers, Arc::clone(counts))),
            config,
        })
    }

    /// The `Host` the web server gets: `[proxy] upstream_host` if set, else
    /// the visitor's (header, or the authority of an absolute request target).
    fn upstream_host(&self, headers: &HeaderMap, uri: &Uri) -> Option<HeaderValue> {
        self.config
            .proxy
            .upstream_host
            .clone()
            .or_else(|| headers.get(header::HOST).cloned())
            .or_else(|| {
                uri.authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            })
    }
}

/// The proxy: shared state, the upstream client and counters.
pub struct Proxy {
    config_path: std::path::PathBuf,
    state: RwLock<Arc<State>>,
    client: Client<upstream::UpstreamConnector, ProxyBody>,
    /// The client's connector, for its count of open connections.
    connector: upstream::UpstreamConnector,
    /// Visitor connections, shared by every listener.
    conns: Arc<Conns>,
    cache: Arc<TokenCache>,
    /// gzip's reusable stretches; `None` when `gzip_cache_bytes` is 0.
    gzip: Option<Arc<GzipCache>>,
    visits: Arc<VisitLog>,
    /// Where the store is; a reload adopts the file there then.
    source: Arc<StoreSource>,
    caught: Caught,
    /// Where the owner's `addrmunge audit` runs from today.
    auditors: audit::Auditors,
    /// HTTPS, when `tls_listen` is set.
    https: Option<Https>,
    /// Counters for the admin listener.
    pub metrics: metrics::Metrics,
}

/// The TLS listeners' certificates and handshake settings.
struct Https {
    certs: Arc<tls::Certificates>,
    acceptor: tokio_rustls::TlsAcceptor,
    acme: Option<Arc<acme::Acme>>,
}

impl Https {
    /// Loads the certificate files (failing the start when one cannot be
    /// used) and sets ACME up.
    fn new(t: &crate::config::TlsSettings, metrics: &metrics::Metrics) -> anyhow::Result<Option<Https>> {
        if t.listen.is_empty() {
            return Ok(None);
        }
        let certs = Arc::new(tls::Certificates::load(&t.certs)?);
        let alpn = t
            .acme
            .as_ref()
            .is_some_and(|a| a.challenge == crate::config::AcmeChallenge::TlsAlpn01);
        let config = tls::server_config(Arc::clone(&certs), alpn)?;
        let acme = t
            .acme
            .clone()
            .map(|a| acme::Acme::new(a, Arc::clone(&certs), Arc::clone(&metrics.acme)));
        Ok(Some(Https {
            certs,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            acme,
        }))
    }
}

impl Proxy {
    /// Loads the config and builds the pooled upstream client.
    pub fn new(config_path: std::path::PathBuf) -> anyhow::Result<Arc<Proxy>> {
        let metrics = metrics::Metrics::default();
        let state = State::load(&config_path, &metrics.crawlers)?;
        let p = &state.config.proxy;
        let (max_connections, max_upstream) =
            server::fd_budget(p.max_connections, p.max_upstream_connections);
        let connector = upstream::UpstreamConnector::new(p.connect_timeout, max_upstream);
        connector.register(&state.upstream);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            // Read the web server's responses in modest buffers: a fast
            // upstream and a slow visitor must not park megabytes per
            // connection (the pipeline passes each frame on as it comes).
            .http1_max_buf_size(32 * 1024)
            .build(connector.clone());
        let c = &state.config;
        let source = StoreSource::new(&c.state);
        let served = Arc::new(ServedLog::default());
        let visits = VisitLog::start(
            &source,
            c.proxy.visit_queue,
            c.retention_days,
            &metrics,
            Arc::clone(&served),
        )?;
        let caught = Caught::load(&c.state);
        let cache = Arc::new(TokenCache::with_budget(c.proxy.token_cache_bytes).noting(served));
        let gzip = (c.proxy.gzip_cache_bytes > 0).then(|| Arc::new(GzipCache::new(c.proxy.gzip_cache_bytes)));
        let https = Https::new(&c.proxy.tls, &metrics)?;
        Ok(Arc::new(Proxy {
            config_path,
            state: RwLock::new(Arc::new(state)),
            client,
            connector,
            conns: Conns::new(max_connections),
            cache,
            gzip,
            visits: Arc::new(visits),
            source,
            caught,
            auditors: audit::Auditors::default(),
            https,
            metrics,
        }))
    }

    fn state(&self) -> Arc<State> {
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads config and keys (SIGHUP); on error the old ones stay.
    pub fn reload(&self) {
        match State::load(&self.config_path, &self.metrics.crawlers) {
            Ok(s) => {
                self.source.reload(&s.config.state);
                self.connector.register(&s.upstream);
                if let Some(h) = &self.https {
                    h.certs.reload(&s.config.proxy.tls.certs);
                }
                *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
                // Tokens made with the old keys or separator must not be served.
                self.cache.clear();
                tracing::info!("reloaded config and keys");
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "reload failed; keeping the old config"),
        }
    }

    /// Serves the configured listeners until SIGTERM/SIGINT, then drains
    /// in-flight requests for up to 10 seconds. SIGHUP reloads.
    pub async fn run(self: Arc<Self>) -> anyhow::Result<()> {
        let graceful = Arc::new(hyper_util::server::graceful::GracefulShutdown::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Arc::clone(&self).listen(&graceful, &stop_rx).await?;
        if let Some(h) = &self.https {
            h.certs.watch();
            if let Some(a) = &h.acme {
                a.start();
            }
        }
        if let Some(addr) = self.state().config.proxy.admin_listen {
            let listener = crate::listen::bind_tcp(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin): {e}"))?;
            tracing::info!(%addr, "metrics at /metrics");
            let proxy = Arc::clone(&self);
            let render = Arc::new(move || {
                proxy.metrics.render(
                    &proxy.conns,
                    proxy.connector.open(),
                    proxy.cache.bytes(),
                    proxy.gzip.as_deref(),
                )
            });
            tasks.push(tokio::spawn(crate::metrics::serve(listener, render, stop_rx)));
        }
        crate::listen::warn_unused_inherited();
        crate::signals::until_stopped(|| self.reload()).await?;
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        drain(graceful).await;
        Ok(())
    }

    /// Binds every `listen` and `tls_listen` address and starts its accept
    /// loop.
    async fn listen(
        self: Arc<Self>,
        graceful: &Arc<hyper_util::server::graceful::GracefulShutdown>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let state = self.state();
        let p = &state.config.proxy;
        let plain = p.listen.iter().map(|a| (*a, server::Transport::Plain));
        let secure = self.https.iter().flat_map(|h| {
            let tls = server::Transport::Tls(h.acceptor.clone());
            p.tls.listen.iter().map(move |a| (*a, tls.clone()))
        });
        let mut tasks = Vec::new();
        for (addr, transport) in plain.chain(secure).collect::<Vec<_>>() {
            let listener = crate::listen::bind_tcp(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            let https = matches!(transport, server::Transport::Tls(_));
            tracing::info!(%addr, https, upstream = %state.upstream.addr, "proxy listening");
            let accepting =
                Arc::clone(&self).accept_loop(listener, transport, Arc::clone(graceful), stop.clone());
            tasks.push(tokio::spawn(accepting));
        }
        Ok(tasks)
    }
}

/// Waits up to 10 seconds for the requests in flight to finish.
async fn drain(graceful: Arc<hyper_util::server::graceful::GracefulShutdown>) {
    // A connection task may hold it for an instant while it registers.
    let mut graceful = Some(graceful);
    let mut owned = None;
    for _ in 0..20 {
        match Arc::try_unwrap(graceful.take().expect("set")) {
            Ok(g) => {
                owned = Some(g);
                break;
            }
            Err(shared) => {
                graceful = Some(shared);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    if let Some(g) = owned
        && tokio::time::timeout(Duration::from_secs(10), g.shutdown())
            .await
            .is_err()
    {
        tracing::warn!("in-flight requests did not finish within 10 s; closing them");
    }
}
