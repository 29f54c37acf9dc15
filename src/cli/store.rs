//! `store grants` and `store prune`: looking after the state store itself.

use std::io::Write;

use anyhow::{Result, bail};

use super::{Ctx, StoreCommand, UsageError};
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
        StoreCommand::Prune => {
            let days = ctx.config.retention_days;
            let (day, time) = retention_cutoff(days);
            let n = ctx.store()?.prune(day, time)?;
            writeln!(out, "pruned {n} rows older than {days} days")?;
        }
    }
    Ok(())
}
