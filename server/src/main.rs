//! The `gauntlet` binary: command line, servers and background loops over the engine.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {}
