//! The benchmarks' HTML pages, shared by the scanner benchmark and
//! benches/load.sh (through `load page` and `load site`): the load page (one
//! paragraph repeated; it compresses 60:1, which flatters every codec) and a
//! page as a site serves it (varied prose and links that compress about 3:1
//! like real HTML). Both carry protected addresses spread evenly, each
//! written twice, in a `mailto:` link and as its text.

/// About `size` bytes of one Lorem ipsum paragraph repeated, with `n`
/// addresses `staffN@DOMAIN`.
pub fn load_page(size: usize, n: usize, domain: &str) -> String {
    let para = "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.</p>\n";
    let paras = vec![para; size / para.len() + 1];
    with_addresses("Load", &paras, n, domain)
}

/// About `size` bytes of HTML with `n` addresses `staffN@DOMAIN`.
pub fn site_page(size: usize, n: usize, domain: &str) -> String {
    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "that",
        "for",
        "it",
        "as",
        "was",
        "with",
        "be",
        "by",
        "on",
        "not",
        "he",
        "this",
        "are",
        "or",
        "his",
        "from",
        "at",
        "which",
        "but",
        "have",
        "an",
        "had",
        "they",
        "you",
        "were",
        "their",
        "one",
        "all",
        "we",
        "can",
        "her",
        "has",
        "there",
        "been",
        "if",
        "more",
        "when",
        "will",
        "would",
        "who",
        "so",
        "no",
        "list",
        "mail",
        "perl",
        "program",
        "regular",
        "expression",
        "module",
        "subroutine",
        "reference",
        "hash",
        "array",
        "scalar",
        "context",
        "closure",
        "iterator",
        "parser",
        "grammar",
        "compiler",
        "debugger",
        "manual",
        "archive",
        "message",
        "thread",
        "reply",
        "subject",
        "author",
        "version",
        "release",
        "patch",
        "bug",
        "report",
        "question",
        "answer",
        "example",
        "function",
        "variable",
        "string",
        "number",
        "file",
        "directory",
        "process",
        "signal",
        "socket",
        "network",
        "server",
        "client",
        "request",
        "response",
        "header",
        "body",
        "page",
        "site",
    ];
    // xorshift: the same page on every run.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let mut paras = Vec::new();
    let mut len = 0;
    while len < size {
        let mut p = String::from("<p>");
        for w in 0..40 + next(60) {
            let word = WORDS[next(WORDS.len())];
            if w % 17 == 16 {
                p.push_str(&format!("<a href=\"/{word}/{}.html\">{word}</a> ", next(9000)));
            } else {
                p.push_str(word);
                p.push(' ');
            }
        }
        p.push_str("</p>\n");
        len += p.len();
        paras.push(p);
    }
    with_addresses("Archive", &paras, n, domain)
}

/// An HTML page titled `title` of `paras`, with `n` addresses
/// `staffN@DOMAIN` spread evenly between them.
fn with_addresses(title: &str, paras: &[impl AsRef<str>], n: usize, domain: &str) -> String {
    let mut page = format!("<!DOCTYPE html><html><head><title>{title}</title></head><body>\n");
    let every = paras.len() / (n + 1) + 1;
    let mut placed = 0;
    for (i, p) in paras.iter().enumerate() {
        page.push_str(p.as_ref());
        if placed < n && (i + 1) % every == 0 {
            page.push_str(&format!(
                "<p>Write to <a href=\"mailto:staff{placed}@{domain}\">staff{placed}@{domain}</a>.</p>\n"
            ));
            placed += 1;
        }
    }
    page.push_str("</body></html>\n");
    page
}
