//! The thread-per-core runtime: one pinned OS thread per core, each running its own
//! single-threaded executor over its own state and its own file reader (an io_uring ring, or
//! `pread` where io_uring is unavailable). Work arrives from any thread (the tokio network
//! runtime, a query worker) over each core's flume channel; answers go back over oneshot
//! channels, or over bounded channels for streams, so a core is never blocked by a slow
//! reader.
//!
//! Each core takes at most [`QUEUE_JOBS`] jobs queued at once: a caller past that waits
//! (asynchronously, its future pending) until the core has taken some, so a flood of requests
//! queues in the callers, not as boxed jobs in memory. Wakes and shutdown travel outside that
//! bound: a wake is never refused, whoever sends it.
//!
//! A job with much work ahead moves itself behind the small ones with [`back_lane`]; see
//! `executor` for the two lanes.
//!
//! Nothing is shared between cores: a job runs on one core with `&Core<S>`, the state that
//! core built at start. Callers decide which core owns what (see `store` for blocks).

mod executor;
mod io;
mod uring;

#[cfg(test)]
mod tests;

pub use executor::back_lane;
pub use io::{CoreIo, IoBackend, IoChoice, READ_POOL_BYTES};

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use futures::channel::oneshot;
use futures::future::LocalBoxFuture;

use executor::{Executor, RemoteWake, TaskId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::buffers::BufferPool;

/// How to start the runtime.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Engine cores (threads); 0 = one per CPU this process may run on.
    pub cores: usize,
    /// How files are read.
    pub io: IoChoice,
    /// Pin each core's thread to one CPU.
    pub pin: bool,
    /// Thread name prefix (`gauntlet-core` when empty).
    pub name: String,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// `--io-backend=io-uring` was asked for and no ring could be created; run with `auto` or
    /// `pread`, or raise `RLIMIT_MEMLOCK` / allow io_uring in the sandbox.
    #[error("io_uring is unavailable: {0}")]
    IoUringUnavailable(std::io::Error),
    /// A core thread could not be started.
    #[error("starting engine core {core}: {source}")]
    Spawn {
        /// The core.
        core: usize,
        /// OS error.
        source: std::io::Error,
    },
}

/// The call was dropped before it answered: the runtime is shutting down or the job panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("engine core stopped before answering")]
pub struct Canceled;

/// What a job sees: the core's id, its reader and its state.
#[derive(Debug)]
pub struct Core<S> {
    id: usize,
    cpu: Option<usize>,
    io: CoreIo,
    state: S,
}

impl<S> Core<S> {
    /// This core's index, `0..cores`.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The CPU this core's thread is pinned to, when pinned.
    pub fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// The core's file reader.
    pub fn io(&self) -> &CoreIo {
        &self.io
    }

    /// The state this core built at start.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Runs `fut` as a separate task on this core (must be called on it).
    pub fn spawn(&self, fut: impl Future<Output = ()> + 'static) {
        executor::spawn_local(Box::pin(fut));
    }
}

type Job<S> = Box<dyn FnOnce(Rc<Core<S>>) -> LocalBoxFuture<'static, ()> + Send>;

/// Jobs one core may have queued, not yet started. A job is a boxed closure with what it
/// captures (a few hundred bytes to a few KiB of series ids); a request fans out a handful of
/// jobs per core, so 1024 lets hundreds of requests queue before any caller waits, while a
/// core's backlog stays a few MiB and a few seconds of work at most.
pub const QUEUE_JOBS: usize = 1024;

enum Msg<S> {
    /// A job, with the queue slot it holds until the core starts it.
    Job(Job<S>, OwnedSemaphorePermit),
    Wake(TaskId),
    Shutdown,
}

struct Remote<S>(flume::Sender<Msg<S>>);

impl<S: 'static> RemoteWake for Remote<S> {
    fn wake_remote(&self, id: TaskId) {
        // The core may have stopped; then nothing is left to wake.
        let _ = self.0.send(Msg::Wake(id));
    }
}

/// Something a thread of the engine runs when it runs out of work: handed in by the binary
/// (its allocator's "return free memory", say), never reached through a global.
pub type IdleHook = Arc<dyn Fn() + Send + Sync>;

/// How long a core or pool worker waits without work before it runs its [`IdleHook`].
pub const IDLE_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// How much longer it waits before running the hook a second time: memory other threads
/// gave back meanwhile (request threads that exited) is then returned too.
pub const IDLE_AGAIN: std::time::Duration = std::time::Duration::from_millis(1000);

/// A hook that may be set after the threads that run it started.
#[derive(Default)]
pub(crate) struct IdleSlot(std::sync::Mutex<Option<IdleHook>>);

impl IdleSlot {
    pub(crate) fn set(&self, hook: IdleHook) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Runs the hook, if one is set (outside the lock).
    pub(crate) fn run(&self) {
        let hook = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(h) = hook {
            h();
        }
    }
}

/// A running set of engine cores, each with state `S`. Dropping it stops the cores: calls in
/// progress are cancelled and the threads joined.
pub struct ShardSet<S: 'static> {
    senders: Vec<flume::Sender<Msg<S>>>,
    /// What a core runs once after [`IDLE_AFTER`] without work.
    idle: Arc<IdleSlot>,
    /// Each core's free queue slots (of [`QUEUE_JOBS`]).
    slots: Vec<Arc<Semaphore>>,
    threads: Vec<JoinHandle<()>>,
    backend: IoBackend,
    /// Each core's idle read buffers, for the gauges.
    read_pools: Vec<Arc<BufferPool>>,
}

impl<S> std::fmt::Debug for ShardSet<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardSet")
            .field("cores", &self.senders.len())
            .field("backend", &self.backend)
            .finish()
    }
}

/// The CPUs this process may run on, ascending.
pub fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

impl<S: 'static> ShardSet<S> {
    /// Starts the cores; `make_state(core)` runs on each core's thread to build its state.
    /// The I/O backend is resolved once here and logged.
    pub fn start(
        cfg: &RuntimeConfig,
        make_state: impl Fn(usize) -> S + Send + Sync + 'static,
    ) -> Result<Self, RuntimeError> {
        let (backend, why_not) = io::resolve(cfg.io).map_err(RuntimeError::IoUringUnavailable)?;
        let cpus = allowed_cpus();
        let n = if cfg.cores == 0 {
            cpus.len().max(1)
        } else {
            cfg.cores
        };
        match &why_not {
            Some(reason) => tracing::warn!(
                cores = n,
                io = %backend,
                reason = reason.as_str(),
                "engine cores started; io_uring is unavailable, reading with pread"
            ),
            None => tracing::info!(cores = n, io = %backend, "engine cores started"),
        }
        let make_state = Arc::new(make_state);
        let name = if cfg.name.is_empty() {
            "gauntlet-core"
        } else {
            cfg.name.as_str()
        };
        let mut set = ShardSet {
            senders: Vec::with_capacity(n),
            idle: Arc::new(IdleSlot::default()),
            slots: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
            backend,
            read_pools: Vec::with_capacity(n),
        };
        for core in 0..n {
            let pool = io::read_pool();
            set.read_pools.push(pool.clone());
            let (tx, rx) = flume::unbounded::<Msg<S>>();
            let remote = Arc::new(Remote(tx.clone()));
            let make = make_state.clone();
            let cpu = (cfg.pin && !cpus.is_empty()).then(|| cpus[core % cpus.len()]);
            let idle = set.idle.clone();
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{core}"))
                .spawn(move || {
                    let inbox = Inbox { rx, remote };
                    core_main(core, cpu, backend, pool, inbox, &*make, &idle)
                })
                .map_err(|source| RuntimeError::Spawn { core, source })?;
            set.senders.push(tx);
            set.slots.push(Arc::new(Semaphore::new(QUEUE_JOBS)));
            set.threads.push(thread);
        }
        Ok(set)
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.senders.len()
    }

    /// Has each core run `hook` once it has been idle for [`IDLE_AFTER`] (again after each
    /// spell of work): the binary hands its allocator's "return free memory" here, so that a
    /// burst of reads does not stay resident.
    pub fn set_idle_hook(&self, hook: IdleHook) {
        self.idle.set(hook);
    }

    /// Jobs waiting in each core's queue, by core (at most [`QUEUE_JOBS`] each).
    pub fn queue_depths(&self) -> Vec<usize> {
        self.slots
            .iter()
            .map(|s| QUEUE_JOBS.saturating_sub(s.available_permits()))
            .collect()
    }

    /// The I/O backend every core reads with.
    pub fn backend(&self) -> IoBackend {
        self.backend
    }

    /// Bytes of idle read buffers the cores keep for reuse, all cores together.
    pub fn read_pool_idle_bytes(&self) -> u64 {
        self.read_pools.iter().map(|p| p.idle_bytes()).sum()
    }

    /// The most bytes of idle read buffers the cores may keep, all cores together.
    pub fn read_pool_budget(&self) -> u64 {
        self.read_pools.iter().map(|p| p.budget()).sum()
    }

    /// Runs `f` on core `core % cores` and returns its answer; the call is cancelled when the
    /// runtime stops first. The job is queued at once when the core's queue has room;
    /// otherwise the returned future first waits for a slot (see [`QUEUE_JOBS`]).
    pub fn call<R, F, Fut>(
        &self,
        core: usize,
        f: F,
    ) -> impl Future<Output = Result<R, Canceled>> + Send + 'static
    where
        R: Send + 'static,
        F: FnOnce(Rc<Core<S>>) -> Fut + Send + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let queued = self.spawn(core, move |c| async move {
            let _ = tx.send(f(c).await);
        });
        async move {
            queued.await;
            rx.await.map_err(|_| Canceled)
        }
    }

    /// Queues `f` to run on core `core % cores`: at once when the core's queue has room,
    /// else when the returned future, which waits for a slot, is polled. The future ends once
    /// the job is queued, not when it has run.
    ///
    /// Waiting is asynchronous, so a job on a core that queues work on its own core, or on a
    /// core whose queue is full, only suspends that job: the core goes on taking its queue.
    pub fn spawn<F, Fut>(&self, core: usize, f: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: FnOnce(Rc<Core<S>>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let job: Job<S> = Box::new(move |c| Box::pin(f(c)));
        let i = core % self.senders.len();
        let (tx, slots) = (self.senders[i].clone(), self.slots[i].clone());
        // With a slot free the job is queued now, so a call runs whether or not its future is
        // polled yet; only a caller that finds the queue full waits, in the future.
        let mut job = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                // A stopped core drops the job, which cancels the caller's reply.
                let _ = tx.send(Msg::Job(job, slot));
                None
            }
            Err(_) => Some(job),
        };
        async move {
            let Some(job) = job.take() else { return };
            // The semaphore is closed only when the set is dropped; the job is dropped with
            // it, which cancels the caller's reply.
            let Ok(slot) = slots.acquire_owned().await else {
                return;
            };
            let _ = tx.send(Msg::Job(job, slot));
        }
    }
}

impl<S: 'static> Drop for ShardSet<S> {
    fn drop(&mut self) {
        for s in &self.slots {
            s.close();
        }
        for tx in &self.senders {
            let _ = tx.send(Msg::Shutdown);
        }
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("an engine core panicked");
            }
        }
    }
}

/// Polls made before new messages and completions are looked at again.
const POLL_BUDGET: usize = 64;

/// A core's end of its queue: jobs and wake-ups come in on `rx`, wake-ups from other threads
/// go out through `remote`.
struct Inbox<S: 'static> {
    rx: flume::Receiver<Msg<S>>,
    remote: Arc<Remote<S>>,
}

fn core_main<S: 'static>(
    id: usize,
    cpu: Option<usize>,
    backend: IoBackend,
    pool: Arc<BufferPool>,
    inbox: Inbox<S>,
    make_state: &(dyn Fn(usize) -> S + Send + Sync),
    idle: &IdleSlot,
) {
    let Inbox { rx, remote } = inbox;
    let cpu = cpu.filter(|&c| {
        let mut set = nix::sched::CpuSet::new();
        let pinned = set.set(c).is_ok()
            && nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok();
        if !pinned {
            tracing::warn!(core = id, cpu = c, "could not pin engine core");
        }
        pinned
    });
    let io = match CoreIo::new(backend, pool.clone()) {
        Ok(io) => io,
        Err(e) => {
            // The probe at start succeeded, so this is a per-thread failure; keep serving.
            tracing::warn!(core = id, error = %e, "io_uring ring failed on this core; using pread");
            CoreIo::new(IoBackend::Pread, pool)
                .unwrap_or_else(|_| unreachable!("pread needs no setup"))
        }
    };
    let core = Rc::new(Core {
        id,
        cpu,
        io,
        state: make_state(id),
    });
    let mut exec = Executor::new(remote);
    let mut stopping = false;
    let handle = |msg: Msg<S>, exec: &mut Executor, stopping: &mut bool| match msg {
        Msg::Job(job, slot) => {
            // The slot is free once the job leaves the queue, run or not.
            drop(slot);
            if !*stopping {
                exec.spawn(job(core.clone()));
            }
        }
        Msg::Wake(t) => exec.wake(t),
        Msg::Shutdown => *stopping = true,
    };
    loop {
        while let Ok(msg) = rx.try_recv() {
            handle(msg, &mut exec, &mut stopping);
        }
        if stopping {
            break;
        }
        exec.run_ready(POLL_BUDGET);
        core.io.flush();
        let in_flight = core.io.poll_completions(false);
        if exec.has_ready() || !rx.is_empty() {
            continue;
        }
        if in_flight {
            // Completions arrive in microseconds from the page cache, in a few ms from disk;
            // messages that come meanwhile wait that long.
            core.io.poll_completions(true);
            continue;
        }
        let mut msg = None;
        for wait in [IDLE_AFTER, IDLE_AGAIN] {
            match rx.recv_timeout(wait) {
                Ok(m) => {
                    msg = Some(m);
                    break;
                }
                Err(flume::RecvTimeoutError::Timeout) => idle.run(),
                Err(flume::RecvTimeoutError::Disconnected) => break,
            }
        }
        let msg = match msg {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        handle(msg, &mut exec, &mut stopping);
    }
    // Tasks go first (their reads are abandoned), then the ring waits for the kernel.
    exec.drop_all();
    drop(exec);
    drop(core);
}
