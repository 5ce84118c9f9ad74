//! The scheduling queue, as upstream's `PriorityQueue`: every pending pod of ours is in
//! exactly one of three sub-queues, or in flight (popped, being scheduled or bound).
//!
//! - **active**: ready to be tried, highest `spec.priority` first, then first come first
//!   served (upstream's `PrioritySort`);
//! - **backoff**: failed recently and waits `1 s × 2^(attempts-1)` (at most 10 s) before
//!   going back to active, so a pod that keeps failing cannot hog the scheduler;
//! - **unschedulable**: no node fits; it waits for a cluster event that could change that
//!   ([`ClusterEvent`]: a node added or changed, an assigned pod deleted or added) instead
//!   of polling, and is flushed back after [`MAX_IN_UNSCHEDULABLE`] in case an event was
//!   missed. Only pods rejected by a plugin the event concerns move (a coarse version of
//!   upstream's queueing hints): a new pod on a node cannot make room for a pod that
//!   needs more CPU, but it can satisfy a pod affinity.
//!
//! A pod that fails while a relevant event arrived during its cycle goes to backoff, not
//! unschedulable (upstream's `moveRequestCycle`), so that event is not lost.
//!
//! Pure: time comes in as an argument, so tests drive it with a fake clock.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// Upstream's `DefaultPodInitialBackoffDuration`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Upstream's `DefaultPodMaxBackoffDuration`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `DefaultPodMaxInUnschedulablePodsDuration`.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A change in the cluster that may make unschedulable pods schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    /// A node appeared, or its labels, taints, allocatable, conditions or
    /// `spec.unschedulable` changed: any filter may now pass.
    NodeChange,
    /// A pod on a node went away (deleted, finished, or preempted): resources, ports and
    /// anti-affinity conflicts may be freed.
    AssignedPodDelete,
    /// A pod landed on a node: a pod affinity or spread constraint may now be met.
    AssignedPodAdd,
}

impl ClusterEvent {
    /// Whether a pod rejected by `plugin` may pass after this event.
    fn concerns(self, plugin: &str) -> bool {
        use crate::plugins::{inter_pod_affinity, node_ports, node_resources_fit, pod_topology_spread};
        match self {
            ClusterEvent::NodeChange => true,
            ClusterEvent::AssignedPodDelete => {
                [node_resources_fit::NAME, node_ports::NAME, inter_pod_affinity::NAME, pod_topology_spread::NAME]
                    .contains(&plugin)
            }
            ClusterEvent::AssignedPodAdd => [inter_pod_affinity::NAME, pod_topology_spread::NAME].contains(&plugin),
        }
    }
}

/// Where a queued pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Popped in this scheduling cycle.
    InFlight(u64),
}

#[derive(Debug)]
struct Entry {
    pod: Pod,
    priority: i32,
    /// Scheduling attempts so far (upstream's `Attempts`).
    attempts: u32,
    last_failure: Option<Instant>,
    /// Plugins that rejected the pod in its last attempt (empty: unknown, any event).
    rejected_by: BTreeSet<&'static str>,
    place: Place,
    /// Bumped whenever the entry enters a heap; older heap items are stale.
    stamp: u64,
}

/// A popped pod.
#[derive(Debug, Clone)]
pub struct Queued {
    pub pod: Pod,
    /// Attempts including this one.
    pub attempts: u32,
}

/// Active order: higher priority first, then lower stamp (earlier) first.
#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    stamp: u64,
    uid: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority.cmp(&other.priority).then(other.stamp.cmp(&self.stamp))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The queue; see the module docs.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// The uids in unschedulable, so events and flushes cost O(unschedulable), not
    /// O(all pending pods).
    unschedulable: HashSet<String>,
    next_stamp: u64,
    scheduling_cycle: u64,
    /// The cycle during which the last relevant move request arrived.
    move_request_cycle: Option<u64>,
}

/// Upstream's `calculateBackoffDuration`: 1 s doubling per attempt, at most 10 s.
pub fn backoff_duration(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

fn uid_of(pod: &Pod) -> Option<String> {
    pod.metadata.uid.clone()
}

/// Whether an update of a pending pod could change where it fits: its spec, labels or
/// annotations (not its status, which this scheduler writes itself).
fn changed_for_scheduling(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl SchedulingQueue {
    /// Pods in (active, backoff, unschedulable, in flight).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for e in self.entries.values() {
            match e.place {
                Place::Active => c.0 += 1,
                Place::Backoff(_) => c.1 += 1,
                Place::Unschedulable(_) => c.2 += 1,
                Place::InFlight(_) => c.3 += 1,
            }
        }
        c
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    fn move_to_active(&mut self, uid: &str) {
        let stamp = self.stamp();
        self.unschedulable.remove(uid);
        let Some(e) = self.entries.get_mut(uid) else { return };
        e.place = Place::Active;
        e.stamp = stamp;
        self.active.push(ActiveItem { priority: e.priority, stamp, uid: uid.to_string() });
    }

    fn move_to_backoff(&mut self, uid: &str, until: Instant) {
        let stamp = self.stamp();
        self.unschedulable.remove(uid);
        let Some(e) = self.entries.get_mut(uid) else { return };
        e.place = Place::Backoff(until);
        e.stamp = stamp;
        self.backoff.push(Reverse((until, stamp, uid.to_string())));
    }

    /// Back to active, or to backoff while its back-off has not run out.
    fn requeue(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get(uid) else { return };
        match e.last_failure.map(|t| t + backoff_duration(e.attempts)) {
            Some(until) if until > now => self.move_to_backoff(uid, until),
            _ => self.move_to_active(uid),
        }
    }

    /// A pending pod of ours was seen (added or updated by the watch).
    pub fn add_or_update(&mut self, pod: Pod, now: Instant) {
        let Some(uid) = uid_of(&pod) else { return };
        match self.entries.get_mut(&uid) {
            None => {
                let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
                self.entries.insert(
                    uid.clone(),
                    Entry {
                        pod,
                        priority,
                        attempts: 0,
                        last_failure: None,
                        rejected_by: BTreeSet::new(),
                        place: Place::Active,
                        stamp: 0,
                    },
                );
                self.move_to_active(&uid);
            }
            Some(e) => {
                let relevant = changed_for_scheduling(&e.pod, &pod);
                e.pod = pod;
                if relevant && matches!(e.place, Place::Unschedulable(_)) {
                    self.requeue(&uid, now);
                }
            }
        }
    }

    /// The pod is no longer pending (bound, deleted, finished, or not ours).
    pub fn delete(&mut self, uid: &str) {
        self.entries.remove(uid);
        self.unschedulable.remove(uid);
    }

    /// Keeps only these uids (after a re-list).
    pub fn retain(&mut self, uids: &HashSet<String>) {
        self.entries.retain(|u, _| uids.contains(u));
        self.unschedulable.retain(|u| uids.contains(u));
    }

    /// Moves backoff pods whose time has come, and unschedulable pods left there too long,
    /// to active.
    fn flush(&mut self, now: Instant) {
        while let Some(Reverse((until, stamp, uid))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            if self.entries.get(&uid).is_some_and(|e| e.stamp == stamp && matches!(e.place, Place::Backoff(_))) {
                self.move_to_active(&uid);
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|u| {
                self.entries.get(*u).is_some_and(
                    |e| matches!(e.place, Place::Unschedulable(since) if now.duration_since(since) >= MAX_IN_UNSCHEDULABLE),
                )
            })
            .cloned()
            .collect();
        for uid in stale {
            self.move_to_active(&uid);
        }
    }

    /// The next pod to schedule, if one is ready; it is in flight until [`Self::done`],
    /// [`Self::failed`] or [`Self::delete`].
    pub fn pop(&mut self, now: Instant) -> Option<Queued> {
        self.flush(now);
        while let Some(item) = self.active.pop() {
            let cycle = self.scheduling_cycle + 1;
            let Some(e) = self.entries.get_mut(&item.uid) else { continue };
            if e.stamp != item.stamp || e.place != Place::Active {
                continue;
            }
            self.scheduling_cycle = cycle;
            e.place = Place::InFlight(cycle);
            e.attempts += 1;
            return Some(Queued { pod: e.pod.clone(), attempts: e.attempts });
        }
        None
    }

    /// When the earliest backoff pod becomes ready (to sleep until then).
    pub fn next_ready(&self) -> Option<Instant> {
        self.backoff.iter().map(|Reverse((t, _, _))| *t).min()
    }

    /// The pod was bound: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.delete(uid);
    }

    /// The attempt failed. `rejected_by`: the plugins that rejected it when no node fits
    /// (it waits in unschedulable for a relevant event); `None` for an error (API, binding),
    /// retried after its back-off.
    pub fn failed(&mut self, uid: &str, rejected_by: Option<BTreeSet<&'static str>>, now: Instant) {
        let move_request = self.move_request_cycle;
        let Some(e) = self.entries.get_mut(uid) else { return };
        let Place::InFlight(cycle) = e.place else {
            return; // already moved (an update or event requeued it)
        };
        e.last_failure = Some(now);
        let until = now + backoff_duration(e.attempts);
        let Some(plugins) = rejected_by else {
            self.move_to_backoff(uid, until);
            return;
        };
        e.rejected_by = plugins;
        if move_request.is_some_and(|m| m >= cycle) {
            self.move_to_backoff(uid, until);
        } else {
            e.place = Place::Unschedulable(now);
            self.unschedulable.insert(uid.to_string());
        }
    }

    /// A cluster event: unschedulable pods it concerns go back to active (or backoff).
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) {
        let moving: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|u| {
                self.entries
                    .get(*u)
                    .is_some_and(|e| e.rejected_by.is_empty() || e.rejected_by.iter().any(|p| event.concerns(p)))
            })
            .cloned()
            .collect();
        for uid in moving {
            self.requeue(&uid, now);
        }
        self.move_request_cycle = Some(self.scheduling_cycle);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(uid: &str, priority: i32) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {"containers": [{"name": "c", "image": "i"}], "priority": priority}}))
        .unwrap()
    }

    fn names(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now)).map(|p| p.pod.metadata.uid.unwrap()).collect()
    }

    fn fit() -> Option<BTreeSet<&'static str>> {
        Some(BTreeSet::from(["NodeResourcesFit"]))
    }

    #[test]
    fn higher_priority_first_then_first_come() {
        let now = Instant::now();
        let mut q = SchedulingQueue::default();
        for (uid, prio) in [("a", 0), ("b", 100), ("c", 0), ("d", 100), ("e", -5)] {
            q.add_or_update(pod(uid, prio), now);
        }
        assert_eq!(names(&mut q, now), ["b", "d", "a", "c", "e"]);
        assert_eq!(q.counts(), (0, 0, 0, 5));
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let got: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff_duration(100), MAX_BACKOFF);

        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("a", 0), t0);
        assert_eq!(q.pop(t0).unwrap().attempts, 1);
        q.failed("a", None, t0);
        assert_eq!(q.counts(), (0, 1, 0, 0));
        assert!(q.pop(t0 + Duration::from_millis(999)).is_none());
        assert_eq!(q.next_ready(), Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(q.pop(t1).unwrap().attempts, 2);
        q.failed("a", None, t1);
        assert!(q.pop(t1 + Duration::from_millis(1999)).is_none(), "second failure: 2 s");
        assert!(q.pop(t1 + Duration::from_secs(2)).is_some());
    }

    #[test]
    fn unschedulable_pods_wait_for_a_relevant_event() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("cpu", 0), t0);
        q.add_or_update(pod("affinity", 0), t0);
        q.pop(t0);
        q.pop(t0);
        q.failed("cpu", fit(), t0);
        q.failed("affinity", Some(BTreeSet::from(["InterPodAffinity"])), t0);
        assert_eq!(q.counts(), (0, 0, 2, 0));
        let later = t0 + Duration::from_secs(30);
        assert!(q.pop(later).is_none(), "no polling");
        // A pod landing somewhere may satisfy an affinity, never frees CPU.
        q.on_event(ClusterEvent::AssignedPodAdd, later);
        assert_eq!(names(&mut q, later), ["affinity"]);
        q.on_event(ClusterEvent::AssignedPodDelete, later);
        assert_eq!(names(&mut q, later), ["cpu"]);
        // Still backing off when the event comes: it goes through backoff.
        q.failed("cpu", fit(), later);
        q.on_event(ClusterEvent::NodeChange, later + Duration::from_millis(500));
        assert_eq!(q.counts(), (0, 1, 0, 1));
        assert!(q.pop(later + Duration::from_millis(1500)).is_none(), "attempt 2 backs off 2 s");
        assert!(q.pop(later + Duration::from_secs(2)).is_some());
    }

    #[test]
    fn an_event_during_the_cycle_is_not_lost() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("a", 0), t0);
        q.pop(t0);
        q.on_event(ClusterEvent::NodeChange, t0); // a node joined while "a" was being tried
        q.failed("a", fit(), t0);
        assert_eq!(q.counts(), (0, 1, 0, 0), "to backoff, not unschedulable");
        // A later pod failing without such an event waits for one.
        q.add_or_update(pod("b", 0), t0);
        q.pop(t0);
        q.failed("b", fit(), t0);
        assert_eq!(q.counts(), (0, 1, 1, 0));
    }

    #[test]
    fn updates_deletes_and_the_leftover_flush() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::default();
        q.add_or_update(pod("a", 0), t0);
        q.add_or_update(pod("b", 0), t0);
        q.pop(t0);
        q.pop(t0);
        q.failed("a", fit(), t0);
        q.failed("b", fit(), t0);
        // A status-only update (our own PodScheduled condition) moves nothing.
        let mut status_only = pod("a", 0);
        status_only.status = Some(Default::default());
        q.add_or_update(status_only, t0);
        assert_eq!(q.counts(), (0, 0, 2, 0));
        // A spec change (a user lowered its requests) retries it.
        let mut edited = pod("a", 0);
        edited.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
        q.add_or_update(edited, t0 + Duration::from_secs(5));
        assert_eq!(names(&mut q, t0 + Duration::from_secs(5)), ["a"]);
        q.delete("a");
        assert!(!q.contains("a"));
        q.failed("a", fit(), t0); // deleted meanwhile: ignored
        assert!(!q.contains("a"));
        // Unschedulable for five minutes: tried again even without an event.
        assert!(q.pop(t0 + MAX_IN_UNSCHEDULABLE - Duration::from_secs(1)).is_none());
        assert_eq!(names(&mut q, t0 + MAX_IN_UNSCHEDULABLE), ["b"]);
        q.done("b");
        assert_eq!(q.counts(), (0, 0, 0, 0));
        q.add_or_update(pod("c", 0), t0);
        q.retain(&Default::default());
        assert!(q.pop(t0).is_none());
    }
}
