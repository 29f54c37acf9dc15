//! One request's phases, in the manner of pingora's `ProxyHttp`: identify
//! the visitor → local routes (bait page, robots.txt) → the upstream
//! request → send it → response headers → the body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::{request, response};
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;

use super::body::{AccessLine, Logged, Streamed, VisitNote};
use super::headers::{
    MediaType, ask_codings, compression_for, forward_headers, is_upgrade, munge_headers,
    private_cache_control, private_headers, strip_hop_by_hop, translate_if_none_match, validator_suffix,
};
use super::pages::{error_page, https_redirect, not_forwarded};
use super::{BoxError, Proxy, ProxyBody, State, harvest, target, upload, visitor};
use crate::config::{AgentAction, AgentRule, TypePattern};
use crate::conns::Busy;
use crate::day::Day;
use crate::rewrite::{Coding, Compress, LinkInserter, Pipeline, VisitorMunger};
use crate::store::Harvester;
use crate::token::{Claims, Kind, Visitor};

/// One request on its way through the phases.
pub(super) struct Ctx {
    /// The settings it is served under, from start to end.
    pub(super) st: Arc<State>,
    /// The socket peer.
    peer: SocketAddr,
    /// The request came over TLS.
    https: bool,
    /// The visitor (the peer, or who a trusted proxy says it serves).
    pub(super) ip: IpAddr,
    pub(super) day: Day,
    /// The User-Agent rule it matched.
    agent: Option<AgentRule>,
    /// The visitor fetched the bait page today.
    caught: bool,
    /// The visitor is a search engine's crawler (`[crawlers]`).
    pub(super) crawler: bool,
    /// The request is the owner's `addrmunge audit`.
    audit: bool,
    /// The access line, written when the response body is done.
    pub(super) line: AccessLine,
}

/// What the response phases need to know about the request sent.
struct Sent {
    claims: Claims,
    /// Our validator suffix for this visitor and day.
    vd: String,
    /// What a rewritten body is compressed with for this client.
    compress: Option<Compress>,
    client_upgrade: Option<OnUpgrade>,
    /// The visitor's `If-None-Match` named one of our validators.
    conditional_on_ours: bool,
    /// For [`AgentAction::Domain`]: the domain addresses are rewritten to.
    other_domain: Option<String>,
    /// The target and headers again, to ask for the whole instead of a Range.
    retry: Option<(Uri, HeaderMap)>,
}

/// A 101 from the web server: the visitor's and the web server's
/// connections are joined.
fn upgraded(client: OnUpgrade, mut resp: Response<Incoming>) -> Response<ProxyBody> {
    let upstream = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        if let (Ok(c), Ok(u)) = (client.await, upstream.await) {
            let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(
        parts,
        http_body_util::Empty::new().map_err(|e| match e {}).boxed(),
    )
}

impl Proxy {
    /// Handles one request; the connection is busy until its response body
    /// is done.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        https: bool,
        busy: Busy,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        self.metrics.requests.fetch_add(1, Ordering::Relaxed);
        let mut cx = self.identify(&req, peer, busy, started);
        cx.https = https;
        let mut r = self.respond(&mut cx, req).await;
        if cx.audit {
            super::audit::tell_visitor(&mut r, cx.ip);
        }
        self.log(r, cx.line)
    }

    /// Who is asking, and whether they are a harvester.
    fn identify(&self, req: &Request<Incoming>, peer: SocketAddr, busy: Busy, started: Instant) -> Ctx {
        let st = self.state();
        let ip = visitor::client_ip(peer.ip(), req.headers(), &st.config.proxy.trusted);
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let day = Day::today();
        // Written out once each: the visit log and the access line keep them.
        let visitor = Visitor::from_ip(ip).text();
        let ip_text = crate::ip_text::ip_text(ip);
        // A crawler's network or its DNS names are its proof of identity:
        // its User-Agent is not judged, and it is never caught (its copies
        // are everyone's).
        let audit = self
            .auditors
            .is_audit(&st.keys, ip, day, req.headers(), &user_agent);
        let crawler = !audit && (st.config.crawlers.contains(ip) || st.crawlers.is_crawler(ip, &user_agent));
        let agent = (!crawler && !audit)
            .then(|| harvest::match_agent(&st.config.agents, &user_agent).cloned())
            .flatten();
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let caught = !crawler && !audit && self.caught.contains(&visitor, day);
        if agent.is_some() || caught {
            self.metrics.harvester_requests.fetch_add(1, Ordering::Relaxed);
        }
        let harvester = agent
            .as_ref()
            .map(|a| Harvester::Agent(a.pattern.clone()))
            .or_else(|| caught.then_some(Harvester::Bait));
        let line = AccessLine {
            visitor: ip_text,
            method: req.method().clone(),
            path,
            status: 0,
            user_agent,
            started,
            munged: Arc::new(AtomicU64::new(0)),
            _busy: busy,
            // The owner's own audit is no visit to report on.
            visit: (!audit).then(|| VisitNote {
                log: Arc::clone(&self.visits),
                day,
                visitor,
                harvester,
            }),
        };
        Ctx {
            st,
            peer,
            https: false,
            ip,
            day,
            agent,
            caught,
            crawler,
            audit,
            line,
        }
    }

    /// The phases after [`identify`](Self::identify): a local route, or the
    /// web server's answer with its headers and body made ours.
    async fn respond(&self, cx: &mut Ctx, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let client_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        if let Some(r) = not_forwarded(&parts) {
            return r;
        }
        if let Some(r) = self.local_route(cx, &parts).await {
            return r;
        }
        let Some((up_req, upload, mut sent)) = self.upstream_request(cx, parts, body, client_upgrade) else {
            return error_page(StatusCode::BAD_REQUEST, "The request target is not valid.");
        };
        let up_req = match self.restore_form(cx, up_req).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        let resp = match self.send_upstream(cx, up_req, upload, &mut sent).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = sent.client_upgrade.take()
        {
            return upgraded(client, resp);
        }
        self.response(cx, resp, sent)
    }

    /// What the proxy answers itself: an ACME HTTP-01 challenge, the
    /// redirect to HTTPS, the bait page (also for agents sent there), a 404
    /// below it, the redirect to its folder, and robots.txt.
    async fn local_route(&self, cx: &mut Ctx, req: &request::Parts) -> Option<Response<ProxyBody>> {
        let st = Arc::clone(&cx.st);
        if !cx.https {
            if let Some(r) = self.acme_challenge(req) {
                return Some(r);
            }
            if st.config.proxy.tls.https_redirect {
                return Some(https_redirect(&st, req));
            }
        }
        let bait = st.config.bait.as_ref()?;
        let p = req.uri.path();
        let get_or_head = req.method == Method::GET || req.method == Method::HEAD;
        let sent_to_bait = cx.agent.as_ref().is_some_and(|a| a.action == AgentAction::Bait);
        // A crawler that ignores robots.txt is not given trap addresses
        // to index: it gets the web server's answer for the path.
        if get_or_head && (p == bait.path || sent_to_bait) && !cx.crawler {
            return Some(self.serve_bait(cx, bait));
        }
        let folder = bait.path.ends_with('/');
        if folder && p.len() > bait.path.len() && p.starts_with(bait.path.as_str()) {
            return Some(error_page(
                StatusCode::NOT_FOUND,
                "The requested URL was not found on this server.",
            ));
        }
        if get_or_head && folder && p == bait.path.trim_end_matches('/') {
            let mut r = error_page(StatusCode::MOVED_PERMANENTLY, "Moved.");
            r.headers_mut().insert(
                header::LOCATION,
                HeaderValue::from_str(&bait.path).expect("checked path"),
            );
            return Some(r);
        }
        if get_or_head && p == "/robots.txt" {
            return Some(self.robots(&st, &bait.path, &req.headers, &req.method).await);
        }
        None
    }

    /// The request for the web server: its target with our IDs taken out of
    /// the owner's addresses in it, its headers made safe to pass on, our
    /// validators translated back, a body held to the upload rate.
    /// `None` when the request target makes no URI.
    fn upstream_request(
        &self,
        cx: &Ctx,
        parts: request::Parts,
        body: Incoming,
        client_upgrade: Option<OnUpgrade>,
    ) -> Option<(Request<ProxyBody>, Option<upload::Progress>, Sent)> {
        let st = &cx.st;
        let trap = cx.caught || cx.agent.as_ref().is_some_and(|a| a.action == AgentAction::Trap);
        let kind = match (cx.crawler, trap) {
            (true, _) => Kind::Crawler,
            (false, true) => Kind::Trap,
            (false, false) => Kind::Visitor,
        };
        let claims = Claims::visit(kind, cx.day, cx.ip);
        let vd = validator_suffix(&st.keys, &self.cache, &claims);
        let p = &st.config.proxy;
        let mut headers = forward_headers(
            &parts.headers,
            cx.peer.ip(),
            &p.trusted,
            client_upgrade.is_some(),
            cx.https,
        );
        ask_codings(&mut headers, &parts.headers, &p.rewrite_types);
        let conditional_on_ours = translate_if_none_match(&mut headers, &vd);
        // The web server gets the target its own page linked to; the access
        // line keeps what the visitor asked for.
        let restored = target::restore(&cx.line.path, &st.config.protection, &st.keys);
        let path = restored.as_deref().unwrap_or(&cx.line.path);
        let uri = st.upstream.uri(path)?;
        if let Some(h) = st.upstream_host(&parts.headers, &parts.uri) {
            headers.insert(header::HOST, h);
        }
        let retry = (parts.method == Method::GET && headers.contains_key(header::RANGE))
            .then(|| (uri.clone(), headers.clone()));
        // A body (not a bare GET) is held to the minimum upload rate.
        let (body, upload) = if body.is_end_stream() {
            (body.map_err(|e| Box::new(e) as BoxError).boxed(), None)
        } else {
            let (paced, progress) = upload::Paced::new(body, p.upload_timeout, p.upload_min_rate);
            (paced.boxed(), Some(progress))
        };
        let mut req = Request::builder().method(parts.method).uri(uri);
        *req.headers_mut().expect("builder is fresh") = headers;
        let sent = Sent {
            claims,
            vd,
            compress: compression_for(&parts.headers, self.gzip.is_some()),
            client_upgrade,
            conditional_on_ours,
            other_domain: cx
                .agent
                .as_ref()
                .filter(|a| a.action == AgentAction::Domain)
                .and_then(|a| a.domain.clone()),
            retry,
        };
        Some((
            req.body(body).expect("method, uri and headers are valid"),
            upload,
            sent,
        ))
    }

    /// A URL-encoded form's body of a known length up to
    /// [`target::FORM_MAX`], read whole and given back the bare addresses
    /// in its fields (its `Content-Length` made to match); any other body
    /// goes on streaming.
    async fn restore_form(
        &self,
        cx: &Ctx,
        req: Request<ProxyBody>,
    ) -> Result<Request<ProxyBody>, Response<ProxyBody>> {
        // Most requests have no body: told by its length before its type.
        let small = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n <= target::FORM_MAX);
        if !small || MediaType::of(req.headers()).essence != "application/x-www-form-urlencoded" {
            return Ok(req);
        }
        let (mut parts, body) = req.into_parts();
        let fields = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if caused_by::<upload::UploadTooSlow>(&*e) => return Err(self.upload_too_slow()),
            Err(_) => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "The request body was cut short.",
                ));
            }
        };
        let fields = match target::restore_bytes(&fields, &cx.st.config.protection, &cx.st.keys) {
            Some(restored) => {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, restored.len().into());
                Bytes::from(restored)
            }
            None => fields,
        };
        let body = http_body_util::Full::new(fields).map_err(|e| match e {}).boxed();
        Ok(Request::from_parts(parts, body))
    }

    /// Sends the request; a part (206) of a body that is rewritten cannot
    /// be served, so then the whole is asked for.
    async fn send_upstream(
        &self,
        cx: &Ctx,
        req: Request<ProxyBody>,
        upload: Option<upload::Progress>,
        sent: &mut Sent,
    ) -> Result<Response<Incoming>, Response<ProxyBody>> {
        let timeout = cx.st.config.proxy.header_timeout;
        let resp = self.send(req, timeout, upload).await?;
        let Some((uri, mut headers)) = sent.retry.take() else {
            return Ok(resp);
        };
        let media = MediaType::of(resp.headers());
        if resp.status() != StatusCode::PARTIAL_CONTENT || !self.rewritable(&cx.st, &media, resp.headers()) {
            return Ok(resp);
        }
        headers.remove(header::RANGE);
        headers.remove(header::IF_RANGE);
        let mut again = Request::builder().method(Method::GET).uri(uri);
        *again.headers_mut().expect("fresh") = headers;
        let again = again
            .body(http_body_util::Empty::new().map_err(|e| match e {}).boxed())
            .expect("valid");
        self.send(again, timeout, None).await
    }

    /// The web server's answer made ours: hop-by-hop headers gone, and a
    /// rewritable body rewritten.
    fn response(&self, cx: &Ctx, resp: Response<Incoming>, sent: Sent) -> Response<ProxyBody> {
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, false);
        self.munge_headers(cx, &mut parts.headers, &sent);
        let media = MediaType::of(&parts.headers);
        let not_modified = parts.status == StatusCode::NOT_MODIFIED;
        // A 304 carries no type of its own (nor a body): unknown is no reason.
        let rewrite = self.rewritable(&cx.st, &media, &parts.headers)
            && parts.status != StatusCode::NO_CONTENT
            && !(parts.status.is_informational())
            && !(not_modified && media.is_unknown());
        if not_modified && sent.conditional_on_ours && !rewrite {
            // The 304 confirms the visitor's own copy: give back its
            // validator (`rewritten` does that for a rewritten type's 304).
            private_headers(&mut parts.headers, &sent.vd);
        }
        let encoding = parts.headers.get(header::CONTENT_ENCODING);
        let coding = Coding::parse(encoding.and_then(|v| v.to_str().ok()));
        let body = match (rewrite, coding) {
            (true, Some(coding)) => self.rewritten(cx, &mut parts, body, coding, &media, sent),
            (true, None) => {
                self.metrics.unrewritable.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %cx.line.path, ?encoding, "cannot undo this content coding; passing the body through unrewritten");
                self.streamed(cx, body, None)
            }
            (false, _) => self.streamed(cx, body, None),
        };
        Response::from_parts(parts, body)
    }

    /// A rewritten body, its response made private to the visitor and
    /// gzip-compressed when the visitor takes it.
    fn rewritten(
        &self,
        cx: &Ctx,
        parts: &mut response::Parts,
        body: Incoming,
        coding: Coding,
        media: &MediaType,
        sent: Sent,
    ) -> ProxyBody {
        self.metrics.rewritten.fetch_add(1, Ordering::Relaxed);
        private_headers(&mut parts.headers, &sent.vd);
        let head = cx.line.method == Method::HEAD;
        parts.headers.remove(header::CONTENT_ENCODING);
        // A body of unknown type may turn out to be a large download,
        // which the proxy should not spend CPU compressing.
        let compress = sent.compress.filter(|_| !media.is_unknown());
        if compress.is_some() {
            parts
                .headers
                .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
        if head || parts.status == StatusCode::NOT_MODIFIED {
            if !head {
                content_encoding(&mut parts.headers, compress);
            }
            return body.map_err(|e| Box::new(e) as BoxError).boxed();
        }
        let st = &cx.st;
        let munger = self.munger(st, &sent);
        let mut pipeline = Pipeline::new(st.matcher.scanner(), munger, coding, compress)
            .with_expansion(st.config.proxy.expansion)
            .with_charset(media.encoding, media.is_html());
        if media.is_unknown() {
            pipeline = pipeline.sniffing_type();
        }
        if let Some(cache) = &self.gzip {
            pipeline = pipeline.with_gzip_cache(Arc::clone(cache));
        }
        // As made: zstd falls back to gzip if its context cannot be.
        content_encoding(&mut parts.headers, pipeline.compressed_as());
        if let Some(bait) = st.config.bait.as_ref().filter(|b| b.link)
            && media.is_html()
        {
            pipeline = pipeline.with_link(LinkInserter::new(harvest::bait_link(&bait.path)));
        }
        self.streamed(cx, body, Some(pipeline))
    }

    /// What writes the visitor's IDs into this response.
    fn munger(&self, st: &State, sent: &Sent) -> VisitorMunger {
        VisitorMunger::new(
            Arc::clone(&st.keys),
            st.config.protection.separator(),
            sent.claims,
            Arc::clone(&self.cache),
        )
        .with_domain(sent.other_domain.clone())
    }

    /// The owner's addresses in the response's header values munged for
    /// the visitor, whatever its body; a response that had some is private.
    fn munge_headers(&self, cx: &Ctx, h: &mut HeaderMap, sent: &Sent) {
        let st = &cx.st;
        let n = munge_headers(h, &st.matcher, || self.munger(st, sent));
        if n > 0 {
            private_cache_control(h);
            self.metrics.munged.fetch_add(n, Ordering::Relaxed);
            cx.line.munged.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `body` on its way to the visitor, through `pipeline` if given.
    fn streamed(&self, cx: &Ctx, body: Incoming, pipeline: Option<Pipeline>) -> ProxyBody {
        let idle = cx.st.config.proxy.body_idle_timeout;
        Streamed::new(body, pipeline, idle, &self.metrics, Arc::clone(&cx.line.munged)).boxed()
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

    /// Whether a response's body is rewritten: a configured media type in
    /// an ASCII-compatible charset, not `no-transform` unless the owner
    /// says to rewrite those too. A body of unknown type is taken for HTML
    /// (its first bytes decide later, as a browser's do).
    fn rewritable(&self, st: &State, media: &MediaType, headers: &HeaderMap) -> bool {
        let listed = if media.is_unknown() {
            "text/html"
        } else {
            &media.essence
        };
        if !TypePattern::any(&st.config.proxy.rewrite_types, listed) {
            return false;
        }
        // Every charset a browser reads is scanned (as bytes, decoded and
        // spliced, or transcoded: rewrite::charset); UTF-32 and UCS-2/4,
        // which browsers do not support either, pass through.
        if let Some(cs) = &media.charset
            && (cs.starts_with("utf-32") || cs.starts_with("ucs-"))
        {
            tracing::warn!(charset = %cs, "charset is not ASCII-compatible; passing the body through unrewritten");
            self.metrics.unrewritable.fetch_add(1, Ordering::Relaxed);
            return false;
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
    pub(super) async fn send(
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
                let timed_out = is_timeout(&e);
                tracing::warn!(error = %e, "upstream request failed");
                if caused_by::<upload::UploadTooSlow>(&e) {
                    Err(self.upload_too_slow())
                } else if caused_by::<super::upstream::UpstreamBusy>(&e) {
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

    /// The answer to a request whose body came too slowly (counted).
    fn upload_too_slow(&self) -> Response<ProxyBody> {
        self.metrics.upload_timeouts.fetch_add(1, Ordering::Relaxed);
        let mut r = error_page(StatusCode::REQUEST_TIMEOUT, "The request body came too slowly.");
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    }
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

/// Declares the coding the proxy put on a rewritten body.
fn content_encoding(h: &mut HeaderMap, coding: Option<Compress>) {
    if let Some(c) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.name()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper-util reports a connect timeout as an `io::ErrorKind::TimedOut`
    /// in the error's sources, so the 504 needs no look at its Debug text.
    #[tokio::test]
    async fn a_connect_timeout_is_known_by_its_kind() {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        // Never accepting, with a backlog of one: once it is full, further
        // handshakes go unanswered and connecting hangs.
        let _listener = socket.listen(1).unwrap();
        let mut held = Vec::new();
        for _ in 0..8 {
            let c =
                tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr)).await;
            match c {
                Ok(Ok(s)) => held.push(s),
                _ => break,
            }
        }
        let connector = super::super::upstream::UpstreamConnector::new(Duration::from_millis(200), 4);
        let uri: Uri = format!("http://{addr}/").parse().unwrap();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, http_body_util::Empty<bytes::Bytes>>(connector);
        let e = client.get(uri).await.unwrap_err();
        assert!(is_timeout(&e), "{e:?}");
    }
}
