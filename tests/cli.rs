//! The command line, run as a user would: real binary, real files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

/// An instance (key in keys/) that the CLI finds through
/// `ADDRMUNGE_CONFIG`, run from `/`.
struct Env {
    inst: common::Instance,
}

impl Env {
    fn new() -> Env {
        let inst = common::Instance::with_key(
            tempfile::tempdir().unwrap(),
            "keys/addrmunge.key",
            "\n[[protect]]\ndomain = \"plover.com\"\nexempt = [\"*-subscribe\"]\n",
        );
        Env { inst }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.inst.path(p)
    }

    fn run(&self, args: &[&str]) -> Output {
        // From another folder, so relative paths must resolve against the
        // config file, not the working directory.
        Command::new(env!("CARGO_BIN_EXE_addrmunge"))
            .args(args)
            .env("ADDRMUNGE_CONFIG", self.path("addrmunge.toml"))
            .current_dir("/")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn decode(&self, address: &str) -> (i32, serde_json::Value) {
        let out = self.run(&["decode", "--json", address]);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
        (out.status.code().unwrap(), v)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn keygen_writes_0600_and_never_overwrites() {
    let env = Env::new();
    let key = env.path("keys/addrmunge.key");
    assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let text = fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim().len(), 64);
    let out = env.run(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("never overwrites"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(&key).unwrap(),
        text,
        "the key must be untouched"
    );
}

#[test]
fn a_readable_key_is_refused_with_the_fix() {
    let env = Env::new();
    let key = env.path("keys/addrmunge.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
    let out = env.run(&["encode", "--ip", "192.0.2.1", "mjd@plover.com"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains(&format!("chmod 600 {}", key.display())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn encode_decode_expire_unexpire() {
    let env = Env::new();
    let a = env.ok(&[
        "encode",
        "--ip",
        "203.0.113.9",
        "--date",
        "2026-11-20",
        "Guitar-Perl-Diff@plover.com",
    ]);
    assert!(
        a.starts_with("guitar-perl-diff-id-") && a.ends_with("@plover.com"),
        "{a}"
    );
    let b = env.ok(&[
        "encode",
        "--ip",
        "203.0.113.10",
        "--date",
        "2026-11-20",
        "guitar-perl-diff@plover.com",
    ]);
    let six = env.ok(&[
        "encode",
        "--ip",
        "2001:db8:7:8::99",
        "--date",
        "2026-11-20",
        "mjd@plover.com",
    ]);
    let trap = env.ok(&[
        "encode",
        "--ip",
        "198.51.100.5",
        "--kind",
        "trap",
        "mjd@plover.com",
    ]);

    let (code, v) = env.decode(&a.to_uppercase());
    assert_eq!(code, 0);
    assert_eq!(v["valid"], true);
    assert_eq!(v["status"], "valid");
    assert_eq!(v["original"], "guitar-perl-diff@plover.com");
    assert_eq!(v["kind"], "visitor");
    assert_eq!(v["ip"], "203.0.113.9");
    assert_eq!(v["date"], "2026-11-20");
    for key in ["address", "label", "expires", "rule", "error"] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(env.decode(&six).1["ip"], "2001:db8:7:8::/64");
    assert_eq!(env.decode(&trap).1["kind"], "trap");

    // Expire that visitor on that day: only their address dies.
    let said = env.ok(&[
        "expire",
        "--ip",
        "203.0.113.9",
        "--day",
        "2026-11-20",
        "--reason",
        "spam",
    ]);
    assert!(said.contains("expired"), "{said}");
    let (code, v) = env.decode(&a);
    assert_eq!((code, v["status"].as_str()), (1, Some("expired")));
    assert!(v["rule"].as_str().unwrap().contains("203.0.113.9"));
    assert_eq!(env.decode(&b).1["status"], "valid");
    assert!(
        env.ok(&["expire", "--ip", "203.0.113.9", "--day", "2026-11-20"])
            .contains("already")
    );
    let rules = env.ok(&["rules", "--json"]);
    assert_eq!(rules.lines().count(), 1);
    env.ok(&["unexpire", "--ip", "203.0.113.9", "--day", "2026-11-20"]);
    assert_eq!(env.decode(&a).1["status"], "valid");

    // Every other kind of rule, each undone by number.
    for args in [
        vec!["--day", "2026-11-20"],
        vec!["--ip", "203.0.113.9"],
        vec!["--cidr", "203.0.113.0/24"],
        vec!["--cidr", "203.0.113.0/24", "--day", "2026-11-20"],
        vec!["--address", a.as_str()],
        vec!["--base", "guitar-perl-diff@plover.com"],
        vec!["--before", "2026-11-21"],
    ] {
        let mut expire = vec!["expire"];
        expire.extend(&args);
        env.ok(&expire);
        assert_eq!(env.decode(&a).1["status"], "expired", "{args:?}");
        let id = env.ok(&["rules", "--json"]);
        let id: serde_json::Value = serde_json::from_str(id.lines().next().unwrap()).unwrap();
        env.ok(&["unexpire", "--rule", &id["id"].to_string()]);
        assert_eq!(env.decode(&a).1["status"], "valid", "{args:?}");
    }
    // The /64 of an IPv6 visitor.
    env.ok(&["expire", "--ip", "2001:db8:7:8::1"]);
    assert_eq!(env.decode(&six).1["status"], "expired");
}

#[test]
fn decode_tells_forged_bare_and_foreign_apart() {
    let env = Env::new();
    let a = env.ok(&["encode", "--ip", "192.0.2.1", "mjd@plover.com"]);
    let (local, domain) = a.split_once('@').unwrap();
    let mut forged = local.to_owned().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'a' { b'b' } else { b'a' };
    let forged = format!("{}@{domain}", String::from_utf8(forged).unwrap());
    let (code, v) = env.decode(&forged);
    assert_eq!((code, v["status"].as_str()), (1, Some("invalid")));
    assert!(v["error"].as_str().unwrap().contains("authenticate"));
    // Moved onto another base address.
    let moved = a.replace("mjd-id-", "tom-id-");
    assert_eq!(env.decode(&moved).1["status"], "invalid");
    assert_eq!(env.decode("mjd@plover.com").1["status"], "bare");
    assert_eq!(env.decode("list-subscribe@plover.com").1["status"], "bare");
    assert_eq!(env.decode("mjd@example.com").1["status"], "invalid");
    // One line per address; exit 0 only when all are valid.
    let out = env.run(&["decode", "--json", &a, "mjd@plover.com"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    assert_eq!(env.run(&["decode", &a]).status.code(), Some(0));
}

/// `encode --kind crawler`: delivered like any visitor's, but `trace`
/// says a search engine was served it and suggests `--address` alone,
/// never the crawler's IP (everyone who copied it from the results would
/// be cut off, and the crawler's next visit too).
#[test]
fn crawler_ids_are_traced_to_the_address_not_the_crawler() {
    let env = Env::new();
    let a = env.ok(&[
        "encode",
        "--ip",
        "66.249.66.1",
        "--kind",
        "crawler",
        "mjd@plover.com",
    ]);
    let json = env.ok(&["decode", "--json", &a]);
    assert!(
        json.contains("\"kind\":\"crawler\"") && json.contains("\"status\":\"valid\""),
        "{json}"
    );
    let trace = env.ok(&["trace", &a]);
    assert!(trace.contains("search engine's crawler"), "{trace}");
    assert!(
        trace.contains(&format!("addrmunge expire --address {a}")),
        "{trace}"
    );
    assert!(
        !trace.contains("--ip 66.249.66.1") && !trace.contains("--cidr"),
        "{trace}"
    );
    let visitor = env.ok(&["encode", "--ip", "66.249.66.1", "mjd@plover.com"]);
    assert_ne!(a, visitor);
    assert!(env.ok(&["trace", &visitor]).contains("--ip 66.249.66.1"));
}

#[test]
fn minted_addresses() {
    let env = Env::new();
    let shop = env.ok(&["mint", "mjd@plover.com", "--label", "Shop"]);
    assert!(shop.starts_with("mjd-id-shop-"), "{shop}");
    let v = env.decode(&shop).1;
    assert_eq!(
        (v["status"].as_str(), v["kind"].as_str(), v["label"].as_str()),
        (Some("valid"), Some("minted"), Some("shop"))
    );
    // A label cannot be changed.
    assert_eq!(
        env.decode(&shop.replace("-shop-", "-shoe-")).1["status"],
        "invalid"
    );
    // Dated: issued two days ago for one day -> expired yesterday.
    let today = addrmunge::Day::today();
    let old = today.checked_sub(2).unwrap().to_string();
    let dated = env.ok(&["mint", "mjd@plover.com", "--valid", "1d", "--date", &old]);
    let v = env.decode(&dated).1;
    assert_eq!(v["status"], "expired");
    assert_eq!(v["expires"], today.checked_sub(1).unwrap().to_string());
    let yesterday = today.checked_sub(1).unwrap().to_string();
    let daily = env.ok(&["mint", "mjd@plover.com", "--valid", "1d", "--date", &yesterday]);
    assert_eq!(env.decode(&daily).1["status"], "valid");
    // A unit that is no unit, one byte or several (found by fuzzing parse_span).
    for valid in ["3h", "3\u{e9}", "\u{e9}", ""] {
        let out = env.run(&["mint", "mjd@plover.com", "--valid", valid]);
        assert_eq!(out.status.code(), Some(64), "{valid:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("1d"), "{valid:?}: {}", stderr(&out));
    }
    let out = env.run(&["mint", "x-subscribe@plover.com"]);
    assert!(stderr(&out).contains("exempt"), "{}", stderr(&out));
}

#[test]
fn check_config_reports_and_fails_clearly() {
    let env = Env::new();
    let out = env.ok(&["check-config"]);
    assert!(
        out.contains("*@plover.com") && out.contains("*-subscribe") && out.ends_with("ok"),
        "{out}"
    );

    let cfg = env.path("addrmunge.toml");
    let good = fs::read_to_string(&cfg).unwrap();
    let cases = [
        (good.replace("exempt", "exmept"), "exmept"),
        (format!("{good}local = \"{}\"\n", "x".repeat(40)), "64 octets"),
        (good.replace("plover.com", "plover com"), "protect[0].domain"),
        (format!("bogus = 1\n{good}"), "bogus"),
        (good.replace("keys/addrmunge.key", "keys/missing.key"), "keygen"),
    ];
    for (text, needle) in cases {
        fs::write(&cfg, &text).unwrap();
        let out = env.run(&["check-config"]);
        assert_eq!(out.status.code(), Some(64), "{needle}");
        let err = stderr(&out);
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(err.contains(cfg.to_str().unwrap()) || needle == "keygen", "{err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
        .args(["--config", "/nonexistent/addrmunge.toml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("/nonexistent/addrmunge.toml"));
}

#[test]
fn rules_are_durable_and_files_are_private() {
    let env = Env::new();
    env.ok(&["expire", "--day", "2026-01-01", "--reason", "durable"]);
    let state = env.path("state.sqlite");
    assert_eq!(
        fs::metadata(&state).unwrap().permissions().mode() & 0o007,
        0,
        "no access for others"
    );
    // Another process sees it at once.
    let c = rusqlite_count(&state);
    assert_eq!(c, 1);
    assert!(env.ok(&["rules"]).contains("durable"));
    let out = env.run(&["expire", "--ip", "192.0.2.1", "--cidr", "192.0.2.0/24"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("choose one rule"));
    let out = env.run(&["unexpire", "--day", "2030-01-01"]);
    assert!(stderr(&out).contains("no such rule"));
}

fn rusqlite_count(path: &Path) -> i64 {
    let mut store = addrmunge::Store::open(path).unwrap();
    store.rules().unwrap().len() as i64
}

#[test]
fn help_everywhere() {
    for sub in [
        "keygen",
        "check-config",
        "encode",
        "decode",
        "expire",
        "unexpire",
        "rules",
        "mint",
        "trace",
        "report",
        "blocks",
        "demo",
        "proxy",
        "resolver",
        "completions",
        "manpage",
        "store",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
            .args([sub, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sub}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"), "{sub}");
    }
}

#[test]
fn man_page_and_completions_come_from_the_cli_definition() {
    let env = Env::new();
    let man = env.ok(&["manpage"]);
    assert!(man.starts_with(".ie") || man.contains(".TH addrmunge 1"), "{man}");
    for sub in ["TRACE", "EXPIRE", "REPORT", "DEMO"] {
        assert!(man.contains(&format!("ADDRMUNGE-{sub}")), "{sub} missing");
    }
    for shell in ["bash", "zsh", "fish"] {
        let c = env.ok(&["completions", shell]);
        assert!(c.contains("addrmunge") && c.contains("trace"), "{shell}");
    }
}

#[test]
fn forensics_on_an_empty_store_and_bad_input() {
    let env = Env::new();
    // Nothing happened yet: the report says so, blocks are empty.
    let r = env.ok(&["report", "--days", "3"]);
    assert!(r.contains("Harvesters seen:") && r.contains("none"), "{r}");
    let j: serde_json::Value = serde_json::from_str(&env.ok(&["report", "--json"])).unwrap();
    assert_eq!(j["trap_hits"], 0);
    assert_eq!(j["by_day"].as_array().unwrap().len(), 30);
    assert_eq!(env.ok(&["blocks"]), "");
    // A traced address that was never served or mailed still explains itself.
    let a = env.ok(&["encode", "--ip", "192.0.2.7", "mjd@plover.com"]);
    let t = env.ok(&["trace", &a]);
    assert!(
        t.contains("harvested   by 192.0.2.7") && t.contains("arrivals    0"),
        "{t}"
    );
    assert!(t.contains("addrmunge expire --cidr 192.0.2.0/24"), "{t}");
    // A message without munged recipients is a clear usage error.
    fs::write(env.path("m.eml"), "To: someone@example.com\n\nhello\n").unwrap();
    let out = env.run(&["trace", "--message", env.path("m.eml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("no munged address of ours"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["trace"]);
    assert_eq!(out.status.code(), Some(64));
    let out = env.run(&["report", "--days", "0"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn logs_can_be_json_lines() {
    let env = Env::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = fs::read_to_string(env.path("addrmunge.toml")).unwrap();
    fs::write(
        env.path("addrmunge.toml"),
        format!("{cfg}\n[resolver]\nsocketmap = [\"inet:127.0.0.1:{port}\"]\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_addrmunge"))
        .arg("resolver")
        .env("ADDRMUNGE_CONFIG", env.path("addrmunge.toml"))
        .env("ADDRMUNGE_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{line}");
    assert!(
        v["fields"]["message"].as_str().unwrap().contains("listening"),
        "{line}"
    );
}

/// Tokens and dates vary from run to run; the shape of each line must not.
fn shape(text: &str) -> String {
    let token = regex::Regex::new(r"-id-[a-z0-9-]+@").unwrap();
    let date = regex::Regex::new(r"\d{4}-\d{2}-\d{2}").unwrap();
    let rule = regex::Regex::new(r"#\d+").unwrap();
    let t = token.replace_all(text, "-id-TOKEN@");
    let t = date.replace_all(&t, "DATE");
    rule.replace_all(&t, "#N").trim().to_owned()
}

#[test]
fn the_readme_session_runs_as_shown() {
    let env = Env::new();
    let block = common::readme_block("text", "$ addrmunge encode");
    let (mut shown_addr, mut real_addr) = (String::new(), String::new());
    let today = addrmunge::Day::today().to_string();
    let mut lines = block.lines().peekable();
    while let Some(line) = lines.next() {
        let cmd = line.strip_prefix("$ addrmunge ").expect("a command line");
        let mut expected = Vec::new();
        while let Some(l) = lines.next_if(|l| !l.starts_with("$ ")) {
            expected.push(l);
        }
        // The README's address and day stand for the ones made now.
        let cmd = cmd.replace("2026-11-22", &today);
        let cmd = if shown_addr.is_empty() {
            cmd
        } else {
            cmd.replace(&shown_addr, &real_addr)
        };
        let args = shell_words(&cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // decode exits 1 for an expired address, as documented; the output counts.
        let out = env.run(&args);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{cmd}: {}",
            stderr(&out)
        );
        let got = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        if cmd.starts_with("encode") {
            shown_addr = expected[0].to_owned();
            real_addr = got.clone();
        }
        assert_eq!(
            shape(&got),
            shape(&expected.join("\n")),
            "README: $ addrmunge {cmd}"
        );
    }
}

/// Splits a command line like a shell (double quotes only; all the README uses).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in s.chars() {
        match c {
            '"' => (quoted, any) = (!quoted, true),
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => (cur, any) = (cur + &c.to_string(), true),
        }
    }
    if any {
        out.push(cur);
    }
    out
}

#[test]
fn the_readme_key_rotation_keeps_old_ids_working() {
    let env = Env::new();
    let old = env.ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    let before = fs::read_to_string(env.path("keys/addrmunge.key")).unwrap();
    let keys = env.path("keys").display().to_string();
    let script = common::readme_block("sh", "keygen --out /tmp/new.key")
        .replace("/etc/addrmunge", &keys)
        .replace("/tmp/new.key", &format!("{keys}/new.key"));
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env(
            "PATH",
            format!(
                "{}:{}",
                Path::new(env!("CARGO_BIN_EXE_addrmunge"))
                    .parent()
                    .unwrap()
                    .display(),
                std::env::var("PATH").unwrap()
            ),
        )
        .env("ADDRMUNGE_CONFIG", env.path("addrmunge.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{script}", stderr(&out));
    let after = fs::read_to_string(env.path("keys/addrmunge.key")).unwrap();
    assert!(after.ends_with(&before) && after.lines().count() == 2, "{after}");
    let mode = fs::metadata(env.path("keys/addrmunge.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!env.path("keys/new.key").exists());
    // Old IDs decode; new ones are made with the new key, which the old key
    // alone cannot read.
    assert_eq!(env.decode(&old).1["status"], "valid");
    let new = env.ok(&["encode", "--ip", "203.0.113.9", "mjd@plover.com"]);
    assert_eq!(env.decode(&new).1["status"], "valid");
    fs::write(env.path("keys/addrmunge.key"), &before).unwrap();
    assert_ne!(env.decode(&new).1["status"], "valid");
}

/// `check-config --scan` shows what the proxy would do with a page: the
/// addresses it munges, and the user@host it leaves alone and why.
#[test]
fn check_config_scan_lists_what_is_munged_and_what_is_left_alone() {
    let env = Env::new();
    let page = "<p>Write to <a href=\"mailto:mjd@plover.com\">mjd</a>.</p>\n\
                <pre>git clone git@plover.com:mjd/addrmunge.git\n\
                curl https://joe:secret@plover.com/private/</pre>\n";
    fs::write(env.path("page.html"), page).unwrap();
    let said = env.ok(&["check-config", "--scan", env.path("page.html").to_str().unwrap()]);
    assert!(
        said.contains("page.html: 1 address munged, 2 left alone"),
        "{said}"
    );
    assert!(said.contains("line 1      munged      mjd@plover.com"), "{said}");
    assert!(
        said.contains("line 2      left alone  git@plover.com: an scp-style remote"),
        "{said}"
    );
    assert!(
        said.contains("line 3      left alone  secret@plover.com: the user info of a URL"),
        "{said}"
    );
    // A Shift_JIS page is read as the proxy reads it: `ス` (`0x83 0x58`)
    // is not an `X` before `mjd`, and the fullwidth address is one too.
    let page =
        "<meta charset=shift_jis>\n<p>アドレスmjd@plover.com</p>\n<p>ｊｏｅ＠ｐｌｏｖｅｒ．ｃｏｍ</p>\n";
    fs::write(env.path("sjis.html"), encoding_rs::SHIFT_JIS.encode(page).0).unwrap();
    let said = env.ok(&["check-config", "--scan", env.path("sjis.html").to_str().unwrap()]);
    assert!(said.contains("sjis.html: 2 addresses munged"), "{said}");
    assert!(said.contains("line 2      munged      mjd@plover.com"), "{said}");
    assert!(said.contains("line 3      munged      joe@plover.com"), "{said}");
    // A Latin-1 page too: its raw no-break spaces are spaces.
    let page = b"<meta charset=iso-8859-1>\n<p>\xc9crivez \xe0 mjd\xa0[at]\xa0plover\xa0[dot]\xa0com</p>\n";
    fs::write(env.path("latin1.html"), page).unwrap();
    let said = env.ok(&[
        "check-config",
        "--scan",
        env.path("latin1.html").to_str().unwrap(),
    ]);
    assert!(said.contains("latin1.html: 1 address munged"), "{said}");
    assert!(said.contains("line 2      munged      mjd@plover.com"), "{said}");
}

#[test]
fn store_grants_are_for_postgresql_and_prune_works_on_sqlite() {
    let env = Env::new();
    let out = env.run(&["store", "grants"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("postgresql://"), "{}", stderr(&out));
    assert_eq!(env.ok(&["store", "prune"]), "pruned 0 rows older than 180 days");
}
