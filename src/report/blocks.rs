//! `addrmunge blocks`: the blocked clients in formats other tools read.

use std::net::IpAddr;

use super::fmt_time;

/// The block list in a format other tools read.
pub fn write_blocks(
    out: &mut impl std::io::Write,
    blocks: &[(IpAddr, i64)],
    format: BlockFormat,
    text: &str,
) -> std::io::Result<usize> {
    let mut skipped = 0;
    match format {
        BlockFormat::Plain => {
            for (ip, _) in blocks {
                writeln!(out, "{ip}")?;
            }
        }
        BlockFormat::PostfixCidr => {
            writeln!(
                out,
                "# addrmunge blocks: a Postfix cidr table (check_client_access cidr:/path)"
            )?;
            for (ip, until) in blocks {
                let len = if ip.is_ipv4() { 32 } else { 128 };
                // cidr tables only take whole-line comments.
                writeln!(out, "# until {}", fmt_time(*until))?;
                writeln!(out, "{ip}/{len}\tREJECT {text}")?;
            }
        }
        BlockFormat::Rbldnsd => {
            // An ip4set dataset; rbldnsd keeps IPv6 in separate ip6trie datasets.
            writeln!(out, "# addrmunge blocks: rbldnsd ip4set data")?;
            writeln!(out, ":127.0.0.2:{text}")?;
            for (ip, _) in blocks {
                if ip.is_ipv4() {
                    writeln!(out, "{ip}")?;
                } else {
                    skipped += 1;
                }
            }
        }
    }
    Ok(skipped)
}

/// Output formats of `addrmunge blocks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockFormat {
    /// One IP per line.
    Plain,
    /// A Postfix `cidr:` table.
    PostfixCidr,
    /// rbldnsd ip4set data.
    Rbldnsd,
}
