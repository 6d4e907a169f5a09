//! The `gateway` binary, built inside this package so that the end-to-end
//! tests can start real worker processes (and kill them) from
//! `CARGO_BIN_EXE_gateway-under-test`.

fn main() -> anyhow::Result<()> {
    gateway::cli::main()
}
