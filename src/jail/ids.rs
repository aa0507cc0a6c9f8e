//! Host uids and gids for jails: every jail runs as a host user of its own, so the kernel's
//! per-user budgets (pipe buffer pages, file descriptors in flight over Unix sockets, epoll
//! watches, pending signals, and RLIMIT_NPROC when there is no pids cgroup) belong to one
//! jail, not to all of them at once.
//!
//! The service owns the ids `base .. base + RANGE` (`JAIL_UID_BASE`), as uids and as gids:
//! nothing else on the host may use them (no account, no subuid range, no container). With a
//! user namespace a jail's id is mapped to 65534 inside; without one it is the jail's uid.
//! An id is taken when a jail is created and given back when the jail is destroyed; ids given
//! back queue behind every other free id, so an id is reused as late as possible (a killed
//! jail's processes may take a moment to go).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many ids the service owns (where they may lie is `config`'s to check). Far more than
/// jails can exist at once (executions, pooled jails, the start-up probe), so a freed id waits
/// long before it is used again.
pub const RANGE: u32 = crate::config::JAIL_ID_RANGE;

#[derive(Debug, Clone)]
pub struct JailIds {
    base: u32,
    free: Arc<Mutex<VecDeque<u32>>>,
}

/// One jail's host uid and gid (the same number); given back when dropped.
#[derive(Debug)]
pub struct JailId {
    id: u32,
    free: Arc<Mutex<VecDeque<u32>>>,
}

impl JailIds {
    /// The ids from `base` (`Settings::jail_uid_base`, checked there).
    pub fn new(base: u32) -> JailIds {
        JailIds {
            base,
            free: Arc::new(Mutex::new((base..base + RANGE).collect())),
        }
    }

    /// The first id of the range.
    pub fn first(&self) -> u32 {
        self.base
    }

    /// Whether `id` is one of the service's.
    pub fn contains(&self, id: u32) -> bool {
        (self.base..self.base + RANGE).contains(&id)
    }

    /// The range without `id`, as (first, count) runs: what a zygote running as `id` maps into
    /// its user namespace so that each execution it forks can run as an id of its own.
    pub fn others(&self, id: u32) -> Vec<(u32, u32)> {
        let end = self.base + RANGE;
        if !self.contains(id) {
            return vec![(self.base, RANGE)];
        }
        [(self.base, id - self.base), (id + 1, end - id - 1)]
            .into_iter()
            .filter(|&(_, count)| count > 0)
            .collect()
    }

    /// The free id given back longest ago; `None` when every id is in use.
    pub fn take(&self) -> Option<JailId> {
        let id = self.free.lock().ok()?.pop_front()?;
        Some(JailId {
            id,
            free: self.free.clone(),
        })
    }
}

impl JailId {
    pub fn get(&self) -> u32 {
        self.id
    }
}

impl Drop for JailId {
    fn drop(&mut self) {
        if let Ok(mut free) = self.free.lock() {
            free.push_back(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_while_held_and_reused_last() {
        let ids = JailIds::new(1_000_000);
        let a = ids.take().unwrap();
        let b = ids.take().unwrap();
        assert_eq!((a.get(), b.get()), (1_000_000, 1_000_001));
        drop(a);
        // 1_000_000 went to the back of the queue: every other id comes first.
        let held: Vec<JailId> = (0..RANGE - 2).map(|_| ids.take().unwrap()).collect();
        assert!(held.iter().all(|i| i.get() != 1_000_000 && i.get() != 1_000_001));
        let last = ids.take().unwrap();
        assert_eq!(last.get(), 1_000_000);
        assert!(ids.take().is_none(), "every id is in use");
        drop(held);
        assert!(ids.take().is_some());
    }

    #[test]
    fn a_zygote_maps_every_id_but_its_own() {
        let ids = JailIds::new(1_000_000);
        assert_eq!(ids.others(1_000_000), [(1_000_001, RANGE - 1)]);
        assert_eq!(ids.others(1_000_000 + RANGE - 1), [(1_000_000, RANGE - 1)]);
        assert_eq!(ids.others(1_000_010), [(1_000_000, 10), (1_000_011, RANGE - 11)]);
    }
}
