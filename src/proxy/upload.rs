//! Request bodies on their way to the web server, with a minimum rate: a
//! client that trickles its upload (slowloris on the body) holds a
//! connection and an upstream socket, so after a grace period every
//! `min_rate` bytes buy one more second, as Apache's `RequestReadTimeout
//! body=20,MinRate=500` does. A body that falls behind ends with
//! [`UploadTooSlow`], which the proxy answers with 408. While a body is on
//! its way the web server's answer is not yet due: [`Progress`] tells when
//! the upload last moved, so that `header_timeout` counts from there.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that came too slowly.
#[derive(Debug, thiserror::Error)]
#[error("the request body came too slowly ({received} bytes in {secs} s; upload_timeout / upload_min_rate)")]
pub struct UploadTooSlow {
    /// Bytes received by then.
    pub received: u64,
    /// Seconds it had taken.
    pub secs: u64,
}

/// A request body held to a minimum rate.
pub struct Paced {
    inner: Incoming,
    started: tokio::time::Instant,
    grace: Duration,
    min_rate: u64,
    received: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    progress: tokio::sync::watch::Sender<tokio::time::Instant>,
}

/// When a [`Paced`] body last passed bytes on (or began).
pub struct Progress(tokio::sync::watch::Receiver<tokio::time::Instant>);

impl Progress {
    /// Returns once nothing has moved for `quiet`: the upload ended, or
    /// stalled (the web server stopped reading it), `quiet` ago.
    pub async fn quiet_for(&self, quiet: Duration) {
        loop {
            let last = *self.0.borrow();
            tokio::time::sleep_until(last + quiet).await;
            if *self.0.borrow() == last {
                return;
            }
        }
    }
}

impl Paced {
    /// `inner` must arrive within `grace`, plus one second per `min_rate` bytes.
    pub fn new(inner: Incoming, grace: Duration, min_rate: u64) -> (Paced, Progress) {
        let started = tokio::time::Instant::now();
        let (progress, watch) = tokio::sync::watch::channel(started);
        let paced = Paced {
            inner,
            started,
            grace,
            min_rate: min_rate.max(1),
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(started + grace)),
            progress,
        };
        (paced, Progress(watch))
    }

    fn due(&self) -> tokio::time::Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        self.started + self.grace + earned
    }
}

impl Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.received += d.len() as u64;
                    let due = this.due();
                    this.deadline.as_mut().reset(due);
                    this.progress.send_replace(tokio::time::Instant::now());
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(UploadTooSlow {
                    received: this.received,
                    secs: this.started.elapsed().as_secs(),
                })))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
