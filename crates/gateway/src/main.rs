//! `gateway`: the one binary; see `gateway --help` and the `cli` module.

/// mimalloc: the api and worker allocate many small, short-lived buffers
/// per request; glibc's allocator showed up as a fifth of the api's CPU.
/// Built without transparent huge pages (`no_thp`): with them a worker's
/// resident memory was a fifth higher for the same heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    gateway::cli::main()
}
