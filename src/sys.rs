//! Sys: the few system calls outside socket batching (`listen::mmsg`) that std does not
//! wrap: the open-files limit, USER_HZ, the effective gid, `statvfs(2)` and killing a process
//! group.
//!
//! Owns: every `unsafe` block outside `listen::mmsg`, one per call, each with its safety
//! argument. Must never: keep state, or hand a raw pointer out.

use std::path::Path;

/// This process's open-files limit (soft RLIMIT_NOFILE); `u64::MAX` when unlimited or
/// unreadable, so that nothing is refused on a platform without it.
pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the struct it is given, which we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return u64::MAX;
    }
    limit.rlim_cur
}

/// USER_HZ, the unit of `/proc` CPU times; the kernel's ABI value (100) when sysconf cannot say.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads system configuration.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// This process's effective gid: the group `net.ipv4.ping_group_range` is checked against
/// when an unprivileged ICMP socket is opened (named in `host_alive`'s refusal message).
pub fn effective_gid() -> u32 {
    // SAFETY: getegid has no preconditions, cannot fail and touches no memory of ours.
    unsafe { libc::getegid() }
}

/// The `statvfs` fields the disk probe uses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FsStat {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub frsize: u64,
    pub files: u64,
    pub ffree: u64,
}

/// `statvfs(2)` of `path` (it may block on a hung network mount: call it off any thread
/// that must not wait).
pub fn statvfs(path: &Path) -> std::io::Result<FsStat> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct of integers.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call, and `st` is a
    // properly sized, writable out-parameter we own.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(FsStat {
        blocks: st.f_blocks as u64,
        bfree: st.f_bfree as u64,
        bavail: st.f_bavail as u64,
        frsize: st.f_frsize as u64,
        files: st.f_files as u64,
        ffree: st.f_ffree as u64,
    })
}

/// SIGKILL to every process of group `pgid` (a Nagios plugin and whatever it spawned).
/// Refuses the ids that mean something else to `kill(2)`: 0 (our own group) and 1 (with the
/// minus sign: every process we may signal). `ESRCH` (the group is already gone) is `Ok`.
pub fn kill_process_group(pgid: u32) -> std::io::Result<()> {
    let Ok(id) = libc::pid_t::try_from(pgid) else {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    };
    if id <= 1 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill takes plain integers and touches no memory of ours; `-id` with id > 1
    // names exactly one process group, never our own group or all processes.
    if unsafe { libc::kill(-id, libc::SIGKILL) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        assert!(open_files_limit() > 0);
        assert!(clock_ticks_per_second() > 0);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let gid_line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
        let egid: u32 = gid_line.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(effective_gid(), egid);
        let root = statvfs(Path::new("/")).unwrap();
        assert!(root.blocks > 0 && root.frsize > 0);
        assert!(statvfs(Path::new("/nonexistent/statsgate")).is_err());
    }

    #[test]
    fn group_kill_refuses_the_special_ids_and_reaches_a_whole_group() {
        assert!(kill_process_group(0).is_err());
        assert!(kill_process_group(1).is_err());
        assert!(kill_process_group(u32::MAX).is_err());
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        kill_process_group(child.id()).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
