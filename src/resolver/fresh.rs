//! The rules and blocks this resolver made itself, in force from the moment
//! they are made, before the store shows them.
//!
//! The writer thread commits them a moment later, and the snapshot thread
//! reads the store every 250 ms. An entry is kept until a store read that
//! began after its commit is in; from then on the store alone decides. So
//! an owner who lifts a rule or a block right after it was written (before
//! any refresh saw it) is obeyed, and a store that cannot be written keeps
//! the entry in force here meanwhile.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::rules::{Rule, RuleSet};

/// Blocks made here and not yet read back from the store, at most.
pub const FRESH_BLOCKS: usize = 100_000;

const PENDING: u8 = 0;
const COMMITTED: u8 = 1;
/// Committed before a store read began: that read has it (or its removal).
const READING: u8 = 2;

/// Where one write stands: shared by the entry here and the writer thread.
#[derive(Debug, Default)]
pub struct WriteState(AtomicU8);

impl WriteState {
    /// The writer thread committed it.
    pub fn committed(&self) {
        let _ = self
            .0
            .compare_exchange(PENDING, COMMITTED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Not committed yet (a retried batch writes only these again, so an
    /// owner's removal in between is not undone).
    pub fn pending(&self) -> bool {
        self.0.load(Ordering::Acquire) == PENDING
    }

    fn begin_read(&self) -> bool {
        self.0
            .compare_exchange(COMMITTED, READING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn read_back(&self) -> bool {
        self.0.load(Ordering::Acquire) == READING
    }
}

/// What this process made and the store may not show yet.
#[derive(Debug, Default)]
pub struct Fresh {
    rules: Vec<(Rule, Arc<WriteState>)>,
    blocks: HashMap<IpAddr, (i64, Arc<WriteState>)>,
}

impl Fresh {
    /// Holds a rule containment made; its state goes to the writer.
    pub fn add_rule(&mut self, rule: Rule) -> Arc<WriteState> {
        let state = Arc::new(WriteState::default());
        self.rules.push((rule, Arc::clone(&state)));
        state
    }

    /// Holds a block until `until`. Bounded: ended blocks go first, and
    /// past the cap the store's own copy must do.
    pub fn add_block(&mut self, ip: IpAddr, until: i64, now: i64) -> Arc<WriteState> {
        let state = Arc::new(WriteState::default());
        if self.blocks.len() >= FRESH_BLOCKS {
            self.blocks.retain(|_, (u, _)| *u > now);
        }
        if self.blocks.len() < FRESH_BLOCKS {
            self.blocks.insert(ip, (until, Arc::clone(&state)));
        }
        state
    }

    /// Called before a store read: marks what is committed by now as
    /// covered by it. True when there is any (the read must not be
    /// skipped as "nothing changed").
    pub fn begin_read(&mut self) -> bool {
        let mut any = false;
        for (_, s) in &self.rules {
            any |= s.begin_read();
        }
        for (_, s) in self.blocks.values() {
            any |= s.begin_read();
        }
        any
    }

    /// After a store read: forgets what it covered and what it shows.
    pub fn settle(&mut self, rules: &RuleSet, blocks: &HashMap<IpAddr, i64>) {
        self.rules
            .retain(|(f, s)| !s.read_back() && !rules.rules().iter().any(|r| r.scope == f.scope));
        self.blocks
            .retain(|ip, (_, s)| !s.read_back() && !blocks.contains_key(ip));
    }

    /// `rules` with the rules held here added.
    pub fn with_rules(&self, rules: &Arc<RuleSet>) -> Arc<RuleSet> {
        if self.rules.is_empty() {
            return Arc::clone(rules);
        }
        let mut all = rules.rules().to_vec();
        all.extend(self.rules.iter().map(|(r, _)| r.clone()));
        Arc::new(RuleSet::new(all))
    }

    /// The end of a block held here.
    pub fn block(&self, ip: IpAddr) -> Option<i64> {
        self.blocks.get(&ip).map(|(u, _)| *u)
    }

    /// Blocks held (bounded by [`FRESH_BLOCKS`]).
    #[cfg(test)]
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Scope;

    fn rule(net: &str) -> Rule {
        Rule {
            id: 0,
            scope: Scope::Cidr(net.parse().unwrap()),
            reason: "auto: test".into(),
            created: 0,
        }
    }

    #[test]
    fn an_entry_lives_until_a_read_after_its_commit() {
        let mut f = Fresh::default();
        let empty = Arc::new(RuleSet::default());
        let s = f.add_rule(rule("192.0.2.0/24"));
        // Not committed: every read keeps it, whatever the store shows.
        assert!(!f.begin_read());
        f.settle(&empty, &HashMap::new());
        assert_eq!(f.with_rules(&empty).rules().len(), 1);
        // Committed while a read was under way: that read may predate it.
        s.committed();
        f.settle(&empty, &HashMap::new());
        assert_eq!(f.with_rules(&empty).rules().len(), 1);
        // The next read began after the commit: the store decides, and it
        // no longer has the rule (lifted at once by the owner).
        assert!(f.begin_read());
        f.settle(&empty, &HashMap::new());
        assert_eq!(f.with_rules(&empty).rules().len(), 0);
        assert!(!s.pending(), "a retried batch does not write it again");
    }

    #[test]
    fn an_entry_the_store_shows_is_the_stores() {
        let mut f = Fresh::default();
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        f.add_block(ip, 100, 0);
        f.add_rule(rule("192.0.2.0/24"));
        let store = Arc::new(RuleSet::new(vec![rule("192.0.2.0/24")]));
        f.settle(&store, &HashMap::from([(ip, 100)]));
        assert_eq!(f.with_rules(&Arc::new(RuleSet::default())).rules().len(), 0);
        assert_eq!(f.block(ip), None);
    }
}
