//! `addrmunge demo`: the whole product on loopback in one command, for a
//! newcomer. It writes a key and a config into a folder, serves a small sample
//! site (fixtures/demo, compiled in) on one port, puts the real proxy in front
//! of it and runs the real resolver, then prints what to try. Nothing here is
//! a stand-in: the proxy and resolver are the same code `addrmunge proxy` and
//! `addrmunge resolver` run.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;

use crate::token::{Claims, KeyRing, Kind};
use crate::{Config, Day};

/// The sample site: path, content type, body.
const SITE: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../fixtures/demo/index.html"),
    ),
    (
        "/contact.html",
        "text/html; charset=utf-8",
        include_bytes!("../fixtures/demo/contact.html"),
    ),
    (
        "/style.css",
        "text/css",
        include_bytes!("../fixtures/demo/style.css"),
    ),
    (
        "/feed.xml",
        "application/atom+xml",
        include_bytes!("../fixtures/demo/feed.xml"),
    ),
    (
        "/team.json",
        "application/json",
        include_bytes!("../fixtures/demo/team.json"),
    ),
    (
        "/logo.svg",
        "image/svg+xml",
        include_bytes!("../fixtures/demo/logo.svg"),
    ),
];

/// What `addrmunge demo` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where key, config and store live; `None` = a fresh temporary folder,
    /// removed at exit.
    pub dir: Option<PathBuf>,
    /// First of five consecutive loopback ports (proxy, site, metrics,
    /// socketmap, policy); 0 = any free ones. A taken port is replaced by a
    /// free one.
    pub port: u16,
    /// The `addrmunge` binary to name in the printed commands.
    pub exe: String,
}

/// The ports the demo ended up on.
#[derive(Debug, Clone, Copy)]
struct Ports {
    proxy: u16,
    site: u16,
    metrics: u16,
    socketmap: u16,
    policy: u16,
}

/// Runs the demo until SIGINT/SIGTERM.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let (dir, temporary) = match &opts.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("addrmunge-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let result = run_in(&opts, &dir).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run_in(opts: &Options, dir: &Path) -> anyhow::Result<()> {
    let key = dir.join("addrmunge.key");
    if !key.exists() {
        KeyRing::generate(&key)?;
    }
    let ports = pick_ports(opts.port)?;
    let config_path = dir.join("addrmunge.toml");
    std::fs::write(&config_path, config_text(ports))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config::load(&config_path)?;

    let site = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, ports.site))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{} for the sample site", ports.site))?;
    tokio::spawn(serve_site(site));
    let proxy = crate::proxy::Proxy::new(config_path.clone())?;
    let resolver = crate::resolver::Resolver::start(config_path.clone())?;
    let proxy_task = tokio::spawn(proxy.run());
    let resolver_task = tokio::spawn(crate::resolver::run(resolver));
    for port in [ports.proxy, ports.socketmap, ports.policy] {
        wait_for(port).await?;
    }

    let keys = KeyRing::load(&config.key_file)?;
    let example = {
        let claims = Claims::visit(Kind::Visitor, Day::today(), Ipv4Addr::LOCALHOST.into());
        let token = keys.encode("mjd@plover.com", "", &claims);
        config.protection.munge("mjd", "plover.com", "", &token)
    };
    println!("{}", banner(opts, dir, &config_path, ports, &example));

    let (p, r) = tokio::join!(proxy_task, resolver_task);
    p??;
    r??;
    Ok(())
}

fn config_text(p: Ports) -> String {
    format!(
        r#"# Written by `addrmunge demo`; rewritten at each start (the key and the store are kept).
key_file = "addrmunge.key"
state = "state.sqlite"
separator = "-id-"

[[protect]]
domain = "plover.com"
exempt = ["*-subscribe", "*-unsubscribe"]

[proxy]
listen = ["127.0.0.1:{proxy}"]
upstream = "http://127.0.0.1:{site}"
admin_listen = "127.0.0.1:{metrics}"

[resolver]
socketmap = ["inet:127.0.0.1:{socketmap}"]
policy = ["inet:127.0.0.1:{policy}"]

[harvesters]

[containment]

[traps]
"#,
        proxy = p.proxy,
        site = p.site,
        metrics = p.metrics,
        socketmap = p.socketmap,
        policy = p.policy,
    )
}

fn banner(opts: &Options, dir: &Path, config: &Path, p: Ports, example: &str) -> String {
    let exe = &opts.exe;
    let mut s = String::new();
    let _ = writeln!(s, "addrmunge demo is running; Ctrl-C stops it.");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  open this:           http://127.0.0.1:{}/   (the site through the proxy)",
        p.proxy
    );
    let _ = writeln!(s, "  the same site, raw:  http://127.0.0.1:{}/", p.site);
    let _ = writeln!(s, "  proxy metrics:       http://127.0.0.1:{}/metrics", p.metrics);
    let _ = writeln!(
        s,
        "  resolver:            socketmap inet:127.0.0.1:{}, policy inet:127.0.0.1:{}",
        p.socketmap, p.policy
    );
    let _ = writeln!(s, "  key, config, store:  {}", dir.display());
    let _ = writeln!(s);
    let _ = writeln!(s, "Try, in another terminal:");
    let _ = writeln!(s, "  export ADDRMUNGE_CONFIG={}", config.display());
    let _ = writeln!(
        s,
        "  curl -s http://127.0.0.1:{}/contact.html | grep -o '[a-z-]*-id-[a-z0-9]*@plover.com'",
        p.proxy
    );
    let _ = writeln!(s, "  A={example}      # what you, visitor 127.0.0.1, get today");
    let _ = writeln!(s, "  {exe} decode $A");
    let _ = writeln!(
        s,
        "  q=\"recipient $A\"; exec 3<>/dev/tcp/127.0.0.1/{}; printf '%s:%s,' ${{#q}} \"$q\" >&3; timeout 1 cat <&3; echo",
        p.socketmap
    );
    let _ = writeln!(
        s,
        "  postmap -q $A socketmap:inet:127.0.0.1:{}:recipient    # the same, if Postfix is installed",
        p.socketmap
    );
    let _ = writeln!(s, "  {exe} expire --ip 127.0.0.1 --reason 'demo'");
    let _ = writeln!(
        s,
        "  {exe} decode $A      # now expired; the socketmap answers REJECT"
    );
    let _ = writeln!(s, "  {exe} rules");
    let _ = write!(s, "  {exe} unexpire --ip 127.0.0.1");
    s
}

/// Five ports starting at `base` (each replaced by a free one when taken),
/// or five free ones for base 0. Probing then releasing leaves a tiny race
/// with other programs, acceptable for a demo.
fn pick_ports(base: u16) -> anyhow::Result<Ports> {
    let mut held = Vec::new();
    let mut take = |want: u16| -> anyhow::Result<u16> {
        let l = StdListener::bind((Ipv4Addr::LOCALHOST, want))
            .or_else(|_| StdListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .context("cannot find a free port on 127.0.0.1")?;
        let port = l.local_addr()?.port();
        held.push(l);
        Ok(port)
    };
    let at = |i: u16| if base == 0 { 0 } else { base.saturating_add(i) };
    let ports = Ports {
        proxy: take(at(0))?,
        site: take(at(1))?,
        metrics: take(at(2))?,
        socketmap: take(at(3))?,
        policy: take(at(4))?,
    };
    drop(held);
    Ok(ports)
}

async fn wait_for(port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the demo's service on {addr} did not start")
}

async fn serve_site(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                Ok::<_, Infallible>(site_response(req.uri().path()))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn site_response(path: &str) -> Response<http_body_util::Full<Bytes>> {
    let path = if path == "/index.html" { "/" } else { path };
    let (status, ctype, body): (_, _, &[u8]) = match SITE.iter().find(|(p, _, _)| *p == path) {
        Some((_, t, b)) => (StatusCode::OK, *t, b),
        None => (StatusCode::NOT_FOUND, "text/plain", b"not found\n"),
    };
    let mut r = Response::new(http_body_util::Full::new(Bytes::from_static(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ctype));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("public, max-age=60"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_config_loads() {
        let dir = tempfile::tempdir().unwrap();
        KeyRing::generate(&dir.path().join("addrmunge.key")).unwrap();
        let p = Ports {
            proxy: 1,
            site: 2,
            metrics: 3,
            socketmap: 4,
            policy: 5,
        };
        let path = dir.path().join("addrmunge.toml");
        std::fs::write(&path, config_text(p)).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.proxy.upstream.unwrap().to_string(), "http://127.0.0.1:2");
    }

    #[test]
    fn site_serves_its_pages_and_404s() {
        assert_eq!(site_response("/").status(), StatusCode::OK);
        assert_eq!(site_response("/contact.html").status(), StatusCode::OK);
        assert_eq!(site_response("/nope").status(), StatusCode::NOT_FOUND);
    }
}
