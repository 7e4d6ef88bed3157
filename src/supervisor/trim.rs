//! Gives back the pages only the start needed. Statically linked, this binary's code
//! and read-only data are private to it (no other process maps them), and by the time
//! the relay loop starts most of what was faulted in is start-up work never run again:
//! glibc's initialisation, argument parsing, the setup (the kernel also maps up to
//! 64 KiB around each page touched). Dropping the page-table entries of those read-only
//! mappings lets the loop fault back only the pages it runs; the file's pages stay in
//! the page cache (reclaimable, charged to no process). Free heap goes back likewise.

unsafe extern "C" {
    /// The first byte of the image (the ELF header), defined by the linker.
    static __ehdr_start: u8;
    /// The end of the executable code, defined by the linker.
    static etext: u8;
}

pub fn release_startup_pages() {
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    let start = std::ptr::addr_of!(__ehdr_start) as usize;
    let end = std::ptr::addr_of!(etext) as usize;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    // Whole pages from the ELF header to the end of the code: the read-only segments
    // (headers, read-only data, code), never written (no text relocations), so
    // dropping them loses nothing: a later access reads the file's page again. The
    // writable and RELRO segments, after the code, are left alone.
    let end = end & !(page - 1);
    if !start.is_multiple_of(page) || end <= start {
        return;
    }
    // SAFETY: MADV_DONTNEED on our own read-only, file-backed private mappings: their
    // contents are the file's, which the next access faults back in.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
}
