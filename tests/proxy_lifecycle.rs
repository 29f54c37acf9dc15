//! The proxy's life as a daemon in front of a real nginx: SIGHUP reloads
//! config and keys, SIGTERM drains what is in flight and writes its log.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;

mod common;
use common::nginx::Nginx;
use common::proxy::{Proxy, bad_upstream, fetch, get_streaming, site};

fn signal(pid: u32, sig: &str) {
    assert!(
        Command::new("kill")
            .args(["-s", sig, &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// SIGHUP reloads config and keys (a broken config keeps the old one);
/// SIGTERM stops accepting, lets the request in flight finish, and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_sigterm_drains() {
    let nginx = Nginx::start(&site());
    let proxy = Proxy::start(nginx.port, "");
    let pid = proxy.running.0.id();
    let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
    assert!(String::from_utf8_lossy(&got.body).contains("-id-"));

    let cfg_path = proxy.inst.config();
    let cfg = fs::read_to_string(&cfg_path).unwrap();
    // (The config ends in [proxy]: the last line lands there.)
    fs::write(
        &cfg_path,
        format!("separator = \"-x-\"\n{cfg}\nupstream_host = \"internal.test\"\n"),
    )
    .unwrap();
    signal(pid, "HUP");
    let start = Instant::now();
    loop {
        let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
        let body = String::from_utf8_lossy(&got.body).into_owned();
        if body.contains("-x-") && !body.contains("-id-") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reload never took effect"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // upstream_host replaces the visitor's Host towards the web server.
    let got = fetch("127.0.0.1", proxy.port, "GET", "/echo-headers", &[], false).await;
    assert!(
        String::from_utf8(got.body)
            .unwrap()
            .ends_with("host=internal.test")
    );
    // A broken config on SIGHUP: logged, the old one stays.
    fs::write(&cfg_path, "this is = not [toml").unwrap();
    signal(pid, "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = fetch("127.0.0.1", proxy.port, "GET", "/forms.html", &[], false).await;
    assert_eq!(got.status, 200);
    assert!(String::from_utf8_lossy(&got.body).contains("-x-"));
    let log = proxy.inst.log("proxy");
    assert!(log.contains("reload failed; keeping the old config"), "{log}");
    fs::write(&cfg_path, &cfg).unwrap();

    // SIGTERM while a response is in flight.
    let (port, tx) = bad_upstream("waits").await;
    drop(proxy);
    let mut proxy = Proxy::start(port, "");
    let pid = proxy.running.0.id();
    let resp = get_streaming(proxy.port).await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    signal(pid, "TERM");
    // New connections are refused once the listener closes.
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .is_ok()
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The request in flight completes.
    tx.send(()).await.unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).ends_with("later"));
    let start = Instant::now();
    loop {
        if let Some(status) = proxy.running.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "proxy did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its access line, written in a batch (the log is a file), was
    // written before the proxy exited.
    let log = proxy.inst.log("proxy");
    assert!(
        log.lines()
            .any(|l| l.contains(" access: ") && l.contains("path=/ ") && l.contains("complete=true")),
        "no access line for the drained request:\n{log}"
    );
}
