//! The single-threaded executor each engine core runs: a slab of local (`!Send`) tasks, a ready
//! queue, and wakers that push to that queue directly when called on the core's own thread and
//! send a message through the core's channel when called from anywhere else (a tokio thread
//! draining a stream the task feeds, another core).
//!
//! Tasks run in two lanes. Every task starts in the front lane; one that finds it has a large
//! job ahead (sorting thousands of series, reading a big selection) moves itself to the back
//! lane with [`back_lane`]. The core polls front-lane tasks first and a back-lane task when no
//! front-lane task is ready, or after [`FRONT_STREAK`] front-lane polls in a row, so a small
//! request is not queued behind fifty big ones and a big one is never starved.

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
    /// Set by [`back_lane`] while a task is polled: move that task to the back lane.
    static TO_BACK_LANE: Cell<bool> = const { Cell::new(false) };
}

/// Front-lane polls in a row after which a ready back-lane task is polled anyway.
pub(crate) const FRONT_STREAK: usize = 16;

/// Moves the calling task to its core's back lane and yields: it goes on only when no
/// front-lane task is ready (or its turn comes after [`FRONT_STREAK`] front-lane polls).
/// Called by a job about to do a lot of work, so that small jobs queued behind it run first.
/// Off an engine core, it only yields once.
pub async fn back_lane() {
    let mut asked = false;
    std::future::poll_fn(move |cx| {
        if asked {
            return Poll::Ready(());
        }
        asked = true;
        if THREAD_ID.with(Cell::get) == 0 {
            cx.waker().wake_by_ref();
        } else {
            // The executor queues the task in its back lane once this poll returns.
            TO_BACK_LANE.with(|b| b.set(true));
        }
        Poll::Pending
    })
    .await
}

/// Which queue a task waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Front,
    Back,
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
    tasks: Vec<Option<(u64, Lane, LocalTask)>>,
    free: Vec<usize>,
    /// Back-lane tasks that are ready, oldest first.
    back: VecDeque<TaskId>,
    /// Front-lane polls since the last back-lane poll.
    front_streak: usize,
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
            back: VecDeque::new(),
            front_streak: 0,
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
                self.tasks[s] = Some((generation, Lane::Front, task));
                s
            }
            None => {
                self.tasks.push(Some((generation, Lane::Front, task)));
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
        !self.back.is_empty()
            || LOCAL_READY.with(|q| !q.borrow().is_empty())
            || LOCAL_SPAWNED.with(|s| !s.borrow().is_empty())
    }

    /// The next task to poll: a ready front-lane one, unless a back-lane one has waited
    /// [`FRONT_STREAK`] front-lane polls; a back-lane one when no front-lane one is ready.
    fn next_ready(&mut self) -> Option<TaskId> {
        if self.front_streak >= FRONT_STREAK
            && let Some(id) = self.back.pop_front()
        {
            return Some(id);
        }
        while let Some(id) = LOCAL_READY.with(|q| q.borrow_mut().pop_front()) {
            match self.tasks.get(id.slot) {
                Some(Some((generation, lane, _))) if *generation == id.generation => {
                    if *lane == Lane::Back {
                        self.back.push_back(id);
                    } else {
                        return Some(id);
                    }
                }
                // A late wake of a finished task.
                _ => {}
            }
        }
        self.back.pop_front()
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
            let Some(id) = self.next_ready() else {
                break;
            };
            let Some(Some((generation, _, _))) = self.tasks.get(id.slot) else {
                continue;
            };
            if *generation != id.generation {
                continue;
            }
            // Take the task out while polling it, so a task that wakes itself is queued, not
            // polled re-entrantly.
            let Some((generation, mut lane, mut task)) = self.tasks[id.slot].take() else {
                continue;
            };
            let waker = Waker::from(Arc::new(TaskWaker {
                thread: self.thread,
                id,
                remote: self.remote.clone(),
            }));
            let mut cx = Context::from_waker(&waker);
            polls += 1;
            TO_BACK_LANE.with(|b| b.set(false));
            let polled = task.as_mut().poll(&mut cx);
            let was = lane;
            if TO_BACK_LANE.with(|b| b.replace(false)) {
                lane = Lane::Back;
                self.back.push_back(id);
            }
            match polled {
                Poll::Ready(()) => {
                    self.free.push(id.slot);
                }
                Poll::Pending => self.tasks[id.slot] = Some((generation, lane, task)),
            }
            if was == Lane::Back {
                // A back-lane poll may have been long: let the core look at its inbox (new
                // small jobs) and its reads before the next one.
                self.front_streak = 0;
                break;
            }
            self.front_streak += 1;
        }
        polls
    }

    /// Drops every task (shutdown): their reply channels close, so callers see the call
    /// cancelled.
    pub(crate) fn drop_all(&mut self) {
        self.tasks.clear();
        self.free.clear();
        self.back.clear();
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
