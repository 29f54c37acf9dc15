//! `trace`, `report` and `blocks`: who harvested what, the picture of the
//! last days, and the blocked clients for other tools.

use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{BlockFormatArg, Ctx, UsageError};
use addrmunge::report::BlockFormat;
use addrmunge::{RuleSet, Served};

/// Traces each of `addresses` and of the munged recipients of `message`.
pub fn trace(
    ctx: &Ctx,
    json: bool,
    message: Option<&Path>,
    addresses: &[String],
    out: &mut impl Write,
) -> Result<()> {
    let keys = ctx.keys()?;
    let mut store = ctx.store()?;
    let rules = RuleSet::new(store.rules()?);
    let served = Served::new(store.served()?.into_iter().map(|s| s.base));
    let mut list = addresses.to_vec();
    if let Some(path) = message {
        list.extend(message_recipients(ctx, path)?);
    }
    if list.is_empty() {
        bail!(UsageError("give munged addresses, or --message FILE".into()));
    }
    for (i, a) in list.iter().enumerate() {
        let known = (&rules, &served);
        let t = addrmunge::report::trace(&keys, &ctx.config.protection, &mut store, known, a)?;
        if json {
            writeln!(out, "{}", serde_json::to_string(&t)?)?;
        } else {
            if i > 0 {
                writeln!(out)?;
            }
            addrmunge::report::write_trace(out, &t)?;
        }
    }
    Ok(())
}

/// The munged recipients of the message or mbox at `path` (`-`: standard input).
fn message_recipients(ctx: &Ctx, path: &Path) -> Result<Vec<String>> {
    let text = if path.as_os_str() == "-" {
        io::read_to_string(io::stdin())?
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let found = addrmunge::report::message_recipients(&text, &ctx.config.protection);
    if found.is_empty() {
        bail!(UsageError(format!(
            "{} has no munged address of ours in To, Cc, Delivered-To or X-Original-To",
            path.display()
        )));
    }
    Ok(found)
}

/// The report of the last `days` days, as text, JSON or an HTML file.
pub fn report(ctx: &Ctx, days: u16, json: bool, html: Option<&Path>, out: &mut impl Write) -> Result<()> {
    if days == 0 {
        bail!(UsageError("--days must be at least 1".into()));
    }
    let r = addrmunge::report::report(&mut ctx.store()?, days)?;
    if let Some(path) = html {
        std::fs::write(path, addrmunge::report::html_report(&r))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
    } else if let Some(path) = html {
        writeln!(out, "wrote {}", path.display())?;
    } else {
        addrmunge::report::write_report(out, &r)?;
    }
    Ok(())
}

/// The clients blocked now, in `format`.
pub fn blocks(ctx: &Ctx, format: BlockFormatArg, out: &mut impl Write) -> Result<()> {
    let mut blocks: Vec<(IpAddr, i64)> = ctx
        .store()?
        .blocks(addrmunge::store::now_unix())?
        .into_iter()
        .collect();
    blocks.sort();
    let f = match format {
        BlockFormatArg::Plain => BlockFormat::Plain,
        BlockFormatArg::PostfixCidr => BlockFormat::PostfixCidr,
        BlockFormatArg::Rbldnsd => BlockFormat::Rbldnsd,
    };
    let text = &ctx.config.resolver.block_text;
    let skipped = addrmunge::report::write_blocks(out, &blocks, f, text)?;
    if skipped > 0 {
        eprintln!(
            "addrmunge: {skipped} IPv6 blocks left out: rbldnsd keeps IPv6 in an ip6trie dataset; use --format plain for them"
        );
    }
    Ok(())
}
