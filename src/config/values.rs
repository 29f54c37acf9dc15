//! The small value types and parsers the sections share: spans (`7d`),
//! networks, one-line protocol texts, timeouts in range, and the
//! [`Problem`] a section constructor reports.

use std::time::Duration;

use ipnet::IpNet;

/// What is wrong with one key, before the file's path is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, e.g. `protect[1].domain`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A [`Problem`] with `key`.
pub fn problem(key: impl Into<String>, message: impl std::fmt::Display) -> Problem {
    Problem {
        key: key.into(),
        message: message.to_string(),
    }
}

/// Parses `192.0.2.0/24` or a bare address (as its /32 or /128).
pub fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Parses every entry of `list` as a network, or names the first that is none.
pub fn nets(key: &str, list: &[String], example: &str) -> Result<Vec<IpNet>, Problem> {
    list.iter()
        .map(|n| {
            parse_net(n)
                .ok_or_else(|| problem(key, format!("'{n}' is not an address or network like {example}")))
        })
        .collect()
}

/// Parses every entry of `list` as a listening address (`0.0.0.0:80`,
/// `[::]:80`), or names the first that is none; `port` is the example's.
pub fn listen_addrs(key: &str, list: &[String], port: u16) -> Result<Vec<std::net::SocketAddr>, Problem> {
    list.iter()
        .map(|l| {
            l.parse().map_err(|_| {
                problem(
                    key,
                    format!("'{l}' is not an address; write e.g. \"127.0.0.1:{port}\" or \"[::]:{port}\""),
                )
            })
        })
        .collect()
}

/// Parses `7d`, `12h`, `30m`, `45s` into seconds.
pub fn parse_span(text: &str) -> Option<u64> {
    let t = text.trim();
    // The unit is the last character, which need not be one byte.
    let unit = t.chars().next_back()?;
    let n: u64 = t[..t.len() - unit.len_utf8()].parse().ok()?;
    let mult = match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        's' => 1,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&s| s > 0)
}

/// Text that goes into a protocol answer as is: not empty, and no line
/// break or other control character that could end the answer early.
pub fn is_one_line(text: &str) -> bool {
    !text.trim().is_empty() && !text.chars().any(char::is_control)
}

/// `text` if it is one line (see [`is_one_line`]).
pub fn one_line(key: &str, text: &str) -> Result<String, Problem> {
    if is_one_line(text) {
        Ok(text.to_owned())
    } else {
        Err(problem(key, "must be one non-empty line of text"))
    }
}

/// The longest timeout accepted: a year. Longer ones overflow clocks,
/// and no connection should wait that long anyway.
const MAX_TIMEOUT: u64 = 365 * 86_400;

/// A timeout in seconds, in range: a zero timeout would time everything
/// out at once (every request a 504).
pub fn timeout(key: &str, secs: u64) -> Result<Duration, Problem> {
    if (1..=MAX_TIMEOUT).contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err(problem(
            key,
            format!("{secs} is not a timeout; give 1 to {MAX_TIMEOUT} seconds"),
        ))
    }
}

/// A cap of at least `min`: a zero cap would admit nothing.
pub fn at_least<T: Copy + Into<u64>>(key: &str, value: T, min: u64) -> Result<T, Problem> {
    let v: u64 = value.into();
    if v < min {
        Err(problem(
            key,
            format!("{v} is too small; it must be at least {min}"),
        ))
    } else {
        Ok(value)
    }
}

/// [`at_least`] for sizes and counts.
pub fn at_least_usize(key: &str, value: usize, min: u64) -> Result<usize, Problem> {
    at_least(key, value as u64, min).map(|_| value)
}

/// A budget that is 0 (off) or at least `min`: a smaller one would keep
/// nothing worth its cost.
pub fn off_or_at_least(key: &str, value: usize, min: u64) -> Result<usize, Problem> {
    if value == 0 || value as u64 >= min {
        Ok(value)
    } else {
        Err(problem(
            key,
            format!("{value} is too small; give 0 (off) or at least {min}"),
        ))
    }
}

/// An optional `host:port` listener for metrics; empty is unset.
pub fn admin_listen(key: &str, text: Option<&str>) -> Result<Option<std::net::SocketAddr>, Problem> {
    match text.filter(|a| !a.is_empty()) {
        None => Ok(None),
        Some(a) => a.parse().map(Some).map_err(|_| {
            problem(
                key,
                format!("'{a}' is not an address; write e.g. \"127.0.0.1:9100\""),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_off_or_large_enough() {
        assert_eq!(off_or_at_least("k", 0, 10).unwrap(), 0);
        assert_eq!(off_or_at_least("k", 10, 10).unwrap(), 10);
        let e = off_or_at_least("proxy.gzip_cache_bytes", 5, 10).unwrap_err();
        assert_eq!(e.key, "proxy.gzip_cache_bytes");
        assert!(e.message.contains("0 (off) or at least 10"), "{}", e.message);
    }

    #[test]
    fn spans_with_any_last_character_parse_or_fail_cleanly() {
        assert_eq!(parse_span(" 7d "), Some(7 * 86_400));
        assert_eq!(parse_span("45s"), Some(45));
        // Found by the config fuzzer: a multi-byte last character panicked.
        for bad in ["180\u{fffd}", "\u{e9}", "d", "", "0s", "7w", "-1d"] {
            assert_eq!(parse_span(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn limits_name_the_key_and_the_range() {
        assert_eq!(timeout("k", 5), Ok(Duration::from_secs(5)));
        assert!(timeout("k", 0).unwrap_err().message.contains("1 to"));
        assert!(timeout("k", u64::MAX).is_err());
        let p = at_least("k", 1u64, 2).unwrap_err();
        assert_eq!((p.key.as_str(), p.message.contains("at least 2")), ("k", true));
    }
}
