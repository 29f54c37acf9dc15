//! The one shape of the daemons' background writers (the proxy's visit
//! log, the resolver's arrivals and blocks): a bounded queue that never
//! makes the caller wait (a full queue drops and counts), and a thread that
//! takes what has queued up and writes it as one batch through a
//! [`Pinned`] connection, so losing a record is always preferred to
//! stalling a response or an SMTP session, or to writing into a store that
//! is not the one the daemon started with. While the store fails, up to
//! `hold` records are kept and written with the next batch that goes
//! through (a database restarting loses nothing it need not); beyond that
//! they are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::Duration;

use super::{FaultLog, Pinned, Store, StoreError};

/// How a writer takes and writes its batches.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The writer thread's name.
    pub name: &'static str,
    /// Records waiting at most; more are dropped and counted.
    pub queue: usize,
    /// Records in one batch at most.
    pub max: usize,
    /// `Some`: take a batch this often, so that queueing a record never
    /// wakes the thread (no system call on the caller's path). `None`: wake
    /// at the first record.
    pub every: Option<Duration>,
    /// `Some`: a failed batch is tried once more after this pause.
    pub retry_after: Option<Duration>,
    /// Records of failed batches kept for the next try, at most (the
    /// oldest are kept: the first sight of a harvester matters most).
    pub hold: usize,
    /// What a lasting fault costs, for the log.
    pub lost: &'static str,
}

/// What a writer does with its batches.
pub trait Sink: Send + 'static {
    /// What is queued.
    type Item: Send + 'static;
    /// Writes one batch in one transaction.
    fn write(&mut self, store: &mut Store, batch: &[Self::Item]) -> Result<(), StoreError>;
    /// Runs before every batch, records or not (the visit log prunes hourly).
    fn between(&mut self, _store: &mut Pinned) {}
}

/// The caller's end of a writer.
#[derive(Debug)]
pub struct Queue<T> {
    tx: SyncSender<T>,
    /// Records not written: the queue was full, or the store failing.
    dropped: Arc<AtomicU64>,
}

impl<T: Send + 'static> Queue<T> {
    /// Starts the writer thread of `sink` on `store`; `dropped` counts what
    /// is lost, `faults` logs failing batches.
    pub fn start<S: Sink<Item = T>>(
        shape: Shape,
        store: Pinned,
        sink: S,
        dropped: Arc<AtomicU64>,
        faults: FaultLog,
    ) -> std::io::Result<Queue<T>> {
        let (tx, rx) = sync_channel(shape.queue.max(1));
        let lost = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name(shape.name.into())
            .spawn(move || run(shape, store, sink, rx, faults, lost))?;
        Ok(Queue { tx, dropped })
    }

    /// Queues one record, or counts it as dropped.
    pub fn push(&self, item: T) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(item) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How long a writer with records held waits for new ones before trying
/// the store again.
const RETRY_HELD: Duration = Duration::from_secs(1);

fn run<S: Sink>(
    shape: Shape,
    mut store: Pinned,
    mut sink: S,
    rx: Receiver<S::Item>,
    mut faults: FaultLog,
    lost: Arc<AtomicU64>,
) {
    let mut held: Vec<S::Item> = Vec::new();
    loop {
        sink.between(&mut store);
        let wait = (!held.is_empty()).then_some(RETRY_HELD);
        let Some(fresh) = next_batch(&rx, &shape, wait) else {
            return;
        };
        if fresh.is_empty() && held.is_empty() {
            continue;
        }
        let mut batch = std::mem::take(&mut held);
        batch.extend(fresh);
        if let Err(e) = write(&shape, &mut store, &mut sink, &batch) {
            faults.fault(&e, shape.lost);
            let keep = batch.len().min(shape.hold);
            lost.fetch_add((batch.len() - keep) as u64, Ordering::Relaxed);
            batch.truncate(keep);
            held = batch;
        } else {
            faults.ok();
        }
    }
}

/// Writes one batch, once more after `retry_after` if the shape says so.
fn write<S: Sink>(
    shape: &Shape,
    store: &mut Pinned,
    sink: &mut S,
    batch: &[S::Item],
) -> Result<(), StoreError> {
    let mut result = store.with(|s| sink.write(s, batch));
    if let (Err(e), Some(pause)) = (&result, shape.retry_after) {
        tracing::debug!(error = %e, "writing a batch failed; trying once more");
        std::thread::sleep(pause);
        result = store.with(|s| sink.write(s, batch));
    }
    result
}

/// What has queued up, at most `shape.max`; `None` once every sender is
/// gone and nothing is left. A writer woken by records waits at most
/// `wait` (when it holds some to retry).
fn next_batch<T>(rx: &Receiver<T>, shape: &Shape, wait: Option<Duration>) -> Option<Vec<T>> {
    let mut batch = Vec::new();
    match (shape.every, wait) {
        (Some(pause), _) => std::thread::sleep(pause),
        (None, None) => batch.push(rx.recv().ok()?),
        (None, Some(wait)) => match rx.recv_timeout(wait) {
            Ok(item) => batch.push(item),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Some(batch),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
        },
    }
    while batch.len() < shape.max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(TryRecvError::Empty) => break,
            Err(TryRecvError::Disconnected) if batch.is_empty() => return None,
            Err(TryRecvError::Disconnected) => break,
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSource;

    /// Counts what it is given; fails while `fail` says so.
    struct Counting {
        written: Arc<AtomicU64>,
        fail: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Sink for Counting {
        type Item = u32;
        fn write(&mut self, _store: &mut Store, batch: &[u32]) -> Result<(), StoreError> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(StoreError::BadRule("failing on purpose".into()));
            }
            self.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_a_failing_store_holds_what_it_may() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let pinned = Pinned::new(Store::open(&path).unwrap(), StoreSource::new(&path));
        let (written, fail) = (Arc::new(AtomicU64::new(0)), Arc::new(Default::default()));
        let dropped = Arc::new(AtomicU64::new(0));
        let shape = Shape {
            name: "test-writer",
            queue: 4,
            max: 100,
            every: Some(Duration::from_millis(300)),
            retry_after: None,
            hold: 2,
            lost: "records are dropped",
        };
        let sink = Counting {
            written: Arc::clone(&written),
            fail: Arc::clone(&fail),
        };
        let faults = FaultLog::new("testing", Arc::default());
        let q = Queue::start(shape, pinned, sink, Arc::clone(&dropped), faults).unwrap();
        // Ten at once into a queue of four: six are dropped, none waits.
        (0..10).for_each(|i| q.push(i));
        assert_eq!(dropped.load(Ordering::Relaxed), 6);
        let until = |what: &AtomicU64, n: u64| {
            let start = std::time::Instant::now();
            while what.load(Ordering::Relaxed) < n {
                assert!(start.elapsed() < Duration::from_secs(5), "never reached {n}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        until(&written, 4);
        // A failing store: of three, two are held and one dropped...
        fail.store(true, Ordering::Relaxed);
        (0..3).for_each(|i| q.push(i));
        until(&dropped, 7);
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(dropped.load(Ordering::Relaxed), 7);
        assert_eq!(written.load(Ordering::Relaxed), 4);
        // ...and written, with what comes next, once it works again.
        fail.store(false, Ordering::Relaxed);
        q.push(9);
        until(&written, 4 + 2 + 1);
        assert_eq!(dropped.load(Ordering::Relaxed), 7);
    }
}
