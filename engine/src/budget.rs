//! A memory budget (`--memory.limit`): the resident memory the work it is handed to may reach.
//! The binary makes one per role it runs and hands it down to what takes memory on that
//! role's behalf (the head, matcher compilation, the PromQL engine, the servers' request
//! paths); a budget is an [`Arc`], and its sampler ([`start`]) stops once the last handle is
//! dropped. A role alone in its process has the whole limit. Roles sharing a process each
//! have a part of the process's budget ([`MemoryBudget::part_of`]): a part of the limit,
//! counting the same part of the resident size, so the parts together never admit more than
//! the whole, and one role's reservations leave the others' room alone. The whole counts
//! what its parts reserve and refuse, for the metrics.
//!
//! Two figures make up what the budget counts as used: the resident set size, read every
//! [`SAMPLE_EVERY`] by a thread of its own, and the bytes reserved by work in flight. A request
//! takes a [`Reservation`] before it holds memory and grows it as its memory grows (samples a
//! query holds, batches of a Series answer waiting to be sent, a remote-write body and what it
//! decodes to); dropping the reservation gives the bytes back. A reservation that would take
//! the used figure past the limit is refused with [`OverBudget`], which the servers answer
//! with 503 or `ResourceExhausted`, so a request ends cleanly instead of growing the process
//! into the kernel's OOM killer.
//!
//! Reserved bytes are counted on top of the resident size although, once allocated, they are
//! part of it: the budget cannot tell which reservations are already resident, and counting
//! them twice errs on the side of the limit. Because reservations are counted the moment they
//! are taken, a moment when the resident size dips under the limit does not admit a burst:
//! each request admitted reserves its start, and the next one sees it.
//!
//! New work needs more room than work in flight: new reads are admitted only while
//! [`START_ROOM`] of the budget is left for the work in flight to grow into, and new writes
//! only under [`WRITE_SHARE`] of it, because what a write adds to the head stays until a block
//! is cut, while a read gives its memory back when it ends. A head that filled the whole
//! budget would leave every read refused.
//!
//! Request bodies being decoded (a remote write's body decompressed and its entries) also
//! take [`decoding room`](MemoryBudget::decoding_room), with or without a limit: what one body
//! may decode to is many times its size (the decoder holds it to a bound known before it
//! starts), and the room keeps the bodies decoded at once from multiplying that by the
//! number of connections. A body waits for room ([`MemoryBudget::decode_room`]). Compiled
//! regexes of requests in flight are held to a room of their own ([`REGEX_ROOM`],
//! [`MemoryBudget::hold_regex`]): a few bytes of pattern can compile to hundreds of
//! kilobytes, and a query can hold thousands of them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// How often the sampler reads the resident set size. A read of `/proc/self/statm` costs a few
/// microseconds; what the process allocates between two reads without a reservation is what
/// the resident size can pass the limit by.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// The share of the budget (in 1/16ths) kept free for work in flight to grow into: new reads
/// are refused once the used figure passes the rest.
pub const START_ROOM: u64 = 1;

/// The share of the budget (in 1/16ths) new writes may fill: writes are refused once the used
/// figure passes it.
pub const WRITE_SHARE: u64 = 12;

/// Grows and shrinks of a [`Reservation::cover`] are rounded to this, bytes, so a count that
/// changes often touches the shared counter rarely.
pub const COVER_STEP: u64 = 1 << 20;

/// Bytes that request bodies being decoded, and what they decode to, may hold at once without
/// a limit; with one, an eighth of it when that is more. With the largest body a receiver
/// decodes (16 MiB, at most 32 MiB of entries), the worst bodies are decoded one at a time.
pub const DECODING_ROOM: u64 = 64 << 20;

/// Bytes the compiled regexes alive may hold without a limit; with one, a sixteenth of it
/// when that is more. A regex of the usual kind (`foo.*`, `(?i)error`, `[a-z]+-[0-9]+`) holds
/// 20 to 40 KiB, so this is room for about a thousand of them.
pub const REGEX_ROOM: u64 = 32 << 20;

/// Decoding room is counted in units of this many bytes.
const DECODING_UNIT: u64 = 1 << 10;

/// `part` sixteenths of `bytes`, without overflow.
const fn scale(bytes: u64, part: Part) -> u64 {
    bytes / WHOLE * part + bytes % WHOLE * part / WHOLE
}

/// The decoding room of a budget of `limit` bytes (0: none), bytes.
const fn decoding_room(limit: u64) -> u64 {
    if limit / 8 > DECODING_ROOM {
        limit / 8
    } else {
        DECODING_ROOM
    }
}

/// What a request asks of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Starting a read (a query, a Series call): admitted while [`START_ROOM`] is left.
    Read,
    /// Starting a write, which grows the head: admitted under [`WRITE_SHARE`].
    Write,
    /// More for work already admitted: granted up to the limit itself.
    Grow,
}

/// A part of the process's memory, in sixteenths: [`WHOLE`] for a role alone in its process.
pub type Part = u64;

/// The whole process's memory, as a [`Part`].
pub const WHOLE: Part = 16;

/// A memory budget: a limit, the resident size last sampled and the bytes reserved. Handed
/// around as an `Arc`; reservations hold one.
#[derive(Debug)]
pub struct MemoryBudget {
    /// Bytes; 0: no limit (reservations are still counted, for the metrics).
    limit: u64,
    /// The budget this is a part of, and which part; `None` for a whole budget.
    whole: Option<(Arc<MemoryBudget>, Part)>,
    /// Resident bytes as last sampled (a part reads its whole's instead).
    resident: AtomicU64,
    /// Bytes held by live reservations.
    reserved: AtomicU64,
    /// Reservations refused: work refused at the start or ended in flight.
    refused: AtomicU64,
    /// The decoding room, in units of [`DECODING_UNIT`].
    decoding: Arc<tokio::sync::Semaphore>,
    /// Bytes held by compiled regexes ([`MemoryBudget::hold_regex`]).
    regexes: AtomicU64,
}

/// Why a reservation was refused: the request must be refused or ended; trying again later
/// may succeed, once work in flight has ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {verb}: it needs {} MiB more, and {holder} {} MiB with {} MiB reserved by work in flight, against {share}--memory.limit of {} MiB; try again later",
    mib_up(*.wanted),
    .resident >> 20,
    .reserved >> 20,
    .process_limit >> 20,
    verb = if *.started { "ended" } else { "refused" },
    holder = if .limit == .process_limit { "the process holds" } else { "its role's part of the process holds" },
    share = if .limit == .process_limit { String::from("its ") } else { format!("its part, {} MiB of the ", .limit >> 20) },
)]
pub struct OverBudget {
    /// What was refused: `query`, `Series`, `remote write`.
    pub what: &'static str,
    /// Whether the work had started (its reservation could not grow) rather than been refused
    /// at the door.
    pub started: bool,
    /// Bytes asked for.
    pub wanted: u64,
    /// Resident bytes as last sampled.
    pub resident: u64,
    /// Bytes reserved when refused.
    pub reserved: u64,
    /// The limit, bytes: the budget's (a role's part of the process's).
    pub limit: u64,
    /// The process's `--memory.limit`, bytes: [`OverBudget::limit`] unless the budget is a
    /// part.
    pub process_limit: u64,
}

fn mib_up(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

impl MemoryBudget {
    /// A budget of the whole process's `limit` bytes (0: none), not yet sampled ([`start`]).
    pub fn new(limit: u64) -> Self {
        Self::with(limit, None)
    }

    /// A budget of `part` sixteenths of `whole`: that part of its limit, counting that part of
    /// the resident size `whole` samples. Parts adding up to [`WHOLE`] admit together what the
    /// whole would: each is refused once its part of the resident size and its own
    /// reservations pass its part of the limit. What a part reserves and refuses is counted
    /// in `whole` too, which nothing else should reserve from.
    pub fn part_of(whole: &Arc<MemoryBudget>, part: Part) -> Arc<Self> {
        let part = part.clamp(1, WHOLE);
        Arc::new(Self::with(
            scale(whole.limit, part),
            Some((Arc::clone(whole), part)),
        ))
    }

    fn with(limit: u64, whole: Option<(Arc<MemoryBudget>, Part)>) -> Self {
        MemoryBudget {
            limit,
            whole,
            resident: AtomicU64::new(0),
            reserved: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            decoding: Arc::new(tokio::sync::Semaphore::new(
                (decoding_room(limit) / DECODING_UNIT) as usize,
            )),
            regexes: AtomicU64::new(0),
        }
    }

    /// A budget without a limit that is not sampled, for tools and tests: it still counts
    /// reservations and holds decoding and regex room to their bounds.
    pub fn unlimited() -> Arc<Self> {
        Arc::new(Self::new(0))
    }

    /// The limit, bytes; 0 when there is none.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Resident bytes as last sampled; a part's share of what its whole sampled.
    pub fn resident(&self) -> u64 {
        match &self.whole {
            Some((whole, part)) => scale(whole.resident(), *part),
            None => self.resident.load(Relaxed),
        }
    }

    /// Records a sample of the resident size, bytes (a part reads its whole's instead).
    pub fn set_resident(&self, bytes: u64) {
        self.resident.store(bytes, Relaxed);
    }

    /// Counts a refusal, in the whole too.
    fn count_refusal(&self) {
        self.refused.fetch_add(1, Relaxed);
        if let Some((whole, _)) = &self.whole {
            whole.refused.fetch_add(1, Relaxed);
        }
    }

    /// Adds `bytes` to the reserved figure unchecked, in the whole too.
    fn add_reserved(&self, bytes: u64) {
        self.reserved.fetch_add(bytes, Relaxed);
        if let Some((whole, _)) = &self.whole {
            whole.reserved.fetch_add(bytes, Relaxed);
        }
    }

    /// Bytes held by live reservations.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Relaxed)
    }

    /// Reservations refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// The most the used figure may reach for `need`, bytes.
    fn ceiling(&self, need: Need) -> u64 {
        match need {
            Need::Read => self.limit - self.limit / 16 * START_ROOM,
            Need::Write => self.limit / 16 * WRITE_SHARE,
            Need::Grow => self.limit,
        }
    }

    /// Adds `bytes` to the reserved figure if the budget has room for them.
    fn take(&self, what: &'static str, bytes: u64, need: Need) -> Result<(), OverBudget> {
        if self.limit == 0 {
            self.add_reserved(bytes);
            return Ok(());
        }
        let ceiling = self.ceiling(need);
        let mut reserved = self.reserved.load(Relaxed);
        loop {
            let resident = self.resident();
            let after = reserved.saturating_add(bytes);
            if resident.saturating_add(after) > ceiling {
                self.count_refusal();
                return Err(OverBudget {
                    what,
                    started: need == Need::Grow,
                    wanted: bytes,
                    resident,
                    reserved,
                    limit: self.limit,
                    process_limit: self.whole.as_ref().map_or(self.limit, |(w, _)| w.limit),
                });
            }
            match self
                .reserved
                .compare_exchange_weak(reserved, after, Relaxed, Relaxed)
            {
                Ok(_) => {
                    if let Some((whole, _)) = &self.whole {
                        whole.reserved.fetch_add(bytes, Relaxed);
                    }
                    return Ok(());
                }
                Err(now) => reserved = now,
            }
        }
    }

    fn give_back(&self, bytes: u64) {
        self.reserved.fetch_sub(bytes, Relaxed);
        if let Some((whole, _)) = &self.whole {
            whole.reserved.fetch_sub(bytes, Relaxed);
        }
    }

    /// A reservation of `bytes` for new work or more work of kind `what`, refused when the
    /// budget has no room for it (see [`Need`]).
    pub fn reserve(
        self: &Arc<Self>,
        what: &'static str,
        bytes: u64,
        need: Need,
    ) -> Result<Reservation, OverBudget> {
        self.take(what, bytes, need)?;
        Ok(Reservation {
            budget: Arc::clone(self),
            what,
            bytes,
        })
    }

    /// An empty reservation for work of kind `what`, to grow as it goes.
    pub fn empty(self: &Arc<Self>, what: &'static str) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            what,
            bytes: 0,
        }
    }

    /// A reservation of `bytes` taken whatever the budget's room: for work that must go on
    /// because it is what frees memory (cutting the head into a block). Others see it.
    pub fn force(self: &Arc<Self>, what: &'static str, bytes: u64) -> Reservation {
        self.add_reserved(bytes);
        Reservation {
            budget: Arc::clone(self),
            what,
            bytes,
        }
    }
}

/// Why a body was not given decoding room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodingRefused {
    /// The budget had no room for the bytes (they are reserved as work in flight too).
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    /// Other bodies being decoded held the room for as long as the request could wait;
    /// trying again later may succeed.
    #[error(
        "{what} refused: it waited {}s for {} MiB of room to decode its body, and bodies being decoded held all {} MiB of it; try again later",
        .waited.as_secs(),
        mib_up(*.wanted),
        .room >> 20
    )]
    Busy {
        /// What was refused: `remote write`.
        what: &'static str,
        /// Bytes asked for.
        wanted: u64,
        /// The decoding room, bytes.
        room: u64,
        /// How long it waited.
        waited: Duration,
    },
}

/// Decoding room held by a body being decoded, with the same bytes reserved as work in flight;
/// both given back when dropped.
#[derive(Debug)]
pub struct Decoding {
    _room: tokio::sync::OwnedSemaphorePermit,
    _held: Reservation,
}

impl MemoryBudget {
    /// Bytes bodies being decoded may hold at once: [`DECODING_ROOM`], or an eighth of the
    /// limit when that is more.
    pub fn decoding_room(&self) -> u64 {
        decoding_room(self.limit)
    }

    /// Bytes of the decoding room held now.
    pub fn decoding(&self) -> u64 {
        let free = self.decoding.available_permits() as u64 * DECODING_UNIT;
        self.decoding_room().saturating_sub(free)
    }

    /// Room for a body of kind `what` whose decoding will hold at most `bytes` (the body
    /// decompressed and the most its entries may take), waiting up to `wait` for bodies being
    /// decoded to give it back; a body larger than the whole room waits for all of it and
    /// is decoded alone. The bytes are then reserved as work in flight ([`Need::Grow`]), so a
    /// budget with a limit may still refuse them.
    pub async fn decode_room(
        self: &Arc<Self>,
        what: &'static str,
        bytes: u64,
        wait: Duration,
    ) -> Result<Decoding, DecodingRefused> {
        let units = bytes
            .div_ceil(DECODING_UNIT)
            .clamp(1, decoding_room(self.limit) / DECODING_UNIT)
            .min(u64::from(u32::MAX)) as u32;
        let busy = || DecodingRefused::Busy {
            what,
            wanted: bytes,
            room: self.decoding_room(),
            waited: wait,
        };
        let room =
            match tokio::time::timeout(wait, Arc::clone(&self.decoding).acquire_many_owned(units))
                .await
            {
                Ok(Ok(permit)) => permit,
                // The semaphore is never closed; a wait that ran out is the answer.
                Ok(Err(_)) | Err(_) => {
                    self.count_refusal();
                    return Err(busy());
                }
            };
        let held = self.reserve(what, bytes, Need::Grow)?;
        Ok(Decoding {
            _room: room,
            _held: held,
        })
    }
}

/// Why a compiled regex was not given room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegexRefused {
    /// The budget had no room for it (its bytes are reserved as work in flight too).
    #[error(transparent)]
    OverBudget(#[from] OverBudget),
    /// The regexes already compiled, with this one, would hold more than the room.
    #[error(
        "it compiles to about {} KiB, and with the {} KiB compiled regexes already hold that passes the limit of {} MiB for the compiled regexes of requests in flight",
        .wanted.div_ceil(1 << 10),
        .held.div_ceil(1 << 10),
        .room >> 20
    )]
    Full {
        /// Bytes asked for.
        wanted: u64,
        /// Bytes compiled regexes held.
        held: u64,
        /// The room, bytes.
        room: u64,
    },
}

/// Room held by a compiled regex for as long as it lives, with the same bytes reserved as
/// work in flight; given back when dropped.
#[derive(Debug)]
pub struct RegexHold {
    budget: Arc<MemoryBudget>,
    bytes: u64,
    _held: Reservation,
}

impl RegexHold {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for RegexHold {
    fn drop(&mut self) {
        self.budget.regexes.fetch_sub(self.bytes, Relaxed);
    }
}

impl MemoryBudget {
    /// Bytes the compiled regexes alive may hold: [`REGEX_ROOM`], or a sixteenth of the limit
    /// when that is more.
    pub fn regex_room(&self) -> u64 {
        (self.limit / 16).max(REGEX_ROOM)
    }

    /// Bytes compiled regexes hold now.
    pub fn regexes(&self) -> u64 {
        self.regexes.load(Relaxed)
    }

    /// Room for a compiled regex of about `bytes`, refused when the regexes alive would then
    /// hold more than [`MemoryBudget::regex_room`]; the bytes are also reserved as work in
    /// flight ([`Need::Grow`]).
    pub fn hold_regex(self: &Arc<Self>, bytes: u64) -> Result<RegexHold, RegexRefused> {
        let reserved = self.reserve("regex", bytes, Need::Grow)?;
        let room = self.regex_room();
        let mut held = self.regexes.load(Relaxed);
        loop {
            if held.saturating_add(bytes) > room {
                self.count_refusal();
                return Err(RegexRefused::Full {
                    wanted: bytes,
                    held,
                    room,
                });
            }
            match self
                .regexes
                .compare_exchange_weak(held, held + bytes, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(now) => held = now,
            }
        }
        Ok(RegexHold {
            budget: Arc::clone(self),
            bytes,
            _held: reserved,
        })
    }
}

/// Bytes taken from a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    what: &'static str,
    bytes: u64,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Holds `bytes` more, if the budget has room for them up to its limit.
    pub fn grow(&mut self, bytes: u64) -> Result<(), OverBudget> {
        if bytes > 0 {
            self.budget.take(self.what, bytes, Need::Grow)?;
            self.bytes += bytes;
        }
        Ok(())
    }

    /// Gives `bytes` back (at most what is held).
    pub fn shrink(&mut self, bytes: u64) {
        let n = bytes.min(self.bytes);
        self.budget.give_back(n);
        self.bytes -= n;
    }

    /// Holds at least `total` bytes and not much more: grows to `total` rounded up to
    /// [`COVER_STEP`] when it holds less, shrinks when it holds more than two steps beyond
    /// it. For a count that rises and falls often (samples a query holds).
    pub fn cover(&mut self, total: u64) -> Result<(), OverBudget> {
        if total > self.bytes {
            let want = total.div_ceil(COVER_STEP) * COVER_STEP;
            self.grow(want - self.bytes)
        } else {
            let keep = total.div_ceil(COVER_STEP) * COVER_STEP;
            if self.bytes - keep > 2 * COVER_STEP {
                self.shrink(self.bytes - keep);
            }
            Ok(())
        }
    }

    /// Moves `bytes` of this reservation (at most what it holds) into a new one, to travel with
    /// the memory it covers (a batch handed to another task).
    pub fn split(&mut self, bytes: u64) -> Reservation {
        let n = bytes.min(self.bytes);
        self.bytes -= n;
        Reservation {
            budget: Arc::clone(&self.budget),
            what: self.what,
            bytes: n,
        }
    }

    /// Takes `other`'s bytes into this reservation.
    pub fn absorb(&mut self, mut other: Reservation) {
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
        }
    }
}

/// Starts sampling the process's resident size into `budget` every [`SAMPLE_EVERY`] when it
/// has a limit, on a thread that ends once the last handle of the budget is dropped (its
/// parts hold one). `Err` when the thread did not start: the budget then counts reservations
/// against the resident size of its start. A part is sampled through its whole: nothing to
/// start.
pub fn start(budget: &Arc<MemoryBudget>) -> std::io::Result<()> {
    if budget.whole.is_some() {
        return Ok(());
    }
    budget.set_resident(resident_bytes());
    if budget.limit == 0 {
        return Ok(());
    }
    let weak: Weak<MemoryBudget> = Arc::downgrade(budget);
    std::thread::Builder::new()
        .name("gauntlet-memory".into())
        .spawn(move || {
            loop {
                std::thread::sleep(SAMPLE_EVERY);
                let Some(budget) = weak.upgrade() else {
                    return;
                };
                budget.set_resident(resident_bytes());
            }
        })?;
    Ok(())
}

/// The process's resident set size, bytes (`/proc/self/statm`), 0 when unknown.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_size())
}

/// The system's page size, bytes, from the auxiliary vector the kernel gave the process
/// (`AT_PAGESZ`); 4096 when it cannot be read.
fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        const AT_PAGESZ: u64 = 6;
        let Ok(aux) = std::fs::read("/proc/self/auxv") else {
            return 4096;
        };
        aux.chunks_exact(16)
            .map(|e| {
                let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]));
                (word(&e[..8]), word(&e[8..]))
            })
            .find(|&(k, _)| k == AT_PAGESZ)
            .map_or(4096, |(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn budget(limit: u64, resident: u64) -> Arc<MemoryBudget> {
        let b = Arc::new(MemoryBudget::new(limit));
        b.set_resident(resident);
        b
    }

    #[test]
    fn reservations_count_until_dropped() {
        let b = budget(100 * MIB, 10 * MIB);
        let r = b.reserve("query", 20 * MIB, Need::Read).unwrap();
        let mut s = b.reserve("Series", 5 * MIB, Need::Read).unwrap();
        assert_eq!(b.reserved(), 25 * MIB);
        s.grow(10 * MIB).unwrap();
        assert_eq!((s.bytes(), b.reserved()), (15 * MIB, 35 * MIB));
        s.shrink(100 * MIB);
        assert_eq!((s.bytes(), b.reserved()), (0, 20 * MIB));
        drop(r);
        drop(s);
        assert_eq!(b.reserved(), 0);
    }

    #[test]
    fn resident_and_reserved_together_may_not_pass_the_limit() {
        let b = budget(100 * MIB, 60 * MIB);
        let mut r = b.reserve("query", 30 * MIB, Need::Read).unwrap();
        // 60 resident + 30 reserved: 10 left, so 11 more is refused and nothing is taken.
        let e = r.grow(11 * MIB).unwrap_err();
        assert!(e.started);
        assert_eq!(
            (e.resident, e.reserved, e.limit),
            (60 * MIB, 30 * MIB, 100 * MIB)
        );
        assert_eq!(b.reserved(), 30 * MIB);
        r.grow(10 * MIB).unwrap();
        assert_eq!(b.refused(), 1);
        let msg = e.to_string();
        assert!(
            msg.starts_with("query ended: it needs 11 MiB more"),
            "{msg}"
        );
        assert!(msg.contains("--memory.limit of 100 MiB"), "{msg}");
    }

    #[test]
    fn a_burst_of_new_work_sees_what_the_first_reserved() {
        // The resident size dips just under the limit: one start fits, the next does not.
        let b = budget(160 * MIB, 100 * MIB);
        let first = b.reserve("query", 40 * MIB, Need::Read).unwrap();
        let e = b.reserve("query", 40 * MIB, Need::Read).unwrap_err();
        assert!(!e.started);
        assert!(e.to_string().starts_with("query refused"), "{e}");
        drop(first);
        b.reserve("query", 40 * MIB, Need::Read).unwrap();
    }

    #[test]
    fn new_work_leaves_room_for_work_in_flight_and_writes_stop_first() {
        let b = budget(160 * MIB, 0);
        // Reads start up to 15/16 of the limit, writes up to 12/16; growth goes to the limit.
        let mut held = b.reserve("query", 110 * MIB, Need::Read).unwrap();
        assert!(b.reserve("remote write", 11 * MIB, Need::Write).is_err());
        b.reserve("remote write", 10 * MIB, Need::Write).unwrap();
        assert!(b.reserve("query", 41 * MIB, Need::Read).is_err());
        b.reserve("query", 40 * MIB, Need::Read).unwrap();
        held.grow(50 * MIB).unwrap();
        assert!(held.grow(1).is_err());
    }

    #[test]
    fn without_a_limit_everything_is_granted_and_counted() {
        let b = budget(0, u64::MAX / 2);
        let mut r = b.reserve("query", 1 << 40, Need::Read).unwrap();
        r.grow(1 << 40).unwrap();
        assert_eq!(b.reserved(), 2 << 40);
        drop(r);
        assert_eq!(b.reserved(), 0);
    }

    #[test]
    fn cover_rounds_to_steps_and_gives_back_what_is_far_beyond() {
        let b = budget(100 * MIB, 0);
        let mut r = b.empty("query");
        r.cover(1).unwrap();
        assert_eq!(r.bytes(), MIB);
        r.cover(3 * MIB + 1).unwrap();
        assert_eq!(r.bytes(), 4 * MIB);
        // Within two steps of the count: kept.
        r.cover(2 * MIB).unwrap();
        assert_eq!(r.bytes(), 4 * MIB);
        r.cover(MIB / 2).unwrap();
        assert_eq!(r.bytes(), MIB);
        assert_eq!(b.reserved(), MIB);
        assert!(r.cover(101 * MIB).is_err());
        assert_eq!(r.bytes(), MIB);
    }

    #[test]
    fn split_and_absorb_move_bytes_without_touching_the_total() {
        let b = budget(100 * MIB, 0);
        let mut r = b.reserve("Series", 10 * MIB, Need::Read).unwrap();
        let part = r.split(4 * MIB);
        assert_eq!(
            (r.bytes(), part.bytes(), b.reserved()),
            (6 * MIB, 4 * MIB, 10 * MIB)
        );
        r.absorb(part);
        assert_eq!((r.bytes(), b.reserved()), (10 * MIB, 10 * MIB));
        let part = r.split(3 * MIB);
        drop(part);
        assert_eq!(b.reserved(), 7 * MIB);
    }

    #[test]
    fn forced_reservations_are_seen_by_others() {
        let b = budget(100 * MIB, 50 * MIB);
        let _cut = b.force("head cut", 80 * MIB);
        assert!(b.reserve("query", 1, Need::Read).is_err());
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn bodies_wait_for_decoding_room_even_without_a_limit() {
        let b = budget(0, 0);
        assert_eq!(b.decoding_room(), DECODING_ROOM);
        let wait = Duration::from_millis(50);
        block_on(async {
            let first = b.decode_room("remote write", 40 * MIB, wait).await.unwrap();
            assert_eq!((b.decoding(), b.reserved()), (40 * MIB, 40 * MIB));
            // 24 MiB left: a second body of 30 MiB waits, and is refused when the wait ends.
            let e = b
                .decode_room("remote write", 30 * MIB, wait)
                .await
                .unwrap_err();
            assert!(matches!(e, DecodingRefused::Busy { .. }), "{e}");
            assert!(
                e.to_string()
                    .contains("bodies being decoded held all 64 MiB of it"),
                "{e}"
            );
            let small = b.decode_room("remote write", 20 * MIB, wait).await.unwrap();
            drop(first);
            // A body larger than the room takes all of it, once the others are done.
            let other = Arc::clone(&b);
            let big = tokio::spawn(async move {
                other
                    .decode_room("remote write", 100 * MIB, Duration::from_secs(5))
                    .await
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!big.is_finished());
            drop(small);
            let big = big.await.unwrap().unwrap();
            assert_eq!((b.decoding(), b.reserved()), (DECODING_ROOM, 100 * MIB));
            drop(big);
            assert_eq!((b.decoding(), b.reserved()), (0, 0));
        });
    }

    #[test]
    fn decoding_room_is_reserved_from_a_limit() {
        let b = budget(1 << 40, 0);
        assert_eq!(b.decoding_room(), (1 << 40) / 8);
        let b = budget(100 * MIB, 90 * MIB);
        assert_eq!(b.decoding_room(), DECODING_ROOM);
        let e =
            block_on(b.decode_room("remote write", 20 * MIB, Duration::from_secs(1))).unwrap_err();
        assert!(matches!(e, DecodingRefused::OverBudget(_)), "{e}");
        // The room taken while the budget refused is given back.
        assert_eq!((b.decoding(), b.reserved()), (0, 0));
    }

    #[test]
    fn compiled_regexes_share_a_room_even_without_a_limit() {
        let b = budget(0, 0);
        assert_eq!(b.regex_room(), REGEX_ROOM);
        let first = b.hold_regex(20 * MIB).unwrap();
        assert_eq!((b.regexes(), b.reserved()), (20 * MIB, 20 * MIB));
        let e = b.hold_regex(15 * MIB).unwrap_err();
        assert!(matches!(e, RegexRefused::Full { .. }), "{e}");
        assert!(e.to_string().contains("limit of 32 MiB"), "{e}");
        let second = b.hold_regex(12 * MIB).unwrap();
        drop(first);
        assert_eq!((b.regexes(), b.reserved()), (12 * MIB, 12 * MIB));
        drop(second);
        assert_eq!((b.regexes(), b.reserved()), (0, 0));
        assert_eq!(budget(1 << 40, 0).regex_room(), (1 << 40) / 16);
        // Over a limit's budget: refused, and the room given back.
        let b = budget(100 * MIB, 95 * MIB);
        assert!(matches!(
            b.hold_regex(10 * MIB),
            Err(RegexRefused::OverBudget(_))
        ));
        assert_eq!((b.regexes(), b.reserved()), (0, 0));
    }

    #[test]
    fn two_budgets_are_independent() {
        let (a, b) = (budget(100 * MIB, 10 * MIB), budget(100 * MIB, 10 * MIB));
        let _held = a.reserve("query", 80 * MIB, Need::Read).unwrap();
        assert!(a.reserve("query", 10 * MIB, Need::Read).is_err());
        assert!(a.hold_regex(16 * MIB).is_err());
        // What `a` holds and refused is its own: `b` still has all its room.
        let _other = b.reserve("query", 80 * MIB, Need::Read).unwrap();
        let _regex = b.hold_regex(8 * MIB).unwrap();
        assert_eq!((a.reserved(), a.refused()), (80 * MIB, 2));
        assert_eq!((b.reserved(), b.refused()), (88 * MIB, 0));
    }

    #[test]
    fn parts_count_their_part_of_the_resident_size_and_add_up_in_the_whole() {
        let whole = budget(160 * MIB, 64 * MIB);
        let query = MemoryBudget::part_of(&whole, 8);
        let receive = MemoryBudget::part_of(&whole, 4);
        assert_eq!((query.limit(), receive.limit()), (80 * MIB, 40 * MIB));
        assert_eq!((query.resident(), receive.resident()), (32 * MIB, 16 * MIB));
        // The query's part fills (32 resident + 43 reserved of its 75 for new reads) and is
        // refused, while the receive part still takes writes up to 12/16 of its 40.
        let held = query.reserve("query", 43 * MIB, Need::Read).unwrap();
        let e = query.reserve("query", 1, Need::Read).unwrap_err();
        assert!(
            e.to_string()
                .contains("against its part, 80 MiB of the --memory.limit of 160 MiB"),
            "{e}"
        );
        let write = receive
            .reserve("remote write", 14 * MIB, Need::Write)
            .unwrap();
        assert!(
            receive
                .reserve("remote write", 15 * MIB, Need::Write)
                .is_err()
        );
        // The whole sees what its parts hold and refused, and a new sample reaches them.
        assert_eq!((whole.reserved(), whole.refused()), (57 * MIB, 2));
        drop((held, write));
        assert_eq!(whole.reserved(), 0);
        whole.set_resident(128 * MIB);
        assert_eq!(query.resident(), 64 * MIB);
        // Odd limits lose no more than a byte to the division.
        assert_eq!(scale(17, WHOLE), 17);
        assert_eq!(scale(u64::MAX, WHOLE), u64::MAX);
        assert_eq!(scale(u64::MAX, 8), u64::MAX / 2);
    }

    #[test]
    fn the_sampler_stops_with_the_last_handle() {
        let b = Arc::new(MemoryBudget::new(1 << 40));
        start(&b).unwrap();
        assert!(b.resident() > MIB);
        b.set_resident(0);
        std::thread::sleep(SAMPLE_EVERY * 5);
        assert!(
            b.resident() > MIB,
            "the sampler runs while the budget is held"
        );
        let weak = Arc::downgrade(&b);
        drop(b);
        // The sampler holds the budget only while it records a sample.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while weak.strong_count() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the sampler kept the budget"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_resident_size_is_read_in_pages_of_the_system() {
        assert!(resident_bytes() > MIB);
        assert!(page_size().is_power_of_two());
        assert!(page_size() >= 4096);
    }
}
