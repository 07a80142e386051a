//! The kernel's per-socket UDP receive drops, read from `/proc/net/udp` and `/proc/net/udp6`
//! (the last column, `drops`), matched by socket inode.

/// Sum of the drop counters of the sockets with these inodes; 0 where `/proc` is absent.
pub fn udp_drops(inodes: &[u64]) -> u64 {
    if inodes.is_empty() {
        return 0;
    }
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|table| drops_in_table(&table, inodes))
        .sum()
}

/// Columns: sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops.
fn drops_in_table(table: &str, inodes: &[u64]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            if !inodes.contains(&inode) {
                return None;
            }
            cols.last()?.parse::<u64>().ok()
        })
        .sum()
}

/// The inode of a socket, as `/proc/net/udp` lists it.
#[cfg(unix)]
pub fn socket_inode(socket: &impl std::os::fd::AsRawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
    // The link reads `socket:[12345]`.
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// Socket inodes bound to local UDP `port` and their drop counts, from `/proc/net/udp*`.
pub fn port_sockets(port: u16) -> Vec<(u64, u64)> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    let local_port = cols.get(1)?.rsplit(':').next()?;
                    if u16::from_str_radix(local_port, 16).ok()? != port {
                        return None;
                    }
                    Some((cols.get(9)?.parse().ok()?, cols.last()?.parse().ok()?))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Another process holding a socket bound to UDP `port`, found through `/proc/*/fd` (only
/// processes this user may inspect are seen).
pub fn udp_port_holder(port: u16) -> Option<u32> {
    let inodes: Vec<String> = port_sockets(port)
        .iter()
        .map(|(inode, _)| format!("socket:[{inode}]"))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| link.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_udp() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:1FBD 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 424242 2 0000000000000000 17\n\
  2: 0100007F:1FBE 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 111 2 0000000000000000 99\n";
        assert_eq!(drops_in_table(table, &[424242]), 17);
        assert_eq!(drops_in_table(table, &[424242, 111]), 116);
        assert_eq!(drops_in_table(table, &[5]), 0);
    }

    #[test]
    fn finds_a_real_socket_inode() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inode = socket_inode(&sock).expect("inode");
        assert_eq!(udp_drops(&[inode]), 0);
        let listed = std::fs::read_to_string("/proc/net/udp").unwrap();
        assert!(
            listed.contains(&format!(" {inode} ")),
            "socket listed in /proc/net/udp"
        );
    }
}
