//! mycontainer: one binary for images (store, import, build), running containers
//! (overlay root, namespaces, cgroups, security) and managing them.

mod archive;
mod build;
mod cli;
mod container;
mod exitcode;
mod registry;
mod runtime;
mod timefmt;

fn main() {
    std::process::exit(cli::main());
}
