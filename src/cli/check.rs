//! `check-config`: the config and key validated and shown, and with
//! `--scan`, what the scanner makes of pages of the site.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Ctx, UsageError};
use addrmunge::address::Class;
use addrmunge::config::Mangled;
use addrmunge::store::Location;
use addrmunge::token::LONG_LEN;
use addrmunge::{Claims, Day, Kind, Store, StoreError};

/// Checks the config and key, then scans each of `scan`.
pub fn check_config(ctx: &Ctx, scan: &[PathBuf], out: &mut impl Write) -> Result<()> {
    show_config(ctx, out)?;
    for path in scan {
        scan_file(ctx, path, out)?;
    }
    Ok(())
}

/// What the scanner made of one file, for `check-config --scan`.
#[derive(Default)]
struct Survey {
    munged: Vec<(u64, String)>,
    left: Vec<(u64, String, addrmunge::scan::LeftAlone)>,
}

impl addrmunge::Munger for Survey {
    fn munge(&mut self, f: &addrmunge::Found<'_>, _out: &mut Vec<u8>) {
        self.munged.push((f.offset, format!("{}@{}", f.local, f.domain)));
    }

    fn left_alone(&mut self, f: &addrmunge::Found<'_>, why: addrmunge::scan::LeftAlone) {
        self.left
            .push((f.offset, format!("{}@{}", f.local, f.domain), why));
    }
}

fn scan_file(ctx: &Ctx, path: &Path, out: &mut impl Write) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = as_scanned(bytes);
    let mut survey = Survey::default();
    let matcher = addrmunge::Matcher::new(std::sync::Arc::clone(&ctx.config.protection));
    let mut s = matcher.scanner();
    let mut sink = Vec::new();
    s.feed(&bytes, &mut sink, &mut survey);
    s.finish(&mut sink, &mut survey);
    let line = |at: u64| 1 + memchr::memchr_iter(b'\n', &bytes[..(at as usize).min(bytes.len())]).count();
    writeln!(
        out,
        "scan:      {}: {} address{} munged, {} left alone",
        path.display(),
        survey.munged.len(),
        if survey.munged.len() == 1 { "" } else { "es" },
        survey.left.len()
    )?;
    for (at, address) in &survey.munged {
        writeln!(out, "  line {:<6} munged      {address}", line(*at))?;
    }
    for (at, address, why) in &survey.left {
        writeln!(out, "  line {:<6} left alone  {address}: {why}", line(*at))?;
    }
    Ok(())
}

/// A file as the proxy's scanner reads it: decoded to UTF-8 when its
/// byte-order mark or `<meta>` names a charset the proxy decodes, or it
/// names none and is guessed to be in one (as served, a `Content-Type`
/// may name one too).
fn as_scanned(bytes: Vec<u8>) -> Vec<u8> {
    use addrmunge::rewrite::charset;
    match charset::settle(&bytes, None, true, bytes.len() <= charset::SNIFF) {
        Some(e) if charset::reading(e) != charset::Reading::Bytes => charset::decode_whole(e, &bytes),
        _ => bytes,
    }
}

fn show_config(ctx: &Ctx, out: &mut impl Write) -> Result<()> {
    let c = &ctx.config;
    let keys = ctx
        .keys()
        .with_context(|| format!("checking key_file of {}", c.path.display()))?;
    writeln!(out, "config:    {}", c.path.display())?;
    writeln!(
        out,
        "key file:  {} ({} key{}, encoding key id '{}')",
        c.key_file.display(),
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        keys.current_id()
    )?;
    // A bare file name (a config in the current folder) is in ".".
    let state_dir = c.state.file().map(|f| {
        f.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    });
    if let Some(state_dir) = state_dir
        && !state_dir.is_dir()
    {
        bail!(UsageError(format!(
            "{}: state: the folder {} does not exist; create it (mkdir -p) or point state elsewhere",
            c.path.display(),
            state_dir.display()
        )));
    }
    writeln!(out, "state:     {}", describe_state(&c.state)?)?;
    let sep = c.protection.separator();
    writeln!(
        out,
        "separator: '{sep}' (munged local parts grow by up to {} octets)",
        sep.len() + LONG_LEN
    )?;
    write_protected(c, &keys, out)?;
    write_tls(c, out)?;
    write_forensics(c, out)?;
    for w in &c.warnings {
        writeln!(out, "note: {w}")?;
    }
    writeln!(out, "ok")?;
    Ok(())
}

/// The TLS listeners' certificates, loaded as the proxy loads them (a file
/// that cannot be used fails the check), and ACME.
fn write_tls(c: &addrmunge::Config, out: &mut impl Write) -> Result<()> {
    let t = &c.proxy.tls;
    if t.listen.is_empty() {
        return Ok(());
    }
    let listen: Vec<String> = t.listen.iter().map(|a| a.to_string()).collect();
    writeln!(
        out,
        "https:     on {}{}",
        listen.join(", "),
        if t.https_redirect {
            "; plain HTTP redirects to it"
        } else {
            ""
        }
    )?;
    for f in &t.certs {
        let cert = addrmunge::proxy::tls::Loaded::from_files(f)
            .with_context(|| format!("{}: proxy.tls", c.path.display()))?;
        let days = (cert.not_after - addrmunge::store::now_unix()) / 86_400;
        writeln!(
            out,
            "  certificate {} for {} ({days} days left)",
            f.cert.display(),
            cert.names.join(", ")
        )?;
    }
    if let Some(a) = &t.acme {
        writeln!(
            out,
            "  ACME: {} from {} ({}), kept in {}, renewed {} days before its end",
            a.domains.join(", "),
            a.directory,
            match a.challenge {
                addrmunge::config::AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
                addrmunge::config::AcmeChallenge::Http01 => "http-01",
            },
            a.dir.display(),
            a.renew_before.as_secs() / 86_400
        )?;
    }
    Ok(())
}

/// How crawlers are known, what mangled copies get, and containment.
fn write_forensics(c: &addrmunge::Config, out: &mut impl Write) -> Result<()> {
    let cr = &c.crawlers;
    if !cr.is_empty() {
        let n = cr.len();
        let nets = if n == 1 { "network" } else { "networks" };
        writeln!(
            out,
            "crawlers:  {n} {nets} of search engines' crawlers get crawler IDs"
        )?;
    }
    if !cr.suffixes.is_empty() && !cr.agents.is_empty() {
        let asked = match cr.nameservers.as_slice() {
            [] => "the system's name servers".to_owned(),
            list => list.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
        };
        writeln!(
            out,
            "crawlers:  visitors claiming to be one ({} User-Agents) are verified in the DNS ({} host suffixes; asking {asked})",
            cr.agents.len(),
            cr.suffixes.len()
        )?;
    }
    let mangled = match c.resolver.mangled {
        Mangled::Trap => "trapped (discarded, sender blocked)",
        Mangled::Reject => "refused",
        Mangled::Accept => "delivered",
    };
    writeln!(
        out,
        "mangled:   copies of munged addresses with their front cut off are {mangled}"
    )?;
    match &c.containment {
        None => writeln!(
            out,
            "containment: off (harvests are cut off by hand, after `trace`)"
        )?,
        Some(k) => {
            let mut evidence = Vec::new();
            if k.blocked_clients {
                evidence.push("a trap-blocked client".to_owned());
            }
            if k.mangled {
                evidence.push("a mangled copy".to_owned());
            }
            if k.networks > 0 {
                evidence.push(format!("{} networks in a day", k.networks));
            }
            writeln!(
                out,
                "containment: on: mail from {} cuts off a harvest; at most {} rules a day",
                evidence.join(", or "),
                k.max_rules_per_day
            )?;
        }
    }
    Ok(())
}

/// Each `[[protect]]` entry, with an example of its munged form.
fn write_protected(c: &addrmunge::Config, keys: &addrmunge::KeyRing, out: &mut impl Write) -> Result<()> {
    writeln!(out, "protected:")?;
    let day = Day::today();
    for e in c.protection.entries() {
        write!(out, "  {}@{}", e.local.as_str(), e.domain)?;
        if !e.exempt.is_empty() {
            let ex: Vec<&str> = e.exempt.iter().map(|g| g.as_str()).collect();
            write!(out, "  except {}", ex.join(", "))?;
        }
        if let Some(d) = &e.deliver_to {
            write!(out, "  delivered to {d}")?;
        }
        let shown = c
            .protection
            .unicode_domains()
            .find(|(_, a, _)| *a == e.domain.as_bytes());
        if let Some((u, _, _)) = shown {
            write!(out, "  (on pages also {})", String::from_utf8_lossy(u))?;
        }
        writeln!(out)?;
        let sample_local = if e.local.is_literal() {
            e.local.as_str().to_owned()
        } else {
            "someone".to_owned()
        };
        if let Class::Protected(_) = c.protection.classify(&sample_local, &e.domain) {
            let base = format!("{sample_local}@{}", e.domain);
            let t = keys.encode(
                &base,
                "",
                &Claims::visit(Kind::Visitor, day, "192.0.2.1".parse()?),
            );
            writeln!(
                out,
                "    e.g. {base} -> {}",
                c.protection.munge(&sample_local, &e.domain, "", &t)
            )?;
        }
    }
    let s = c.protection.spellings();
    if s.enabled {
        writeln!(
            out,
            "spelled:   spelled-out addresses get IDs too: [at] (at) {{at}} _at_ <b>mj</b>d@, words for @: {}; for .: {}",
            s.at.join(", "),
            s.dot.join(", ")
        )?;
    } else {
        writeln!(out, "spelled:   off: only addresses with an @ get IDs")?;
    }
    Ok(())
}

/// The store and, for a database, whether it can be reached and has the
/// schema (check-config fails when it cannot be reached: the daemons would
/// start, but record nothing and the resolver could not decide).
fn describe_state(at: &Location) -> Result<String> {
    Ok(match at {
        Location::Sqlite(_) => format!("{at} (SQLite)"),
        Location::Postgres(_) => match Store::open_existing(at) {
            Ok(_) => format!("{at} (PostgreSQL, reachable, schema up to date)"),
            Err(StoreError::Missing(_)) => {
                format!("{at} (PostgreSQL, reachable, no schema yet: the first command or daemon makes it)")
            }
            Err(e) => bail!("state: cannot use the database: {e}"),
        },
    })
}
