//! The single-threaded executor each engine core runs: a slab of local (`!Send`) tasks, a ready
//! queue, and wakers that push to that queue directly when called on the core's own thread and
//! send a message through the core's channel when called from anywhere else (a tokio thread
//! draining a stream the task feeds, another core).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, Wake, Waker};

/// A task: a future run to completion on one core.
pub(crate) type LocalTask = Pin<Box<dyn Future<Output = ()>>>;

/// Identifies a task slot and the use of it, so a late wake of a finished task whose slot was
/// reused does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskId {
    pub(crate) slot: usize,
    pub(crate) generation: u64,
}

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The executor identity of this thread (0 = not an engine core).
    static THREAD_ID: Cell<u64> = const { Cell::new(0) };
    /// Tasks woken on this thread, waiting for the loop to poll them.
    static LOCAL_READY: RefCell<VecDeque<TaskId>> = const { RefCell::new(VecDeque::new()) };
    /// Tasks spawned by tasks on this thread, waiting to be added to the slab.
    static LOCAL_SPAWNED: RefCell<Vec<LocalTask>> = const { RefCell::new(Vec::new()) };
}

/// Sends a wake to a core from another thread.
pub(crate) trait RemoteWake: Send + Sync + 'static {
    /// Asks the core to poll `id` again.
    fn wake_remote(&self, id: TaskId);
}

struct TaskWaker {
    thread: u64,
    id: TaskId,
    remote: Arc<dyn RemoteWake>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if THREAD_ID.with(Cell::get) == self.thread {
            LOCAL_READY.with(|q| q.borrow_mut().push_back(self.id));
        } else {
            self.remote.wake_remote(self.id);
        }
    }
}

/// Queues `task` to run on the current core; panics when called off an engine core.
pub(crate) fn spawn_local(task: LocalTask) {
    assert!(
        THREAD_ID.with(Cell::get) != 0,
        "spawn_local called outside an engine core"
    );
    LOCAL_SPAWNED.with(|s| s.borrow_mut().push(task));
}

/// The task slab and ready queue of one core.
pub(crate) struct Executor {
    thread: u64,
    tasks: Vec<Option<(u64, LocalTask)>>,
    free: Vec<usize>,
    next_generation: u64,
    remote: Arc<dyn RemoteWake>,
}

impl Executor {
    /// An executor for the calling thread; remote wakes go through `remote`.
    pub(crate) fn new(remote: Arc<dyn RemoteWake>) -> Self {
        let thread = NEXT_THREAD_ID.fetch_add(1, Relaxed);
        THREAD_ID.with(|t| t.set(thread));
        Executor {
            thread,
            tasks: Vec::new(),
            free: Vec::new(),
            next_generation: 1,
            remote,
        }
    }

    /// Adds a task and marks it ready.
    pub(crate) fn spawn(&mut self, task: LocalTask) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                self.tasks[s] = Some((generation, task));
                s
            }
            None => {
                self.tasks.push(Some((generation, task)));
                self.tasks.len() - 1
            }
        };
        LOCAL_READY.with(|q| q.borrow_mut().push_back(TaskId { slot, generation }));
    }

    /// Marks a task ready (a wake that came through the core's channel).
    pub(crate) fn wake(&mut self, id: TaskId) {
        LOCAL_READY.with(|q| q.borrow_mut().push_back(id));
    }

    /// Whether any task is ready or newly spawned.
    pub(crate) fn has_ready(&self) -> bool {
        LOCAL_READY.with(|q| !q.borrow().is_empty())
            || LOCAL_SPAWNED.with(|s| !s.borrow().is_empty())
    }

    /// Polls ready tasks until none is ready or `budget` polls were made (so new messages and
    /// I/O completions are looked at regularly); returns the number of polls.
    pub(crate) fn run_ready(&mut self, budget: usize) -> usize {
        let mut polls = 0;
        while polls < budget {
            let spawned = LOCAL_SPAWNED.with(|s| std::mem::take(&mut *s.borrow_mut()));
            for t in spawned {
                self.spawn(t);
            }
            let Some(id) = LOCAL_READY.with(|q| q.borrow_mut().pop_front()) else {
                break;
            };
            let Some(Some((generation, _))) = self.tasks.get(id.slot) else {
                continue;
            };
            if *generation != id.generation {
                continue;
            }
            // Take the task out while polling it, so a task that wakes itself is queued, not
            // polled re-entrantly.
            let Some((generation, mut task)) = self.tasks[id.slot].take() else {
                continue;
            };
            let waker = Waker::from(Arc::new(TaskWaker {
                thread: self.thread,
                id,
                remote: self.remote.clone(),
            }));
            let mut cx = Context::from_waker(&waker);
            polls += 1;
            match task.as_mut().poll(&mut cx) {
                Poll::Ready(()) => {
                    self.free.push(id.slot);
                }
                Poll::Pending => self.tasks[id.slot] = Some((generation, task)),
            }
        }
        polls
    }

    /// Drops every task (shutdown): their reply channels close, so callers see the call
    /// cancelled.
    pub(crate) fn drop_all(&mut self) {
        self.tasks.clear();
        self.free.clear();
        LOCAL_READY.with(|q| q.borrow_mut().clear());
        LOCAL_SPAWNED.with(|s| s.borrow_mut().clear());
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.drop_all();
        THREAD_ID.with(|t| t.set(0));
    }
}
