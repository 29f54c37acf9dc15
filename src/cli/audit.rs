//! `audit`: the crawl, a progress line on a terminal, and the report (text
//! or JSON).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{AuditArgs, Ctx, UsageError};
use addrmunge::audit::crawl::{Crawl, Options};
use addrmunge::audit::{Decoding, Judge, Located, Report};
use addrmunge::{Day, Matcher, RuleSet, Served};

/// Exit status when nothing could be fetched.
const NOTHING_FETCHED: u8 = 2;

/// Crawls, judges and reports; the exit status says whether it is covered.
pub fn run(ctx: &Ctx, args: &AuditArgs, out: &mut impl Write) -> Result<ExitCode> {
    let keys = ctx.keys()?;
    let (rules, served) = match ctx.store().and_then(|mut s| Ok((s.rules()?, s.served()?))) {
        Ok((rules, served)) => (
            RuleSet::new(rules),
            Served::new(served.into_iter().map(|s| s.base)),
        ),
        Err(e) => {
            eprintln!("addrmunge: warning: {e}; munged addresses are judged by the key alone");
            Default::default()
        }
    };
    let today = Day::today();
    let judge = Judge {
        matcher: Matcher::for_decoded(ctx.config.protection.clone()),
        keys: &keys,
        rules: &rules,
        served: &served,
        today,
    };
    let opts = options(ctx, args, keys.audit_mark(today))?;
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(crawl(&args.urls, opts, &judge))?;
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        text(&report, &args.urls, started.elapsed(), out)?;
    }
    Ok(if report.pages.iter().all(|p| p.status == 0) {
        ExitCode::from(NOTHING_FETCHED)
    } else if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn options(ctx: &Ctx, args: &AuditArgs, mark: String) -> Result<Options> {
    let render = match (&args.chromium, args.render) {
        (_, false) => None,
        (Some(path), true) => Some(path.clone()),
        (None, true) => Some(find_chromium()?),
    };
    Ok(Options {
        depth: args.depth,
        max_pages: args.max_pages,
        concurrency: args.concurrency.max(1),
        delay: Duration::from_millis(args.delay_ms),
        robots: args.robots,
        max_body: 16 << 20,
        skip: ctx.config.bait.iter().map(|b| b.path.clone()).collect(),
        mark: Some((addrmunge::proxy::AUDIT_HEADER.parse()?, mark.parse()?)),
        ca: args.ca.clone(),
        render,
        timeout: Duration::from_secs(args.timeout.max(1)),
    })
}

fn find_chromium() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(UsageError(
        "--render needs Chromium: none of chromium, chromium-browser, google-chrome is on the PATH; install it (Debian: apt-get install chromium) or give --chromium PATH".into()
    ))
}

async fn crawl(starts: &[url::Url], opts: Options, judge: &Judge<'_>) -> Result<Report> {
    let mut crawl = Crawl::new(starts, opts).map_err(UsageError)?;
    crawl.read_robots().await;
    let mut report = Report::default();
    let terminal = std::io::stderr().is_terminal();
    loop {
        let pages = crawl.next_batch().await;
        if pages.is_empty() {
            break;
        }
        for page in &pages {
            judge.page(page, &mut report);
        }
        if terminal {
            let (done, waiting) = crawl.progress();
            eprint!(
                "\r\x1b[Kaudit: {done} fetched, {waiting} waiting, {} leaks",
                report.leaks.len()
            );
        }
    }
    if terminal {
        eprint!("\r\x1b[K");
    }
    Ok(report)
}

/// The report for a person: leaks first, then munged, exempt, a table by
/// decoding, and the pages that had problems.
fn text(r: &Report, starts: &[url::Url], took: Duration, out: &mut impl Write) -> Result<()> {
    let starts: Vec<String> = starts.iter().map(|u| u.to_string()).collect();
    writeln!(
        out,
        "Audited {} pages and scripts from {} in {:.1} s.",
        r.pages.len(),
        starts.join(", "),
        took.as_secs_f64()
    )?;
    writeln!(out)?;
    if r.leaks.is_empty() {
        writeln!(out, "Leaks: none. No protected address can be read in clear.")?;
    } else {
        writeln!(out, "Leaks: {} (a harvester reads these in clear)", r.leaks.len())?;
        for l in &r.leaks {
            writeln!(out, "  {}", place(l))?;
        }
    }
    writeln!(out)?;
    munged(r, out)?;
    if !r.exempt.is_empty() {
        writeln!(out)?;
        writeln!(out, "Exempt (readable on purpose): {}", r.exempt.len())?;
        for e in &r.exempt {
            writeln!(out, "  {}", place(e))?;
        }
    }
    writeln!(out)?;
    table(r, out)?;
    let problems: Vec<_> = r
        .pages
        .iter()
        .filter(|p| p.problem.is_some() || p.status >= 400)
        .collect();
    if !problems.is_empty() {
        writeln!(out)?;
        writeln!(out, "Not read in full: {}", problems.len())?;
        for p in problems {
            let why = p.problem.clone().unwrap_or_else(|| format!("HTTP {}", p.status));
            writeln!(out, "  {}  {why}", p.url)?;
        }
    }
    Ok(())
}

fn place(l: &Located) -> String {
    let how = if l.rendered {
        format!("{}, after scripts ran", l.decoding)
    } else {
        l.decoding.to_string()
    };
    format!("{}  {}  byte {}  ({how})", l.address, l.url, l.offset)
}

fn munged(r: &Report, out: &mut impl Write) -> Result<()> {
    let bad: Vec<_> = r.munged.iter().filter(|m| !m.ok).collect();
    let visitors: Vec<&str> = r.visitors().into_iter().collect();
    writeln!(
        out,
        "Munged: {} addresses, {} made today for a visitor at {}{}",
        r.munged.len(),
        if bad.is_empty() {
            "all valid and"
        } else {
            "not all valid or"
        },
        if visitors.is_empty() {
            "-".into()
        } else {
            visitors.join(", ")
        },
        if visitors.len() > 1 {
            " (more than one visitor: a proxy in between not trusted?)"
        } else {
            ""
        },
    )?;
    for m in bad {
        let (status, date, kind, ip) = (
            m.status.as_str(),
            m.date.map(|d| d.to_string()).unwrap_or_default(),
            m.kind.map(|k| k.as_str()).unwrap_or("-"),
            m.ip.as_deref().unwrap_or("-"),
        );
        writeln!(
            out,
            "  NOT OK {}  ({status}, {kind}, {date}, for {ip})",
            place(&m.at)
        )?;
    }
    Ok(())
}

fn table(r: &Report, out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "{:<12} {:>6} {:>7} {:>7}",
        "decoding", "leaks", "munged", "exempt"
    )?;
    for d in Decoding::ALL {
        let count = |list: &mut dyn Iterator<Item = &Located>| list.filter(|l| l.decoding == d).count();
        let (l, m, e) = (
            count(&mut r.leaks.iter()),
            count(&mut r.munged.iter().map(|m| &m.at)),
            count(&mut r.exempt.iter()),
        );
        writeln!(out, "{:<12} {l:>6} {m:>7} {e:>7}", d.name())?;
    }
    Ok(())
}
