//! `store grants` and `store prune`: looking after the state store itself.

use std::io::Write;

use anyhow::{Result, bail};

use super::{Ctx, StoreCommand, UsageError};
use addrmunge::Store;
use addrmunge::store::{Location, retention_cutoff};

/// Runs one `store` subcommand.
pub fn run(ctx: &Ctx, what: &StoreCommand, out: &mut impl Write) -> Result<()> {
    match what {
        StoreCommand::Grants {
            proxy_role,
            resolver_role,
        } => {
            if let Location::Sqlite(path) = &ctx.config.state {
                bail!(UsageError(format!(
                    "the store is the SQLite file {}; its permissions are the file's (created 0660: proxy and resolver share a group). Grants are for a postgresql:// state",
                    path.display()
                )));
            }
            // The schema must exist before anything can be granted on it.
            drop(ctx.store()?);
            write!(
                out,
                "{}",
                addrmunge::store::postgres::grants(proxy_role, resolver_role)
            )?;
        }
        StoreCommand::Copy { from, to } => copy(from, to, out)?,
        StoreCommand::Prune => {
            let days = ctx.config.retention_days;
            let (day, time) = retention_cutoff(days);
            let n = ctx.store()?.prune(day, time)?;
            writeln!(out, "pruned {n} rows older than {days} days")?;
        }
    }
    Ok(())
}

/// `store copy FROM TO`: the source must exist; the destination is made
/// and migrated if need be.
fn copy(from: &str, to: &str, out: &mut impl Write) -> Result<()> {
    let here = std::env::current_dir()?;
    let parse = |what: &str, text: &str| {
        Location::parse(text, &here).map_err(|e| UsageError(format!("store copy: {what}: {e}")))
    };
    let (from, to) = (parse("FROM", from)?, parse("TO", to)?);
    if from == to {
        bail!(UsageError("store copy: FROM and TO are the same store".into()));
    }
    let dump = Store::open_existing(&from)?.dump()?;
    let added = Store::open(&to)?.import(&dump)?;
    writeln!(
        out,
        "copied {from} -> {to}: {} of {} rules, {} of {} blocks, {} of {} arrivals, {} of {} visitor-days (the rest were there)",
        added.rules,
        dump.rules.len(),
        added.blocks,
        dump.blocks.len(),
        added.arrivals,
        dump.arrivals.len(),
        added.visits,
        dump.visits.len()
    )?;
    writeln!(
        out,
        "  and {} of {} base addresses served (what mangled copies are decoded against)",
        added.served,
        dump.served.len()
    )?;
    Ok(())
}
