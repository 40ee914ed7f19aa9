//! `switchyard-vbd`: the virtual block device driver alone, in a binary that does
//! not link DPDK (the same as `switchyard vbd`).
use std::process::ExitCode;

use clap::Parser;
use switchyard_vbd::cli::VbdArgs;

#[derive(Parser)]
#[command(name = "switchyard-vbd", version, about = "Serve images of a Switchyard storage server as NBD exports")]
struct Cli {
    #[command(flatten)]
    args: VbdArgs,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // The sockets it makes are its owner's alone unless --socket-group opens them.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    switchyard_vbd::cli::main(Cli::parse().args)
}
