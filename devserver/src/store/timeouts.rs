//! Response timeouts: IN_PROGRESS tasks a worker stopped answering for.

use std::cmp::Reverse;
use std::sync::Arc;

use super::{Store, lock};
use crate::model::{TaskStatus, now_ms};
use crate::stats::inc;

impl Store {
    /// Times out IN_PROGRESS tasks whose response timeout has passed; returns how many.
    pub fn sweep(self: &Arc<Self>) -> usize {
        let now = now_ms();
        let due: Vec<Arc<str>> = {
            let mut heap = lock(&self.timeouts);
            let mut due = Vec::new();
            while heap.peek().is_some_and(|Reverse((d, _))| *d <= now) {
                if let Some(Reverse((_, id))) = heap.pop() {
                    due.push(id);
                }
            }
            due
        };
        if due.is_empty() {
            return 0;
        }
        let mut later = Vec::new();
        let mut actions = Vec::new();
        let mut timed_out = 0;
        for id in due {
            let Some(r) = self.lookup(&id) else { continue };
            let mut guard = lock(&r.wf);
            let w = &mut *guard;
            let t = &mut w.tasks[r.idx];
            if t.status != TaskStatus::InProgress {
                continue;
            }
            let limit =
                t.update_time + (t.response_timeout_seconds + t.callback_after_seconds) * 1000;
            if now < limit {
                // Its lease was extended since the entry was pushed.
                later.push(Reverse((limit, id)));
                continue;
            }
            t.status = TaskStatus::TimedOut;
            t.end_time = now;
            t.reason_for_incompletion = Some(format!(
                "responseTimeoutSeconds: {} exceeded for task {}",
                t.response_timeout_seconds, t.task_id
            ));
            self.stats
                .in_progress
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            inc(&self.stats.timed_out);
            timed_out += 1;
            self.decide(&r.wf, w, r.idx, now, &mut actions);
        }
        if !later.is_empty() {
            lock(&self.timeouts).extend(later);
        }
        self.run(actions);
        timed_out
    }
}
