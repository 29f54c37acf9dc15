//! [`TypePattern`]: an entry of `[proxy] rewrite_types`, a media type the
//! proxy rewrites, exactly or by wildcard.

use super::values::{Problem, problem};

/// The stream whose every event must go out at once: no wildcard takes it
/// (the scanner holds back a chunk's last bytes until the next arrives), only
/// an entry naming it.
const EVENT_STREAM: &str = "text/event-stream";

/// A media type to rewrite: `text/html`, any subtype of a type
/// (`text/*`), or any type with a structured-syntax suffix (`*/*+xml`,
/// which takes RSS, Atom and SVG; `*/*+json`, JSON-LD and manifests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    /// This type and subtype.
    Exact(String),
    /// Every subtype of this type.
    Subtypes(String),
    /// Every type whose subtype ends in this suffix (with its `+`).
    Suffix(String),
}

impl TypePattern {
    /// Parses one `rewrite_types` entry (`key` names it in errors).
    pub fn parse(key: &str, entry: &str) -> Result<TypePattern, Problem> {
        let t = entry.trim().to_ascii_lowercase();
        let bad = |why: &str| {
            problem(
                key,
                format!(
                    "{entry:?} {why}; write a media type without parameters (\"text/html\"), every subtype of a type (\"text/*\") or every type with a suffix (\"*/*+xml\")"
                ),
            )
        };
        let Some((kind, sub)) = t.split_once('/') else {
            return Err(bad("has no '/'"));
        };
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        match (kind, sub) {
            ("*", s) if s.starts_with("*+") && token(&s[2..]) => Ok(TypePattern::Suffix(s[1..].to_owned())),
            (k, "*") if token(k) => Ok(TypePattern::Subtypes(k.to_owned())),
            (k, s) if token(k) && token(s) => Ok(TypePattern::Exact(t)),
            _ if t.contains(';') => Err(bad("has parameters")),
            _ => Err(bad("is not a media type")),
        }
    }

    /// Whether a response whose type is `essence` (without parameters, in
    /// any case) is rewritten by this entry.
    pub fn matches(&self, essence: &str) -> bool {
        let Some((kind, sub)) = essence.split_once('/') else {
            return false;
        };
        match self {
            TypePattern::Exact(t) => t.eq_ignore_ascii_case(essence),
            _ if essence.eq_ignore_ascii_case(EVENT_STREAM) => false,
            TypePattern::Subtypes(k) => k.eq_ignore_ascii_case(kind),
            TypePattern::Suffix(s) => {
                // Bytes, not str: a slice there could split a character.
                let sub = sub.as_bytes();
                sub.len() >= s.len() && sub[sub.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
        }
    }

    /// Whether any of `patterns` takes `essence`.
    pub fn any(patterns: &[TypePattern], essence: &str) -> bool {
        patterns.iter().any(|p| p.matches(essence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TypePattern, String> {
        TypePattern::parse("proxy.rewrite_types", s).map_err(|p| p.message)
    }

    #[test]
    fn entries_match_as_written() {
        let html = parse(" Text/HTML ").unwrap();
        assert!(html.matches("text/html") && html.matches("TEXT/Html") && !html.matches("text/plain"));
        let text = parse("text/*").unwrap();
        for t in ["text/plain", "text/vcard", "text/calendar", "text/markdown"] {
            assert!(text.matches(t), "{t}");
        }
        assert!(!text.matches("textual/plain") && !text.matches("application/json"));
        let xml = parse("*/*+xml").unwrap();
        for t in ["image/svg+xml", "application/rss+xml", "application/atom+xml"] {
            assert!(xml.matches(t), "{t}");
        }
        assert!(xml.matches("image/SVG+XML"));
        assert!(!xml.matches("application/xml") && !xml.matches("application/ld+json"));
        assert!(!xml.matches("xml") && !text.matches("text") && !xml.matches("image/é+xm"));
    }

    #[test]
    fn wildcards_never_take_an_event_stream() {
        assert!(!parse("text/*").unwrap().matches(EVENT_STREAM));
        assert!(parse("text/event-stream").unwrap().matches(EVENT_STREAM));
    }

    #[test]
    fn bad_entries_say_what_to_write() {
        for (entry, says) in [
            ("html", "has no '/'"),
            ("text/html; charset=utf-8", "has parameters"),
            ("*/html", "is not a media type"),
            ("text/*html", "is not a media type"),
            ("*/*", "is not a media type"),
            ("/", "is not a media type"),
        ] {
            let e = parse(entry).unwrap_err();
            assert!(e.contains(says) && e.contains("\"text/*\""), "{entry}: {e}");
        }
    }
}
