//! Resource usage of this process, read from the kernel at scrape time.

use std::time::Duration;

/// Resident set size in bytes (0 where /proc is unavailable).
pub fn resident_bytes() -> u64 {
    // statm: size resident shared text lib data dt, in pages.
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    pages * page
}

/// Resident memory split by what backs it (RssAnon and RssFile of
/// /proc/self/status), in bytes; None where /proc is unavailable.
///
/// The split tells a leak from paging: anonymous pages are the heap, stacks and
/// the allocator's own; file-backed ones are mostly the binary's code, read in
/// as paths run for the first time and bounded by its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidentSplit {
    /// Anonymous resident bytes.
    pub anon: u64,
    /// File-backed resident bytes (the executable, shared libraries).
    pub file: u64,
}

/// [`ResidentSplit`] of this process.
pub fn resident_split() -> Option<ResidentSplit> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|k| k * 1024)
    };
    Some(ResidentSplit {
        anon: kib("RssAnon:")?,
        file: kib("RssFile:")?,
    })
}

/// What the heap holds, from jemalloc's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heap {
    /// Bytes in live allocations: what the program itself holds. A leak grows
    /// this; memory the allocator keeps for reuse does not.
    pub allocated: u64,
    /// Bytes of pages jemalloc has resident (allocations, its metadata, and
    /// freed pages not yet given back).
    pub resident: u64,
    /// Bytes in pages holding live allocations: `active - allocated` is
    /// fragmentation (free slots in partly used slabs), which no purge returns.
    pub active: u64,
    /// Bytes of jemalloc's own bookkeeping (part of `resident`).
    pub metadata: u64,
}

/// The heap figures, when jemalloc is the global allocator (feature
/// `jemalloc`, the default); None without it.
pub fn heap() -> Option<Heap> {
    #[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
    {
        use tikv_jemalloc_ctl::{epoch, stats};
        // The statistics are a snapshot taken when the epoch advances.
        epoch::advance().ok()?;
        Some(Heap {
            allocated: stats::allocated::read().ok()? as u64,
            resident: stats::resident::read().ok()? as u64,
            active: stats::active::read().ok()? as u64,
            metadata: stats::metadata::read().ok()? as u64,
        })
    }
    #[cfg(not(all(feature = "jemalloc", not(target_env = "msvc"))))]
    {
        None
    }
}

/// Lets jemalloc purge freed pages from a background thread: without one, an
/// arena purges only when it is used, so the pages of an arena that went quiet
/// after a burst (a reconnect storm, its threads gone) stayed resident. Called
/// when a server binds; without jemalloc it does nothing.
pub fn purge_in_background() {
    #[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!(error = %e, "jemalloc background purging not available");
    }
}

/// User plus system CPU time consumed by this process so far.
pub fn cpu_time() -> Duration {
    usage(nix::sys::resource::UsageWho::RUSAGE_SELF)
}

/// User plus system CPU time of the commands this process ran and reaped: most of
/// the work of an exec-heavy load, invisible in [`cpu_time`].
pub fn children_cpu_time() -> Duration {
    usage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
}

fn usage(who: nix::sys::resource::UsageWho) -> Duration {
    let Ok(u) = nix::sys::resource::getrusage(who) else {
        return Duration::ZERO;
    };
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    tv(u.user_time()) + tv(u.system_time())
}

/// Read and write system calls this process made so far (`syscr`, `syscw` of
/// /proc/self/io; zeros where unavailable): what frame coalescing saves.
pub fn io_syscalls() -> (u64, u64) {
    let Ok(io) = std::fs::read_to_string("/proc/self/io") else {
        return (0, 0);
    };
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("syscr:"), field("syscw:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
    #[test]
    fn heap_figures_follow_live_allocations() {
        let before = heap().expect("jemalloc is the allocator").allocated;
        // Large against whatever the tests running beside this one allocate.
        let block = vec![1u8; 256 << 20];
        let during = heap().expect("figures").allocated;
        assert!(
            during >= before + (192 << 20),
            "{before} -> {during} with 256 MiB live"
        );
        drop(block);
        let after = heap().expect("figures");
        assert!(after.allocated + (192 << 20) <= during, "{after:?}");
        assert!(after.resident > 0);
        assert!(after.metadata > 0 && after.metadata < after.resident);
        assert!(after.active >= after.allocated && after.active <= after.resident);
    }

    #[test]
    fn resident_split_adds_up_to_the_resident_set() {
        let split = resident_split().expect("/proc/self/status");
        assert!(split.anon > 0 && split.file > 0, "{split:?}");
        // Shared memory (RssShmem) is the third part; this process has little.
        let rss = resident_bytes();
        let sum = split.anon + split.file;
        assert!(
            sum <= rss + (4 << 20) && sum + (4 << 20) >= rss,
            "{split:?} vs {rss}"
        );
    }
}
