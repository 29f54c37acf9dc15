//! Load clients for `benches/load.sh`, which starts the real servers:
//!
//! * `echo-server PORT`: a trivial netstring server answering `OK DUNNO`
//!   to everything (the protocol's limit on this machine).
//! * `resolver ECHO_PORT PORT SECONDS CONNS KEY_FILE KEY...`: socketmap
//!   lookups of the given keys (round robin) over CONNS persistent
//!   connections, first against the echo server, then against the resolver
//!   on PORT; then against the resolver again with 50,000 distinct valid
//!   addresses made with KEY_FILE (more than its verdict cache holds, so
//!   every lookup decrypts); prints one line per run:
//!   `name lookups_per_s p50_us p99_us`.
//! * `slow PORT PATH CONNS SECONDS`: CONNS clients each fetch PATH and read
//!   the response slowly (1 KiB every 100 ms) for SECONDS; prints how many
//!   stayed connected.
//!
//! * `lookups PORT SECONDS CONNS KEY...`: one server alone (two resolvers,
//!   or the echo server and the resolver, in turns side by side); prints
//!   `lookups lookups_per_s p50_us p99_us`.
//! * `propagation PORT ROUNDS ADDRMUNGE CONFIG KEY_FILE`: ROUNDS times, an
//!   address for a new visitor is checked valid at the resolver on PORT,
//!   `ADDRMUNGE --config CONFIG expire --ip` stores a rule for that visitor
//!   (on another "host": its own process and connection), and the resolver
//!   is asked every millisecond until it refuses; prints `propagation
//!   p50_ms p99_ms max_ms rounds`, timed from the command's exit (the rule
//!   is committed) to the first refusal.
//!
//! * `page BYTES ADDRESSES` / `site BYTES ADDRESSES`: the load page (one
//!   paragraph repeated) or a site's page (varied prose, compresses like
//!   real HTML), with ADDRESSES protected addresses of plover.com.
//!
//! Run by `cargo bench --bench load -- MODE ...`; with no mode (as in a plain
//! `cargo bench`) it prints this usage and does nothing.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "common/pages.rs"]
mod pages;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("resolver") => {
            let echo: u16 = args[1].parse().unwrap();
            let port: u16 = args[2].parse().unwrap();
            let secs: u64 = args[3].parse().unwrap();
            let conns: usize = args[4].parse().unwrap();
            let ring = addrmunge::KeyRing::load(std::path::Path::new(&args[5])).unwrap();
            let keys: Vec<String> = args[6..].to_vec();
            let day = addrmunge::Day::today();
            let fresh: Vec<String> = (0..50_000u32)
                .map(|i| {
                    let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
                    let claims = addrmunge::Claims::visit(addrmunge::Kind::Visitor, day, ip.into());
                    format!("mjd-id-{}@plover.com", ring.encode("mjd@plover.com", "", &claims))
                })
                .collect();
            rt.block_on(async {
                let (rate, p50, p99) = lookups(echo, secs, conns, &keys).await;
                println!("echo {rate:.0} {p50} {p99}");
                let (rate, p50, p99) = lookups(port, secs, conns, &keys).await;
                println!("resolver {rate:.0} {p50} {p99}");
                // They must be judged valid, not refused early as malformed.
                let answer = ask(port, &format!("recipient {}", fresh[0])).await;
                assert_eq!(answer, "OK DUNNO", "{}", fresh[0]);
                let (rate, p50, p99) = lookups(port, secs, conns, &fresh).await;
                println!("resolver_uncached {rate:.0} {p50} {p99}");
            });
        }
        Some("echo-server") => {
            // A separate process, as the resolver is, so both pay the same
            // scheduling and loopback costs.
            let port: u16 = args[1].parse().unwrap();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                echo_server(port).await;
                std::future::pending::<()>().await;
            });
        }
        Some("slow") => {
            let port: u16 = args[1].parse().unwrap();
            let path = args[2].clone();
            let conns: usize = args[3].parse().unwrap();
            let secs: u64 = args[4].parse().unwrap();
            rt.block_on(async {
                let mut tasks = Vec::new();
                for _ in 0..conns {
                    let path = path.clone();
                    tasks.push(tokio::spawn(slow_client(port, path, secs)));
                }
                let mut alive = 0;
                for t in tasks {
                    if t.await.unwrap_or(false) {
                        alive += 1;
                    }
                }
                println!("slow_clients_completed {alive}");
            });
        }
        Some("lookups") => {
            let port: u16 = args[1].parse().unwrap();
            let secs: u64 = args[2].parse().unwrap();
            let conns: usize = args[3].parse().unwrap();
            let (rate, p50, p99) = rt.block_on(lookups(port, secs, conns, &args[4..]));
            println!("lookups {rate:.0} {p50} {p99}");
        }
        Some("propagation") => {
            let port: u16 = args[1].parse().unwrap();
            let rounds: u32 = args[2].parse().unwrap();
            let ring = addrmunge::KeyRing::load(std::path::Path::new(&args[5])).unwrap();
            let mut ms = rt.block_on(propagation(port, rounds, &args[3], &args[4], &ring));
            ms.sort_by(f64::total_cmp);
            let pct = |p: f64| ms[((ms.len() as f64 * p) as usize).min(ms.len() - 1)];
            let max = ms[ms.len() - 1];
            println!("propagation {:.1} {:.1} {max:.1} {rounds}", pct(0.5), pct(0.99));
        }
        Some("site") => {
            let size: usize = args[1].parse().unwrap();
            let n: usize = args[2].parse().unwrap();
            print!("{}", pages::site_page(size, n, "plover.com"));
        }
        Some("page") => {
            let size: usize = args[1].parse().unwrap();
            let n: usize = args[2].parse().unwrap();
            print!("{}", pages::load_page(size, n, "plover.com"));
        }
        _ => {
            eprintln!(
                "load: run through benches/load.sh (modes: resolver, lookups, propagation, slow, page, site)"
            )
        }
    }
}

/// A netstring server that answers every request with a fixed reply.
async fn echo_server(port: u16) -> u16 {
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    // Answer every complete netstring in the buffer.
                    while let Some(len) = complete(&buf) {
                        buf.drain(..len);
                        if s.write_all(b"8:OK DUNNO,").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// One socketmap query on a new connection; the answer without framing.
async fn ask(port: u16, q: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("{}:{q},", q.len()).as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while complete(&buf).is_none() {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let body = &text[text.find(':').unwrap() + 1..text.len() - 1];
    body.to_owned()
}

/// The length of the first complete netstring in `buf`.
fn complete(buf: &[u8]) -> Option<usize> {
    let colon = buf.iter().position(|&c| c == b':')?;
    let n: usize = std::str::from_utf8(&buf[..colon]).ok()?.parse().ok()?;
    let total = colon + 1 + n + 1;
    (buf.len() >= total).then_some(total)
}

/// `(lookups/s, p50 µs, p99 µs)` over `conns` connections for `secs`.
async fn lookups(port: u16, secs: u64, conns: usize, keys: &[String]) -> (f64, u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let keys = keys.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut lat = Vec::new();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut i = c;
            while Instant::now() < deadline {
                let q = format!("recipient {}", keys[i % keys.len()]);
                i += 1;
                let t = Instant::now();
                s.write_all(format!("{}:{},", q.len(), q).as_bytes())
                    .await
                    .unwrap();
                loop {
                    if let Some(len) = complete(&buf) {
                        buf.drain(..len);
                        break;
                    }
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "server closed the connection");
                    buf.extend_from_slice(&chunk[..n]);
                }
                lat.push(t.elapsed().as_micros() as u64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    (all.len() as f64 / secs as f64, pct(0.50), pct(0.99))
}

/// Milliseconds from each committed `expire` to the resolver's first refusal.
async fn propagation(port: u16, rounds: u32, bin: &str, config: &str, ring: &addrmunge::KeyRing) -> Vec<f64> {
    let day = addrmunge::Day::today();
    let mut ms = Vec::new();
    for i in 0..rounds {
        // A visitor no earlier round has expired.
        let ip = std::net::Ipv4Addr::from(0x6440_0000 + (std::process::id() << 8) % 0x3f_0000 + i);
        let claims = addrmunge::Claims::visit(addrmunge::Kind::Visitor, day, ip.into());
        let q = format!(
            "virtual mjd-id-{}@plover.com",
            ring.encode("mjd@plover.com", "", &claims)
        );
        assert!(
            ask(port, &q).await.starts_with("OK "),
            "{q}: not valid before the rule"
        );
        // Blocking is fine: this task is the only one, on a multi-thread runtime.
        let status = std::process::Command::new(bin)
            .args(["--config", config, "expire", "--ip", &ip.to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "expire --ip {ip} failed");
        let t = Instant::now();
        while !ask(port, &q).await.starts_with("NOTFOUND") {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{q}: still valid after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms
}

/// Fetches `path` and reads it slowly; true if the connection lasted.
async fn slow_client(port: u16, path: String, secs: u64) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        match s.read(&mut buf).await {
            Ok(0) => return true, // the whole page arrived
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return false,
        }
    }
    true
}
