//! Task queues: queue work decided under a workflow lock and done after it, and the long poll
//! that hands tasks out.

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Store, WfCell, lock, norm_domain, queue_key};
use crate::model::{Task, TaskStatus, now_ms};
use crate::stats::inc;

/// One task queue (a task type in a domain) and the long polls waiting on it.
#[derive(Default)]
pub struct Queue {
    items: Mutex<VecDeque<Arc<str>>>,
    notify: Notify,
}

/// Queue work decided under a workflow lock and done after releasing it.
pub(super) enum Action {
    Push {
        key: String,
        id: Arc<str>,
    },
    PushLater {
        key: String,
        id: Arc<str>,
        delay_ms: u64,
        wf: Arc<WfCell>,
        idx: usize,
    },
    Unqueue {
        key: String,
        id: Arc<str>,
    },
}

/// How many tasks a poll wants and how long it waits for them.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    pub count: usize,
    pub timeout_ms: u64,
    /// Wait for all `count` until the timeout instead of answering with the first task.
    pub wait_for_count: bool,
}

impl Want {
    /// The real single poll (and update-v2's next task): one task, waiting up to 100 ms.
    pub const ONE: Want = Want {
        count: 1,
        timeout_ms: 100,
        wait_for_count: false,
    };
}

/// Takes a task that ends out of its queue (after the workflow lock is released).
pub(super) fn unqueue(t: &mut Task, actions: &mut Vec<Action>) {
    if t.internal.in_queue {
        t.internal.in_queue = false;
        actions.push(Action::Unqueue {
            key: queue_key(&t.task_type, t.domain.as_deref()).into_owned(),
            id: t.task_id.clone(),
        });
    }
}

impl Store {
    /// The queue for a key, created on first use.
    fn queue(&self, key: &str) -> Arc<Queue> {
        if let Some(q) = self
            .queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return q.clone();
        }
        self.queues
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    pub(super) fn push_many(&self, key: &str, ids: impl IntoIterator<Item = Arc<str>>) {
        let q = self.queue(key);
        lock(&q.items).extend(ids);
        q.notify.notify_waiters();
    }

    pub(super) fn run(self: &Arc<Self>, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Push { key, id } => self.push_many(&key, [id]),
                Action::PushLater {
                    key,
                    id,
                    delay_ms,
                    wf,
                    idx,
                } => {
                    let store = self.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                        let push = {
                            let mut w = lock(&wf);
                            let t = &mut w.tasks[idx];
                            let due = t.status == TaskStatus::Scheduled && !t.internal.in_queue;
                            if due {
                                t.internal.in_queue = true;
                            }
                            due
                        };
                        if push {
                            store.push_many(&key, [id]);
                        }
                    });
                }
                Action::Unqueue { key, id } => {
                    let q = self.queue(&key);
                    lock(&q.items).retain(|x| *x != id);
                }
            }
        }
    }

    /// Pops up to `count` tasks, marks them IN_PROGRESS and appends their JSON to `buf`
    /// (comma-separated, after the `had` tasks already in it). Returns how many were taken.
    fn try_poll(
        &self,
        q: &Queue,
        worker: Option<&str>,
        count: usize,
        had: usize,
        buf: &mut Vec<u8>,
    ) -> usize {
        let ids: Vec<Arc<str>> = {
            let mut items = lock(&q.items);
            let n = count.min(items.len());
            if n == 0 {
                return 0;
            }
            items.drain(..n).collect()
        };
        let now = now_ms();
        let mut taken = 0;
        let mut deadlines = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(r) = self.lookup(&id) else { continue };
            let mut w = lock(&r.wf);
            let t = &mut w.tasks[r.idx];
            t.internal.in_queue = false;
            if t.status != TaskStatus::Scheduled {
                continue;
            }
            t.status = TaskStatus::InProgress;
            t.poll_count += 1;
            inc(&self.stats.deliveries);
            if t.poll_count > 1 {
                inc(&self.stats.redelivered);
            }
            t.worker_id = worker.map(str::to_string);
            if t.start_time == 0 {
                t.start_time = now;
            }
            if t.first_start_time == 0 {
                t.first_start_time = now;
            }
            t.update_time = now;
            t.callback_after_seconds = 0;
            self.stats
                .in_progress
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            deadlines.push(Reverse((now + t.response_timeout_seconds * 1000, id)));
            if had + taken > 0 {
                buf.push(b',');
            }
            // Serializing into a Vec cannot fail for these types.
            let _ = serde_json::to_writer(&mut *buf, &*t);
            taken += 1;
        }
        if !deadlines.is_empty() {
            lock(&self.timeouts).extend(deadlines);
        }
        taken
    }

    /// A long poll: returns as soon as at least one task is taken (with `wait_for_count`: all
    /// `count`), or after `timeout_ms` with what it has. Appends the tasks' JSON to `buf`,
    /// comma-separated; returns how many.
    pub async fn poll(
        &self,
        task_type: &str,
        domain: Option<&str>,
        worker: Option<&str>,
        want: Want,
        buf: &mut Vec<u8>,
    ) -> usize {
        let Want {
            count,
            timeout_ms,
            wait_for_count,
        } = want;
        if count == 0 {
            return 0;
        }
        let q = self.queue(&queue_key(task_type, norm_domain(domain)));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let enough = if wait_for_count { count } else { 1 };
        let mut had = 0;
        loop {
            let notified = q.notify.notified();
            tokio::pin!(notified);
            // Registered before looking at the queue so that a push in between is not missed.
            notified.as_mut().enable();
            had += self.try_poll(&q, worker, count - had, had, buf);
            if had >= enough || tokio::time::Instant::now() >= deadline {
                return had;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return had + self.try_poll(&q, worker, count - had, had, buf);
            }
        }
    }

    /// Number of task ids waiting in one queue.
    pub fn queue_size(&self, task_type: &str, domain: Option<&str>) -> usize {
        let key = queue_key(task_type, norm_domain(domain));
        let q = self
            .queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&*key)
            .cloned();
        q.map_or(0, |q| lock(&q.items).len())
    }

    /// Task ids waiting in all queues.
    pub fn queued_total(&self) -> u64 {
        let qs: Vec<_> = self
            .queues
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        qs.iter().map(|q| lock(&q.items).len() as u64).sum()
    }
}
