//! `powercut image build`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use crate::vm;
use crate::vm::image::KernelFlavor;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Provision QEMU, the Debian kernel and busybox, build the agent and the initramfs (cached).
    Build {
        /// Debian kernel flavour: `cloud` (boots faster) or `generic`.
        #[arg(long, value_enum, default_value_t = KernelFlavor::Cloud)]
        kernel: KernelFlavor,
        /// Use this static agent binary instead of building it from the workspace.
        #[arg(long)]
        agent: Option<PathBuf>,
        /// Build the agent with the engine's deliberately broken variants (`mutants` feature).
        #[arg(long)]
        mutants: bool,
    },
}

pub fn run(command: ImageCommand, progress: &vm::progress::Progress) -> Result<()> {
    let ImageCommand::Build {
        kernel,
        agent,
        mutants,
    } = command;
    let options = vm::image::BuildOptions {
        flavor: kernel,
        agent,
        mutants,
        guest_packages: Vec::new(),
        guest_files: Vec::new(),
    };
    let image = vm::image::build(&options, progress)?;
    println!("kernel  {}", image.kernel.display());
    println!("initrd  {}", image.initrd.display());
    println!("key     {}", image.key);
    Ok(())
}
