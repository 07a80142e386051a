//! The byte-bounded queue of unsent batches between the flush thread and the senders.
//! Pushing never blocks: a batch that does not fit is handed back for the caller to count.

use crate::batch::Batch;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct Queue {
    batches: Mutex<VecDeque<Batch>>,
    /// Bytes of batches queued or in flight: unsent data, which `max_bytes` bounds.
    bytes: AtomicUsize,
    max_bytes: usize,
    notify: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Queue {
    pub fn new(max_bytes: usize) -> Self {
        Queue {
            batches: Mutex::new(VecDeque::new()),
            bytes: AtomicUsize::new(0),
            max_bytes,
            notify: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Batch>> {
        self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `batch` unless the unsent bytes would exceed the limit.
    pub fn push(&self, batch: Batch) -> Result<(), Batch> {
        let mut q = self.lock();
        let len = batch.body.len();
        if self.bytes.load(Ordering::Relaxed) + len > self.max_bytes {
            return Err(batch);
        }
        self.bytes.fetch_add(len, Ordering::Relaxed);
        q.push_back(batch);
        drop(q);
        self.notify.notify_one();
        Ok(())
    }

    /// Puts a batch back at the head (the halves of a split one), bytes counted again.
    pub fn push_front(&self, batch: Batch) {
        self.bytes.fetch_add(batch.body.len(), Ordering::Relaxed);
        self.lock().push_front(batch);
        self.notify.notify_one();
    }

    /// The next batch; `None` once closed and empty. Its bytes stay counted until `done`.
    pub async fn pop(&self) -> Option<Batch> {
        loop {
            let notified = self.notify.notified();
            if let Some(b) = self.lock().pop_front() {
                return Some(b);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// A popped batch was delivered or dropped: its bytes no longer count.
    pub fn done(&self, batch: &Batch) {
        self.bytes.fetch_sub(batch.body.len(), Ordering::Relaxed);
    }

    /// No more pushes; senders finish what is queued, then `pop` returns `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Removes everything still queued (at the end of the shutdown grace).
    pub fn drain(&self) -> Vec<Batch> {
        let drained: Vec<Batch> = self.lock().drain(..).collect();
        for b in &drained {
            self.done(b);
        }
        drained
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn batch(n: usize) -> Batch {
        Batch {
            body: Bytes::from(vec![b'x'; n]),
            metrics: 1,
        }
    }

    #[tokio::test]
    async fn bounded_by_unsent_bytes_including_in_flight() {
        let q = Queue::new(100);
        assert!(q.push(batch(60)).is_ok());
        assert!(q.push(batch(60)).is_err(), "over the byte limit");
        let b = q.pop().await.unwrap();
        assert!(q.push(batch(60)).is_err(), "in flight still counts");
        q.done(&b);
        assert!(q.push(batch(60)).is_ok());
        q.close();
        assert!(q.pop().await.is_some(), "closing still drains");
        assert!(q.pop().await.is_none());
    }

    #[tokio::test]
    async fn a_waiting_sender_wakes_on_push() {
        let q = std::sync::Arc::new(Queue::new(1000));
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await.map(|b| b.body.len()) }
        });
        tokio::task::yield_now().await;
        q.push(batch(7)).unwrap();
        assert_eq!(waiter.await.unwrap(), Some(7));
    }
}
