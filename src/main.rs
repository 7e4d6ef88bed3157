//! mycontainer: one binary for images (store, import, build), running containers
//! (overlay root, namespaces, cgroups, security) and managing them.

mod archive;
mod builder;
mod cli;
mod container;
mod exitcode;
mod registry;
mod runtime;
mod stateroot;
mod timefmt;
mod umask;

fn main() {
    umask::set();
    std::process::exit(cli::main());
}
