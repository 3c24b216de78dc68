#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Rust ignores SIGPIPE, so a write to a closed pipe is an error every `println!` would
    // panic on; with the default action the process ends quietly (status 141 in a shell),
    // as `cat` and `head` do.
    // SAFETY: setting a signal's disposition to SIG_DFL at start, before any thread runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The Proxmox API's secrets leave the environment before anything can inherit them.
    phoenix::host::pve::api::withhold_secrets();
    std::process::exit(phoenix::cli::main());
}
