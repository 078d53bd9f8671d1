// mcp-gateway patch: the most recently idle thread takes the next message (upstream: a
// `Condvar`, whose `notify_one` wakes the thread that has waited longest, so that requests went
// round all the worker threads in turn, each one's stack and caches cold by its turn). Waiters
// park on a stack of their own; `push` wakes the one on top.
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

enum Control<T> {
    Elem(T),
    Unblock,
}

/// A thread parked in `pop`; `woken` is set by the `push` that took it off the stack.
struct Waiter {
    thread: Thread,
    woken: AtomicBool,
}

thread_local! {
    // One per thread, reused for every wait (a thread waits on one queue at a time).
    static WAITER: RefCell<Option<Arc<Waiter>>> = const { RefCell::new(None) };
}

fn this_threads_waiter() -> Arc<Waiter> {
    WAITER.with(|slot| {
        slot.borrow_mut()
            .get_or_insert_with(|| {
                Arc::new(Waiter {
                    thread: thread::current(),
                    woken: AtomicBool::new(false),
                })
            })
            .clone()
    })
}

struct State<T> {
    queue: VecDeque<Control<T>>,
    /// Threads waiting for a message, the most recent last.
    idle: Vec<Arc<Waiter>>,
}

pub struct MessagesQueue<T>
where
    T: Send,
{
    state: Mutex<State<T>>,
}

impl<T> MessagesQueue<T>
where
    T: Send,
{
    pub fn with_capacity(capacity: usize) -> Arc<MessagesQueue<T>> {
        Arc::new(MessagesQueue {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity),
                idle: Vec::with_capacity(capacity),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, control: Control<T>) {
        let mut state = self.lock();
        state.queue.push_back(control);
        let waiter = state.idle.pop();
        // Woken after the lock is let go (woken while it was held, the thread found it taken
        // and slept again).
        drop(state);
        if let Some(waiter) = waiter {
            waiter.woken.store(true, Ordering::Release);
            waiter.thread.unpark();
        }
    }

    /// Pushes an element to the queue.
    pub fn push(&self, value: T) {
        self.enqueue(Control::Elem(value));
    }

    /// Unblock one thread stuck in pop loop.
    pub fn unblock(&self) {
        self.enqueue(Control::Unblock);
    }

    /// What the front of the queue gives: `None` when it is empty, `Some(None)` for an unblock.
    fn take_front(state: &mut State<T>) -> Option<Option<T>> {
        state.queue.pop_front().map(|control| match control {
            Control::Elem(value) => Some(value),
            Control::Unblock => None,
        })
    }

    /// Pops an element. Blocks until one is available.
    /// Returns None in case unblock() was issued.
    pub fn pop(&self) -> Option<T> {
        self.pop_until(None)
    }

    /// Tries to pop an element without blocking.
    pub fn try_pop(&self) -> Option<T> {
        Self::take_front(&mut self.lock()).flatten()
    }

    /// Tries to pop an element without blocking
    /// more than the specified timeout duration
    /// or unblock() was issued
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        self.pop_until(Some(Instant::now() + timeout))
    }

    /// Waits on the stack of idle threads for an element, until `deadline` if there is one.
    fn pop_until(&self, deadline: Option<Instant>) -> Option<T> {
        let waiter = this_threads_waiter();
        let mut state = self.lock();
        loop {
            if let Some(front) = Self::take_front(&mut state) {
                return front;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            waiter.woken.store(false, Ordering::Relaxed);
            state.idle.push(waiter.clone());
            drop(state);
            while !waiter.woken.load(Ordering::Acquire) {
                match deadline {
                    None => thread::park(),
                    Some(deadline) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        thread::park_timeout(deadline - now);
                    }
                }
            }
            state = self.lock();
            if !waiter.woken.load(Ordering::Acquire) {
                if let Some(at) = state.idle.iter().position(|w| Arc::ptr_eq(w, &waiter)) {
                    // Timed out, and still on the stack: leave it.
                    state.idle.remove(at);
                    return None;
                }
                // Taken off the stack by a `push` that has yet to set `woken`: wait for it, so
                // that its late store cannot count as the wake-up of a later wait.
                drop(state);
                while !waiter.woken.load(Ordering::Acquire) {
                    thread::park();
                }
                state = self.lock();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MessagesQueue;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn the_latest_waiter_is_woken_first() {
        let queue = MessagesQueue::<u32>::with_capacity(4);
        let (tx, rx) = mpsc::channel();
        let mut handles = Vec::new();
        for name in 0..3u32 {
            let mine = queue.clone();
            let tx = tx.clone();
            handles.push(thread::spawn(move || {
                while let Some(value) = mine.pop() {
                    tx.send((name, value)).unwrap();
                }
            }));
            // Each thread is parked before the next one starts.
            while queue.lock().idle.len() as u32 != name + 1 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        for value in 0..5 {
            queue.push(value);
            let (name, got) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(
                (name, got),
                (2, value),
                "the last thread to wait takes every message"
            );
            while queue.lock().idle.len() != 3 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        for _ in 0..3 {
            queue.unblock();
        }
        for handle in handles {
            handle.join().unwrap();
        }
    }

    #[test]
    fn every_message_is_taken_by_many_threads() {
        let queue = MessagesQueue::<u32>::with_capacity(4);
        let (tx, rx) = mpsc::channel();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let queue = queue.clone();
                let tx = tx.clone();
                thread::spawn(move || {
                    while let Some(value) = queue.pop() {
                        tx.send(value).unwrap();
                    }
                })
            })
            .collect();
        let pushers: Vec<_> = (0..4u32)
            .map(|p| {
                let queue = queue.clone();
                thread::spawn(move || {
                    for i in 0..2_000 {
                        queue.push(p * 10_000 + i);
                    }
                })
            })
            .collect();
        for pusher in pushers {
            pusher.join().unwrap();
        }
        let mut got: Vec<u32> = (0..8_000)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort_unstable();
        let want: Vec<u32> = (0..4u32)
            .flat_map(|p| (0..2_000).map(move |i| p * 10_000 + i))
            .collect();
        assert_eq!(got, want);
        for _ in 0..4 {
            queue.unblock();
        }
        for handle in handles {
            handle.join().unwrap();
        }
    }

    #[test]
    fn pop_timeout_returns_none_in_time_and_leaves_the_stack() {
        let queue = MessagesQueue::<u32>::with_capacity(1);
        let started = std::time::Instant::now();
        assert_eq!(queue.pop_timeout(Duration::from_millis(30)), None);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(queue.lock().idle.is_empty());
        queue.push(7);
        assert_eq!(queue.pop_timeout(Duration::from_millis(30)), Some(7));
        let waiting = {
            let queue = queue.clone();
            thread::spawn(move || queue.pop_timeout(Duration::from_secs(10)))
        };
        while queue.lock().idle.is_empty() {
            thread::sleep(Duration::from_millis(1));
        }
        queue.push(8);
        assert_eq!(waiting.join().unwrap(), Some(8));
    }
}
