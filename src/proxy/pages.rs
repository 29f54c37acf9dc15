//! The proxy's own pages: error pages, the bait page, and robots.txt with
//! a `Disallow` for the bait page.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request;
use hyper::{Method, Request, Response, StatusCode, Uri};

use super::request::Ctx;
use super::{Proxy, ProxyBody, State, harvest};
use crate::config::Bait;
use crate::store::Harvester;

impl Proxy {
    /// The bait page: trap addresses for this visitor and day. Fetching it
    /// marks the visitor as a harvester for the rest of the day.
    pub(super) fn serve_bait(&self, cx: &mut Ctx, bait: &Bait) -> Response<ProxyBody> {
        let st = &cx.st;
        let addresses = harvest::bait_addresses(bait, &st.keys, &st.config.protection, cx.ip, cx.day);
        let page = harvest::bait_page(bait, &addresses);
        self.metrics.bait_hits.fetch_add(1, Ordering::Relaxed);
        let line = &mut cx.line;
        if let Some(v) = &mut line.visit {
            self.caught.mark(&v.visitor, cx.day);
            v.harvester = Some(Harvester::Bait);
        }
        line.munged.store(addresses.len() as u64, Ordering::Relaxed);
        tracing::info!(visitor = %cx.ip, user_agent = %line.user_agent, "bait page fetched; trap IDs for this visitor today");
        let mut r = own_response(&line.method, StatusCode::OK, "text/html; charset=utf-8", page);
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        r
    }

    /// The upstream's robots.txt with a `Disallow` for the bait page, or one
    /// of our own when the upstream has none.
    pub(super) async fn robots(
        &self,
        st: &State,
        bait_path: &str,
        headers: &HeaderMap,
        method: &Method,
    ) -> Response<ProxyBody> {
        let mut req = Request::builder()
            .method(Method::GET)
            .uri(st.upstream.uri("/robots.txt").expect("a plain path"));
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
}

/// Where ACME's HTTP-01 challenges are asked (RFC 8555, 8.3).
const ACME_CHALLENGE: &str = "/.well-known/acme-challenge/";

impl Proxy {
    /// The answer to a pending ACME HTTP-01 challenge, if this is one.
    pub(super) fn acme_challenge(&self, req: &request::Parts) -> Option<Response<ProxyBody>> {
        let token = req.uri.path().strip_prefix(ACME_CHALLENGE)?;
        let answer = self.https.as_ref()?.acme.as_ref()?.http01(token)?;
        Some(own_response(
            &req.method,
            StatusCode::OK,
            "application/octet-stream",
            answer,
        ))
    }
}

/// `308 Permanent Redirect` to the same path over HTTPS, on the first TLS
/// listener's port (left out when it is 443); `400` without a usable Host.
pub(super) fn https_redirect(st: &State, req: &request::Parts) -> Response<ProxyBody> {
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.host())
        .map(|h| match h.rsplit_once(':') {
            // Not the colons of an IPv6 literal.
            Some((name, port)) if !name.ends_with(']') || port.is_empty() => name,
            Some(_) => h,
            None => h,
        })
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b".-[]:".contains(&c))
        });
    let Some(host) = host else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This address takes HTTPS only; the request named no host to send you to.",
        );
    };
    let port = st.config.proxy.tls.listen.first().map_or(443, |a| a.port());
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let target = format!("https://{host}{port}{path}");
    let mut r = error_page(StatusCode::PERMANENT_REDIRECT, "This site is served over HTTPS.");
    if let Ok(v) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// What a reverse proxy answers itself instead of passing on: `CONNECT`
/// (a tunnel would make it an open proxy), `OPTIONS *` (the server is up;
/// what each path allows is the web server's to say when asked for it) and
/// any other target that is not a path, which no web server can be asked for.
pub(super) fn not_forwarded(req: &request::Parts) -> Option<Response<ProxyBody>> {
    if req.method == Method::CONNECT {
        let mut r = error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "This server is a web site, not a forward proxy: CONNECT is not served.",
        );
        r.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
        );
        return Some(r);
    }
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    if target.starts_with('/') {
        return None;
    }
    if req.method == Method::OPTIONS && target == "*" {
        return Some(own_response(
            &req.method,
            StatusCode::OK,
            "text/plain; charset=utf-8",
            String::new(),
        ));
    }
    Some(error_page(
        StatusCode::BAD_REQUEST,
        "The request target is not a path on this site.",
    ))
}

pub(super) fn error_page(status: StatusCode, text: &str) -> Response<ProxyBody> {
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
pub(super) fn own_response(
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
