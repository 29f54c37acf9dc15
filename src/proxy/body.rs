//! The response bodies: [`Streamed`] runs an upstream body through the
//! rewriting pipeline (or passes it) with an idle timeout; [`Logged`]
//! counts what reaches the visitor and writes the access line and the
//! visit-log record when the body is done.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::body::{Body, Frame, Incoming};

use super::harvest::VisitLog;
use super::{BoxError, ProxyBody, metrics};
use crate::conns::Busy;
use crate::day::Day;
use crate::rewrite::Pipeline;
use crate::store::{Harvester, VisitEvent, now_unix};

/// How long the web server may keep the rest of a body waiting before what
/// the compressor holds goes out anyway: a page still streams, and the
/// short waits of a page arriving in pieces do not cut it where the timing
/// falls (which would keep gzip from reusing those stretches, see
/// `rewrite/gzip.rs`).
const FLUSH_AFTER: Duration = Duration::from_millis(20);

/// An upstream body on its way to the client: rewritten through a
/// [`Pipeline`] or passed through, with an idle timeout. An upstream error
/// becomes a body error, which makes hyper reset the client's stream
/// instead of ending it as if complete.
pub(super) struct Streamed {
    inner: Incoming,
    pipeline: Option<Pipeline>,
    rewriting: bool,
    idle: Duration,
    /// When the web server will have been silent too long.
    idle_deadline: tokio::time::Instant,
    /// When what the compressor holds goes out if the web server stays
    /// silent until then.
    flush_due: Option<tokio::time::Instant>,
    /// Wakes for `idle_deadline` or `flush_due`, whichever comes first.
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Every response's addresses (the metric), and this one's.
    munged: Arc<AtomicU64>,
    response_munged: Arc<AtomicU64>,
    /// This response's addresses already added to `munged`.
    counted: u64,
    /// Responses cut off for expanding too much (the metric).
    expansion_cut: Arc<AtomicU64>,
    /// Responses whose declared UTF-16 was false (the metric).
    charset_mismatch: Arc<AtomicU64>,
    done: bool,
}

impl Streamed {
    pub(super) fn new(
        inner: Incoming,
        pipeline: Option<Pipeline>,
        idle: Duration,
        metrics: &metrics::Metrics,
        response_munged: Arc<AtomicU64>,
    ) -> Streamed {
        Streamed {
            inner,
            rewriting: pipeline.is_some(),
            pipeline,
            idle,
            idle_deadline: tokio::time::Instant::now() + idle,
            flush_due: None,
            sleep: Box::pin(tokio::time::sleep(idle)),
            munged: Arc::clone(&metrics.munged),
            response_munged,
            counted: 0,
            expansion_cut: Arc::clone(&metrics.expansion_cut),
            charset_mismatch: Arc::clone(&metrics.charset_mismatch),
            done: false,
        }
    }
}

/// The visit-log record a request leaves when its response body ends.
pub(super) struct VisitNote {
    pub(super) log: Arc<VisitLog>,
    pub(super) day: Day,
    pub(super) visitor: String,
    pub(super) harvester: Option<Harvester>,
}

/// The target of the access lines: the log sink writes these, and only
/// these, in batches.
pub const ACCESS_TARGET: &str = "access";

/// What the access log says about one request, written when its response
/// body is done (or dropped), so bytes and addresses munged are known.
pub(super) struct AccessLine {
    /// The visitor's IP address, as text.
    pub(super) visitor: String,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) status: u16,
    pub(super) user_agent: String,
    pub(super) started: Instant,
    pub(super) munged: Arc<AtomicU64>,
    /// The connection is busy for as long as this line is not written.
    pub(super) _busy: Busy,
    pub(super) visit: Option<VisitNote>,
}

/// A response body that counts what it sends and logs the access line at its end.
pub(super) struct Logged {
    pub(super) inner: ProxyBody,
    pub(super) line: AccessLine,
    pub(super) bytes: u64,
    /// The body reached its end.
    pub(super) complete: bool,
    /// The body failed (upstream cut, bad coding, idle, too large): the
    /// visitor got less than the whole page, whatever the stream's state says.
    pub(super) failed: bool,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let l = &mut self.line;
        let munged = l.munged.load(Ordering::Relaxed);
        tracing::info!(
            target: ACCESS_TARGET,
            visitor = %l.visitor,
            method = %l.method,
            path = %l.path,
            status = l.status,
            bytes = self.bytes,
            munged,
            ms = l.started.elapsed().as_millis() as u64,
            complete = !self.failed && (self.complete || self.inner.is_end_stream()),
            user_agent = %l.user_agent,
        );
        // After the line: the visit takes its strings instead of copies.
        if let Some(v) = l.visit.take() {
            v.log.record(VisitEvent {
                time: now_unix(),
                day: v.day,
                visitor: v.visitor,
                user_agent: std::mem::take(&mut l.user_agent),
                path: std::mem::take(&mut l.path),
                munged,
                harvester: v.harvester,
            });
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.failed = true,
            Poll::Ready(None) => this.complete = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Streamed {
    /// The pipeline's next piece as a frame; counts what it munged so far,
    /// so a body cut off midway is logged with the addresses that did reach
    /// the visitor. `None`: it needs more upstream input.
    fn next_piece(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        let p = self.pipeline.as_mut()?;
        loop {
            let piece = p.next_piece();
            if p.take_charset_mismatch() {
                self.charset_mismatch.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("a body declared UTF-16 is not; scanned its bytes as they are");
            }
            // Added, not stored: the response's headers may have had some.
            let more = p.munged() - self.counted;
            self.munged.fetch_add(more, Ordering::Relaxed);
            self.response_munged.fetch_add(more, Ordering::Relaxed);
            self.counted += more;
            match piece {
                Err(e) => {
                    self.done = true;
                    if e.get_ref().is_some_and(|e| e.is::<crate::rewrite::Expanded>()) {
                        self.expansion_cut.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "cut off a response body");
                    }
                    return Some(Err(Box::new(e)));
                }
                Ok(Some(out)) if out.is_empty() && !p.is_finished() => continue,
                Ok(Some(out)) => {
                    self.done = p.is_finished();
                    return (!out.is_empty()).then(|| Ok(Frame::data(out)));
                }
                Ok(None) => {
                    self.done = p.is_finished();
                    return None;
                }
            }
        }
    }

    /// What the pipeline's compressor holds, as a frame, if anything.
    fn flush(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        let p = self.pipeline.as_mut()?;
        match p.flush() {
            Ok(out) if out.is_empty() => None,
            Ok(out) => Some(Ok(Frame::data(out))),
            Err(e) => {
                self.done = true;
                Some(Err(Box::new(e)))
            }
        }
    }
}

impl Body for Streamed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            // What the pipeline holds goes first, one piece per poll.
            if let Some(frame) = this.next_piece() {
                return Poll::Ready(Some(frame));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    this.idle_deadline = tokio::time::Instant::now() + this.idle;
                    this.flush_due = None;
                    this.sleep.as_mut().reset(this.idle_deadline);
                    let Some(p) = this.pipeline.as_mut() else {
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    // Trailers describe the original body; they are dropped.
                    if let Ok(data) = frame.into_data() {
                        // The last frame (known by Content-Length) ends the
                        // pipeline at once: one frame out, not a tiny extra one.
                        p.input(data, this.inner.is_end_stream());
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(None) => match this.pipeline.as_mut() {
                    Some(p) => p.input(Bytes::new(), true),
                    None => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                },
                Poll::Pending => {
                    if this.flush_due.is_none() && this.pipeline.as_ref().is_some_and(Pipeline::holds) {
                        let due = tokio::time::Instant::now() + FLUSH_AFTER;
                        this.flush_due = Some(due);
                        this.sleep.as_mut().reset(due.min(this.idle_deadline));
                    }
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        if this.flush_due.take().is_some() {
                            this.sleep.as_mut().reset(this.idle_deadline);
                            if let Some(frame) = this.flush() {
                                return Poll::Ready(Some(frame));
                            }
                            continue;
                        }
                        this.done = true;
                        return Poll::Ready(Some(Err("the web server stopped sending the body".into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (!self.rewriting && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.rewriting {
            hyper::body::SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}
