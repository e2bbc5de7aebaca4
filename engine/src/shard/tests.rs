//! The runtime: placement, message passing between threads and cores, bounded streams,
//! shutdown, both read backends, and the fallback to `pread` when io_uring cannot start.

use std::cell::Cell;
use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn start(cores: usize, io: IoChoice) -> ShardSet<Cell<u64>> {
    ShardSet::start(
        &RuntimeConfig {
            cores,
            io,
            pin: true,
            name: "test-core".into(),
        },
        |_| Cell::new(0),
    )
    .unwrap()
}

fn block_on<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
fn each_core_runs_on_its_own_pinned_thread_with_its_own_state() {
    let set = start(2, IoChoice::Auto);
    assert_eq!(set.cores(), 2);
    let cpus = allowed_cpus();
    for core in 0..2 {
        let (id, name, cpu, affinity, count) = block_on(set.call(core, |c| async move {
            c.state().set(c.state().get() + 1);
            let aff = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
            let on: Vec<usize> = (0..nix::sched::CpuSet::count())
                .filter(|&i| aff.is_set(i).unwrap_or(false))
                .collect();
            (
                c.id(),
                std::thread::current().name().map(str::to_string),
                c.cpu(),
                on,
                c.state().get(),
            )
        }))
        .unwrap();
        assert_eq!(id, core);
        assert_eq!(name.as_deref(), Some(format!("test-core-{core}").as_str()));
        let want = cpus[core % cpus.len()];
        assert_eq!(cpu, Some(want));
        assert_eq!(affinity, vec![want], "thread is pinned to its CPU only");
        assert_eq!(count, 1, "state is per core");
    }
    // Core indexes wrap.
    let id = block_on(set.call(5, |c| async move { c.id() })).unwrap();
    assert_eq!(id, 1);
}

#[test]
fn cores_call_each_other_and_wake_across_threads() {
    let set = Arc::new(start(2, IoChoice::Auto));
    let inner = set.clone();
    // Core 0 asks core 1 and awaits the reply: the reply's wake crosses threads.
    let got = block_on(set.call(0, move |c| async move {
        let from = c.id();
        let other = inner.call(1, move |c1| async move { (from, c1.id()) });
        let r = other.await.unwrap();
        drop(inner);
        r
    }))
    .unwrap();
    assert_eq!(got, (0, 1));

    // Many concurrent calls from several threads all answer.
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let set = set.clone();
            std::thread::spawn(move || {
                let calls: Vec<_> = (0..200u64)
                    .map(|i| set.call(i as usize, move |_| async move { i * 2 + t }))
                    .collect();
                block_on(futures::future::join_all(calls))
                    .into_iter()
                    .map(Result::unwrap)
                    .sum::<u64>()
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), 200 * 199 + 200 * t as u64);
    }
}

#[test]
fn a_stream_into_a_bounded_channel_waits_for_its_reader() {
    let set = start(1, IoChoice::Auto);
    let (tx, rx) = flume::bounded::<u32>(2);
    let done = set.call(0, move |_| async move {
        for i in 0..1000 {
            if tx.send_async(i).await.is_err() {
                return i;
            }
        }
        1000
    });
    std::thread::sleep(Duration::from_millis(50));
    assert!(rx.len() <= 2, "the producer waited for the reader");
    let got: Vec<u32> = rx.iter().take(1000).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert_eq!(block_on(done).unwrap(), 1000);

    // A reader that goes away stops the producer.
    let (tx, rx) = flume::bounded::<u32>(1);
    let stopped = set.call(0, move |_| async move {
        for i in 0.. {
            if tx.send_async(i).await.is_err() {
                return i;
            }
        }
        unreachable!()
    });
    assert_eq!(rx.recv().unwrap(), 0);
    drop(rx);
    assert!(block_on(stopped).unwrap() <= 2);
}

#[test]
fn dropping_the_runtime_cancels_calls_in_progress_and_joins_the_threads() {
    let set = start(2, IoChoice::Auto);
    let never = set.call(1, |_| futures::future::pending::<()>());
    let quick = block_on(set.call(0, |c| async move { c.id() }));
    assert_eq!(quick, Ok(0));
    drop(set);
    assert_eq!(block_on(never), Err(Canceled));
}

fn file_with(dir: &std::path::Path, len: usize) -> (Arc<File>, Vec<u8>) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let p = dir.join("f");
    std::fs::write(&p, &data).unwrap();
    (Arc::new(File::open(&p).unwrap()), data)
}

fn reads_are_exact(io: IoChoice) {
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = file_with(tmp.path(), 3 << 20);
    let set = start(2, io);
    let want_backend = match io {
        IoChoice::Pread => IoBackend::Pread,
        _ => IoBackend::IoUring,
    };
    assert_eq!(set.backend(), want_backend);
    for core in 0..2 {
        let f = file.clone();
        let (backend, one, many, eof, empty) = block_on(set.call(core, move |c| async move {
            let one = c.io().read_at(&f, 1000, 5000).await.unwrap();
            let ranges: Vec<_> = (0..300u64)
                .map(|i| i * 9000..i * 9000 + 1 + i * 13)
                .collect();
            let many = c.io().read_many(&f, &ranges).await.unwrap();
            // Futures dropped before completion leave their buffers to the ring.
            for i in 0..20 {
                let r = c.io().read_at(&f, i * 4096, 4096);
                drop(r);
            }
            let eof = c.io().read_at(&f, (3 << 20) - 10, 20).await.map(|_| ());
            let empty = c.io().read_at(&f, 0, 0).await.unwrap();
            (c.io().backend(), one, (ranges, many), eof, empty)
        }))
        .unwrap();
        assert_eq!(backend, want_backend);
        assert_eq!(&one[..], &data[1000..6000]);
        for (r, b) in many.0.iter().zip(&many.1) {
            assert_eq!(&b[..], &data[r.start as usize..r.end as usize]);
        }
        assert_eq!(
            eof.unwrap_err().kind(),
            std::io::ErrorKind::UnexpectedEof,
            "a read past the end is an error"
        );
        assert!(empty.is_empty());
    }
}

#[test]
fn io_uring_reads_are_exact() {
    reads_are_exact(IoChoice::IoUring);
}

#[test]
fn pread_reads_are_exact() {
    reads_are_exact(IoChoice::Pread);
}

/// Run by `io_uring_unavailable_falls_back_to_pread` in a child process that may not lock
/// memory: prints what the runtime chose.
#[test]
#[ignore = "run in a child process by io_uring_unavailable_falls_back_to_pread"]
fn child_reports_backend() {
    if std::env::var_os("GAUNTLET_SHARD_CHILD").is_none() {
        return;
    }
    let auto = start(1, IoChoice::Auto);
    println!("auto={}", auto.backend());
    let tmp = tempfile::tempdir().unwrap();
    let (file, data) = file_with(tmp.path(), 10_000);
    let got = block_on(auto.call(0, move |c| async move {
        c.io().read_at(&file, 10, 100).await.unwrap()
    }))
    .unwrap();
    assert_eq!(&got[..], &data[10..110]);
    match ShardSet::start(
        &RuntimeConfig {
            io: IoChoice::IoUring,
            ..RuntimeConfig::default()
        },
        |_| (),
    ) {
        Ok(_) => println!("forced=started"),
        Err(e) => println!("forced=error: {e}"),
    }
}

#[test]
fn io_uring_unavailable_falls_back_to_pread() {
    // Without CAP_IPC_LOCK and with RLIMIT_MEMLOCK at 0, the kernel refuses to create a ring
    // (its memory is charged to the limit), as for an unprivileged user with a low limit.
    let Ok(setpriv) = which("setpriv") else {
        eprintln!("setpriv not installed; skipping");
        return;
    };
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(setpriv)
        .args(["--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock"])
        .args(["prlimit", "--memlock=0:0"])
        .arg(exe)
        .args([
            "--exact",
            "shard::tests::child_reports_backend",
            "--ignored",
            "--nocapture",
        ])
        .env("GAUNTLET_SHARD_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("auto=pread"), "{stdout}");
    assert!(
        stdout.contains("forced=error: io_uring is unavailable"),
        "{stdout}"
    );
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn a_full_queue_makes_callers_wait_and_then_serves_them_all() {
    let set = Arc::new(start(1, IoChoice::Pread));
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    // Hold the core so nothing leaves its queue.
    let held = set.call(0, move |_| async move {
        let _ = started_tx.send(());
        let _ = release_rx.recv_timeout(Duration::from_secs(10));
    });
    started_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let flood = QUEUE_JOBS + 500;
    let callers = {
        let set = set.clone();
        std::thread::spawn(move || {
            let calls: Vec<_> = (0..flood)
                .map(|i| set.call(0, move |_| async move { i }))
                .collect();
            block_on(futures::future::join_all(calls))
        })
    };
    std::thread::spawn(move || block_on(held));
    let began = std::time::Instant::now();
    while set.queue_depths()[0] < QUEUE_JOBS && began.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    // The rest wait in their callers, not in the core's queue.
    assert_eq!(set.queue_depths()[0], QUEUE_JOBS);
    release_tx.send(()).unwrap();
    let answers = callers.join().unwrap();
    assert_eq!(answers.len(), flood);
    assert!(answers.iter().enumerate().all(|(i, a)| *a == Ok(i)));
}

#[test]
fn a_core_queueing_past_the_bound_on_itself_does_not_deadlock() {
    let set = Arc::new(start(2, IoChoice::Pread));
    let inner = set.clone();
    let sum = block_on(set.call(0, move |_| async move {
        // More calls to its own queue (and the other core's) than either holds.
        let calls: Vec<_> = (0..2 * QUEUE_JOBS + 100)
            .map(|i| inner.call(i % 2, move |_| async move { i as u64 }))
            .collect();
        drop(inner);
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .sum::<u64>()
    }))
    .unwrap();
    let n = (2 * QUEUE_JOBS + 100) as u64;
    assert_eq!(sum, n * (n - 1) / 2);
}

/// Holds core 0 until the returned sender is dropped, so that the jobs queued meanwhile all
/// wait in its queue and are taken at once.
fn hold_core(set: &ShardSet<Cell<u64>>) -> std::sync::mpsc::Sender<()> {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let (started, running) = std::sync::mpsc::channel::<()>();
    drop(set.spawn(0, move |_| async move {
        let _ = started.send(());
        let _ = held.recv();
    }));
    running.recv().unwrap();
    release
}

/// Queues on core 0 a job that records `name` once it runs, after moving to the back lane
/// when `big`.
fn record(
    set: &ShardSet<Cell<u64>>,
    order: &Arc<std::sync::Mutex<Vec<String>>>,
    name: String,
    big: bool,
) -> impl Future<Output = Result<(), Canceled>> {
    let order = order.clone();
    set.call(0, move |_| async move {
        if big {
            back_lane().await;
        }
        order.lock().unwrap().push(name);
    })
}

#[test]
fn a_small_job_runs_before_big_ones_queued_ahead_of_it() {
    let set = start(1, IoChoice::Pread);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let release = hold_core(&set);
    let mut calls: Vec<_> = (0..5)
        .map(|i| record(&set, &order, format!("big{i}"), true))
        .collect();
    calls.push(record(&set, &order, "small".into(), false));
    drop(release);
    for r in block_on(futures::future::join_all(calls)) {
        r.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(order, ["small", "big0", "big1", "big2", "big3", "big4"]);
}

#[test]
fn a_big_job_is_not_starved_by_a_stream_of_small_ones() {
    let set = start(1, IoChoice::Pread);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let release = hold_core(&set);
    let mut calls = vec![record(&set, &order, "big".into(), true)];
    for i in 0..4 * executor::FRONT_STREAK {
        calls.push(record(&set, &order, format!("small{i}"), false));
    }
    drop(release);
    for r in block_on(futures::future::join_all(calls)) {
        r.unwrap();
    }
    let order = order.lock().unwrap().clone();
    let at = order.iter().position(|n| n == "big").unwrap();
    // The big job's first poll (moving to the back lane) counts as a front-lane poll.
    assert!(
        (1..=executor::FRONT_STREAK).contains(&at),
        "the big job ran at {at} of {}",
        order.len()
    );
}
