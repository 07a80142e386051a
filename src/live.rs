//! Live: a setting the running pipeline reads and a reload replaces.
//!
//! Owns: the current value and an epoch that changes with every replacement, so a reader
//! thread learns of a reload from one atomic load per batch and takes the lock only when the
//! value really changed. Must never: make a reader wait for a reload (replacing takes the
//! write lock for one pointer swap) or hand out a half-replaced value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub struct Live<T> {
    epoch: AtomicU64,
    value: RwLock<Arc<T>>,
}

impl<T> Live<T> {
    pub fn new(value: T) -> Arc<Live<T>> {
        Arc::new(Live {
            epoch: AtomicU64::new(0),
            value: RwLock::new(Arc::new(value)),
        })
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.value.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replaces the value; followers see it at their next [`Follower::changed`].
    pub fn replace(&self, value: T) {
        *self.value.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
        // After the write: a follower that sees the new epoch reads the new value.
        self.epoch.fetch_add(1, Ordering::Release);
    }

    /// How many times the value was replaced.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// A follower that has seen the current value.
    pub fn follow(self: &Arc<Self>) -> Follower<T> {
        Follower {
            seen: self.epoch(),
            live: Arc::clone(self),
        }
    }
}

/// One thread's view of a [`Live`] value: it asks once per batch whether it changed.
pub struct Follower<T> {
    live: Arc<Live<T>>,
    seen: u64,
}

impl<T> Follower<T> {
    /// The new value if it was replaced since this follower last looked.
    #[inline]
    pub fn changed(&mut self) -> Option<Arc<T>> {
        let now = self.live.epoch();
        if now == self.seen {
            return None;
        }
        self.seen = now;
        Some(self.live.get())
    }

    /// The current value (what a new follower starts from).
    pub fn current(&self) -> Arc<T> {
        self.live.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_sees_each_replacement_once_and_the_latest_value() {
        let live = Live::new(1);
        let mut f = live.follow();
        assert!(f.changed().is_none());
        live.replace(2);
        live.replace(3);
        assert_eq!(f.changed().as_deref(), Some(&3));
        assert!(f.changed().is_none());
        let late = live.follow();
        assert_eq!(*late.current(), 3);
    }

    #[test]
    fn followers_on_other_threads_see_the_new_value() {
        let live = Live::new(0u64);
        let mut f = live.follow();
        let t = std::thread::spawn(move || {
            loop {
                if let Some(v) = f.changed() {
                    return *v;
                }
                std::thread::yield_now();
            }
        });
        live.replace(42);
        assert_eq!(t.join().ok(), Some(42));
    }
}
