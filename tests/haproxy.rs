//! The PROXY protocol on the proxy's listener, behind a real HAProxy
//! (Debian's haproxy, installed by scripts/test.sh) in TCP mode sending v1
//! (`send-proxy`) and v2 (`send-proxy-v2`) headers: the visitor's address
//! comes from the header; peers outside `trusted_proxies` and connections
//! without a header are closed.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{Instance, free_port, one_page_server, wait_for_port};

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test.sh installs it)")
}

/// The visitor a munged address in `page` was made for.
fn visitor_of(page: &str, cfg: &Path) -> String {
    let start = page.find("mailto:").expect("no mailto in the page") + "mailto:".len();
    let addr = &page[start..start + page[start..].find('"').unwrap()];
    let out = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
        .arg("--config")
        .arg(cfg)
        .args(["decode", "--json", addr])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["ip"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn visitors_come_from_haproxy_proxy_protocol_headers() {
    let (proxy_port, v1, v2) = (free_port(), free_port(), free_port());
    let inst = Instance::new(&format!(
        r#"
[[protect]]
domain = "plover.com"

[proxy]
listen = ["127.0.0.1:{proxy_port}"]
upstream = "http://127.0.0.1:{up}"
trusted_proxies = ["127.0.0.1/32"]
proxy_protocol = true
header_timeout = 2
"#,
        up = one_page_server()
    ));
    let d = inst.dir.path();
    let cfg = inst.config();
    let _proxy = inst.start("proxy", &[]);
    wait_for_port(proxy_port, "addrmunge proxy");

    fs::write(
        d.join("haproxy.cfg"),
        format!(
            "defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{v1}
    default_backend v1
backend v1
    server proxy 127.0.0.1:{proxy_port} send-proxy
frontend v2
    bind 127.0.0.1:{v2}
    default_backend v2
backend v2
    server proxy 127.0.0.1:{proxy_port} send-proxy-v2
"
        ),
    )
    .unwrap();
    let haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("haproxy is missing; `bash scripts/test.sh` installs it");
    let _haproxy = common::Running(
        Command::new(haproxy)
            .arg("-f")
            .arg(d.join("haproxy.cfg"))
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(v1, "haproxy v1 frontend");
    wait_for_port(v2, "haproxy v2 frontend");

    // Through HAProxy: the addresses are made for the visitor it names.
    let log = || fs::read_to_string(d.join("proxy.log")).unwrap_or_default();
    for (port, from) in [(v1, "127.0.0.5"), (v2, "127.0.0.6")] {
        let out = curl(&["--interface", from, &format!("http://127.0.0.1:{port}/")]);
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(page.contains("-id-"), "{page}\n{}", log());
        assert_eq!(visitor_of(&page, &cfg), from);
    }

    // A trusted peer sending its own header (curl --haproxy-protocol) is served too.
    let url = format!("http://127.0.0.1:{proxy_port}/");
    let out = curl(&["--haproxy-protocol", &url]);
    assert_eq!(
        visitor_of(&String::from_utf8_lossy(&out.stdout), &cfg),
        "127.0.0.1"
    );
    // No header from a trusted peer: closed without an answer.
    let out = curl(&[&url]);
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    // A header from a peer not in trusted_proxies is not believed: closed.
    let out = curl(&["--haproxy-protocol", "--interface", "127.0.0.2", &url]);
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
    let text = log();
    assert!(text.contains("not in trusted_proxies"), "{text}");
    assert!(
        text.contains("does not start with a PROXY protocol header"),
        "{text}"
    );
}

#[test]
fn proxy_protocol_needs_trusted_proxies() {
    let err = addrmunge::Config::from_toml(
        Path::new("/etc/addrmunge/addrmunge.toml"),
        "key_file = \"k\"\nstate = \"s\"\n[[protect]]\ndomain = \"plover.com\"\n[proxy]\nproxy_protocol = true\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("proxy.proxy_protocol") && err.contains("trusted_proxies"),
        "{err}"
    );
}
