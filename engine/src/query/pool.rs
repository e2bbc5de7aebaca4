//! The query worker pool: one set of threads per process, sized to the cores, that runs the
//! CPU work of every query (decoding and folding series, encoding answers). No query starts
//! threads of its own, so a hundred queries at once cost a hundred queues, not a thousand
//! threads fighting for two cores.
//!
//! Work is tagged with its query ([`PoolQuery`]) and scheduled by least attained service:
//! a free worker takes the oldest task of the query that has had the least worker time so far.
//! A cheap query's few tasks therefore run before the fiftieth task of a heavy one, and heavy
//! queries share the cores about evenly. A task is only started while its query's
//! [`Cancel`] token holds; the queued tasks of a cancelled query are dropped unrun.
//!
//! Tasks may borrow from the stack of the thread that submits them, as `std::thread::scope`
//! allows: [`PoolQuery::scope`] returns only once every task it spawned has run or been
//! dropped. The submitting thread waits meanwhile; a worker of the pool that submits (a task
//! that fans out again) runs its own query's queued tasks while it waits, so a saturated pool
//! cannot deadlock on itself.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::Cancel;
use crate::shard::{IDLE_AFTER, IDLE_AGAIN, IdleHook, IdleSlot};

/// How long a waiting submitter sleeps between looks at its query's token: the longest a
/// cancelled query's queued tasks stay queued when no worker comes by.
const WAIT_SLICE: Duration = Duration::from_millis(5);

/// A handle to the process's query worker pool; clones share the pool. The threads stop
/// when the last handle is dropped (after the tasks they are running).
#[derive(Clone)]
pub struct WorkPool {
    owner: Arc<Owner>,
}

/// Held by every handle and query; the last one gone stops the workers.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        lock(&self.shared.state).stopping = true;
        self.shared.queued.notify_all();
    }
}

impl std::fmt::Debug for WorkPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkPool")
            .field("threads", &self.owner.shared.threads)
            .finish_non_exhaustive()
    }
}

/// Two handles are equal when they are the same pool.
impl PartialEq for WorkPool {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.owner, &other.owner)
    }
}

impl Eq for WorkPool {}

/// A pool for code that was handed none: library tests, benchmarks and the offline tools,
/// and nothing else. Made on first use, sized to the cores, and shared by everything in the
/// process that asks for it. The server starts its own pool and hands it to every request
/// (its API settings and the PromQL engine's options carry it), so no request runs here.
impl Default for WorkPool {
    fn default() -> Self {
        static FALLBACK: OnceLock<WorkPool> = OnceLock::new();
        FALLBACK.get_or_init(|| WorkPool::new(0)).clone()
    }
}

struct Shared {
    /// Identifies the pool, so a thread knows whether it is one of its workers.
    id: u64,
    threads: usize,
    /// Workers that started; when none did, submitters run their tasks themselves.
    started: AtomicU64,
    state: Mutex<State>,
    /// Signalled when a task is queued or the pool stops.
    queued: Condvar,
    /// Run by a worker once it has been idle for [`IDLE_AFTER`].
    idle: IdleSlot,
}

#[derive(Default)]
struct State {
    queries: HashMap<u64, QueryQueue>,
    next_query: u64,
    stopping: bool,
}

struct QueryQueue {
    cancel: Cancel,
    /// Worker time this query's tasks have had, ns.
    attained: Arc<AtomicU64>,
    tasks: VecDeque<Task>,
}

/// A queued task. Dropping it unrun counts it done for its scope.
struct Task {
    run: Box<dyn FnOnce() + Send + 'static>,
    done: TaskDone,
}

/// Counts its task out of its scope when dropped: after the task ran, or instead of it.
struct TaskDone(Arc<ScopeState>);

impl Drop for TaskDone {
    fn drop(&mut self) {
        let mut pending = lock(&self.0.pending);
        *pending -= 1;
        if *pending == 0 {
            self.0.finished.notify_all();
        }
    }
}

#[derive(Default)]
struct ScopeState {
    /// Tasks spawned and not yet run or dropped.
    pending: Mutex<usize>,
    finished: Condvar,
    /// The first panic of a task, raised again on the submitting thread.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The pool this thread works for (0 = none).
    static WORKER_OF: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A poisoned lock only means a task panicked while the pool held it, which the pool never
/// lets happen (tasks run outside the lock); the state is whole either way.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WorkPool {
    /// Starts a pool of `threads` workers (0 = one per CPU this process may run on).
    pub fn new(threads: usize) -> WorkPool {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let shared = Arc::new(Shared {
            id: NEXT_POOL.fetch_add(1, Ordering::Relaxed),
            threads,
            started: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            queued: Condvar::new(),
            idle: IdleSlot::default(),
        });
        for i in 0..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("gauntlet-query-{i}"))
                .spawn(move || worker(s));
            match spawned {
                Ok(_) => {
                    shared.started.fetch_add(1, Ordering::Relaxed);
                }
                // Fewer workers only slow queries down; with none, submitters run their own
                // tasks (see `PoolQuery::helps`).
                Err(e) => tracing::warn!(error = %e, "could not start a query worker"),
            }
        }
        WorkPool {
            owner: Arc::new(Owner { shared }),
        }
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.owner.shared.threads
    }

    /// Has each worker run `hook` once it has been idle for [`IDLE_AFTER`] (again after each
    /// spell of work), as [`crate::shard::ShardSet::set_idle_hook`] does for engine cores.
    pub fn set_idle_hook(&self, hook: IdleHook) {
        self.owner.shared.idle.set(hook);
    }

    /// Tasks queued and not yet started, all queries together.
    pub fn queued(&self) -> usize {
        lock(&self.owner.shared.state)
            .queries
            .values()
            .map(|q| q.tasks.len())
            .sum()
    }

    /// Registers a query: its tasks are scheduled together, and dropped unrun once `cancel`
    /// ends. The registration ends when the returned handle is dropped.
    pub fn query(&self, cancel: Cancel) -> PoolQuery {
        let attained = Arc::new(AtomicU64::new(0));
        let mut st = lock(&self.owner.shared.state);
        let id = st.next_query;
        st.next_query += 1;
        st.queries.insert(
            id,
            QueryQueue {
                cancel: cancel.clone(),
                attained: attained.clone(),
                tasks: VecDeque::new(),
            },
        );
        drop(st);
        PoolQuery {
            _owner: self.owner.clone(),
            shared: self.owner.shared.clone(),
            id,
            cancel,
            attained,
        }
    }
}

/// One query's membership of the pool: the tag its tasks carry.
pub struct PoolQuery {
    /// Keeps the workers running while the query may queue tasks.
    _owner: Arc<Owner>,
    shared: Arc<Shared>,
    id: u64,
    cancel: Cancel,
    attained: Arc<AtomicU64>,
}

impl std::fmt::Debug for PoolQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolQuery")
            .field("id", &self.id)
            .field("attained", &self.attained())
            .finish_non_exhaustive()
    }
}

impl Drop for PoolQuery {
    fn drop(&mut self) {
        let removed = lock(&self.shared.state).queries.remove(&self.id);
        // Scopes wait for their tasks, so none is left; dropped outside the lock all the same.
        drop(removed);
    }
}

impl PoolQuery {
    /// Worker time this query's tasks have had so far.
    pub fn attained(&self) -> Duration {
        Duration::from_nanos(self.attained.load(Ordering::Relaxed))
    }

    /// Workers of the pool.
    pub fn threads(&self) -> usize {
        self.shared.threads
    }

    /// Runs `f` with a [`Scope`] whose tasks may borrow anything that outlives this call;
    /// returns once every task spawned in it has run or been dropped. A panic in a task is
    /// raised again here.
    pub fn scope<'s, R>(&'s self, f: impl FnOnce(&Scope<'s>) -> R) -> R {
        let scope = Scope {
            query: self,
            state: Arc::new(ScopeState::default()),
            _borrows: PhantomData,
        };
        // Waits even when `f` unwinds: the tasks borrow what unwinding is about to free.
        struct WaitAll<'a, 's>(&'a Scope<'s>);
        impl Drop for WaitAll<'_, '_> {
            fn drop(&mut self) {
                let s = self.0;
                if std::thread::panicking() {
                    s.drop_queued();
                }
                s.query
                    .wait_until(|| *lock(&s.state.pending) == 0, Some(&s.state));
            }
        }
        let r = {
            let _wait = WaitAll(&scope);
            f(&scope)
        };
        if let Some(p) = lock(&scope.state.panic).take() {
            std::panic::resume_unwind(p);
        }
        r
    }

    /// Waits until `ready()` holds. Meanwhile the queued tasks of a query whose token ended
    /// are dropped, and a worker of this pool runs this query's queued tasks itself; a
    /// submitter that is not a worker sleeps (on `scope`'s signal when given) in slices of
    /// [`WAIT_SLICE`].
    fn wait_until(&self, mut ready: impl FnMut() -> bool, scope: Option<&ScopeState>) {
        let helps = self.helps();
        loop {
            if ready() {
                return;
            }
            if self.cancel.interrupted().is_some() {
                self.drop_all_queued();
            }
            if helps && let Some(task) = self.pop_own() {
                run_task(task, &self.attained);
                continue;
            }
            match scope {
                Some(s) => {
                    let pending = lock(&s.pending);
                    if *pending > 0 {
                        let _ = s.finished.wait_timeout(pending, WAIT_SLICE);
                    }
                }
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }

    /// Whether this thread runs the query's tasks while it waits: a worker of the pool (its
    /// tasks could otherwise wait on the very worker waiting for them), or any thread when no
    /// worker started. Other submitters only wait, so all of a query's parallel work goes
    /// through the pool's schedule.
    fn helps(&self) -> bool {
        WORKER_OF.with(|w| w.get()) == self.shared.id
            || self.shared.started.load(Ordering::Relaxed) == 0
    }

    fn pop_own(&self) -> Option<Task> {
        lock(&self.shared.state)
            .queries
            .get_mut(&self.id)?
            .tasks
            .pop_front()
    }

    fn drop_all_queued(&self) {
        let dropped = lock(&self.shared.state)
            .queries
            .get_mut(&self.id)
            .map(|q| std::mem::take(&mut q.tasks));
        drop(dropped);
    }
}

/// Spawns tasks of one query that may borrow from the submitter's stack (see
/// [`PoolQuery::scope`]).
pub struct Scope<'s> {
    query: &'s PoolQuery,
    state: Arc<ScopeState>,
    /// Makes `'s` invariant, as `std::thread::Scope` does.
    _borrows: PhantomData<&'s mut &'s ()>,
}

impl std::fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("query", &self.query)
            .field("pending", &*lock(&self.state.pending))
            .finish()
    }
}

impl<'s> Scope<'s> {
    /// Queues `f` to run on a worker when its query's turn comes; dropped unrun when the
    /// query's token ends first.
    pub fn spawn(&self, f: impl FnOnce() + Send + 's) {
        *lock(&self.state.pending) += 1;
        let state = self.state.clone();
        let job: Box<dyn FnOnce() + Send + 's> = Box::new(move || {
            if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
                lock(&state.panic).get_or_insert(p);
            }
        });
        // SAFETY: the task is run or dropped before `PoolQuery::scope` returns or unwinds
        // (its `WaitAll` guard waits until `pending` is back to 0, and `TaskDone` decrements
        // it only after the closure was run or dropped), so nothing the closure borrows for
        // `'s` is freed while the pool still holds it. Only the lifetime changes; the layout
        // of the boxed trait object is the same.
        let run: Box<dyn FnOnce() + Send + 'static> = unsafe {
            std::mem::transmute::<Box<dyn FnOnce() + Send + 's>, Box<dyn FnOnce() + Send>>(job)
        };
        let task = Task {
            run,
            done: TaskDone(self.state.clone()),
        };
        let shared = &self.query.shared;
        let mut st = lock(&shared.state);
        match st.queries.get_mut(&self.query.id) {
            Some(q) if q.cancel.interrupted().is_none() => {
                q.tasks.push_back(task);
                drop(st);
                shared.queued.notify_one();
            }
            // A query that already ended gets no more work.
            _ => {
                drop(st);
                drop(task);
            }
        }
    }

    /// Waits for a message on `rx`, doing this query's queued work meanwhile as
    /// [`PoolQuery::scope`]'s end does. `None` once every sender is gone, once the query's
    /// token ended (its queued tasks are then dropped, so their answers never come), or once
    /// a task of this scope panicked.
    pub fn recv<T>(&self, rx: &std::sync::mpsc::Receiver<T>) -> Option<T> {
        use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
        let helps = self.query.helps();
        loop {
            match rx.try_recv() {
                Ok(v) => return Some(v),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if self.query.cancel.interrupted().is_some() {
                self.query.drop_all_queued();
                return None;
            }
            if lock(&self.state.panic).is_some() {
                return None;
            }
            if helps && let Some(task) = self.query.pop_own() {
                run_task(task, &self.query.attained);
                continue;
            }
            match rx.recv_timeout(WAIT_SLICE) {
                Ok(v) => return Some(v),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Drops this scope's tasks that have not started: its submitter stopped wanting them.
    pub fn drop_queued(&self) {
        let mut st = lock(&self.query.shared.state);
        let mut dropped = Vec::new();
        if let Some(q) = st.queries.get_mut(&self.query.id) {
            let mut keep = VecDeque::with_capacity(q.tasks.len());
            for t in q.tasks.drain(..) {
                if Arc::ptr_eq(&t.done.0, &self.state) {
                    dropped.push(t);
                } else {
                    keep.push_back(t);
                }
            }
            q.tasks = keep;
        }
        drop(st);
        drop(dropped);
    }
}

/// Runs a task, charging the time to its query.
fn run_task(task: Task, attained: &AtomicU64) {
    let began = Instant::now();
    let Task { run, done } = task;
    run();
    drop(done);
    let ns = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
    attained.fetch_add(ns, Ordering::Relaxed);
}

fn worker(shared: Arc<Shared>) {
    WORKER_OF.with(|w| w.set(shared.id));
    // Times the idle hook ran since the last task (it runs twice, see `IDLE_AGAIN`).
    let mut rested = 2;
    loop {
        let (task, attained) = {
            let mut st = lock(&shared.state);
            loop {
                if st.stopping {
                    return;
                }
                let (picked, dropped) = pick(&mut st);
                if !dropped.is_empty() {
                    drop(st);
                    drop(dropped);
                    st = lock(&shared.state);
                    continue;
                }
                if let Some(p) = picked {
                    break p;
                }
                let wait = match rested {
                    0 => IDLE_AFTER,
                    1 => IDLE_AGAIN,
                    _ => {
                        st = shared.queued.wait(st).unwrap_or_else(|e| e.into_inner());
                        continue;
                    }
                };
                let (guard, waited) = shared
                    .queued
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner());
                st = guard;
                if waited.timed_out() {
                    drop(st);
                    shared.idle.run();
                    rested += 1;
                    st = lock(&shared.state);
                }
            }
        };
        rested = 0;
        run_task(task, &attained);
    }
}

/// The next task by least attained service (ties to the older query), and the queued tasks
/// of queries whose token ended, to be dropped outside the lock.
fn pick(st: &mut State) -> (Option<(Task, Arc<AtomicU64>)>, Vec<Task>) {
    let mut dropped = Vec::new();
    let mut best: Option<(u64, u64)> = None;
    for (&id, q) in st.queries.iter_mut() {
        if q.tasks.is_empty() {
            continue;
        }
        if q.cancel.interrupted().is_some() {
            dropped.extend(q.tasks.drain(..));
            continue;
        }
        let served = q.attained.load(Ordering::Relaxed);
        if best.is_none_or(|(s, b)| (served, id) < (s, b)) {
            best = Some((served, id));
        }
    }
    let picked = best.and_then(|(_, id)| {
        let q = st.queries.get_mut(&id)?;
        Some((q.tasks.pop_front()?, q.attained.clone()))
    });
    (picked, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn tasks_borrow_the_stack_and_all_run_before_the_scope_ends() {
        let pool = WorkPool::new(2);
        let q = pool.query(Cancel::never());
        let counts: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
        q.scope(|s| {
            for c in &counts {
                s.spawn(move || {
                    c.fetch_add(1, Ordering::Relaxed);
                });
            }
        });
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
    }

    #[test]
    fn results_come_back_through_recv() {
        let pool = WorkPool::new(2);
        let q = pool.query(Cancel::never());
        let data: Vec<u64> = (0..1000).collect();
        let total = q.scope(|s| {
            let (tx, rx) = std::sync::mpsc::channel();
            for chunk in data.chunks(100) {
                let tx = tx.clone();
                s.spawn(move || {
                    let _ = tx.send(chunk.iter().sum::<u64>());
                });
            }
            drop(tx);
            let mut total = 0;
            while let Some(v) = s.recv(&rx) {
                total += v;
            }
            total
        });
        assert_eq!(total, 499_500);
    }

    #[test]
    fn a_cancelled_query_drops_its_queued_tasks() {
        let pool = WorkPool::new(1);
        let cancel = Cancel::new(None);
        let q = pool.query(cancel.clone());
        let ran = AtomicUsize::new(0);
        let began = Instant::now();
        q.scope(|s| {
            for _ in 0..200 {
                s.spawn(|| {
                    ran.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                });
            }
            std::thread::sleep(Duration::from_millis(25));
            cancel.cancel();
        });
        // 200 tasks of 10 ms on one worker take 2 s; cancelled, the scope ends at once.
        assert!(
            began.elapsed() < Duration::from_millis(500),
            "{:?}",
            began.elapsed()
        );
        assert!(
            ran.load(Ordering::Relaxed) < 10,
            "{}",
            ran.load(Ordering::Relaxed)
        );
        assert_eq!(pool.queued(), 0);
    }

    #[test]
    fn the_query_with_least_service_runs_next() {
        let pool = WorkPool::new(1);
        let heavy = pool.query(Cancel::never());
        let light = pool.query(Cancel::never());
        let order = Mutex::new(Vec::new());
        let light_started = std::sync::Barrier::new(2);
        std::thread::scope(|t| {
            t.spawn(|| {
                heavy.scope(|s| {
                    for i in 0..40 {
                        let order = &order;
                        s.spawn(move || {
                            lock(order).push(("heavy", i));
                            std::thread::sleep(Duration::from_millis(2));
                        });
                    }
                    light_started.wait();
                });
            });
            light_started.wait();
            // The heavy query has had a few tasks by now; the light one none.
            std::thread::sleep(Duration::from_millis(10));
            light.scope(|s| {
                for i in 0..3 {
                    let order = &order;
                    s.spawn(move || lock(order).push(("light", i)));
                }
            });
        });
        let order = lock(&order);
        let last_light = order.iter().rposition(|(q, _)| *q == "light").unwrap();
        let heavy_before = order[..last_light]
            .iter()
            .filter(|(q, _)| *q == "heavy")
            .count();
        // The light query's tasks came right after the task running when they were queued.
        assert!(
            heavy_before < 15,
            "{heavy_before} heavy tasks first: {order:?}"
        );
        assert_eq!(order.len(), 43);
    }

    #[test]
    fn a_worker_that_fans_out_runs_its_own_tasks() {
        let pool = WorkPool::new(1);
        let q = pool.query(Cancel::never());
        let sum = AtomicUsize::new(0);
        q.scope(|outer| {
            outer.spawn(|| {
                // On the pool's only worker: without helping, this would wait forever.
                q.scope(|inner| {
                    for i in 0..10 {
                        let sum = &sum;
                        inner.spawn(move || {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                    }
                });
            });
        });
        assert_eq!(sum.load(Ordering::Relaxed), 45);
    }

    #[test]
    fn a_panicking_task_panics_its_submitter() {
        let pool = WorkPool::new(2);
        let q = pool.query(Cancel::never());
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            q.scope(|s| s.spawn(|| panic!("task failed")));
        }));
        assert!(r.is_err());
        // The pool still works.
        let ran = AtomicUsize::new(0);
        q.scope(|s| {
            s.spawn(|| {
                ran.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(ran.load(Ordering::Relaxed), 1);
    }
}
