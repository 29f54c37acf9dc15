//! The README's Apache snippets, run for real: one Apache (Debian's apache2,
//! installed by scripts/test.sh) on free loopback ports with both snippets
//! as written (ports and paths swapped for the test's), the proxy between.
//!
//! * behind the proxy: pages come through munged, and mod_remoteip logs the
//!   visitor's address instead of the proxy's;
//! * terminating TLS in front of the proxy: the proxy believes Apache's
//!   X-Forwarded-For, so the addresses are made for the visitor.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Instance, Running, free_port, readme_block, self_signed_cert, wait_for_port};

const MODULES: &[&str] = &[
    "mpm_event",
    "authz_core",
    "mime",
    "dir",
    "remoteip",
    "headers",
    "proxy",
    "proxy_http",
    "socache_shmcb",
    "ssl",
];

/// Apache with both README snippets: behind the proxy on `behind`, TLS in
/// front of the proxy (at `proxy`) on `front`.
fn apache(d: &Path, site: &Path, behind: u16, front: u16, proxy: u16) -> Running {
    let apache2 = ["/usr/sbin/apache2", "/usr/bin/apache2"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("apache2 is missing; `bash scripts/test.sh` installs it");
    self_signed_cert(d);
    let behind_snippet = readme_block("apache", "RemoteIPHeader")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{behind}"))
        .replace("/var/www/plover", &site.display().to_string());
    let front_snippet = readme_block("apache", "SSLEngine")
        .replace("Listen 443", &format!("Listen 127.0.0.1:{front}"))
        .replace("*:443", &format!("127.0.0.1:{front}"))
        .replace("/etc/ssl/plover.com", &d.display().to_string())
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{proxy}"));
    let mut conf = String::new();
    for m in MODULES {
        conf.push_str(&format!(
            "LoadModule {m}_module /usr/lib/apache2/modules/mod_{m}.so\n"
        ));
    }
    conf.push_str(&format!(
        "ServerName localhost
ServerRoot {d}
PidFile {d}/apache.pid
DefaultRuntimeDir {d}
Mutex file:{d} default
ErrorLog {d}/error.log
LogLevel warn
LogFormat \"%a %>s %U\" visitor
CustomLog {d}/access.log visitor
User www-data
Group www-data
TypesConfig /etc/mime.types
DirectoryIndex index.html
<Directory {site}>
    Require all granted
</Directory>
{behind_snippet}
{front_snippet}",
        d = d.display(),
        site = site.display(),
    ));
    fs::write(d.join("apache.conf"), &conf).unwrap();
    let t = Command::new(apache2)
        .arg("-f")
        .arg(d.join("apache.conf"))
        .arg("-t")
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "README Apache snippets fail apache2 -t:\n{}\n{conf}",
        String::from_utf8_lossy(&t.stderr)
    );
    let child = Command::new(apache2)
        .arg("-f")
        .arg(d.join("apache.conf"))
        .arg("-DFOREGROUND")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let apache = Running(child);
    wait_for_port(behind, "apache (behind)");
    wait_for_port(front, "apache (TLS in front)");
    apache
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The visitor IP a munged address in `page` was made for.
fn visitor_of(page: &str, cfg: &Path) -> String {
    let start = page.find("mailto:").expect("no mailto in the page") + "mailto:".len();
    let addr = &page[start..start + page[start..].find('"').unwrap()];
    assert!(addr.contains("-id-"), "not munged: {addr}");
    let out = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
        .arg("--config")
        .arg(cfg)
        .args(["decode", "--json", addr])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["original"], "mjd@plover.com");
    v["ip"].as_str().unwrap().to_owned()
}

/// Waits for a line in Apache's access log (written as requests finish).
fn logged(d: &Path, line: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if fs::read_to_string(d.join("access.log"))
            .unwrap_or_default()
            .lines()
            .any(|l| l == line)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn apache_behind_and_in_front_of_the_proxy_as_in_the_readme() {
    let (behind, front, proxy_port) = (free_port(), free_port(), free_port());
    let inst = Instance::new(&format!(
        r#"
[[protect]]
domain = "plover.com"

[proxy]
listen = ["127.0.0.1:{proxy_port}"]
upstream = "http://127.0.0.1:{behind}"
trusted_proxies = ["127.0.0.1/32"]
"#
    ));
    let d = inst.dir.path();
    fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    let site = d.join("site");
    fs::create_dir(&site).unwrap();
    fs::write(
        site.join("index.html"),
        "<!doctype html><p><a href=\"mailto:mjd@plover.com\">write</a></p>\n",
    )
    .unwrap();
    // Apache sends no Content-Type for a file whose extension it does not
    // know; a browser shows it as HTML all the same.
    fs::write(
        site.join("CONTACT"),
        "<html><p>Mail <a href=\"mailto:mjd@plover.com\">me</a>.</p></html>\n",
    )
    .unwrap();

    let cfg = inst.config();
    let _apache = apache(d, &site, behind, front, proxy_port);
    let _proxy = inst.start("proxy", &[]);
    wait_for_port(proxy_port, "addrmunge proxy");

    // Behind: a visitor at 127.0.0.3 gets addresses made for it, and Apache
    // logs 127.0.0.3 (mod_remoteip believes the proxy), not the proxy's 127.0.0.1.
    let url = format!("http://127.0.0.1:{proxy_port}/");
    let page = curl(&["--interface", "127.0.0.3", &url]);
    assert_eq!(visitor_of(&page, &cfg), "127.0.0.3");
    assert!(
        logged(d, "127.0.0.3 200 /index.html"),
        "{}",
        fs::read_to_string(d.join("access.log")).unwrap_or_default()
    );

    // A page Apache sends without a type is rewritten all the same.
    let direct = curl(&["-I", &format!("http://127.0.0.1:{behind}/CONTACT")]);
    assert!(!direct.to_ascii_lowercase().contains("content-type"), "{direct}");
    let page = curl(&["--interface", "127.0.0.5", &format!("{url}CONTACT")]);
    assert_eq!(visitor_of(&page, &cfg), "127.0.0.5");

    // In front: TLS ends at Apache, whose X-Forwarded-For the proxy trusts.
    let url = format!("https://127.0.0.1:{front}/");
    let page = curl(&["-k", "--interface", "127.0.0.4", &url]);
    assert_eq!(visitor_of(&page, &cfg), "127.0.0.4");
    assert!(logged(d, "127.0.0.4 200 /"), "the TLS front logs the visitor");
    assert!(
        logged(d, "127.0.0.4 200 /index.html"),
        "the web server behind sees the visitor too"
    );
}
