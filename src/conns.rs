//! Connection slots of a daemon's listeners, and the deadlines that keep a
//! hostile or broken client from holding one.
//!
//! [`Conns`] admits at most `max` connections at once. When a new one comes
//! at the cap, the connection idle the longest is told to close to make
//! room (as nginx reuses keep-alive connections), so silent sockets cannot
//! lock real clients out; when every connection is busy, new ones wait in
//! the listen backlog. Each admitted [`Conn`] knows how many requests it
//! has in progress, when it became idle, when it first read after that,
//! and since when a write waits, which is all [`Conn::expired`] needs to
//! close a connection that sends its request head too slowly (slowloris),
//! idles too long between requests, or does not read its response.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

// tokio's clock: the same as std's, but tests can pause and advance it.
use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The connections of one daemon.
#[derive(Debug)]
pub struct Conns {
    max: usize,
    table: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    freed: Notify,
    epoch: Instant,
    /// Counters, for the metrics.
    pub counts: Counts,
}

/// Why connections were closed by us, and how many are open.
#[derive(Debug, Default)]
pub struct Counts {
    /// Idle connections closed to make room for a new one at the cap.
    pub evicted: AtomicU64,
    /// Connections closed for not sending a whole request head in time.
    pub request_timeouts: AtomicU64,
    /// Connections closed after idling too long between requests.
    pub idle_closed: AtomicU64,
    /// Connections closed because the client stopped reading its response.
    pub send_timeouts: AtomicU64,
    /// Connections that had to wait for a free slot.
    pub waited: AtomicU64,
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    conns: Arc<Conns>,
    id: u64,
    /// What the connection's deadlines and its owner share.
    pub conn: Arc<Conn>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.lock().remove(&self.id);
        self.conns.freed.notify_one();
    }
}

/// The state of one connection.
#[derive(Debug)]
pub struct Conn {
    epoch: Instant,
    /// Requests in progress (a response body still being sent counts).
    busy: AtomicUsize,
    /// When it last became idle (milliseconds since the epoch, plus one).
    idle_since: AtomicU64,
    /// When it first read after becoming idle; 0: not yet.
    read_since_idle: AtomicU64,
    /// Since when a write waits for the client; 0: none waits.
    write_waits_since: AtomicU64,
    closing: AtomicBool,
    close: Notify,
}

/// Why [`Conn::expired`] ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Closed to make room for a new connection at the cap.
    Evicted,
    /// A request head did not arrive in full in time.
    RequestHead,
    /// Idle between requests for too long.
    Idle,
    /// The client did not read its response for too long.
    SendStalled,
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expiry::Evicted => {
                "closed to make room: max_connections reached and this connection was the idlest"
            }
            Expiry::RequestHead => "the request head did not arrive in time (request_timeout)",
            Expiry::Idle => "idle too long between requests (keepalive_timeout)",
            Expiry::SendStalled => "the client stopped reading the response (send_timeout)",
        })
    }
}

/// The deadlines [`Conn::expired`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From the first byte of a request head to its end.
    pub request: Duration,
    /// Between requests, with nothing read.
    pub keepalive: Duration,
    /// A write waiting for the client to read.
    pub send: Duration,
}

impl Conns {
    /// Room for `max` connections (at least one).
    pub fn new(max: usize) -> Arc<Conns> {
        Arc::new(Conns {
            max: max.max(1),
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            freed: Notify::new(),
            epoch: Instant::now(),
            counts: Counts::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection closed for `why` (evictions are counted when
    /// they are asked for, in [`Conns::admit`]).
    pub fn count(&self, why: Expiry) {
        let counter = match why {
            Expiry::Evicted => return,
            Expiry::RequestHead => &self.counts.request_timeouts,
            Expiry::Idle => &self.counts.idle_closed,
            Expiry::SendStalled => &self.counts.send_timeouts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().len()
    }

    /// A slot for a connection just accepted. At the cap, the connection
    /// idle the longest is told to close and this waits for it (or for any
    /// other to end when none is idle).
    pub async fn admit(self: &Arc<Self>) -> Slot {
        let mut waited = false;
        loop {
            let freed = self.freed.notified();
            {
                let mut table = self.lock();
                if table.len() < self.max {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let conn = Arc::new(Conn::new(self.epoch));
                    table.insert(id, Arc::clone(&conn));
                    return Slot {
                        conns: Arc::clone(self),
                        id,
                        conn,
                    };
                }
                let idlest = table
                    .values()
                    .filter(|c| c.busy.load(Ordering::Relaxed) == 0 && !c.closing.load(Ordering::Relaxed))
                    .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
                if let Some(c) = idlest {
                    c.closing.store(true, Ordering::Relaxed);
                    c.close.notify_one();
                    self.counts.evicted.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !waited {
                waited = true;
                self.counts.waited.fetch_add(1, Ordering::Relaxed);
            }
            freed.await;
        }
    }
}

/// A request in progress on a connection; dropping it ends the request.
#[derive(Debug)]
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        let c = &self.0;
        if c.busy.fetch_sub(1, Ordering::Relaxed) == 1 {
            c.idle_since.store(c.now(), Ordering::Relaxed);
            c.read_since_idle.store(0, Ordering::Relaxed);
        }
    }
}

impl Conn {
    fn new(epoch: Instant) -> Conn {
        let c = Conn {
            epoch,
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            read_since_idle: AtomicU64::new(0),
            write_waits_since: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        };
        c.idle_since.store(c.now(), Ordering::Relaxed);
        c
    }

    /// Milliseconds since the epoch, plus one (0 means "never").
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// A request starts; it ends when the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// Resolves when the connection was told to close to make room.
    pub async fn evicted(&self) {
        while !self.closing.load(Ordering::Relaxed) {
            self.close.notified().await;
        }
    }

    /// Resolves when the connection should be closed: told to make room,
    /// or past one of `d`'s deadlines. Sleeps until the next deadline that
    /// could pass, so an idle connection costs one timer.
    pub async fn expired(&self, d: &Deadlines) -> Expiry {
        let ms = |d: Duration| d.as_millis() as u64;
        loop {
            if self.closing.load(Ordering::Relaxed) {
                return Expiry::Evicted;
            }
            let now = self.now();
            let next = if self.busy.load(Ordering::Relaxed) == 0 {
                match self.read_since_idle.load(Ordering::Relaxed) {
                    0 => {
                        let at = self.idle_since.load(Ordering::Relaxed) + ms(d.keepalive);
                        if now >= at {
                            return Expiry::Idle;
                        }
                        at
                    }
                    first => {
                        let at = first + ms(d.request);
                        if now >= at {
                            return Expiry::RequestHead;
                        }
                        at
                    }
                }
            } else {
                match self.write_waits_since.load(Ordering::Relaxed) {
                    // Busy and writing: look again in a second.
                    0 => now + 1000,
                    since => {
                        let at = since + ms(d.send);
                        if now >= at {
                            return Expiry::SendStalled;
                        }
                        at.min(now + 1000)
                    }
                }
            };
            // Woken early when the state changes enough to matter: on
            // eviction. Other changes only move deadlines later, except a
            // first read while idle, which starts a shorter one: check at
            // least once a second.
            let wait = Duration::from_millis((next - now).min(1000));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.close.notified() => {}
            }
        }
    }

    fn read(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.read_since_idle.load(Ordering::Relaxed) == 0 {
            self.read_since_idle.store(self.now(), Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        if self.write_waits_since.load(Ordering::Relaxed) != 0 {
            self.write_waits_since.store(0, Ordering::Relaxed);
        }
    }

    fn write_waits(&self) {
        if self.write_waits_since.load(Ordering::Relaxed) == 0 {
            self.write_waits_since.store(self.now(), Ordering::Relaxed);
        }
    }
}

/// A connection's socket, telling its [`Conn`] when it reads and when a
/// write has to wait.
#[derive(Debug)]
pub struct Watched<T> {
    io: T,
    conn: Arc<Conn>,
}

impl<T> Watched<T> {
    /// Watches `io` for `conn`.
    pub fn new(io: T, conn: Arc<Conn>) -> Watched<T> {
        Watched { io, conn }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    fn noted<R>(&self, polled: Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        match &polled {
            Poll::Pending => self.conn.write_waits(),
            Poll::Ready(_) => self.conn.wrote(),
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.noted(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.noted(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.noted(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Raises this process's open-file limit to its hard limit (as nginx's
/// `worker_rlimit_nofile` does), and returns the limit: what connections,
/// upstream sockets and files must share.
pub fn raise_open_files() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if let (Some(cur), Some(max)) = (lim.current, lim.maximum)
        && cur < max
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        )
        .is_ok()
    {
        return max;
    }
    lim.current.unwrap_or(u64::MAX)
}

/// File descriptors kept back from the connection budget: listeners, the
/// store and its WAL, logs, the admin listener.
pub const RESERVED_FDS: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_idlest_connection_makes_room() {
        let conns = Conns::new(2);
        let a = conns.admit().await;
        tokio::time::advance(Duration::from_millis(10)).await;
        let b = conns.admit().await;
        let busy = b.conn.begin();
        // Full: the idle one (a) is told to close, not the busy one (b).
        let waiting = tokio::spawn({
            let conns = Arc::clone(&conns);
            async move { conns.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(1), a.conn.evicted())
            .await
            .unwrap();
        assert_eq!(conns.counts.evicted.load(Ordering::Relaxed), 1);
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conns.open(), 2);
        // All busy: the next one waits for a slot instead of evicting.
        let _busy_c = c.conn.begin();
        let next = tokio::spawn({
            let conns = Arc::clone(&conns);
            async move { conns.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!next.is_finished());
        assert_eq!(conns.counts.evicted.load(Ordering::Relaxed), 1);
        drop(busy);
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), next)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_close_slow_heads_idle_and_unread_connections() {
        let d = Deadlines {
            request: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
            send: Duration::from_secs(30),
        };
        let conns = Conns::new(10);
        let idle = conns.admit().await;
        let t = tokio::time::Instant::now();
        assert_eq!(idle.conn.expired(&d).await, Expiry::Idle);
        assert!(t.elapsed() >= d.keepalive);

        let slow = conns.admit().await;
        slow.conn.read(); // the first byte of a head, then nothing
        let t = tokio::time::Instant::now();
        assert_eq!(slow.conn.expired(&d).await, Expiry::RequestHead);
        assert!(t.elapsed() >= d.request && t.elapsed() < d.keepalive);

        let reader = conns.admit().await;
        let _busy = reader.conn.begin();
        reader.conn.write_waits();
        assert_eq!(reader.conn.expired(&d).await, Expiry::SendStalled);

        // A busy connection whose writes progress is never closed.
        let fine = conns.admit().await;
        let _busy = fine.conn.begin();
        let ticking = tokio::time::timeout(Duration::from_secs(300), fine.conn.expired(&d));
        assert!(ticking.await.is_err());
    }
}
