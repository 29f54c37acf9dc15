//! `expire`, `unexpire` and `rules`: the owner's expiry rules.

use std::io::Write;

use anyhow::{Result, bail};

use super::{Ctx, RuleArgs, UsageError};
use addrmunge::address::Parsed;
use addrmunge::{Day, RuleSet, Scope, Served, Visitor, check};

/// Adds the rule `spec` describes.
pub fn expire(ctx: &Ctx, spec: &RuleArgs, out: &mut impl Write) -> Result<()> {
    let scope = scope_of(ctx, spec)?;
    let (rule, new) = ctx.store()?.expire(&scope, &spec.reason)?;
    if new {
        writeln!(out, "expired: rule {rule}")?;
    } else {
        writeln!(out, "already expired by rule {rule}")?;
    }
    Ok(())
}

/// Removes rule number `rule`, or the rule `spec` describes.
pub fn unexpire(ctx: &Ctx, spec: &RuleArgs, rule: Option<i64>, out: &mut impl Write) -> Result<()> {
    let mut store = ctx.store()?;
    let removed = match (rule, spec.is_empty()) {
        (Some(id), true) => store.remove_rule(id)?,
        (None, false) => store.unexpire(&scope_of(ctx, spec)?)?,
        _ => bail!(UsageError(
            "give either --rule N or the same options the rule was made with".into()
        )),
    };
    match removed {
        Some(r) => writeln!(out, "removed rule {r}")?,
        None => bail!(UsageError("no such rule; `addrmunge rules` lists them".into())),
    }
    Ok(())
}

/// Lists the rules, oldest first.
pub fn list(ctx: &Ctx, json: bool, out: &mut impl Write) -> Result<()> {
    let rules = ctx.store()?.rules()?;
    for r in &rules {
        if json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        } else {
            writeln!(out, "{r}")?;
        }
    }
    if rules.is_empty() && !json {
        writeln!(out, "no rules: every ID is accepted")?;
    }
    Ok(())
}

fn scope_of(ctx: &Ctx, a: &RuleArgs) -> Result<Scope> {
    let usage = |m: String| -> anyhow::Error { UsageError(m).into() };
    let scope = match (a.day, a.ip, a.cidr, &a.address, &a.base, a.before) {
        (Some(d), None, None, None, None, None) => Scope::Day(d),
        (None, Some(ip), None, None, None, None) => Scope::Ip(Visitor::from_ip(ip)),
        (Some(d), Some(ip), None, None, None, None) => Scope::IpDay(Visitor::from_ip(ip), d),
        (d, None, Some(net), None, None, None) => Scope::cidr(net, d).map_err(|e| usage(e.to_string()))?,
        (None, None, None, Some(addr), None, None) => {
            let keys = ctx.keys()?;
            let v = check(
                &keys,
                &ctx.config.protection,
                &RuleSet::default(),
                &Served::default(),
                addr,
                Day::today(),
            );
            if v.claims.is_none() {
                return Err(usage(format!(
                    "{addr} is not a munged address of ours ({}); to expire a base address and all its IDs use --base",
                    v.error.as_deref().unwrap_or(&v.status.to_string())
                )));
            }
            Scope::Address(addr.trim().to_ascii_lowercase())
        }
        (None, None, None, None, Some(base), None) => {
            match ctx.config.protection.parse(base) {
                Parsed::Bare(_) => {}
                Parsed::Munged(_) => {
                    return Err(usage(format!("{base} is a munged address; use --address for it")));
                }
                _ => return Err(usage(format!("{base} is not a protected address"))),
            }
            Scope::Base(base.trim().to_ascii_lowercase())
        }
        (None, None, None, None, None, Some(d)) => Scope::Before(d),
        _ => {
            return Err(usage(
                "choose one rule: --day D | --ip IP | --ip IP --day D | --cidr NET [--day D] | --address MUNGED | --base ADDRESS | --before D".into(),
            ));
        }
    };
    Ok(scope)
}
