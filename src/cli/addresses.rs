//! `encode`, `decode` and `mint`: making and reading munged addresses by
//! hand.

use std::io::{self, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::{Result, bail};

use super::{Ctx, KindArg, UsageError};
use addrmunge::check::check_recipient;
use addrmunge::store::StoreError;
use addrmunge::{Claims, Day, Kind, RuleSet, Served, Status};

/// The munged address a visitor from `ip` gets for `address` on `date`.
pub fn encode(
    ctx: &Ctx,
    ip: IpAddr,
    date: Option<Day>,
    kind: KindArg,
    address: &str,
    out: &mut impl Write,
) -> Result<()> {
    let (local, domain) = ctx.protected_base(address)?;
    let kind = match kind {
        KindArg::Visitor => Kind::Visitor,
        KindArg::Trap => Kind::Trap,
        KindArg::Crawler => Kind::Crawler,
    };
    let claims = Claims::visit(kind, date.unwrap_or_else(Day::today), ip);
    let token = ctx.keys()?.encode(&format!("{local}@{domain}"), "", &claims);
    writeln!(
        out,
        "{}",
        ctx.config.protection.munge(&local, &domain, "", &token)
    )?;
    Ok(())
}

/// Exit status of `decode` when every address is valid by the key but the
/// rules could not be read (sysexits' EX_TEMPFAIL): not a yes, not a no.
const UNCONFIRMED: u8 = 75;

/// What each address stands for; fails (exit 1) unless all are valid. With
/// the store's database unreachable it still says what each stands for, by
/// the key alone, warns that no rule was checked, and exits 75 rather than
/// 0: an owner tracing spam during an outage needs the visitor, but a
/// script must not read "valid" that no rule confirmed.
pub fn decode(ctx: &Ctx, json: bool, addresses: &[String], out: &mut impl Write) -> Result<ExitCode> {
    let keys = ctx.keys()?;
    let known = match ctx.store().and_then(|mut s| Ok((s.rules()?, s.served()?))) {
        Ok((rules, served)) => Some((
            RuleSet::new(rules),
            Served::new(served.into_iter().map(|s| s.base)),
        )),
        Err(e)
            if e.downcast_ref::<StoreError>()
                .is_some_and(StoreError::is_unreachable) =>
        {
            eprintln!(
                "addrmunge: warning: {e}\naddrmunge: warning: judged by the key alone: no expire rule was checked (exit 75 where the key says valid)"
            );
            None
        }
        Err(e) => return Err(e),
    };
    let confirmed = known.is_some();
    let (rules, served) = known.unwrap_or_default();
    let today = Day::today();
    let mut all_valid = true;
    let delimiters = &ctx.config.resolver.recipient_delimiter;
    for a in addresses {
        // Judged exactly as the resolver judges a recipient.
        let p = &ctx.config.protection;
        let mut v = check_recipient(&keys, p, &rules, &served, a, today, delimiters);
        v.address = a.clone();
        all_valid &= v.valid();
        if json {
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        } else {
            write_verdict(out, &v)?;
        }
    }
    Ok(match (all_valid, confirmed) {
        (true, true) => ExitCode::SUCCESS,
        (true, false) => ExitCode::from(UNCONFIRMED),
        (false, _) => ExitCode::FAILURE,
    })
}

/// A minted address for `address`, per `label` or valid for `valid`.
pub fn mint(
    ctx: &Ctx,
    address: &str,
    label: Option<&str>,
    valid: Option<&str>,
    date: Option<Day>,
    out: &mut impl Write,
) -> Result<()> {
    let (local, domain) = ctx.protected_base(address)?;
    let label = label.unwrap_or("").to_ascii_lowercase();
    if !label.is_empty() && !addrmunge::address::is_label(&label) {
        bail!(UsageError(format!(
            "--label '{label}': use 1 to 16 letters and digits, e.g. --label shop"
        )));
    }
    let days = match valid {
        None => 0,
        Some(v) => parse_duration(v)?,
    };
    let sep = ctx.config.protection.separator().len();
    let id_len = addrmunge::token::SHORT_LEN; // a minted ID: no visitor in it
    let len = local.len() + sep + label.len() + usize::from(!label.is_empty()) + id_len;
    if len > addrmunge::address::MAX_LOCAL {
        bail!(UsageError(format!(
            "the minted local part would be {len} octets, over 64; use a shorter --label"
        )));
    }
    let claims = Claims::minted(date.unwrap_or_else(Day::today), days);
    let token = ctx.keys()?.encode(&format!("{local}@{domain}"), &label, &claims);
    writeln!(
        out,
        "{}",
        ctx.config.protection.munge(&local, &domain, &label, &token)
    )?;
    match claims.last_valid_day() {
        Some(last) => eprintln!("accepted through {last} (UTC)"),
        None => eprintln!("accepted until you expire it"),
    }
    Ok(())
}

fn parse_duration(v: &str) -> Result<u16> {
    let bad = || {
        UsageError(format!(
            "--valid '{v}': write a number of days or weeks, e.g. 1d, 30d, 2w"
        ))
    };
    // The unit is the last character, which need not be one byte.
    let unit = v.chars().next_back().ok_or_else(bad)?;
    let n: u16 = v[..v.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
    let days = match unit {
        'd' => Some(n),
        'w' => n.checked_mul(7),
        _ => None,
    }
    .filter(|&d| d > 0)
    .ok_or_else(bad)?;
    Ok(days)
}

fn write_verdict(out: &mut impl Write, v: &addrmunge::Verdict) -> io::Result<()> {
    if let Some(copy) = &v.copy_of {
        return writeln!(
            out,
            "{}: mangled copy of {copy}, served to {} on {} [{}] — a harvester cut its front off",
            v.address.trim(),
            v.ip.as_deref().unwrap_or("nobody"),
            v.date.map(|d| d.to_string()).unwrap_or_default(),
            v.kind.map_or("?", Kind::as_str),
        );
    }
    write!(out, "{}: {}", v.address.trim(), v.status)?;
    if let Some(o) = &v.original
        && v.status != Status::Bare
    {
        write!(out, " -> {o}")?;
    }
    if let Some(k) = v.kind {
        write!(out, " [{k}")?;
        if let Some(ip) = &v.ip {
            write!(out, " {ip}")?;
        }
        if let Some(l) = &v.label {
            write!(out, " label {l}")?;
        }
        if let Some(d) = v.date {
            write!(out, " issued {d}")?;
        }
        if let Some(e) = v.expires {
            write!(out, " valid through {e}")?;
        }
        write!(out, "]")?;
    }
    if v.exempt {
        write!(out, " (exempt)")?;
    }
    if let Some(e) = &v.error {
        write!(out, " — {e}")?;
    }
    writeln!(out)
}
