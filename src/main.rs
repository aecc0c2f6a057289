// mimalloc: the gateway allocates small short-lived buffers per request across
// threads, where glibc's malloc spent ~12% of the CPU in a profile under load.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchboard::cli::main()
}
