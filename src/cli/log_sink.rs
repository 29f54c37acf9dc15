//! Where the daemons' log lines go: standard error. At a terminal every
//! line is written as it comes. Elsewhere (a file, journald's pipe) the
//! proxy's access lines are gathered and written together, at most
//! [`FLUSH_EVERY`] after the first of them or as soon as [`GATHER_BYTES`]
//! are waiting, as nginx's `access_log ... buffer= flush=` does: the
//! proxy writes an access line for every request, and a `write(2)` of
//! one line costs 2-3 µs here, about 4% of a request's CPU. Every other
//! line (startup, reloads, warnings, errors) is written at once, after
//! the access lines gathered before it, so the log keeps its order.
//!
//! What is gathered is written when the daemon stops, and before a
//! panic's message; only a kill that gives no chance (SIGKILL, a crash
//! of the machine) loses it: at most [`FLUSH_EVERY`] of access lines.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;

use addrmunge::proxy::ACCESS_TARGET;

/// The longest an access line waits to be written.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Access lines waiting past this many bytes are written at once.
const GATHER_BYTES: usize = 32 * 1024;

/// Standard error, gathering access lines when `gather` is on.
#[derive(Clone)]
pub(super) struct Sink {
    shared: Arc<Shared>,
    gather: bool,
}

/// What the writers and the flushing thread share.
struct Shared {
    waiting: Mutex<Waiting>,
    /// Wakes the flushing thread when the first line is gathered.
    first: Condvar,
}

/// Lines gathered, not yet written, and where they go.
struct Waiting {
    lines: Vec<u8>,
    out: Box<dyn Write + Send>,
}

impl Waiting {
    /// Writes the lines out; called with the lock held, so no line
    /// overtakes another.
    fn write_out(&mut self) {
        if !self.lines.is_empty() {
            // As tracing-subscriber's own writer: a log that cannot be
            // written is not a reason to stop serving.
            let _ = self.out.write_all(&self.lines);
            self.lines.clear();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Sink {
    /// Standard error; with `gather`, access lines are gathered and a
    /// thread writes them. The guard writes what is waiting when dropped,
    /// and so does a panic before its message.
    pub(super) fn start(gather: bool) -> (Sink, Flush) {
        let mut sink = Sink::to(Box::new(io::stderr()), gather);
        if gather {
            // Without the thread the lines are written one by one.
            sink.gather = sink.spawn_flusher().is_ok();
            let shared = Arc::clone(&sink.shared);
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // try_lock: the panic may have come while the lock was held.
                if let Ok(mut w) = shared.waiting.try_lock() {
                    w.write_out();
                }
                previous(info);
            }));
        }
        let flush = Flush(Arc::clone(&sink.shared));
        (sink, flush)
    }

    /// A sink writing into `out`, with no thread yet.
    fn to(out: Box<dyn Write + Send>, gather: bool) -> Sink {
        let waiting = Waiting {
            lines: Vec::new(),
            out,
        };
        let shared = Shared {
            waiting: Mutex::new(waiting),
            first: Condvar::new(),
        };
        Sink {
            shared: Arc::new(shared),
            gather,
        }
    }

    /// The thread that writes gathered lines.
    fn spawn_flusher(&self) -> io::Result<()> {
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || flush_forever(&shared))
            .map(drop)
    }
}

/// The flushing thread: sleeps until a line is gathered, lets more
/// gather for [`FLUSH_EVERY`], writes them all.
fn flush_forever(shared: &Shared) {
    loop {
        let waiting = shared.lock();
        let waiting = shared
            .first
            .wait_while(waiting, |w| w.lines.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        drop(waiting);
        std::thread::sleep(FLUSH_EVERY);
        shared.lock().write_out();
    }
}

/// Writes what is waiting when dropped: hold it while the daemon runs.
#[must_use = "what is gathered when it is dropped is written then"]
pub(super) struct Flush(Arc<Shared>);

impl Drop for Flush {
    fn drop(&mut self) {
        self.0.lock().write_out();
    }
}

/// One event's writer.
pub(super) struct SinkWriter<'a> {
    shared: &'a Shared,
    gathered: bool,
}

impl Write for SinkWriter<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut waiting = self.shared.lock();
        let was_empty = waiting.lines.is_empty();
        waiting.lines.extend_from_slice(line);
        if !self.gathered || waiting.lines.len() >= GATHER_BYTES {
            waiting.write_out();
        } else if was_empty {
            self.shared.first.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> SinkWriter<'a> {
        SinkWriter {
            shared: &self.shared,
            gathered: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SinkWriter<'a> {
        SinkWriter {
            shared: &self.shared,
            gathered: self.gather && meta.target() == ACCESS_TARGET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// What reached the output, shared with the test.
    #[derive(Clone, Default)]
    struct Out(Arc<Mutex<Vec<u8>>>);

    impl Write for Out {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Out {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// Runs `f` with a text subscriber writing into `sink`.
    fn logging(sink: &Sink, f: impl FnOnce()) {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
    }

    #[test]
    fn access_lines_wait_and_the_next_other_line_takes_them_along_in_order() {
        let out = Out::default();
        let sink = Sink::to(Box::new(out.clone()), true);
        logging(&sink, || {
            tracing::info!(target: ACCESS_TARGET, path = "/1");
            tracing::info!(target: ACCESS_TARGET, path = "/2");
        });
        assert_eq!(out.text(), "", "access lines are gathered");
        logging(&sink, || tracing::warn!("a warning"));
        let text = out.text();
        let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("{s} missing in {text}"));
        assert!(at("/1") < at("/2") && at("/2") < at("a warning"), "{text}");
    }

    #[test]
    fn only_access_lines_wait_and_only_when_gathering() {
        let out = Out::default();
        let sink = Sink::to(Box::new(out.clone()), true);
        logging(&sink, || tracing::info!("listening"));
        assert!(out.text().contains("listening"));
        let out = Out::default();
        let sink = Sink::to(Box::new(out.clone()), false);
        logging(&sink, || tracing::info!(target: ACCESS_TARGET, path = "/1"));
        assert!(out.text().contains("/1"), "at a terminal every line goes at once");
    }

    #[test]
    fn a_full_gathering_is_written_at_once_and_the_rest_on_drop() {
        let out = Out::default();
        let sink = Sink::to(Box::new(out.clone()), true);
        let long = "x".repeat(1000);
        let lines = |from: usize, to: usize| {
            logging(&sink, || {
                for i in from..to {
                    tracing::info!(target: ACCESS_TARGET, "{i:02}{long}");
                }
            })
        };
        lines(0, 10);
        assert_eq!(out.text(), "");
        lines(10, 40);
        let written = out.text().lines().count();
        assert!((32..40).contains(&written), "{written} of 40 lines written");
        drop(Flush(Arc::clone(&sink.shared)));
        let text = out.text();
        assert_eq!(text.lines().count(), 40);
        assert!(text.lines().last().is_some_and(|l| l.contains("39x")), "{text}");
    }

    #[test]
    fn the_thread_writes_gathered_lines_soon() {
        let out = Out::default();
        let sink = Sink::to(Box::new(out.clone()), true);
        sink.spawn_flusher().unwrap();
        logging(&sink, || tracing::info!(target: ACCESS_TARGET, path = "/soon"));
        let start = Instant::now();
        while !out.text().contains("/soon") {
            assert!(start.elapsed() < Duration::from_secs(10), "never written");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
