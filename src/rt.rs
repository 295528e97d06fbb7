//! Runtime topology: how many serving workers there are, which one this thread is, and one
//! value per worker ([`PerWorker`]). A leaf: the serving side (which starts the workers) and
//! the upstream side (whose connection pools are per worker) both depend on it, and it on
//! neither — linkerd keeps the same facts in its `rt` module.
//!
//! Invariant: [`current`] is `Some` worker index only on a serving worker's thread, so a value
//! picked with [`PerWorker::get`] there is that worker's own and its tasks run on its runtime.

use std::cell::Cell;
use std::num::NonZeroUsize;
use std::sync::Arc;

thread_local! {
    /// The index of the worker running on this thread; `None` off the workers.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The default number of workers: the CPUs this process may use (affinity and cgroup
/// quota included), at least one. Computed once, at start-up, and passed down: the pools
/// and the workers must agree on it.
pub(crate) fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Marks this thread as serving worker `index` (called once, first thing on its thread).
pub(crate) fn enter_worker(index: usize) {
    CURRENT.set(Some(index));
}

/// The index of the worker this thread is, or 0 off the workers (tests, `doctor`, the
/// control runtime): what [`PerWorker::get`] picks by.
pub(crate) fn current() -> usize {
    CURRENT.with(Cell::get).unwrap_or(0)
}

/// One value per worker (an upstream client and its connection pool), so that each worker
/// only uses connections whose tasks run on its own runtime.
#[derive(Clone)]
pub struct PerWorker<T> {
    items: Arc<[T]>,
}

impl<T> PerWorker<T> {
    /// Makes `count` values (at least one).
    pub fn try_new<E>(count: usize, mut make: impl FnMut() -> Result<T, E>) -> Result<Self, E> {
        let items = (0..count.max(1))
            .map(|_| make())
            .collect::<Result<Vec<T>, E>>()?;
        Ok(PerWorker {
            items: items.into(),
        })
    }

    /// This worker's value (the first one off the workers).
    pub fn get(&self) -> &T {
        &self.items[current() % self.items.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_values_are_picked_by_the_current_worker() {
        let mut next = 0;
        let values = PerWorker::try_new(3, || {
            next += 1;
            Ok::<_, ()>(next)
        })
        .expect("values");
        assert_eq!(*values.get(), 1, "off the workers: the first");
        let on_worker_2 = std::thread::spawn(move || {
            enter_worker(2);
            *values.get()
        });
        assert_eq!(on_worker_2.join().expect("thread"), 3);
    }

    #[test]
    fn at_least_one_value_and_one_worker() {
        let values = PerWorker::try_new(0, || Ok::<_, ()>("only")).expect("values");
        assert_eq!(*values.get(), "only");
        assert!(default_count() >= 1);
    }
}
