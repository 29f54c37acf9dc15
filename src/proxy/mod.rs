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

pub mod harvest;
pub mod metrics;
pub mod proxy_protocol;
pub mod upload;
pub mod upstream;
pub mod visitor;

pub use upstream::Upstream;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ipnet::IpNet;

use crate::config::{AgentAction, Config};
use crate::conns::{Busy, Conn, Conns, Deadlines, Expiry, RESERVED_FDS, Slot, Watched, raise_open_files};
use crate::day::Day;
use crate::rewrite::{Coding, LinkInserter, Pipeline, TokenCache, VisitorMunger};
use crate::scan::Matcher;
use crate::store::{StoreSource, VisitEvent, now_unix};
use crate::token::{Claims, KeyRing, Kind, Visitor};
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
}

impl State {
    /// Loads config and keys.
    pub fn load(path: &std::path::Path) -> anyhow::Result<State> {
        let config = Config::load(path)?;
        let keys = Arc::new(KeyRing::load(&config.key_file)?);
        let p = &config.proxy;
        let Some(upstream) = p.upstream.as_ref().filter(|_| !p.listen.is_empty()) else {
            anyhow::bail!(crate::config::ConfigError::Invalid {
                path: config.path.clone(),
                key: "proxy".into(),
                message: "set listen = [\"127.0.0.1:8080\"] and upstream = \"http://127.0.0.1:8081\"".into(),
            });
        };
        Ok(State {
            matcher: Matcher::new(Arc::clone(&config.protection)),
            keys,
            upstream: Upstream::new(upstream),
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
    visits: Arc<VisitLog>,
    /// Where the store is; a reload adopts the file there then.
    source: Arc<StoreSource>,
    caught: Caught,
    /// Counters for the admin listener.
    pub metrics: metrics::Metrics,
}

impl Proxy {
    /// Loads the config and builds the pooled upstream client.
    pub fn new(config_path: std::path::PathBuf) -> anyhow::Result<Arc<Proxy>> {
        let state = State::load(&config_path)?;
        let p = &state.config.proxy;
        let (max_connections, max_upstream) = fd_budget(p.max_connections, p.max_upstream_connections);
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
        let metrics = metrics::Metrics::default();
        let source = StoreSource::new(&c.state);
        let visits = VisitLog::start(&source, &c.state, c.proxy.visit_queue, c.retention_days, &metrics)?;
        let caught = Caught::load(&c.state);
        let cache = Arc::new(TokenCache::with_budget(c.proxy.token_cache_bytes));
        Ok(Arc::new(Proxy {
            config_path,
            state: RwLock::new(Arc::new(state)),
            client,
            connector,
            conns: Conns::new(max_connections),
            cache,
            visits: Arc::new(visits),
            source,
            caught,
            metrics,
        }))
    }

    fn state(&self) -> Arc<State> {
        Arc::clone(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads config and keys (SIGHUP); on error the old ones stay.
    pub fn reload(&self) {
        match State::load(&self.config_path) {
            Ok(s) => {
                self.source.reload(&s.config.state);
                self.connector.register(&s.upstream);
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
        let state = self.state();
        let graceful = Arc::new(hyper_util::server::graceful::GracefulShutdown::new());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for &addr in &state.config.proxy.listen {
            let listener = crate::listen::bind_tcp(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            tracing::info!(%addr, upstream = %state.upstream.addr, "proxy listening");
            tasks.push(tokio::spawn(Arc::clone(&self).accept_loop(
                listener,
                Arc::clone(&graceful),
                stop_rx.clone(),
            )));
        }
        if let Some(addr) = state.config.proxy.admin_listen {
            let listener = crate::listen::bind_tcp(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin): {e}"))?;
            tracing::info!(%addr, "metrics at /metrics");
            let proxy = Arc::clone(&self);
            let render = Arc::new(move || {
                proxy
                    .metrics
                    .render(&proxy.conns, proxy.connector.open(), proxy.cache.bytes())
            });
            tasks.push(tokio::spawn(crate::metrics::serve(
                listener,
                render,
                stop_rx.clone(),
            )));
        }
        crate::listen::warn_unused_inherited();
        crate::signals::until_stopped(|| self.reload()).await?;
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
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
        if let Some(g) = owned {
            if tokio::time::timeout(Duration::from_secs(10), g.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("in-flight requests did not finish within 10 s; closing them");
            }
        }
        Ok(())
    }

    async fn accept_loop(
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

    /// Handles one request; the connection is busy until its response body
    /// is done.
    pub async fn handle(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        busy: Busy,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let resp_munged = Arc::new(AtomicU64::new(0));
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let st = self.state();
        let ip = visitor::client_ip(peer.ip(), req.headers(), &st.config.proxy.trusted);
        let ua = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let day = Day::today();
        let visitor_id = Visitor::from_ip(ip).to_string();
        let agent = harvest::match_agent(&st.config.agents, &ua);
        let method = req.method().clone();
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "/".into());
        let caught = self.caught.contains(&visitor_id, day);
        let line = AccessLine {
            visitor: ip,
            method: method.clone(),
            path: path.clone(),
            status: 0,
            user_agent: ua.clone(),
            started,
            munged: Arc::clone(&resp_munged),
            _busy: busy,
            visit: Some(VisitNote {
                log: Arc::clone(&self.visits),
                day,
                visitor: visitor_id.clone(),
                harvester: agent
                    .map(|a| format!("agent {}", a.pattern))
                    .or_else(|| caught.then(|| "bait".to_owned())),
            }),
        };
        if agent.is_some() || caught {
            self.metrics.harvester_requests.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bait) = &st.config.bait {
            let p = req.uri().path();
            let get_or_head = method == Method::GET || method == Method::HEAD;
            if get_or_head && (p == bait.path || agent.is_some_and(|a| a.action == AgentAction::Bait)) {
                return self.serve_bait(&st, bait, ip, day, &method, line, &resp_munged);
            }
            if bait.path.ends_with('/') && p.len() > bait.path.len() && p.starts_with(bait.path.as_str()) {
                return self.log(
                    error_page(
                        StatusCode::NOT_FOUND,
                        "The requested URL was not found on this server.",
                    ),
                    line,
                );
            }
            if get_or_head && bait.path.ends_with('/') && p == bait.path.trim_end_matches('/') {
                let mut r = error_page(StatusCode::MOVED_PERMANENTLY, "Moved.");
                r.headers_mut().insert(
                    header::LOCATION,
                    HeaderValue::from_str(&bait.path).expect("checked path"),
                );
                return self.log(r, line);
            }
            if get_or_head && p == "/robots.txt" {
                let r = self.robots(&st, &bait.path, req.headers(), &method).await;
                return self.log(r, line);
            }
        }
        let kind = if caught || agent.is_some_and(|a| a.action == AgentAction::Trap) {
            Kind::Trap
        } else {
            Kind::Visitor
        };
        let other_domain = agent
            .filter(|a| a.action == AgentAction::Domain)
            .and_then(|a| a.domain.clone());
        let claims = Claims::visit(kind, day, ip);
        let vd = validator_suffix(&st.keys, &self.cache, &claims);
        let client_gzip = accepts_gzip(req.headers());
        let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));

        let (parts, body) = req.into_parts();
        let mut up_headers = forward_headers(
            &parts.headers,
            peer.ip(),
            &st.config.proxy.trusted,
            client_upgrade.is_some(),
        );
        let conditional_on_ours = translate_if_none_match(&mut up_headers, &vd);
        let uri: Uri = match format!("http://{}{}", st.upstream.authority, path).parse() {
            Ok(u) => u,
            Err(_) => {
                return self.log(
                    error_page(StatusCode::BAD_REQUEST, "The request target is not valid."),
                    line,
                );
            }
        };
        if let Some(h) = st.upstream_host(&parts.headers, &parts.uri) {
            up_headers.insert(header::HOST, h);
        }
        let retry_without_range = method == Method::GET && up_headers.contains_key(header::RANGE);
        let mut up_req = Request::builder().method(method.clone()).uri(uri.clone());
        *up_req.headers_mut().expect("builder is fresh") = up_headers.clone();
        // A body (not a bare GET) is held to the minimum upload rate.
        let (body, upload) = if body.is_end_stream() {
            (body.map_err(|e| Box::new(e) as BoxError).boxed(), None)
        } else {
            let p = &st.config.proxy;
            let (paced, progress) = upload::Paced::new(body, p.upload_timeout, p.upload_min_rate);
            (paced.boxed(), Some(progress))
        };
        let up_req = up_req.body(body).expect("method, uri and headers are valid");
        let timeout = st.config.proxy.header_timeout;
        let mut resp = match self.send(up_req, timeout, upload).await {
            Ok(r) => r,
            Err(r) => return self.log(r, line),
        };
        if retry_without_range
            && resp.status() == StatusCode::PARTIAL_CONTENT
            && self.rewritable(&st, resp.headers())
        {
            // A part of a rewritten body cannot be served: ask for the whole.
            up_headers.remove(header::RANGE);
            up_headers.remove(header::IF_RANGE);
            let mut again = Request::builder().method(Method::GET).uri(uri);
            *again.headers_mut().expect("fresh") = up_headers;
            let again = again
                .body(http_body_util::Empty::new().map_err(|e| match e {}).boxed())
                .expect("valid");
            resp = match self.send(again, timeout, None).await {
                Ok(r) => r,
                Err(r) => return self.log(r, line),
            };
        }

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                        let _ =
                            tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
                    }
                });
                let (parts, _) = resp.into_parts();
                let r = Response::from_parts(
                    parts,
                    http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
                );
                return self.log(r, line);
            }
        }

        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        let idle = st.config.proxy.body_idle_timeout;
        if parts.status == StatusCode::NOT_MODIFIED && conditional_on_ours {
            // The 304 confirms the visitor's own copy: give back its validator.
            private_headers(&mut parts.headers, &vd);
        }
        let rewrite = self.rewritable(&st, &parts.headers)
            && parts.status != StatusCode::NO_CONTENT
            && !(parts.status.is_informational());
        let coding = Coding::parse(
            parts
                .headers
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok()),
        );
        let body: ProxyBody = match (rewrite, coding) {
            (true, Some(coding)) => {
                self.metrics.rewritten.fetch_add(1, Ordering::Relaxed);
                private_headers(&mut parts.headers, &vd);
                let gzip_out = client_gzip && method != Method::HEAD;
                parts.headers.remove(header::CONTENT_ENCODING);
                if gzip_out {
                    parts
                        .headers
                        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                if client_gzip {
                    parts
                        .headers
                        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
                }
                if method == Method::HEAD || parts.status == StatusCode::NOT_MODIFIED {
                    body.map_err(|e| Box::new(e) as BoxError).boxed()
                } else {
                    let munger = VisitorMunger::new(
                        Arc::clone(&st.keys),
                        st.config.protection.separator(),
                        claims,
                        Arc::clone(&self.cache),
                    )
                    .with_domain(other_domain);
                    let declared = parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(crate::rewrite::charset::from_content_type);
                    let mut pipeline = Pipeline::new(st.matcher.scanner(), munger, coding, gzip_out)
                        .with_expansion(st.config.proxy.expansion)
                        .with_charset(declared, is_html(&parts.headers));
                    if let Some(bait) = st.config.bait.as_ref().filter(|b| b.link)
                        && is_html(&parts.headers)
                    {
                        pipeline = pipeline.with_link(LinkInserter::new(harvest::bait_link(&bait.path)));
                    }
                    Streamed::new(
                        body,
                        Some(pipeline),
                        idle,
                        &self.metrics,
                        Arc::clone(&resp_munged),
                    )
                    .boxed()
                }
            }
            (true, None) => {
                self.metrics.unrewritable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%path, encoding = ?parts.headers.get(header::CONTENT_ENCODING), "cannot undo this content coding; passing the body through unrewritten");
                Streamed::new(body, None, idle, &self.metrics, Arc::clone(&resp_munged)).boxed()
            }
            (false, _) => Streamed::new(body, None, idle, &self.metrics, Arc::clone(&resp_munged)).boxed(),
        };
        let r = Response::from_parts(parts, body);
        self.log(r, line)
    }

    /// The bait page: trap addresses for this visitor and day. Fetching it
    /// marks the visitor as a harvester for the rest of the day.
    #[allow(clippy::too_many_arguments)]
    fn serve_bait(
        &self,
        st: &State,
        bait: &crate::config::Bait,
        ip: IpAddr,
        day: Day,
        method: &Method,
        mut line: AccessLine,
        munged: &AtomicU64,
    ) -> Response<ProxyBody> {
        let addresses = harvest::bait_addresses(bait, &st.keys, &st.config.protection, ip, day);
        let page = harvest::bait_page(bait, &addresses);
        self.metrics.bait_hits.fetch_add(1, Ordering::Relaxed);
        if let Some(v) = &mut line.visit {
            self.caught.mark(&v.visitor, day);
            v.harvester = Some("bait".into());
        }
        munged.store(addresses.len() as u64, Ordering::Relaxed);
        tracing::info!(visitor = %ip, user_agent = %line.user_agent, "bait page fetched; trap IDs for this visitor today");
        let mut r = own_response(method, StatusCode::OK, "text/html; charset=utf-8", page);
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        self.log(r, line)
    }

    /// The upstream's robots.txt with a `Disallow` for the bait page, or one
    /// of our own when the upstream has none.
    async fn robots(
        &self,
        st: &State,
        bait_path: &str,
        headers: &HeaderMap,
        method: &Method,
    ) -> Response<ProxyBody> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{}/robots.txt", st.upstream.authority));
        if let Some(h) = st.upstream_host(headers, &Uri::default()) {
            req = req.header(header::HOST, h);
        }
        let req = req
            .body(http_body_util::Empty::new().map_err(|e| match e {}).boxed())
            .expect("valid request");
        let timeout = st.config.proxy.header_timeout;
        let upstream = match self.send(req, timeout, None).await {
            Ok(r) if r.status() == StatusCode::OK && r.headers().get(header::CONTENT_ENCODING).is_none() => {
                // A robots.txt is small; a huge or slow one is not worth waiting for.
                let limited = http_body_util::Limited::new(r.into_body(), 512 * 1024);
                match tokio::time::timeout(timeout, limited.collect()).await {
                    Ok(Ok(b)) => String::from_utf8(b.to_bytes().to_vec()).ok(),
                    _ => None,
                }
            }
            _ => None,
        };
        let text = harvest::robots_txt(upstream.as_deref(), bait_path);
        own_response(method, StatusCode::OK, "text/plain; charset=utf-8", text)
    }

    fn log(&self, r: Response<ProxyBody>, mut line: AccessLine) -> Response<ProxyBody> {
        let started = line.started;
        self.metrics.observe(started.elapsed());
        match r.status() {
            StatusCode::BAD_GATEWAY => self.metrics.bad_gateway.fetch_add(1, Ordering::Relaxed),
            StatusCode::GATEWAY_TIMEOUT => self.metrics.gateway_timeout.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        line.status = r.status().as_u16();
        let (parts, body) = r.into_parts();
        Response::from_parts(
            parts,
            Logged {
                inner: body,
                line,
                bytes: 0,
                complete: false,
                failed: false,
            }
            .boxed(),
        )
    }

    fn rewritable(&self, st: &State, headers: &HeaderMap) -> bool {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut parts = ct.split(';');
        let base = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        if !st.config.proxy.rewrite_types.contains(&base) {
            return false;
        }
        // ASCII-compatible charsets are scanned as bytes, UTF-16 and
        // ISO-2022-JP transcoded (rewrite::charset); UTF-32 and UCS-2/4,
        // which browsers do not support either, pass through.
        let charset = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
            .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
        if let Some(cs) = charset {
            if cs.starts_with("utf-32") || cs.starts_with("ucs-") {
                tracing::warn!(charset = %cs, "charset is not ASCII-compatible; passing the body through unrewritten");
                self.metrics.unrewritable.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let no_transform = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("no-transform"));
        !no_transform || st.config.proxy.rewrite_no_transform
    }

    /// Sends `req`; its answer is due `timeout` after its body (if any,
    /// `upload`) last moved.
    async fn send(
        &self,
        req: Request<ProxyBody>,
        timeout: Duration,
        upload: Option<upload::Progress>,
    ) -> Result<Response<Incoming>, Response<ProxyBody>> {
        let due = async {
            match &upload {
                Some(progress) => progress.quiet_for(timeout).await,
                None => tokio::time::sleep(timeout).await,
            }
        };
        let answer = tokio::select! {
            answer = self.client.request(req) => Ok(answer),
            () = due => Err(()),
        };
        match answer {
            Err(_) => Err(error_page(
                StatusCode::GATEWAY_TIMEOUT,
                "The web server did not answer in time.",
            )),
            Ok(Err(e)) => {
                let timed_out = format!("{e:?}").contains("ConnectTimeout") || is_timeout(&e);
                tracing::warn!(error = %e, "upstream request failed");
                if caused_by::<upload::UploadTooSlow>(&e) {
                    self.metrics.upload_timeouts.fetch_add(1, Ordering::Relaxed);
                    let mut r = error_page(StatusCode::REQUEST_TIMEOUT, "The request body came too slowly.");
                    r.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    Err(r)
                } else if caused_by::<upstream::UpstreamBusy>(&e) {
                    self.metrics.upstream_busy.fetch_add(1, Ordering::Relaxed);
                    let mut r = error_page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The server is too busy; please try again shortly.",
                    );
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    Err(r)
                } else if timed_out {
                    Err(error_page(
                        StatusCode::GATEWAY_TIMEOUT,
                        "The web server did not answer in time.",
                    ))
                } else {
                    Err(error_page(
                        StatusCode::BAD_GATEWAY,
                        "The web server could not be reached.",
                    ))
                }
            }
            Ok(Ok(r)) => Ok(r),
        }
    }
}

/// The connection caps, shrunk to fit the open-file limit (raised to its
/// hard limit first): every visitor connection and every upstream socket is
/// a file descriptor, and running out of them stops `accept` and the
/// metrics listener too.
fn fd_budget(max_connections: usize, max_upstream: usize) -> (usize, usize) {
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

/// The errors `e` is made of: itself, then its sources.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    chain(e).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// True when `e` or one of its sources is a `T`.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    chain(e).any(|e| e.is::<T>())
}

fn error_page(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>{code} {reason}</title></head><body><h1>{code} {reason}</h1><p>{text}</p></body></html>\n",
        code = status.as_u16(),
        reason = status.canonical_reason().unwrap_or("")
    );
    let mut r = own_response(&Method::GET, status, "text/html; charset=utf-8", body);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A response the proxy writes itself, with its length; HEAD gets the
/// same headers and no body.
fn own_response(
    method: &Method,
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<ProxyBody> {
    let len = body.len();
    let body = if *method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    let mut r = Response::new(http_body_util::Full::new(body).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}
fn is_html(h: &HeaderMap) -> bool {
    let ct = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let base = ct.split(';').next().unwrap_or("").trim();
    base == "text/html" || base == "application/xhtml+xml"
}

fn accepts_gzip(h: &HeaderMap) -> bool {
    accepts_coding(h, "gzip")
}

/// True when `Accept-Encoding` takes `coding` (by name or `*`, not with q=0).
fn accepts_coding(h: &HeaderMap, coding: &str) -> bool {
    h.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|c| {
                let mut it = c.split(';');
                let name = it.next().unwrap_or("").trim();
                let q0 = it.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
                (name.eq_ignore_ascii_case(coding) || name == "*") && !q0
            })
        })
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Removes hop-by-hop headers (and those named in `Connection`); with
/// `keep_upgrade`, `Connection: upgrade` and `Upgrade` stay for a WebSocket.
fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .filter(|t| !(keep_upgrade && t == "upgrade"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        if keep_upgrade && (*n == "connection" || *n == "upgrade") {
            continue;
        }
        h.remove(*n);
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Headers that claim who the visitor is or where the request came from.
/// From a peer that is not a trusted proxy they are lies until proven
/// otherwise: the web server must not log or act on them.
const CLAIMS_OF_ORIGIN: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-server",
    "x-forwarded-prefix",
    "x-forwarded-ssl",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
];

fn forward_headers(incoming: &HeaderMap, peer: IpAddr, trusted: &[IpNet], upgrade: bool) -> HeaderMap {
    let mut h = incoming.clone();
    strip_hop_by_hop(&mut h, upgrade);
    let from_trusted = trusted.iter().any(|n| n.contains(&peer));
    if !from_trusted {
        for name in CLAIMS_OF_ORIGIN {
            h.remove(*name);
        }
        // As X-Forwarded-For: replaced by what the socket says.
        if let Ok(v) = HeaderValue::from_str(&peer.to_string()) {
            h.insert("x-real-ip", v);
        }
        let node = match peer {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("\"[{v6}]\""),
        };
        if let Ok(v) = HeaderValue::from_str(&format!("for={node};proto=http")) {
            h.insert(header::FORWARDED, v);
        }
    }
    // X-Forwarded-For: extend the chain only when the peer is a proxy we trust.
    let xff = if from_trusted {
        match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => format!("{prev}, {peer}"),
            _ => peer.to_string(),
        }
    } else {
        peer.to_string()
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    if !from_trusted || !h.contains_key("x-forwarded-proto") {
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    h.append(header::VIA, HeaderValue::from_static("1.1 addrmunge"));
    // Only codings the pipeline can undo, and only those the client takes.
    let enc: Vec<&str> = ["gzip", "deflate", "br", "zstd"]
        .into_iter()
        .filter(|c| accepts_coding(incoming, c))
        .collect();
    if enc.is_empty() {
        h.remove(header::ACCEPT_ENCODING);
    } else if let Ok(v) = HeaderValue::from_str(&enc.join(", ")) {
        h.insert(header::ACCEPT_ENCODING, v);
    }
    h
}

/// A short keyed tag for the visitor-day-kind, put into validators so a
/// cache never serves one visitor's IDs to another. Keyed, so it reveals
/// nothing about the IP.
fn validator_suffix(keys: &KeyRing, cache: &TokenCache, claims: &Claims) -> String {
    // Through the token cache: one encryption per visitor-day, not per request.
    cache.get(keys, claims, "validator.addrmunge.invalid")[1..9].to_owned()
}

/// `ETag: "abc"` -> `W/"abc.s-<vd>"`, weak ones `.w-<vd>`; `Cache-Control` private.
fn private_headers(h: &mut HeaderMap, vd: &str) {
    h.remove(header::CONTENT_LENGTH);
    h.remove(header::ACCEPT_RANGES);
    if let Some(tag) = h
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    {
        let (weak, opaque) = match tag.strip_prefix("W/") {
            Some(t) => (true, t),
            None => (false, tag.as_str()),
        };
        let inner = opaque.trim_matches('"');
        let mark = if weak { 'w' } else { 's' };
        match HeaderValue::from_str(&format!("W/\"{inner}.{mark}-{vd}\"")) {
            Ok(v) => {
                h.insert(header::ETAG, v);
            }
            Err(_) => {
                h.remove(header::ETAG);
            }
        }
    }
    let mut directives: Vec<String> = h
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|d| d.trim().to_owned()).collect::<Vec<_>>())
        .filter(|d| {
            let name = d.split('=').next().unwrap_or("").trim().to_ascii_lowercase();
            !d.is_empty()
                && !matches!(
                    name.as_str(),
                    "public" | "s-maxage" | "private" | "proxy-revalidate"
                )
        })
        .collect();
    directives.insert(0, "private".into());
    if let Ok(v) = HeaderValue::from_str(&directives.join(", ")) {
        h.insert(header::CACHE_CONTROL, v);
    }
}

/// Turns our validators in `If-None-Match` back into the upstream's; tags
/// from another visitor-day are dropped so the upstream sends the whole page.
/// Returns whether one of this visitor-day's validators was asked for (a
/// 304 then carries the validator that must be made ours again).
fn translate_if_none_match(h: &mut HeaderMap, vd: &str) -> bool {
    let Some(value) = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return false;
    };
    if value.trim() == "*" {
        return false;
    }
    let mut mine = false;
    let mut out = Vec::new();
    for tag in value.split(',').map(str::trim) {
        let opaque = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
        if let Some((orig, suffix)) = opaque.rsplit_once('.') {
            if suffix == format!("s-{vd}") {
                out.push(format!("\"{orig}\""));
                mine = true;
                continue;
            }
            if suffix == format!("w-{vd}") {
                out.push(format!("W/\"{orig}\""));
                mine = true;
                continue;
            }
        }
        let ours = opaque
            .rsplit_once('.')
            .is_some_and(|(_, s)| s.starts_with("s-") || s.starts_with("w-"));
        if !ours {
            out.push(tag.to_owned());
        }
    }
    if out.is_empty() {
        h.remove(header::IF_NONE_MATCH);
    } else if let Ok(v) = HeaderValue::from_str(&out.join(", ")) {
        h.insert(header::IF_NONE_MATCH, v);
    }
    mine
}

/// An upstream body on its way to the client: rewritten through a
/// [`Pipeline`] or passed through, with an idle timeout. An upstream error
/// becomes a body error, which makes hyper reset the client's stream
/// instead of ending it as if complete.
struct Streamed {
    inner: Incoming,
    pipeline: Option<Pipeline>,
    rewriting: bool,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Every response's addresses (the metric), and this one's.
    munged: Arc<AtomicU64>,
    response_munged: Arc<AtomicU64>,
    /// This response's addresses already added to `munged`.
    counted: u64,
    /// Responses cut off for expanding too much (the metric).
    expansion_cut: Arc<AtomicU64>,
    /// Responses whose declared UTF-16 was false (the metric).
    charset_mismatch: Arc<AtomicU64>,
    done: bool,
}

impl Streamed {
    fn new(
        inner: Incoming,
        pipeline: Option<Pipeline>,
        idle: Duration,
        metrics: &metrics::Metrics,
        response_munged: Arc<AtomicU64>,
    ) -> Streamed {
        Streamed {
            inner,
            rewriting: pipeline.is_some(),
            pipeline,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            munged: Arc::clone(&metrics.munged),
            response_munged,
            counted: 0,
            expansion_cut: Arc::clone(&metrics.expansion_cut),
            charset_mismatch: Arc::clone(&metrics.charset_mismatch),
            done: false,
        }
    }
}

/// The visit-log record a request leaves when its response body ends.
struct VisitNote {
    log: Arc<VisitLog>,
    day: Day,
    visitor: String,
    harvester: Option<String>,
}

/// What the access log says about one request, written when its response
/// body is done (or dropped), so bytes and addresses munged are known.
struct AccessLine {
    visitor: IpAddr,
    method: Method,
    path: String,
    status: u16,
    user_agent: String,
    started: Instant,
    munged: Arc<AtomicU64>,
    /// The connection is busy for as long as this line is not written.
    _busy: Busy,
    visit: Option<VisitNote>,
}

/// A response body that counts what it sends and logs the access line at its end.
struct Logged {
    inner: ProxyBody,
    line: AccessLine,
    bytes: u64,
    /// The body reached its end.
    complete: bool,
    /// The body failed (upstream cut, bad coding, idle, too large): the
    /// visitor got less than the whole page, whatever the stream's state says.
    failed: bool,
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(v) = self.line.visit.take() {
            v.log.record(VisitEvent {
                time: now_unix(),
                day: v.day,
                visitor: v.visitor,
                user_agent: self.line.user_agent.clone(),
                path: self.line.path.clone(),
                munged: self.line.munged.load(Ordering::Relaxed),
                harvester: v.harvester,
            });
        }
        let l = &self.line;
        tracing::info!(
            target: "access",
            visitor = %l.visitor,
            method = %l.method,
            path = %l.path,
            status = l.status,
            bytes = self.bytes,
            munged = l.munged.load(Ordering::Relaxed),
            ms = l.started.elapsed().as_millis() as u64,
            complete = !self.failed && (self.complete || self.inner.is_end_stream()),
            user_agent = %l.user_agent,
        );
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.failed = true,
            Poll::Ready(None) => this.complete = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Streamed {
    /// The pipeline's next piece as a frame; counts what it munged so far,
    /// so a body cut off midway is logged with the addresses that did reach
    /// the visitor. `None`: it needs more upstream input.
    fn next_piece(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        let p = self.pipeline.as_mut()?;
        loop {
            let piece = p.next_piece();
            if p.take_charset_mismatch() {
                self.charset_mismatch.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("a body declared UTF-16 is not; scanned its bytes as they are");
            }
            let munged = p.munged();
            self.munged.fetch_add(munged - self.counted, Ordering::Relaxed);
            self.response_munged.store(munged, Ordering::Relaxed);
            self.counted = munged;
            match piece {
                Err(e) => {
                    self.done = true;
                    if e.get_ref().is_some_and(|e| e.is::<crate::rewrite::Expanded>()) {
                        self.expansion_cut.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "cut off a response body");
                    }
                    return Some(Err(Box::new(e)));
                }
                Ok(Some(out)) if out.is_empty() && !p.is_finished() => continue,
                Ok(Some(out)) => {
                    self.done = p.is_finished();
                    return (!out.is_empty()).then(|| Ok(Frame::data(out)));
                }
                Ok(None) => {
                    self.done = p.is_finished();
                    return None;
                }
            }
        }
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            // What the pipeline holds goes first, one piece per poll.
            if let Some(frame) = this.next_piece() {
                return Poll::Ready(Some(frame));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.sleep.as_mut().reset(deadline);
                    let Some(p) = this.pipeline.as_mut() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    // Trailers describe the original body; they are dropped.
                    if let Ok(data) = frame.into_data() {
                        // The last frame (known by Content-Length) ends the
                        // pipeline at once: one frame out, not a tiny extra one.
                        p.input(data, this.inner.is_end_stream());
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => match this.pipeline.as_mut() {
                    Some(p) => p.input(Bytes::new(), true),
                    None => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                },
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.done = true;
                        return Poll::Ready(Some(Err("the web server stopped sending the body".into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (!self.rewriting && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.rewriting {
            hyper::body::SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_round_trip() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60, s-maxage=600"),
        );
        private_headers(&mut h, "vd12345x");
        assert_eq!(h[header::ETAG], "W/\"abc.s-vd12345x\"");
        assert_eq!(h[header::CACHE_CONTROL], "private, max-age=60");
        let mut req = HeaderMap::new();
        req.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"abc.s-vd12345x\", W/\"abc.s-other000\""),
        );
        let _ = translate_if_none_match(&mut req, "vd12345x");
        assert_eq!(req[header::IF_NONE_MATCH], "\"abc\"");
        let mut req = HeaderMap::new();
        req.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("W/\"abc.s-other000\""),
        );
        let _ = translate_if_none_match(&mut req, "vd12345x");
        assert!(!req.contains_key(header::IF_NONE_MATCH));
    }

    #[test]
    fn claims_of_origin_from_untrusted_peers_never_reach_the_web_server() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("forwarded", "for=192.0.2.66;host=evil.example"),
            ("x-real-ip", "192.0.2.66"),
            ("x-forwarded-host", "evil.example"),
            ("true-client-ip", "192.0.2.66"),
            ("x-forwarded-for", "192.0.2.66"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let out = forward_headers(&h, "203.0.113.9".parse().unwrap(), &[], false);
        assert_eq!(out["x-real-ip"], "203.0.113.9");
        assert_eq!(out["forwarded"], "for=203.0.113.9;proto=http");
        assert_eq!(out["x-forwarded-for"], "203.0.113.9");
        assert!(!out.contains_key("x-forwarded-host") && !out.contains_key("true-client-ip"));
        let out = forward_headers(&h, "2001:db8::1".parse().unwrap(), &[], false);
        assert_eq!(out["forwarded"], "for=\"[2001:db8::1]\";proto=http");
        // From a trusted proxy they are its to give.
        let trusted = vec!["127.0.0.1/32".parse().unwrap()];
        let out = forward_headers(&h, "127.0.0.1".parse().unwrap(), &trusted, false);
        assert_eq!(out["x-forwarded-host"], "evil.example");
        assert_eq!(out["x-real-ip"], "192.0.2.66");
    }

    #[test]
    fn gzip_acceptance() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0.5"),
        );
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, br"));
        assert!(!accepts_gzip(&h));
    }
}
