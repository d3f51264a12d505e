//! `task_queue_depth`: every `queue_depth_interval`, one `GET /tasks/queue/size` per worker
//! and server, off the polling path (its own task; the reads run concurrently, each bounded by
//! the request timeout). A read that fails keeps the last value and counts an error.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinSet;

use super::{Inner, RUNNING};

pub(super) async fn watch(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let reads = {
            let Some(inner) = inner.upgrade() else { return };
            if inner.state.load(Ordering::Acquire) != RUNNING {
                return;
            }
            start_reads(&inner)
        };
        // Next round only after this one: a slow server never piles reads up.
        reads.join_all().await;
    }
}

fn start_reads(inner: &Inner) -> JoinSet<()> {
    let workers = inner.workers.lock().map(|w| w.clone()).unwrap_or_default();
    let mut reads = JoinSet::new();
    for worker in workers {
        for member in inner.servers.members() {
            let client = Arc::clone(&member.client);
            let metrics = Arc::clone(&worker.inner.metrics);
            let task_type = worker.task_type().to_owned();
            let domain = worker.options().domain.clone();
            reads.spawn_on(
                async move {
                    match client.queue_size(&task_type, domain.as_deref()).await {
                        Ok(depth) => metrics.set_queue_depth(client.url(), depth),
                        Err(e) => {
                            metrics.queue_depth_errors.inc();
                            tracing::debug!(%task_type, server = %client.url(), error = %e, "queue depth not read");
                        }
                    }
                },
                &inner.handle,
            );
        }
    }
    reads
}
