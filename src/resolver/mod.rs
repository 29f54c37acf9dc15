//! `addrmunge resolver`: the mail side. A socketmap server for Postfix,
//! Sendmail and OpenSMTPD's filter ([`socketmap`], [`sendmail`],
//! [`opensmtpd`]), a policy-delegation
//! service ([`policy`]) and Exim's line protocol ([`exim`]) sharing one
//! [`Resolver`]: the key ring, the protection rules, and a snapshot of the
//! store's expiry rules and client blocks that a background thread keeps
//! fresh (at most 250 ms old). Arrivals and new blocks are written by a
//! second thread in batches, so SMTP never waits on the disk.

pub mod containment;
pub mod decide;
pub mod exim;
mod fresh;
pub mod opensmtpd;
pub mod policy;
pub mod sendmail;
pub mod socketmap;

use decide::Facts;
pub use decide::{Action, Answer, Judgement, Map, PolicyRequest, Reply};

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::check::{Served, check_recipient, normalize_recipient};
use crate::config::{Config, TrapAction};
use crate::conns::{Conns, RESERVED_FDS, raise_open_files};
use crate::day::Day;
use crate::listen::Bound;
use crate::rules::{Rule, RuleSet, Scope};
use crate::store::{Arrival, FaultLog, Pinned, RuleWatcher, Store, StoreError, StoreSource, batch, now_unix};
use crate::token::KeyRing;

/// How often the rule snapshot is checked for changes.
const REFRESH: Duration = Duration::from_millis(250);
/// Arrivals and blocks waiting to be written; beyond this they are dropped and counted.
const QUEUE: usize = 10_000;
/// Recent judgements kept (a few hundred bytes each).
const VERDICTS: usize = 4096;
/// The longest address whose judgement is cached: a local part and a
/// domain at their longest. Longer keys are judged (invalid) every time
/// instead of filling the cache with kilobytes each.
const CACHED_KEY: usize = 64 + 1 + 253 + 2;

/// What the store says right now, as the daemons see it.
#[derive(Debug, Default)]
struct Snapshot {
    rules: Arc<RuleSet>,
    blocks: HashMap<IpAddr, i64>,
    /// The base addresses the proxies munged, for mangled copies.
    served: Arc<Served>,
    /// False when the store could not be read: answer TEMP, never guess.
    ok: bool,
    /// True while a shared database is unreachable and these are the rules
    /// and blocks last read: still answered from (the key decides, the
    /// rules are as fresh as the outage is long), but reported.
    stale: bool,
}

impl Snapshot {
    /// Whether `other` would judge every address as this one does.
    fn same_as(&self, other: &Snapshot) -> bool {
        self.ok == other.ok
            && self.stale == other.stale
            && self.blocks == other.blocks
            && Arc::ptr_eq(&self.served, &other.served)
            && (Arc::ptr_eq(&self.rules, &other.rules) || self.rules.rules() == other.rules.rules())
    }

    /// The same rules and blocks, marked as `ok` and `stale` say.
    fn marked(&self, ok: bool, stale: bool) -> Snapshot {
        Snapshot {
            rules: Arc::clone(&self.rules),
            blocks: self.blocks.clone(),
            served: Arc::clone(&self.served),
            ok,
            stale,
        }
    }
}

/// Recent judgements by (lowercased) address. Postfix asks about one
/// recipient three or four times per message (virtual, recipient, policy,
/// cleanup's virtual again), and each judgement is a decryption. Valid only
/// for the snapshot, settings and day it was made under: any rule change,
/// reload or midnight empties it, so it never answers differently from a
/// fresh judgement. The Arcs are held, not compared by address, so a new
/// snapshot can never be mistaken for a freed one.
struct Verdicts {
    snap: Arc<Snapshot>,
    settings: Arc<Settings>,
    day: Day,
    map: lru::LruCache<String, Arc<Judgement>>,
}

impl Verdicts {
    /// Empties the cache unless it was made under exactly these.
    fn for_now(&mut self, snap: &Arc<Snapshot>, settings: &Arc<Settings>, day: Day) {
        if !Arc::ptr_eq(&self.snap, snap) || !Arc::ptr_eq(&self.settings, settings) || self.day != day {
            self.map.clear();
            self.snap = Arc::clone(snap);
            self.settings = Arc::clone(settings);
            self.day = day;
        }
    }
}

/// The resolver's counters, for its admin listener.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Lookups answered (socketmap and policy).
    pub lookups: AtomicU64,
    /// Lookups answered TEMP (or DEFER) because the store could not be read.
    pub temp: AtomicU64,
    /// Arrivals and blocks not written (queue full, or the store failing).
    pub writes_dropped: Arc<AtomicU64>,
    /// Failed reads and writes of the store.
    pub store_faults: Arc<AtomicU64>,
    /// Rules `[containment]` made.
    pub contained: AtomicU64,
    /// Rules `[containment]` would have made past `max_rules_per_day`.
    pub contain_capped: AtomicU64,
}

/// Things for the writer thread.
enum Write {
    Arrival(Arrival),
    Block(IpAddr, i64, String, Arc<fresh::WriteState>),
    /// A `[containment]` rule.
    Rule(Scope, String, Arc<fresh::WriteState>),
}

/// The settings a lookup needs, replaced whole on SIGHUP.
#[derive(Debug)]
pub struct Settings {
    /// The validated config.
    pub config: Config,
    /// The key ring.
    pub keys: KeyRing,
}

impl Settings {
    /// Loads config and key file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Settings> {
        let config = Config::load(path)?;
        let keys = KeyRing::load(&config.key_file)?;
        Ok(Settings { config, keys })
    }
}

/// The shared state of the resolver's services.
pub struct Resolver {
    config_path: PathBuf,
    settings: RwLock<Arc<Settings>>,
    snapshot: RwLock<Arc<Snapshot>>,
    verdicts: Mutex<Verdicts>,
    /// Rules and blocks made here that the store snapshot may not show yet.
    fresh: Mutex<fresh::Fresh>,
    /// `[containment]`'s evidence so far.
    tracker: Mutex<containment::Tracker>,
    writer: batch::Queue<Write>,
    /// Where the store is; a reload adopts the file there then.
    source: Arc<StoreSource>,
    /// Client connections, shared by every listener.
    conns: Arc<Conns>,
    /// Counters for the admin listener.
    pub metrics: Metrics,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Loads settings, opens the store and starts the refresher and writer threads.
    pub fn start(config_path: PathBuf) -> anyhow::Result<Arc<Resolver>> {
        let settings = Arc::new(Settings::load(&config_path)?);
        let state = settings.config.state.clone();
        // The first start creates and migrates the store; from then on it
        // is only ever reopened, never created (store::Pinned).
        let source = StoreSource::new(&state);
        let writer_store = Pinned::start(Arc::clone(&source))?;
        let mut watcher = RuleWatcher::new(Pinned::start(Arc::clone(&source))?);
        let metrics = Metrics::default();
        let shape = batch::Shape {
            name: "store-writer",
            queue: QUEUE,
            max: 500,
            // Woken by the first record: a block must reach the store soon.
            every: None,
            retry_after: Some(Duration::from_millis(500)),
            hold: QUEUE,
            lost: "arrivals and blocks are dropped until it is back",
        };
        let writer_faults = FaultLog::new("writing arrivals and blocks", Arc::clone(&metrics.store_faults));
        let dropped = Arc::clone(&metrics.writes_dropped);
        let writer = batch::Queue::start(shape, writer_store, ArrivalsAndBlocks, dropped, writer_faults)?;
        let wanted = settings.config.resolver.max_connections;
        let budget = (raise_open_files().saturating_sub(RESERVED_FDS) as usize).max(1);
        if wanted > budget {
            tracing::warn!(
                max_connections = wanted,
                "the open-file limit allows {budget} connections at once; raise LimitNOFILE to serve more"
            );
        }
        let max_connections = wanted.min(budget);
        let r = Arc::new(Resolver {
            config_path,
            verdicts: Mutex::new(Verdicts {
                snap: Arc::new(Snapshot::default()),
                settings: Arc::clone(&settings),
                day: Day::today(),
                map: lru::LruCache::new(std::num::NonZeroUsize::new(VERDICTS).expect("not zero")),
            }),
            settings: RwLock::new(settings),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            fresh: Mutex::default(),
            tracker: Mutex::default(),
            writer,
            source,
            conns: Conns::new(max_connections),
            metrics,
        });
        let mut faults = FaultLog::new("reading rules and blocks", Arc::clone(&r.metrics.store_faults));
        r.refresh_once(&mut watcher, &mut faults);
        let weak = Arc::downgrade(&r);
        std::thread::Builder::new()
            .name("store-refresh".into())
            .spawn(move || {
                while let Some(r) = weak.upgrade() {
                    r.refresh_once(&mut watcher, &mut faults);
                    drop(r);
                    std::thread::sleep(REFRESH);
                }
            })?;
        Ok(r)
    }

    /// Brings the snapshot up to date. A store that cannot be read (or was
    /// deleted or replaced) keeps the rules and blocks last read but marks
    /// the snapshot bad, so recipients get TEMP and blocks stay in force;
    /// an unreachable database (an outage, not a lost store) keeps them in
    /// use, marked stale (see [`Resolver::store_failed`]).
    fn refresh_once(&self, w: &mut RuleWatcher, faults: &mut FaultLog) {
        if self.fresh().begin_read() {
            // What was committed by now is in the read below, even when
            // nothing else changed since the last one.
            w.invalidate();
        }
        let fresh = self.snapshot_fresh();
        let result = w.refresh().and_then(|changed| {
            if !changed && fresh {
                return Ok(None);
            }
            let store = w.store()?;
            let blocks = store.blocks(now_unix())?;
            let served = Served::new(store.served()?.into_iter().map(|s| s.base));
            let last = self.snapshot();
            Ok(Some(Snapshot {
                rules: w.rules(),
                blocks,
                // The same Arc when nothing changed: most refreshes follow a
                // visit-log commit, not a new base.
                served: if *last.served == served {
                    Arc::clone(&last.served)
                } else {
                    Arc::new(served)
                },
                ok: true,
                stale: false,
            }))
        });
        match result {
            Ok(Some(mut snap)) => {
                faults.ok();
                // Under the lock containment adds its rules under, so none
                // made meanwhile is left out.
                let mut current = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
                let mut fresh = self.fresh();
                fresh.settle(&snap.rules, &snap.blocks);
                snap.rules = fresh.with_rules(&snap.rules);
                drop(fresh);
                // Most changes to the store are the visit log's and the
                // arrivals' commits, several a second: the same rules and
                // blocks keep the snapshot, and with it the cached verdicts.
                if !current.same_as(&snap) {
                    *current = Arc::new(snap);
                }
            }
            Ok(None) => faults.ok(),
            Err(e) => self.store_failed(&e, w, faults),
        }
    }

    /// After a failed refresh. A shared database that cannot be reached
    /// (down, restarting, the network) leaves the last rules and blocks in
    /// use: valid mail keeps being delivered and refused mail refused, as
    /// the key and the rules known decide, rather than deferring every
    /// message for the length of the outage. A store that is gone or
    /// replaced, or a file that cannot be read, means TEMP until it is back.
    fn store_failed(&self, e: &StoreError, w: &mut RuleWatcher, faults: &mut FaultLog) {
        let outage = e.is_unreachable();
        if !matches!(e, StoreError::Replaced(_) | StoreError::Missing(_)) {
            // Reopened (the same store only) at the next refresh.
            w.reset();
        }
        let mut s = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
        if outage && s.ok {
            faults.fault(
                e,
                "answering from the rules and blocks last read until it is back",
            );
            if !s.stale {
                *s = Arc::new(s.marked(true, true));
            }
            return;
        }
        faults.fault(e, "answering TEMP for recipients until it is back");
        if s.ok {
            *s = Arc::new(s.marked(false, false));
        }
    }

    fn fresh(&self) -> std::sync::MutexGuard<'_, fresh::Fresh> {
        self.fresh.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one RCPT into `[containment]`'s account, and cuts off the
    /// harvest it proves: the rule is in force at once and written to the
    /// store by the writer thread. True when it cut one off.
    fn contain(&self, s: &Settings, sight: &containment::Sighting, now: i64) -> bool {
        let Some(c) = &s.config.containment else {
            return false;
        };
        let snap = self.snapshot();
        let outcome = self.tracker.lock().unwrap_or_else(|e| e.into_inner()).observe(
            c,
            &s.config.traps.never_block,
            sight,
            &snap.rules,
            now,
        );
        match outcome {
            None => false,
            Some(containment::Outcome::Capped(scope, reason)) => {
                self.metrics.contain_capped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(rule = %scope, %reason, max_rules_per_day = c.max_rules_per_day,
                    "containment: today's automatic rules are used up; not cutting this off (`addrmunge expire` it by hand)");
                false
            }
            Some(containment::Outcome::Cut(scope, reason)) => {
                self.metrics.contained.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(rule = %scope, %reason, "containment: cut off a harvest (`addrmunge unexpire` undoes it)");
                let rule = Rule {
                    id: 0,
                    scope: scope.clone(),
                    reason: reason.clone(),
                    created: now,
                };
                let mut current = self.snapshot.write().unwrap_or_else(|e| e.into_inner());
                let state = self.fresh().add_rule(rule.clone());
                let mut next = current.marked(current.ok, current.stale);
                let mut all = current.rules.rules().to_vec();
                all.push(rule);
                next.rules = Arc::new(RuleSet::new(all));
                *current = Arc::new(next);
                drop(current);
                self.queue(Write::Rule(scope, reason, state));
                true
            }
        }
    }

    /// The Prometheus text for the admin listener.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut t = crate::metrics::Text::default();
        t.counter(
            "addrmunge_resolver_lookups_total",
            "Lookups answered (socketmap and policy).",
            get(&m.lookups),
        );
        t.counter(
            "addrmunge_resolver_temp_total",
            "Lookups answered TEMP or DEFER: the state store could not be read.",
            get(&m.temp),
        );
        t.counter(
            "addrmunge_resolver_store_faults_total",
            "Failed reads and writes of the state store (unreadable, deleted or replaced).",
            get(&m.store_faults),
        );
        t.counter(
            "addrmunge_resolver_writes_dropped_total",
            "Arrivals and blocks not recorded (queue full or store failing); mail is never delayed for them.",
            get(&m.writes_dropped),
        );
        t.counter(
            "addrmunge_resolver_containment_rules_total",
            "Rules [containment] made to cut off a harvest.",
            get(&m.contained),
        );
        t.counter(
            "addrmunge_resolver_containment_capped_total",
            "Harvests [containment] left alone because max_rules_per_day was reached.",
            get(&m.contain_capped),
        );
        t.gauge(
            "addrmunge_resolver_store_ok",
            "1 while the state store is read normally; 0 while lookups get TEMP, or are answered from the rules last read because the database is unreachable.",
            u64::from(self.snapshot_fresh()),
        );
        self.conns.render(&mut t, "addrmunge_resolver");
        t.finish()
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<Settings> {
        Arc::clone(&self.settings.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Re-reads config and key file (SIGHUP). On error the old ones stay.
    pub fn reload(&self) {
        match Settings::load(&self.config_path) {
            Ok(s) => {
                self.source.reload(&s.config.state);
                *self.settings.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
                tracing::info!(config = %self.config_path.display(), "reloaded config and keys");
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "reload failed; keeping the old config"),
        }
    }

    /// Whether the store is being read normally.
    fn snapshot_fresh(&self) -> bool {
        let s = self.snapshot();
        s.ok && !s.stale
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Judges a recipient under the current settings (see [`Self::judge_with`]).
    pub fn judge(&self, address: &str) -> Option<Arc<Judgement>> {
        self.judge_with(&self.settings(), address)
    }

    /// Judges a recipient under `s`: the whole address first, then with the
    /// recipient-delimiter extension stripped. `None` when the store cannot
    /// be read (answer TEMP).
    pub fn judge_with(&self, s: &Arc<Settings>, address: &str) -> Option<Arc<Judgement>> {
        self.metrics.lookups.fetch_add(1, Ordering::Relaxed);
        let snap = self.snapshot();
        if !snap.ok {
            self.metrics.temp.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let today = Day::today();
        let address = normalize_recipient(address);
        let lock = || self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut cache = lock();
            cache.for_now(&snap, s, today);
            if let Some(j) = cache.map.get(address.as_str()) {
                return Some(Arc::clone(j));
            }
        }
        let j = Arc::new(judge_now(s, &snap, address.clone(), today));
        let mut cache = lock();
        // Not if the rules or settings changed meanwhile: it may be stale.
        if Arc::ptr_eq(&cache.snap, &snap) && Arc::ptr_eq(&cache.settings, s) && address.len() <= CACHED_KEY {
            cache.map.put(address, Arc::clone(&j));
        }
        Some(j)
    }

    /// Answers one socketmap lookup under one settings snapshot.
    pub fn lookup(&self, map: Map, key: &str) -> Reply {
        let s = self.settings();
        decide::socketmap(&s, &Under { r: self, s: &s }, map, key)
    }

    /// Answers one policy request under one settings snapshot, and records
    /// and blocks what the decision says; the answer in the MTA's words.
    pub fn policy<T>(&self, req: &PolicyRequest<'_>, words: impl FnOnce(&Answer, &TrapAction) -> T) -> T {
        let s = self.settings();
        let now = now_unix();
        let mut d = decide::policy(&s, &Under { r: self, s: &s }, req, now);
        if d.sighting
            .as_ref()
            .is_some_and(|sight| self.contain(&s, sight, now))
        {
            d.cut_off(&s);
        }
        if let Some(a) = d.arrival {
            self.record(a);
        }
        if let Some((ip, reason)) = d.block {
            self.block(ip, now + s.config.traps.block_for.as_secs() as i64, &reason);
            tracing::info!(client = %ip, %reason, "blocked a client that mailed a trap");
        }
        words(&d.answer, &s.config.traps.action)
    }

    /// The end of a client's block, if it is blocked now.
    pub fn blocked(&self, ip: IpAddr) -> Option<i64> {
        let now = now_unix();
        let from_store = self.snapshot().blocks.get(&ip).copied();
        let fresh = self.fresh().block(ip);
        from_store.into_iter().chain(fresh).filter(|&u| u > now).max()
    }

    /// Blocks a client until `until` (Unix seconds).
    pub fn block(&self, ip: IpAddr, until: i64, reason: &str) {
        let state = self.fresh().add_block(ip, until, now_unix());
        self.queue(Write::Block(ip, until, reason.to_owned(), state));
    }

    /// Records an arrival (batched; dropped and counted if the queue is full).
    pub fn record(&self, arrival: Arrival) {
        self.queue(Write::Arrival(arrival));
    }

    fn queue(&self, w: Write) {
        self.writer.push(w);
    }

    /// The request-size limit for a new connection.
    pub fn max_request(&self) -> usize {
        self.settings().config.resolver.max_request
    }
}

/// The facts a decision looks up, under one settings snapshot.
struct Under<'a> {
    r: &'a Resolver,
    s: &'a Arc<Settings>,
}

impl Facts for Under<'_> {
    fn judge(&self, address: &str) -> Option<Arc<Judgement>> {
        self.r.judge_with(self.s, address)
    }

    fn blocked(&self, ip: IpAddr) -> bool {
        self.r.blocked(ip).is_some()
    }
}

fn judge_now(s: &Settings, snap: &Snapshot, address: String, today: Day) -> Judgement {
    let delim = &s.config.resolver.recipient_delimiter;
    let p = &s.config.protection;
    let verdict = check_recipient(&s.keys, p, &snap.rules, &snap.served, &address, today, delim);
    Judgement {
        address: verdict.address.clone(),
        verdict,
    }
}

/// Writes arrivals and blocks in one transaction per batch.
struct ArrivalsAndBlocks;

impl batch::Sink for ArrivalsAndBlocks {
    type Item = Write;

    fn write(&mut self, store: &mut Store, batch: &[Write]) -> Result<(), StoreError> {
        let mut arrivals = Vec::new();
        let mut blocks = Vec::new();
        for w in batch {
            match w {
                Write::Arrival(a) => arrivals.push(a.clone()),
                Write::Block(ip, until, reason, _) => blocks.push((*ip, *until, reason.clone())),
                // First, each in its own transaction; a retried batch skips
                // those written, which the owner may have lifted since.
                Write::Rule(scope, reason, state) if state.pending() => {
                    store.expire(scope, reason)?;
                    state.committed();
                }
                Write::Rule(..) => {}
            }
        }
        store.write_batch(&arrivals, &blocks)?;
        for w in batch {
            if let Write::Block(.., state) = w {
                state.committed();
            }
        }
        Ok(())
    }
}

/// Runs the resolver's listeners until SIGTERM/SIGINT; SIGHUP reloads.
pub async fn run(resolver: Arc<Resolver>) -> anyhow::Result<()> {
    let s = resolver.settings();
    let rc = &s.config.resolver;
    if rc.socketmap.is_empty() && rc.policy.is_empty() && rc.exim.is_empty() {
        anyhow::bail!(crate::config::ConfigError::Invalid {
            path: s.config.path.clone(),
            key: "resolver".into(),
            message: "no listeners; add e.g. socketmap = [\"inet:127.0.0.1:10100\"] and policy = [\"inet:127.0.0.1:10101\"] (Postfix), or exim = [\"inet:127.0.0.1:10102\"]".into(),
        });
    }
    let mut tasks = Vec::new();
    for (list, service) in [
        (&rc.socketmap, Service::Socketmap),
        (&rc.policy, Service::Policy),
        (&rc.exim, Service::Exim),
    ] {
        for listen in list {
            let bound = listen
                .bind(
                    rc.socket_mode,
                    rc.socket_owner.as_deref(),
                    rc.socket_group.as_deref(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            tracing::info!(%listen, service = service.name(), "listening");
            let r = Arc::clone(&resolver);
            tasks.push(tokio::spawn(accept_loop(bound, r, service)));
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = rc.admin_listen {
        let listener = crate::listen::bind_tcp(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (admin): {e}"))?;
        tracing::info!(%addr, "metrics at /metrics");
        let r = Arc::clone(&resolver);
        let render = Arc::new(move || r.render_metrics());
        tasks.push(tokio::spawn(crate::metrics::serve(listener, render, stop_rx)));
    }
    crate::listen::warn_unused_inherited();
    crate::signals::until_stopped(|| resolver.reload()).await?;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy)]
enum Service {
    /// Postfix's socketmap lookups.
    Socketmap,
    /// Postfix's policy delegation.
    Policy,
    /// Exim's `${readsocket}` lines.
    Exim,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Socketmap => "socketmap",
            Service::Policy => "policy",
            Service::Exim => "exim",
        }
    }
}

async fn accept_loop(bound: Bound, r: Arc<Resolver>, service: Service) {
    loop {
        let accepted: std::io::Result<(Box<dyn Conn>, String)> = match &bound {
            Bound::Inet(l) => l.accept().await.map(|(s, a)| {
                let _ = s.set_nodelay(true);
                (Box::new(s) as Box<dyn Conn>, a.to_string())
            }),
            Bound::Unix(l, p) => l
                .accept()
                .await
                .map(|(s, _)| (Box::new(s) as Box<dyn Conn>, p.display().to_string())),
        };
        match accepted {
            Ok((conn, peer)) => {
                // At max_connections the idlest connection is closed to make
                // room (Postfix opens a new one when it needs it).
                let slot = r.conns.admit().await;
                let r = Arc::clone(&r);
                tokio::spawn(async move {
                    serve(conn, &r, service, &slot.conn, &peer).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one admitted connection until it ends or one of its deadlines
/// passes. The deadlines are the connection's (one timer that moves), not a
/// timer per request: every lookup would register and cancel one.
async fn serve(
    conn: Box<dyn Conn>,
    r: &Resolver,
    service: Service,
    state: &Arc<crate::conns::Conn>,
    peer: &str,
) {
    let idle = r.settings().config.resolver.idle_timeout;
    let deadlines = crate::conns::Deadlines {
        request: idle,
        keepalive: idle,
        send: idle,
    };
    let conn: Box<dyn Conn> = Box::new(crate::conns::Watched::new(conn, Arc::clone(state)));
    let serving = async {
        match service {
            Service::Socketmap => socketmap::serve(conn, r, state).await,
            Service::Policy => policy::serve(conn, r, state).await,
            Service::Exim => exim::serve(conn, r, state).await,
        }
    };
    tokio::select! {
        result = serving => if let Err(e) = result {
            tracing::info!(%peer, error = %e, "closed connection");
        },
        why = state.expired(&deadlines) => {
            r.conns.count(why);
            if let Some(reason) = closed_because(why) {
                tracing::info!(%peer, reason, "closed connection");
            }
        }
    }
}

/// Why a deadline closed a connection, in the resolver's terms (one
/// `idle_timeout` bounds all three); `None` for an eviction, which is
/// routine at `max_connections` and counted, not logged.
fn closed_because(why: crate::conns::Expiry) -> Option<&'static str> {
    use crate::conns::Expiry;
    match why {
        Expiry::Evicted => None,
        Expiry::RequestHead => Some("a request did not arrive whole within idle_timeout"),
        Expiry::Idle => Some("idle longer than idle_timeout"),
        Expiry::SendStalled => Some("the client did not read its answer within idle_timeout"),
    }
}

/// A client connection of either socket type.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Status;
    use crate::token::Kind;

    /// A resolver over a fresh key and store with this config text after
    /// the key and state lines.
    fn resolver(config: &str) -> (tempfile::TempDir, Arc<Resolver>, KeyRing) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("addrmunge.toml");
        std::fs::write(&cfg, format!("key_file = \"k\"\nstate = \"s.sqlite\"\n{config}")).unwrap();
        KeyRing::generate(&dir.path().join("k")).unwrap();
        let r = Resolver::start(cfg).unwrap();
        let keys = KeyRing::load(&dir.path().join("k")).unwrap();
        (dir, r, keys)
    }

    /// mjd@plover.com as munged for a visit from `ip` today.
    fn munged_for(keys: &KeyRing, ip: IpAddr) -> String {
        let claims = crate::Claims::visit(Kind::Visitor, Day::today(), ip);
        format!("mjd-id-{}@plover.com", keys.encode("mjd@plover.com", "", &claims))
    }

    /// Expires the visitor `ip` in `store` and waits (5 s at most) until
    /// `r` no longer judges `a`, an address munged for it, valid.
    fn expire_and_wait(store: &mut Store, r: &Resolver, ip: IpAddr, a: &str) {
        store
            .expire(&crate::Scope::Ip(crate::Visitor::from_ip(ip)), "test")
            .unwrap();
        let start = std::time::Instant::now();
        while r.judge(a).unwrap().verdict.status == Status::Valid {
            assert!(start.elapsed() < Duration::from_secs(5), "rule never seen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answer(r: &Resolver, address: &str) -> Action {
        decide::recipient_action(&r.settings(), &r.judge(address).unwrap())
    }

    #[test]
    fn other_users_of_a_protected_domain_are_none_of_our_business() {
        // Dominus's case: only mjd* is munged, plover.com has other users.
        let (_dir, r, keys) = resolver(
            "[[protect]]\ndomain = \"plover.com\"\nlocal = \"mjd*\"\n[resolver]\nbare = \"reject\"\n",
        );
        for other in [
            "webmaster@plover.com",
            "zz@plover.com",
            "joe-id-0123456789abcdefghjkmnpq@plover.com",
        ] {
            assert_eq!(answer(&r, other), Action::NotOurs, "{other}");
        }
        let claims = crate::Claims::visit(Kind::Visitor, Day::today(), "203.0.113.9".parse().unwrap());
        let token = keys.encode("mjd@plover.com", "", &claims);
        assert_eq!(answer(&r, &format!("mjd-id-{token}@plover.com")), Action::Dunno);
        // Ours to refuse: the bare base (bare = reject), and forged IDs on it,
        // also those spelled with letters the alphabet lacks.
        let s = r.settings();
        let (bare, forged) = (&s.config.resolver.bare_text, &s.config.resolver.reject_text);
        assert_eq!(answer(&r, "mjd@plover.com"), Action::Reject(bare.clone()));
        let last = if token.ends_with('a') { 'b' } else { 'a' };
        let altered = format!("mjd-id-{}{last}@plover.com", &token[..23]);
        assert_eq!(answer(&r, &altered), Action::Reject(forged.clone()));
        let ilou = format!("mjd-id-{}ilou@plover.com", &token[..20]);
        assert_eq!(answer(&r, &ilou), Action::Reject(forged.clone()), "{ilou}");
    }

    #[test]
    fn postmaster_and_abuse_are_never_refused_bare() {
        let (_dir, r, _keys) =
            resolver("[[protect]]\ndomain = \"plover.com\"\n[resolver]\nbare = \"reject\"\n");
        for role in [
            "postmaster@plover.com",
            "Abuse@Plover.com",
            "<postmaster@plover.com>",
        ] {
            assert_eq!(answer(&r, role), Action::Dunno, "{role}");
        }
        assert!(matches!(answer(&r, "mjd@plover.com"), Action::Reject(_)));
    }

    /// A store deleted under the resolver is a fault: expired IDs get TEMP,
    /// never an accept; blocks stay in force; no empty store appears in
    /// its place; a new file at the path is only taken on reload.
    #[test]
    fn a_deleted_store_is_never_recreated_and_nothing_expired_is_accepted() {
        let (dir, r, keys) = resolver("[[protect]]\ndomain = \"plover.com\"\n");
        let state = dir.path().join("s.sqlite");
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let a = munged_for(&keys, ip);
        let blocked: IpAddr = "198.51.100.7".parse().unwrap();
        {
            let mut store = Store::open(&state).unwrap();
            store
                .expire(&crate::Scope::Ip(crate::Visitor::from_ip(ip)), "spam")
                .unwrap();
            store.block(blocked, now_unix() + 3600, "trap").unwrap();
        }
        let refused = |r: &Resolver| r.judge(&a).map(|j| decide::recipient_action(&r.settings(), &j));
        let start = std::time::Instant::now();
        while !matches!(refused(&r), Some(Action::Reject(_))) {
            assert!(start.elapsed() < Duration::from_secs(5), "rule never seen");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_file(&state).unwrap();
        let check_faulted = |r: &Resolver, for_ms: u64| {
            let start = std::time::Instant::now();
            let mut temp = false;
            while start.elapsed() < Duration::from_millis(for_ms) {
                let got = refused(r);
                assert!(matches!(got, None | Some(Action::Reject(_))), "{got:?}");
                temp |= got.is_none();
                assert!(r.blocked(blocked).is_some(), "the block vanished");
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(temp, "a missing store must be answered with TEMP");
        };
        check_faulted(&r, 1500);
        assert!(!state.exists(), "the resolver made a new store");
        // Someone else makes a new, empty one: not taken without a reload.
        crate::store::tests::remove_journal(&state);
        drop(Store::open(&state).unwrap());
        check_faulted(&r, 1000);
        // SIGHUP is the explicit command that adopts it.
        r.reload();
        let start = std::time::Instant::now();
        while refused(&r) != Some(Action::Dunno) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "reload did not adopt the new store"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn long_keys_and_many_blocks_stay_bounded() {
        let (_dir, r, _keys) = resolver("[[protect]]\ndomain = \"plover.com\"\n[traps]\nnever_block = []\n");
        let long = format!("{}@plover.com", "a".repeat(5000));
        answer(&r, &long);
        assert!(r.verdicts.lock().unwrap().map.is_empty(), "a 5 kB key was cached");
        for i in 0..(fresh::FRESH_BLOCKS as u32 + 50) {
            r.block(
                IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)),
                now_unix() + 60,
                "trap",
            );
        }
        assert!(r.fresh().block_count() <= fresh::FRESH_BLOCKS);
    }

    #[test]
    fn cached_verdicts_follow_rule_changes_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("addrmunge.toml");
        std::fs::write(
            &cfg,
            "key_file = \"k\"\nstate = \"s.sqlite\"\n[[protect]]\ndomain = \"plover.com\"\n",
        )
        .unwrap();
        KeyRing::generate(&dir.path().join("k")).unwrap();
        let r = Resolver::start(cfg.clone()).unwrap();
        let keys = KeyRing::load(&dir.path().join("k")).unwrap();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let a = munged_for(&keys, ip);
        let first = r.judge(&a).unwrap();
        assert_eq!(first.verdict.status, Status::Valid);
        // Asked again (as Postfix does per message): the same judgement.
        assert!(Arc::ptr_eq(&first, &r.judge(&a.to_uppercase()).unwrap()));
        // A rule expires it: the cached verdict must not outlive the refresh.
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        expire_and_wait(&mut store, &r, ip, &a);
        // A reload with other keys: nothing judged under the old ones is kept.
        let expired = r.judge(&a).unwrap();
        std::fs::remove_file(dir.path().join("k")).unwrap();
        KeyRing::generate(&dir.path().join("k")).unwrap();
        r.reload();
        let now = r.judge(&a).unwrap();
        assert!(!Arc::ptr_eq(&expired, &now));
        assert_eq!(now.verdict.status, Status::Invalid);
    }

    #[test]
    fn cached_verdicts_outlive_commits_that_change_no_rule() {
        let (dir, r, keys) = resolver("[[protect]]\ndomain = \"plover.com\"\n");
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let a = munged_for(&keys, ip);
        let first = r.judge(&a).unwrap();
        // The visit log's commits, as a proxy on the same store makes them
        // several times a second: the resolver reads the store again after
        // each, and must keep what it judged.
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        for i in 0..4 {
            let visit = crate::store::VisitEvent {
                time: now_unix(),
                day: Day::today(),
                visitor: "198.51.100.7".into(),
                user_agent: "test".into(),
                path: format!("/{i}"),
                munged: 1,
                harvester: None,
            };
            store.record_visits(&[visit]).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        assert!(
            Arc::ptr_eq(&first, &r.judge(&a).unwrap()),
            "the verdict was judged again"
        );
        // A rule still empties it (cached_verdicts_follow_rule_changes_and_reloads).
        expire_and_wait(&mut store, &r, ip, &a);
    }

    /// A rule this resolver made itself and the owner lifted at once
    /// (before any refresh saw it written) is lifted here too.
    #[test]
    fn a_rule_lifted_right_after_it_was_written_is_lifted_here() {
        let (dir, r, keys) = resolver("[[protect]]\ndomain = \"plover.com\"\n[containment]\nnetworks = 2\n");
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let a = munged_for(&keys, ip);
        let (s, now) = (r.settings(), now_unix());
        for client in ["198.51.100.1", "192.0.2.1"] {
            let judgement = r.judge(&a).unwrap();
            let client = client.parse().unwrap();
            r.contain(
                &s,
                &containment::Sighting {
                    judgement,
                    client,
                    blocked: false,
                },
                now,
            );
        }
        assert_eq!(r.judge(&a).unwrap().verdict.status, Status::Expired);
        let spammer: IpAddr = "198.51.100.1".parse().unwrap();
        r.block(spammer, now + 3600, "trap");
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let wait = |what: &str, ok: &mut dyn FnMut() -> bool| {
            let start = std::time::Instant::now();
            while !ok() {
                assert!(start.elapsed() < Duration::from_secs(5), "{what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let mut rule = None;
        wait("written", &mut || {
            rule = store.rules().unwrap().first().map(|r| r.scope.clone());
            rule.is_some() && !store.blocks(now).unwrap().is_empty()
        });
        // Lifted within a millisecond or so of the write: no refresh (every
        // 250 ms) has read the store in between, most times.
        store.unexpire(&rule.unwrap()).unwrap();
        wait("unexpire never seen", &mut || {
            r.judge(&a).unwrap().verdict.status == Status::Valid
        });
        // The block, read back from the store, stays in force.
        std::thread::sleep(Duration::from_millis(600));
        assert!(r.blocked(spammer).is_some());
    }
}
