//! The ways harvesters published in 2024-26 read addresses out of a page,
//! each a small named function from the page to the text a harvester ends
//! up scanning. Every output byte remembers the page byte it came from, so
//! a finding in decoded text is reported where it sits in the page.
//!
//! What the proxy's scanner itself undoes around an `@` (entities, `%40`,
//! `\u0040`, `\x40`) is not repeated here: the scanner reads every decoded
//! text the same way. The scanner reads fullwidth forms too, so the
//! `fullwidth` reading reveals no leak the raw one misses; it is there to
//! find the munged addresses written so, which are told by their plain
//! ASCII shape.

use data_encoding::{BASE64, HEXLOWER_PERMISSIVE};
use regex::Regex;
use std::sync::LazyLock;

use crate::scan::INLINE;

/// One way of reading a page, as `audit --help` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decoding {
    /// The page as served (the scanner undoes entities, `%40`, `\u0040`).
    Raw,
    /// Text content: tags and comments dropped, entities decoded
    /// (`john<span></span>@…`, `john@<!-- -->…`).
    Tags,
    /// `[at]`, `(at)`, ` at `, `{at}`, `arroba`, `[dot]`, ` dot `, `punkt`
    /// and their kin spelled out, after `tags`.
    Words,
    /// Cloudflare's `data-cfemail` / `email-protection#…` XOR.
    Cfemail,
    /// base64 strings, as `atob()` and `document.write(atob(…))` decode them.
    Base64,
    /// ROT13 (`znvygb:`), of the whole page.
    Rot13,
    /// Zero-width characters and soft hyphens removed, after `tags`.
    ZeroWidth,
    /// Fullwidth forms (`＠`, `．`, `ｍｊｄ`) as ASCII, after `tags` (the
    /// proxy munges them; this finds them munged).
    Fullwidth,
    /// All of `tags`, `zero-width`, `fullwidth` and `words` in a row.
    Combined,
}

impl Decoding {
    /// Every decoding, in the order findings are credited (the first that
    /// reveals an address gets it).
    pub const ALL: [Decoding; 9] = [
        Decoding::Raw,
        Decoding::Tags,
        Decoding::Words,
        Decoding::Cfemail,
        Decoding::Base64,
        Decoding::Rot13,
        Decoding::ZeroWidth,
        Decoding::Fullwidth,
        Decoding::Combined,
    ];

    /// Its name in reports and `--help`.
    pub fn name(self) -> &'static str {
        match self {
            Decoding::Raw => "raw",
            Decoding::Tags => "tags",
            Decoding::Words => "words",
            Decoding::Cfemail => "cfemail",
            Decoding::Base64 => "base64",
            Decoding::Rot13 => "rot13",
            Decoding::ZeroWidth => "zero-width",
            Decoding::Fullwidth => "fullwidth",
            Decoding::Combined => "combined",
        }
    }

    /// The texts a harvester reading this way scans.
    pub fn apply(self, page: &str) -> Vec<Text> {
        let text = Text::new(page);
        match self {
            Decoding::Raw => vec![text],
            Decoding::Tags => vec![tags(&text)],
            Decoding::Words => vec![words(&tags(&text))],
            Decoding::Cfemail => cfemail(page),
            Decoding::Base64 => base64(page),
            Decoding::Rot13 => vec![rot13(&text)],
            Decoding::ZeroWidth => vec![zero_width(&tags(&text))],
            Decoding::Fullwidth => vec![fullwidth(&tags(&text))],
            Decoding::Combined => vec![words(&fullwidth(&zero_width(&tags(&text))))],
        }
    }
}

impl std::fmt::Display for Decoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decoded text; each byte knows the page byte it came from.
#[derive(Debug, Clone, Default)]
pub struct Text {
    /// The text.
    pub s: String,
    origin: Vec<usize>,
}

impl Text {
    /// A page as it is.
    pub fn new(page: &str) -> Text {
        Text {
            s: page.to_owned(),
            origin: (0..page.len()).collect(),
        }
    }

    /// Text decoded from the page bytes starting at `at`.
    fn segment(s: String, at: usize) -> Text {
        let origin = vec![at; s.len()];
        Text { s, origin }
    }

    /// Where byte `i` of the text came from in the page.
    pub fn origin(&self, i: usize) -> usize {
        self.origin.get(i).or(self.origin.last()).copied().unwrap_or(0)
    }

    fn push(&mut self, s: &str, origin: usize) {
        self.s.push_str(s);
        self.origin.resize(self.s.len(), origin);
    }

    fn push_char(&mut self, c: char, origin: usize) {
        self.s.push(c);
        self.origin.resize(self.s.len(), origin);
    }

    /// `self` with each char `f` maps replaced (`None` drops it).
    fn map_chars(&self, f: impl Fn(char) -> Option<char>) -> Text {
        let mut out = Text::default();
        for (i, c) in self.s.char_indices() {
            if let Some(c) = f(c) {
                out.push_char(c, self.origin[i]);
            }
        }
        out
    }

    /// `self` with every match of `re` replaced by `with`.
    fn replace(&self, re: &Regex, with: &str) -> Text {
        let mut out = Text::default();
        let mut last = 0;
        for m in re.find_iter(&self.s) {
            self.copy_into(&mut out, last, m.start());
            out.push(with, self.origin[m.start()]);
            last = m.end();
        }
        self.copy_into(&mut out, last, self.s.len());
        out
    }

    fn copy_into(&self, out: &mut Text, from: usize, to: usize) {
        out.s.push_str(&self.s[from..to]);
        out.origin.extend_from_slice(&self.origin[from..to]);
    }
}

/// Named character references a page may spell an address's characters
/// or its disguises with (numeric ones are decoded whatever they are).
const NAMED: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("nbsp", ' '),
    ("commat", '@'),
    ("period", '.'),
    ("lowbar", '_'),
    ("hyphen", '-'),
    ("dash", '-'),
    ("plus", '+'),
    ("lsqb", '['),
    ("rsqb", ']'),
    ("lbrack", '['),
    ("rbrack", ']'),
    ("lbrace", '{'),
    ("rbrace", '}'),
    ("thinsp", '\u{2009}'),
    ("ensp", '\u{2002}'),
    ("emsp", '\u{2003}'),
    ("lpar", '('),
    ("rpar", ')'),
    ("lcub", '{'),
    ("rcub", '}'),
    ("shy", '\u{ad}'),
    ("zwj", '\u{200d}'),
    ("zwnj", '\u{200c}'),
];

/// One character reference at the start of `s` (which starts with `&`):
/// the character and the length of its spelling.
fn entity(s: &str) -> Option<(char, usize)> {
    let end = s[1..].find(';').filter(|&e| e <= 10)? + 1;
    let body = &s[1..end];
    let c = if let Some(num) = body.strip_prefix('#') {
        let n = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        char::from_u32(n)?
    } else {
        NAMED.iter().find(|(n, _)| *n == body)?.1
    };
    Some((c, end + 1))
}

/// Text content: tags, comments and `<script>`/`<style>` markup gone (the
/// code inside stays: harvesters regex it too), entities decoded.
fn tags(t: &Text) -> Text {
    let mut out = Text::default();
    let s = &t.s;
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
        } else if rest.starts_with('<')
            && rest[1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!')
        {
            // Text either side of an inline element runs on, as it shows;
            // any other tag (a block, a feed's <name>) separates words.
            if !INLINE.contains(&tag_name(rest).as_str()) {
                out.push_char(' ', t.origin[i]);
            }
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
        } else if let Some((c, n)) = rest.starts_with('&').then(|| entity(rest)).flatten() {
            out.push_char(c, t.origin[i]);
            i += n;
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push_char(c, t.origin[i]);
            i += c.len_utf8();
        }
    }
    out
}

/// The lowercase name of the tag `s` starts with (`<b>`, `</span >`).
fn tag_name(s: &str) -> String {
    s.trim_start_matches(['<', '/'])
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

static AT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\s*[\[\(\{<]\s*(?:at|arroba|ät|chez|klammeraffe)\s*[\]\)\}>]\s*|\s+(?:at|arroba)\s+|\s*_at_\s*|\s+-at-\s+|\s*@\s+",
    )
    .expect("a valid pattern")
});
static DOT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\s*[\[\(\{<]\s*(?:dot|period|punkt|punto|point)\s*[\]\)\}>]\s*|\s+(?:dot|period|punkt|punto)\s+|\s*_dot_\s*|\s+-dot-\s+|\s+\.\s+",
    )
    .expect("a valid pattern")
});

/// `john [at] plover [dot] com`, `john at plover dot com`, `john(at)plover.com`,
/// `john arroba plover punto com`, `john_at_plover_dot_com`, `john -at- plover
/// -dot- com`, `john @ plover . com` as `john@plover.com`.
fn words(t: &Text) -> Text {
    t.replace(&AT, "@").replace(&DOT, ".")
}

/// Zero-width characters and soft hyphens removed.
fn zero_width(t: &Text) -> Text {
    t.map_chars(|c| (!matches!(c, '\u{200b}'..='\u{200f}' | '\u{2060}' | '\u{feff}' | '\u{ad}')).then_some(c))
}

/// Fullwidth ASCII forms (`＠`, `．`, letters) and the small commercial at as ASCII.
fn fullwidth(t: &Text) -> Text {
    t.map_chars(|c| match c {
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xff01 + 0x21),
        '\u{fe6b}' => Some('@'),
        '\u{3002}' => Some('.'),
        c => Some(c),
    })
}

/// The whole page in ROT13.
fn rot13(t: &Text) -> Text {
    t.map_chars(|c| {
        Some(match c {
            'a'..='m' | 'A'..='M' => (c as u8 + 13) as char,
            'n'..='z' | 'N'..='Z' => (c as u8 - 13) as char,
            c => c,
        })
    })
}

static CFEMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:data-cfemail\s*=\s*["']?|email-protection#)([0-9a-f]{4,256})"#)
        .expect("a valid pattern")
});

/// Cloudflare's e-mail obfuscation: hex bytes, the first the XOR key of the rest.
fn cfemail(page: &str) -> Vec<Text> {
    CFEMAIL
        .captures_iter(page)
        .filter_map(|c| {
            let hex = c.get(1)?;
            let bytes = HEXLOWER_PERMISSIVE.decode(hex.as_str().as_bytes()).ok()?;
            let (key, rest) = bytes.split_first()?;
            let plain: Vec<u8> = rest.iter().map(|b| b ^ key).collect();
            Some(Text::segment(String::from_utf8(plain).ok()?, hex.start()))
        })
        .collect()
}

static BASE64_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/]{16,}={0,2}").expect("a valid pattern"));

/// Every base64 string long enough to hold an address, decoded (with
/// the padding `atob()` does not need restored).
fn base64(page: &str) -> Vec<Text> {
    BASE64_RUN
        .find_iter(page)
        .filter_map(|m| {
            let mut s = m.as_str().trim_end_matches('=').to_owned();
            while s.len() % 4 != 0 {
                s.push('=');
            }
            let bytes = BASE64.decode(s.as_bytes()).ok()?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            text.contains(['@', '\u{ff20}'])
                .then(|| Text::segment(text, m.start()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(d: Decoding, page: &str) -> String {
        d.apply(page)
            .into_iter()
            .map(|t| t.s)
            .collect::<Vec<_>>()
            .join("|")
    }

    #[test]
    fn each_decoding_reveals_its_disguise() {
        let cases = [
            (Decoding::Tags, "john<span></span>@plover.com", "john@plover.com"),
            (Decoding::Tags, "john@<!-- x -->plover.com", "john@plover.com"),
            (
                Decoding::Tags,
                "<name>Dominus</name><email>mjd@plover.com</email>",
                " Dominus  mjd@plover.com ",
            ),
            (Decoding::Tags, "john&#64;plover&period;com", "john@plover.com"),
            (Decoding::Words, "john [at] plover [dot] com", "john@plover.com"),
            (Decoding::Words, "john at plover dot com", "john@plover.com"),
            (Decoding::Words, "john(at)plover.com", "john@plover.com"),
            (Decoding::Words, "john{AT}plover(dot)com", "john@plover.com"),
            (Decoding::Words, "john arroba plover punto com", "john@plover.com"),
            (Decoding::Words, "john [at] plover [punkt] com", "john@plover.com"),
            (Decoding::Words, "john_at_plover_dot_com", "john@plover.com"),
            (Decoding::Words, "john -at- plover -dot- com", "john@plover.com"),
            (Decoding::Words, "john @ plover . com", "john@plover.com"),
            (Decoding::Words, "john&#91;at&#93;plover.com", "john@plover.com"),
            (
                Decoding::Words,
                "john&thinsp;(at)&thinsp;plover.com",
                "john@plover.com",
            ),
            (
                Decoding::Words,
                "john&nbsp;[at]&nbsp;plover.com",
                "john@plover.com",
            ),
            (
                Decoding::Rot13,
                "znvygb:wbua@cybire.pbz",
                "mailto:john@plover.com",
            ),
            (
                Decoding::ZeroWidth,
                "jo\u{200b}hn@plo&#8203;ver.com",
                "john@plover.com",
            ),
            (
                Decoding::Fullwidth,
                "ｊｏｈｎ＠ｐｌｏｖｅｒ．ｃｏｍ",
                "john@plover.com",
            ),
            (
                Decoding::Combined,
                "ｊｏｈｎ [at]<b></b> plo\u{200b}ver [dot] com",
                "john@plover.com",
            ),
            (Decoding::Combined, "<p>mjd</p>plover.com", " mjd plover.com"),
        ];
        for (d, page, want) in cases {
            assert_eq!(one(d, page), want, "{d}: {page}");
        }
    }

    #[test]
    fn cloudflare_and_base64_are_decoded_where_they_sit() {
        // "john@plover.com" XOR 0x42, as Cloudflare writes it.
        let key = 0x42u8;
        let hex: String = std::iter::once(key)
            .chain(b"john@plover.com".iter().map(|b| b ^ key))
            .map(|b| format!("{b:02x}"))
            .collect();
        let page = format!(
            "<a href=\"/cdn-cgi/l/email-protection\" data-cfemail=\"{hex}\">[email&#160;protected]</a>"
        );
        let texts = Decoding::Cfemail.apply(&page);
        assert_eq!(texts[0].s, "john@plover.com");
        assert_eq!(texts[0].origin(3), page.find(&hex).unwrap());
        let b64 = BASE64.encode(b"<a href=\"mailto:john@plover.com\">");
        let page = format!(
            "<script>document.write(atob('{}'))</script>",
            b64.trim_end_matches('=')
        );
        let texts = Decoding::Base64.apply(&page);
        assert_eq!(texts.len(), 1);
        assert!(texts[0].s.contains("john@plover.com"));
        assert_eq!(texts[0].origin(0), page.find("PGE").unwrap());
    }

    #[test]
    fn decoded_bytes_point_back_into_the_page() {
        let page = "<b>x</b> john [at] plover [dot] com";
        let t = &Decoding::Words.apply(page)[0];
        let at = t.s.find('@').unwrap();
        assert_eq!(&page[t.origin(at)..t.origin(at) + 5], " [at]");
        assert_eq!(t.origin(t.s.find("john").unwrap()), page.find("john").unwrap());
    }

    #[test]
    fn random_text_is_not_taken_for_base64() {
        assert_eq!(
            one(Decoding::Base64, "no base64 here at all, /usr/local/lib/x86_64"),
            ""
        );
    }
}
