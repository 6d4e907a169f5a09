//! The parts of the `gateway` binary that are more than argument parsing:
//! one module per subcommand, plus the wiring shared by them and the tests
//! (how the sandbox is configured from the gateway's own settings, how a
//! process waits for SIGTERM).

pub mod allocator;
pub mod cli;
pub mod commands;
pub mod sandbox_setup;
pub mod shutdown;
