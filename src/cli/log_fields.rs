//! The text log's fields, written as tracing-subscriber's default writes
//! them without colours (`name=value`, a space between), for a fifth of
//! its cost per field. The proxy writes an access line of nine fields for
//! every request, and the default's way (each name and `=` through a
//! style wrapper, three nested formats a field) made that line 6% of a
//! request's instructions (`benches/instructions.sh`). Numbers and truth
//! values are written without the formatting machinery. Messages, errors
//! and raw identifiers (`r#type`) are left to the default itself.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// Makes a [`PlainVisitor`] for each event; for `fmt().fmt_fields(..)`.
pub(super) struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> PlainVisitor<'a> {
        PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's fields.
pub(super) struct PlainVisitor<'a> {
    writer: Writer<'a>,
    /// No field written yet: the next one needs no space before it.
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Whether the default writes this field its own way.
    fn special(name: &str) -> bool {
        name == "message" || name.starts_with("r#")
    }

    /// Metadata of `log` records, which the default writes elsewhere and
    /// skips among the fields.
    fn skipped(name: &str) -> bool {
        name.starts_with("log.")
    }

    /// Lets the default write the field, in its place among the others.
    fn delegate(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut default);
        self.result = default.finish();
        self.is_empty = false;
    }

    /// `name=text` for a number or a truth value whose `Debug` is `text`;
    /// the default's way (through `record_debug`) for the fields it
    /// writes itself or skips.
    fn number(&mut self, field: &Field, text: &str, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_ok() && !Self::skipped(name) && !Self::special(name) {
            self.field(name, |w| w.write_str(text));
        } else {
            self.record_debug(field, value);
        }
    }

    /// `name=value`.
    fn pair(&mut self, name: &str, value: &dyn fmt::Debug) {
        self.field(name, |w| write!(w, "{value:?}"));
    }

    /// `name=`, then what `value` writes.
    fn field(&mut self, name: &str, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if !self.is_empty {
            self.result = self.writer.write_char(' ');
        }
        self.is_empty = false;
        self.result = self.result.and_then(|()| {
            self.writer.write_str(name)?;
            self.writer.write_char('=')?;
            value(&mut self.writer)
        });
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        match field.name() {
            name if Self::skipped(name) => {}
            name if Self::special(name) => self.delegate(|d| d.record_str(field, value)),
            name => self.pair(name, &value),
        }
    }

    // Numbers and truth values as `Debug` writes them (four numbers and
    // one `bool` in every access line), without the formatting machinery.
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, itoa::Buffer::new().format(value), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, itoa::Buffer::new().format(value), &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, if value { "true" } else { "false" }, &value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_ok() && !Self::skipped(field.name()) {
            self.delegate(|d| d.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        match field.name() {
            name if Self::skipped(name) => {}
            name if Self::special(name) => self.delegate(|d| d.record_debug(field, value)),
            name => self.pair(name, value),
        }
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("could not open the store")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Every kind of field the code base logs, and the default's special cases.
    fn events() {
        let ip: std::net::IpAddr = "2001:db8::1".parse().unwrap();
        let path = String::from("/a b/\"q\".html");
        tracing::info!(
            target: "access",
            visitor = %ip,
            method = %hyper::Method::GET,
            path = %path,
            status = 200u16,
            bytes = 46548u64,
            ms = 0u64,
            complete = true,
            user_agent = %"",
        );
        tracing::warn!(
            open_files = 20000usize,
            limit = -1i64,
            above = 7i64,
            r#loop = 3u64,
            done = false,
            ratio = 0.5f64,
            "the limit is {}",
            3
        );
        tracing::info!(message = "as a field", r#type = "raw", quoted = "a \"b\"\n", dbg = ?vec![1, 2]);
        let e = Outer(std::io::Error::other("disk full"));
        tracing::error!(error = &e as &(dyn std::error::Error + 'static), "failed");
        tracing::info!("only a message");
        tracing::info!(name = "only a field");
    }

    fn written(plain: bool) -> String {
        let out = Captured::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(out.clone());
        if plain {
            tracing::subscriber::with_default(builder.fmt_fields(PlainFields).finish(), events);
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn fields_are_written_as_the_default_writes_them() {
        let (plain, default) = (written(true), written(false));
        assert_eq!(plain, default);
        assert_eq!(plain.lines().count(), 6, "{plain}");
        assert!(
            plain.contains("visitor=2001:db8::1 method=GET path=/a b/\"q\".html status=200"),
            "{plain}"
        );
        assert!(
            plain.contains("could not open the store error.sources=[disk full]"),
            "{plain}"
        );
    }
}
