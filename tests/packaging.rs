//! What ships beside the binary stays true to it: every TOML snippet in the
//! README loads, the systemd units pass `systemd-analyze verify` against
//! the built binary, and the Dockerfile copies everything the build reads.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::blocks;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A README config snippet, loaded as if it were `path`. A snippet is a
/// section or two: the top-level keys a config needs go in front unless it
/// has them.
fn load_snippet(path: &Path, snippet: &str) -> Result<addrmunge::Config, addrmunge::config::ConfigError> {
    let mut text = String::new();
    if !snippet.contains("key_file") {
        text.push_str("key_file = \"k\"\nstate = \"s\"\n[[protect]]\ndomain = \"plover.com\"\n");
    }
    text.push_str(snippet);
    addrmunge::Config::from_toml(path, &text)
}

#[test]
fn every_toml_snippet_in_the_readme_loads() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let snippets = blocks(&readme, "toml");
    assert!(snippets.len() >= 3, "found {}", snippets.len());
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bait.html"), "<ul>{{addresses}}</ul>").unwrap();
    for engine in ["googlebot.json", "bingbot.json"] {
        fs::write(
            dir.path().join(engine),
            r#"{"prefixes": [{"ipv4Prefix": "66.249.64.0/27"}]}"#,
        )
        .unwrap();
    }
    for s in snippets {
        let r = load_snippet(&dir.path().join("addrmunge.toml"), &s);
        assert!(r.is_ok(), "README snippet does not load: {}\n{s}", r.unwrap_err());
    }
    // The example config too.
    let example = fs::read_to_string(root().join("fixtures/addrmunge.toml")).unwrap();
    addrmunge::Config::from_toml(Path::new("/etc/addrmunge/addrmunge.toml"), &example).unwrap();
}

/// The README's proxy block names the rewritten types the code has.
#[test]
fn the_readme_names_the_default_rewrite_types() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("rewrite_types = ["))
        .expect("the proxy block shows rewrite_types");
    let shown: toml::Table = toml::from_str(line.split('#').next().unwrap()).unwrap();
    let shown: Vec<&str> = shown["rewrite_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(shown, addrmunge::config::DEFAULT_REWRITE_TYPES);
}

/// The README's limits block gives the defaults the code has, and its
/// table says what happens for every key in it.
#[test]
fn the_readme_limits_are_the_defaults() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let block = blocks(&readme, "toml")
        .into_iter()
        .find(|b| b.contains("request_timeout ="))
        .expect("README has the limits block");
    let path = Path::new("/etc/addrmunge/addrmunge.toml");
    let documented = load_snippet(path, &block).unwrap();
    let defaults = load_snippet(path, "").unwrap();
    assert_eq!(format!("{:?}", documented.proxy), format!("{:?}", defaults.proxy));
    assert_eq!(
        format!("{:?}", documented.resolver),
        format!("{:?}", defaults.resolver)
    );
    let table = readme
        .split("| limit | when it fires | metric |")
        .nth(1)
        .expect("the limits table");
    let table = &table[..table.find("\n\n").unwrap_or(table.len())];
    let mut section = "";
    for line in block.lines() {
        if let Some(s) = line.strip_prefix('[') {
            section = s.trim_end_matches(']');
        } else if let Some((key, _)) = line.split_once(" = ") {
            let (full, short) = (format!("`{section}.{key}`"), format!("`{key}`"));
            let documented = table
                .lines()
                .any(|l| l.contains(&full) || (l.contains(&format!("`{section}.")) && l.contains(&short)));
            assert!(documented, "{full} is not in the limits table");
        }
    }
}

#[test]
fn systemd_units_verify_against_the_built_binary() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("systemd-analyze is missing; `bash scripts/test.sh` installs systemd");
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_addrmunge");
    let units = [
        "addrmunge-proxy.service",
        "addrmunge-proxy.socket",
        "addrmunge-resolver.service",
        "addrmunge-resolver.socket",
    ];
    for unit in units {
        let text = fs::read_to_string(root().join("dist/systemd").join(unit)).unwrap();
        fs::write(
            dir.path().join(unit),
            text.replace("/usr/local/bin/addrmunge", bin),
        )
        .unwrap();
    }
    for unit in units {
        let text = fs::read_to_string(dir.path().join(unit)).unwrap();
        if unit.ends_with(".service") {
            assert!(text.contains("Type=notify") && text.contains("NoNewPrivileges=yes"));
            assert!(text.contains("User=addrmunge") && text.contains("ProtectSystem=strict"));
            // Sockets come from systemd; the daemons keep no capability.
            assert!(text.contains("\nCapabilityBoundingSet=\n"), "{unit}");
            assert!(text.contains(&format!("Requires={}", unit.replace(".service", ".socket"))));
        }
        let out = Command::new(analyze)
            .args(["verify", "--man=no"])
            .arg(dir.path().join(unit))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // Warnings about this machine (no addrmunge user, no postfix group)
        // are not the unit's fault; syntax and unknown settings are.
        let bad: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("addrmunge-") && !l.contains("postfix") && !l.contains("No such file"))
            .collect();
        assert!(bad.is_empty(), "{unit}: {err}");
    }
}

/// The addresses in a socket unit's ListenStream= lines, as config listeners.
fn listen_streams(unit: &str) -> Vec<String> {
    let text = fs::read_to_string(root().join("dist/systemd").join(unit)).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("ListenStream="))
        .map(|a| {
            if a.starts_with('/') {
                format!("unix:{a}")
            } else {
                format!("inet:{a}")
            }
        })
        .collect()
}

#[test]
fn socket_units_match_the_documented_configs() {
    // The proxy's socket unit serves the README's [proxy] listen.
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let proxy = blocks(&readme, "toml")
        .into_iter()
        .find(|b| b.contains("[proxy]") && b.contains("listen ="))
        .expect("README has a [proxy] snippet with listen");
    let cfg = load_snippet(Path::new("/etc/addrmunge/addrmunge.toml"), &proxy).unwrap();
    let mut want: Vec<String> = cfg.proxy.listen.iter().map(|l| format!("inet:{l}")).collect();
    want.sort();
    let mut have = listen_streams("addrmunge-proxy.socket");
    have.sort();
    assert_eq!(have, want);
    // The resolver's serves the example config's listeners, and its
    // commented unix lines the README's chroot snippet.
    let example = fs::read_to_string(root().join("fixtures/addrmunge.toml")).unwrap();
    let cfg = addrmunge::Config::from_toml(Path::new("/etc/addrmunge/addrmunge.toml"), &example).unwrap();
    let r = &cfg.resolver;
    let want: Vec<String> = r
        .socketmap
        .iter()
        .chain(&r.policy)
        .map(|l| l.to_string())
        .collect();
    assert_eq!(listen_streams("addrmunge-resolver.socket"), want);
    let unit = fs::read_to_string(root().join("dist/systemd/addrmunge-resolver.socket")).unwrap();
    let chroot = blocks(&readme, "toml")
        .into_iter()
        .find(|b| b.contains("unix:/var/spool/postfix/private"))
        .expect("README has a unix-socket [resolver] snippet");
    let cfg = load_snippet(Path::new("/etc/addrmunge/addrmunge.toml"), &chroot).unwrap();
    for l in cfg.resolver.socketmap.iter().chain(&cfg.resolver.policy) {
        let l = l.to_string();
        let path = l.strip_prefix("unix:").unwrap();
        assert!(
            unit.contains(&format!("#ListenStream={path}\n")),
            "{l} not in the socket unit"
        );
    }
}

#[test]
fn the_dockerfile_copies_what_the_build_reads() {
    let docker = fs::read_to_string(root().join("docker/Dockerfile")).unwrap();
    // Files pulled in at compile time live in these folders.
    let mut needed = vec!["src".to_owned(), "benches".to_owned(), "Cargo.lock".to_owned()];
    for entry in walk(&root().join("src")) {
        let text = fs::read_to_string(&entry).unwrap();
        for marker in ["include_bytes!(\"", "include_str!(\""] {
            for part in text.split(marker).skip(1) {
                let rel = &part[..part.find('"').unwrap()];
                let path = entry.parent().unwrap().join(rel);
                let path = path.canonicalize().unwrap();
                let top = path
                    .strip_prefix(root().canonicalize().unwrap())
                    .unwrap()
                    .components()
                    .next()
                    .unwrap();
                needed.push(top.as_os_str().to_string_lossy().into_owned());
            }
        }
    }
    for n in needed {
        assert!(
            docker.lines().any(|l| l.starts_with("COPY ") && l.contains(&n)),
            "docker/Dockerfile does not COPY {n}"
        );
    }
    let compose = fs::read_to_string(root().join("docker/compose.yaml")).unwrap();
    for service in ["web:", "proxy:", "resolver:", "postfix:", "keygen:"] {
        assert!(compose.contains(service), "{service}");
    }
    for config in ["docker/addrmunge.toml", "docker/addrmunge.postgres.toml"] {
        addrmunge::Config::from_toml(
            Path::new("/etc/addrmunge/addrmunge.toml"),
            &fs::read_to_string(root().join(config)).unwrap(),
        )
        .unwrap();
    }
    // The PostgreSQL variant overrides the two daemons' config and adds the database.
    let pg = fs::read_to_string(root().join("docker/compose.postgres.yaml")).unwrap();
    for needed in [
        "db:",
        "proxy:",
        "resolver:",
        "./addrmunge.postgres.toml:/etc/addrmunge/addrmunge.toml",
        "service_healthy",
    ] {
        assert!(pg.contains(needed), "compose.postgres.yaml: {needed}");
    }
    let cfg = fs::read_to_string(root().join("docker/addrmunge.postgres.toml")).unwrap();
    assert!(cfg.contains("@db:5432/"), "{cfg}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn every_nginx_snippet_in_the_readme_passes_nginx_t() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let snippets = blocks(&readme, "nginx");
    assert!(snippets.len() >= 2);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A throwaway certificate for the TLS snippet.
    common::self_signed_cert(d);
    for s in snippets {
        let s = s
            .replace("/etc/ssl/plover.com/", &format!("{}/", d.display()))
            .replace("listen 443", "listen 127.0.0.1:18443");
        let conf = format!(
            "error_log {d}/error.log;\npid {d}/nginx.pid;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n{s}\n}}\n",
            d = d.display()
        );
        fs::write(d.join("nginx.conf"), &conf).unwrap();
        let out = Command::new("nginx")
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .arg("-t")
            .output()
            .expect("nginx is installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "README nginx snippet fails nginx -t:\n{}\n{conf}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_readme_install_steps_work() {
    // The README's install block as written, run as root in a private mount
    // namespace whose /usr/local, /etc/addrmunge, /var/lib/addrmunge and
    // /etc/bash_completion.d are empty tmpfs, so the machine is untouched.
    // `cargo install` itself is proven by scripts/test.sh (a release build);
    // here it stands in by copying the binary under test.
    let script = common::readme_block("sh", "cargo install --path .");
    let home = tempfile::tempdir().unwrap();
    let mut made = Vec::new();
    for d in ["/etc/addrmunge", "/var/lib/addrmunge", "/etc/bash_completion.d"] {
        if !Path::new(d).exists() {
            fs::create_dir_all(d).unwrap();
            made.push(d);
        }
    }
    let wrapper = format!(
        r#"set -euo pipefail
for d in /usr/local /etc/addrmunge /var/lib/addrmunge /etc/bash_completion.d; do mount -t tmpfs tmpfs "$d"; done
mkdir -p /usr/local/bin /usr/local/share/man
sudo() {{ "$@"; }}
cargo() {{ mkdir -p ~/.cargo/bin && cp "$BIN" ~/.cargo/bin/addrmunge; }}
{script}
test -x /usr/local/bin/addrmunge
test "$(stat -c %a /etc/addrmunge/addrmunge.key)" = 600
grep '^\.TH addrmunge 1' /usr/local/share/man/man1/addrmunge.1 >/dev/null
grep 'complete -F' /etc/bash_completion.d/addrmunge >/dev/null
echo INSTALLED
"#
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &wrapper])
        .current_dir(root())
        .env("HOME", home.path())
        .env("BIN", env!("CARGO_BIN_EXE_addrmunge"))
        .env(
            "PATH",
            format!("/usr/local/bin:{}", std::env::var("PATH").unwrap()),
        )
        .env_remove("ADDRMUNGE_CONFIG")
        .output()
        .unwrap();
    for d in made {
        let _ = fs::remove_dir(d);
    }
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("INSTALLED"),
        "README install block failed:\n{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // check-config printed what it protects.
    assert!(said.contains("plover.com"), "{said}");
}
