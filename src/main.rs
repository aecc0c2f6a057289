// mimalloc: the gateway allocates small short-lived buffers per request across
// threads, where glibc's malloc spent ~12% of the CPU in a profile under load.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    switchboard::cli::main()
}

/// mimalloc asks the kernel for transparent huge pages on its arenas, so every
/// first touch of a 2 MiB region made it resident whole: idle RSS was 21 MiB,
/// 14 MiB of it huge pages holding a few KiB each. A gateway's working set is
/// small and scattered, where huge pages buy nothing measurable (benches/cpu.sh
/// showed no difference), so the process opts out before it allocates much.
/// Best effort: on a kernel without the flag this fails and nothing changes.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
