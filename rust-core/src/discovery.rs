//! Which processes are traced: the selectors decided for one executable (at every exec),
//! and for every process already running when the collector starts (its executable, and
//! the ports its sockets listen on or connect to), as the kernel would have decided them
//! had it been watching since they started.

use std::collections::HashMap;

use crate::config::{Config, ProcFacts, Selector};
use crate::events::{
    PORT_DISCOVERY_EXCLUDE, PORT_INSTRUMENT, PORT_INSTRUMENT_WITH_EXE, PROC_ELIGIBLE,
    PROC_EXCLUDED, PROC_PENDING, PROC_TRACED,
};

/// The selectors on the process (executable, cgroup) for a process that just exec'd.
/// Exclude wins; a process matching neither keeps what it had (`prev_state`, 0 for
/// none). None: no entry (the kernel's default: traced without discovery, else not).
pub fn decide_exec(cfg: &Config, p: &ProcFacts, prev_state: u32) -> Option<u32> {
    let matches = |s: &Selector| s.by_process() && s.process_matches(p);
    if cfg.excludes().any(matches) {
        return Some(PROC_EXCLUDED);
    }
    let Some(d) = &cfg.discovery else {
        // Every process is traced; one forked by an excluded one stays excluded.
        return (prev_state == PROC_EXCLUDED).then_some(PROC_EXCLUDED);
    };
    if d.instrument
        .iter()
        .any(|s| matches(s) && s.open_ports.is_empty())
    {
        Some(PROC_TRACED)
    } else if prev_state == PROC_TRACED || prev_state == PROC_EXCLUDED {
        Some(prev_state)
    } else if d.instrument.iter().any(matches) {
        // Process fields and open_ports: traced from its first accept/connect on those ports.
        Some(PROC_ELIGIBLE)
    } else {
        None
    }
}

/// The port_flags array contents a config implies (see events.h).
pub fn port_flags(cfg: &Config) -> Vec<(u16, u8)> {
    let mut flags = std::collections::BTreeMap::<u16, u8>::new();
    let mut mark = |lo: u16, hi: u16, f: u8| {
        for p in lo..=hi {
            *flags.entry(p).or_default() |= f;
        }
    };
    if let Some(d) = &cfg.discovery {
        // A selector that also names an exe selects only processes userspace marked
        // ELIGIBLE at exec.
        for s in &d.instrument {
            let flag = if s.by_process() {
                PORT_INSTRUMENT_WITH_EXE
            } else {
                PORT_INSTRUMENT
            };
            for &(lo, hi) in &s.open_ports {
                mark(lo, hi, flag);
            }
        }
        for s in d.exclude.iter().filter(|s| !s.by_process()) {
            for &(lo, hi) in &s.open_ports {
                mark(lo, hi, PORT_DISCOVERY_EXCLUDE);
            }
        }
    }
    for &p in &cfg.exclude_ports {
        mark(p, p, crate::events::PORT_NO_SPANS);
    }
    flags.into_iter().collect()
}

/// What the kernel's accept/connect check (`select_by_port` in net.bpf.c) makes of a
/// process in `state` (0: none) that uses sockets on `ports`, given the port flags.
pub fn decide_ports(state: u32, ports: &[u16], flag_of: impl Fn(u16) -> u8) -> u32 {
    let f = ports.iter().fold(0u8, |f, &p| f | flag_of(p));
    if state == PROC_EXCLUDED || state == PROC_TRACED {
        state
    } else if f & PORT_DISCOVERY_EXCLUDE != 0 {
        PROC_EXCLUDED
    } else if (f & PORT_INSTRUMENT != 0 && state == 0)
        || (f & (PORT_INSTRUMENT | PORT_INSTRUMENT_WITH_EXE) != 0 && state == PROC_ELIGIBLE)
    {
        PROC_TRACED
    } else {
        state
    }
}

/// What the start-up scan found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanReport {
    pub processes: u64,
    pub traced: u64,
    pub excluded: u64,
    pub eligible: u64,
    pub micros: u64,
}

/// Reads and writes process states in the kernel (`Maps` in production).
pub trait StateStore {
    fn state(&self, pid: u32) -> u32;
    /// Writes a state (an ELIGIBLE process that used a selected port meanwhile becomes
    /// TRACED); returns the state in force.
    fn set(&mut self, pid: u32, state: u32) -> u32;
}

/// Decides every running process against the selectors and writes the decisions, so that
/// services started before the collector are selected as if it had seen them start. Run
/// after the exec and fork hooks are attached: a process exec'd meanwhile is PENDING and
/// left to its exec record; one forked meanwhile is listed by the second pass.
pub fn scan_running(cfg: &Config, store: &mut impl StateStore) -> ScanReport {
    let started = std::time::Instant::now();
    let mut report = ScanReport::default();
    let by_exe = cfg.selects_processes();
    if cfg.discovery.is_none() && !by_exe {
        return report; // every process is traced already
    }
    let flags: HashMap<u16, u8> = port_flags(cfg).into_iter().collect();
    let by_port = flags
        .values()
        .any(|f| f & (PORT_INSTRUMENT | PORT_INSTRUMENT_WITH_EXE | PORT_DISCOVERY_EXCLUDE) != 0);
    let me = std::process::id();
    let mut sockets = SocketTables::default();
    // By pid: the state decided, so children (listed in any order) inherit it as the
    // kernel's fork hook would have given it to them.
    let mut decided: HashMap<u32, u32> = HashMap::new();
    for _pass in 0..2 {
        for pid in crate::process::running_pids() {
            if pid == me || decided.contains_key(&pid) {
                continue;
            }
            let mut chain = vec![pid];
            while let Some(ppid) = parent_of(*chain.last().unwrap()) {
                if ppid <= 1 || ppid == me || decided.contains_key(&ppid) || chain.len() > 64 {
                    break;
                }
                chain.push(ppid);
            }
            // Oldest ancestor first.
            for &p in chain.iter().rev() {
                let inherited = parent_of(p)
                    .and_then(|pp| decided.get(&pp).copied())
                    .unwrap_or(0);
                let state = decide(
                    cfg,
                    p,
                    inherited,
                    by_exe,
                    by_port,
                    &flags,
                    &mut sockets,
                    store,
                    &mut report,
                );
                decided.insert(p, state);
            }
        }
    }
    report.micros = started.elapsed().as_micros() as u64;
    report
}

/// Decides one running process whose parent's state is `inherited` (0: none); writes it
/// to `store` when it changes.
#[allow(clippy::too_many_arguments)]
fn decide(
    cfg: &Config,
    pid: u32,
    inherited: u32,
    by_exe: bool,
    by_port: bool,
    flags: &HashMap<u16, u8>,
    sockets: &mut SocketTables,
    store: &mut impl StateStore,
    report: &mut ScanReport,
) -> u32 {
    // Kernel threads have no executable and no sockets of their own.
    let Some(exe) = exe_of(pid) else { return 0 };
    report.processes += 1;
    let before = store.state(pid);
    if before == PROC_PENDING {
        return before; // its exec record is on its way and decides it
    }
    // What the kernel gave it at fork, had it been watching; what it holds now wins.
    let mut state = if before != 0 { before } else { inherited };
    if by_exe {
        let facts = ProcFacts::read(cfg, pid, exe);
        state = decide_exec(cfg, &facts, state).unwrap_or(0);
    }
    if by_port && state != PROC_EXCLUDED && state != PROC_TRACED {
        let ports = sockets.ports_of(pid);
        state = decide_ports(state, &ports, |p| flags.get(&p).copied().unwrap_or(0));
    }
    if state != before && state != 0 {
        state = store.set(pid, state);
    }
    match state {
        PROC_TRACED => report.traced += 1,
        PROC_EXCLUDED => report.excluded += 1,
        PROC_ELIGIBLE => report.eligible += 1,
        _ => {}
    }
    state
}

/// The parent pid, from /proc/<pid>/stat (the field after the command, which may hold
/// spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn exe_of(pid: u32) -> Option<String> {
    let p = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    Some(
        p.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_string(),
    )
}

/// The TCP tables of each network namespace, read once: socket inode → the port that
/// selects its owner (a listener's local port; a connection's remote port, as at connect;
/// an accepted connection's local port is its listener's, found through the listener).
#[derive(Default)]
struct SocketTables {
    by_netns: HashMap<u64, HashMap<u64, u16>>,
}

impl SocketTables {
    fn ports_of(&mut self, pid: u32) -> Vec<u16> {
        let Some(netns) = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        else {
            return Vec::new();
        };
        let table = self
            .by_netns
            .entry(netns)
            .or_insert_with(|| read_tcp_tables(pid));
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return Vec::new();
        };
        let mut ports = Vec::new();
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok());
            if let Some(port) = inode.and_then(|i| table.get(&i)) {
                ports.push(*port);
            }
        }
        ports
    }
}

/// inode → selecting port, from /proc/<pid>/net/tcp{,6}.
fn read_tcp_tables(pid: u32) -> HashMap<u64, u16> {
    let mut text = String::new();
    for table in ["tcp", "tcp6"] {
        if let Ok(t) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            text.push_str(&t);
        }
    }
    parse_tcp_tables(&text)
}

/// inode → the port that selects the socket's owner, from the lines of
/// /proc/net/tcp{,6}: a listener's local port; a connection's local port when something
/// listens on it (accepted there), else its remote port (connected to it).
fn parse_tcp_tables(text: &str) -> HashMap<u64, u16> {
    const LISTEN: &str = "0A";
    let port = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|h| u16::from_str_radix(h, 16).ok())
    };
    let mut socks = Vec::new();
    for line in text.lines() {
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode (headers do not parse)
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let (Some(local), Some(remote), Ok(inode)) = (port(f[1]), port(f[2]), f[9].parse::<u64>())
        else {
            continue;
        };
        if inode != 0 {
            // 0: a connection whose socket is gone (TIME_WAIT)
            socks.push((inode, local, remote, f[3] == LISTEN));
        }
    }
    let listening: std::collections::HashSet<u16> =
        socks.iter().filter(|s| s.3).map(|s| s.1).collect();
    socks
        .into_iter()
        .map(|(inode, local, remote, listen)| {
            let accepted = listen || listening.contains(&local);
            (inode, if accepted { local } else { remote })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Discovery;

    #[test]
    fn port_decisions_follow_the_kernel() {
        let flag = |p: u16| match p {
            80 => PORT_INSTRUMENT,
            8080 => PORT_INSTRUMENT_WITH_EXE,
            22 => PORT_DISCOVERY_EXCLUDE,
            _ => 0,
        };
        assert_eq!(decide_ports(0, &[80], flag), PROC_TRACED);
        assert_eq!(decide_ports(0, &[8080], flag), 0, "needs the exe too");
        assert_eq!(decide_ports(PROC_ELIGIBLE, &[8080], flag), PROC_TRACED);
        assert_eq!(decide_ports(PROC_ELIGIBLE, &[9], flag), PROC_ELIGIBLE);
        assert_eq!(decide_ports(0, &[80, 22], flag), PROC_EXCLUDED);
        assert_eq!(decide_ports(PROC_TRACED, &[22], flag), PROC_TRACED);
        assert_eq!(decide_ports(PROC_EXCLUDED, &[80], flag), PROC_EXCLUDED);
        assert_eq!(decide_ports(0, &[], flag), 0);
    }

    #[test]
    fn tcp_tables_give_the_selecting_port() {
        // A listener on 8080, a connection accepted on it, one made to 5432, a TIME_WAIT.
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1
   2: 0100007F:9C41 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1
   3: 0100007F:9C42 0100007F:1538 06 00000000:00000000 03:00000A3A 00000000     0        0 0 3 0
";
        let m = parse_tcp_tables(text);
        assert_eq!(m.get(&111), Some(&8080));
        assert_eq!(m.get(&222), Some(&8080), "accepted on the listener's port");
        assert_eq!(m.get(&333), Some(&5432), "connected to 5432");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn cgroup_selectors() {
        let id = "ab".repeat(32);
        let cfg = Config::from_json(
            br#"{"discovery":{"instrument":[{"containers_only":true},{"cgroup_path":"/batch.slice/*","open_ports":[[80,80]]}],
                 "exclude":[{"cgroup_path":"*/kubepods-besteffort*"}]}}"#,
        )
        .unwrap();
        let at = |path: String| ProcFacts {
            exe: "/usr/bin/python3.11".into(),
            cgroup: crate::cgroup::CgroupInfo::parse(&format!("0::{path}\n")),
        };
        let docker = at(format!("/system.slice/docker-{id}.scope"));
        assert_eq!(decide_exec(&cfg, &docker, 0), Some(PROC_TRACED));
        let host = at("/user.slice/user-0.slice/session-1.scope".into());
        assert_eq!(decide_exec(&cfg, &host, 0), None);
        // A cgroup_path with ports: eligible, traced from its first use of port 80.
        let batch = at("/batch.slice/job-1.scope".into());
        assert_eq!(decide_exec(&cfg, &batch, 0), Some(PROC_ELIGIBLE));
        assert_eq!(port_flags(&cfg), vec![(80, PORT_INSTRUMENT_WITH_EXE)]);
        // Exclude wins over containers_only.
        let pod = at(format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8a1b2c3d_4e5f_6071_8293_a4b5c6d7e8f9.slice/cri-containerd-{id}.scope"
        ));
        assert_eq!(decide_exec(&cfg, &pod, 0), Some(PROC_EXCLUDED));
        // No cgroup read (the process was gone): no cgroup selector matches.
        assert_eq!(decide_exec(&cfg, &ProcFacts::default(), 0), None);
        assert!(cfg.uses_cgroup() && cfg.selects_processes());
        let plain =
            Config::from_json(br#"{"discovery":{"instrument":[{"exe_path":"*"}]}}"#).unwrap();
        assert!(!plain.uses_cgroup());
    }

    struct Fake(HashMap<u32, u32>);
    impl StateStore for Fake {
        fn state(&self, pid: u32) -> u32 {
            self.0.get(&pid).copied().unwrap_or(0)
        }
        fn set(&mut self, pid: u32, state: u32) -> u32 {
            self.0.insert(pid, state);
            state
        }
    }

    fn by_exe(instrument: &str, exclude: &str) -> Config {
        let sel = |g: &str| Selector {
            exe_path: Some(g.into()),
            ..Default::default()
        };
        Config {
            discovery: Some(Discovery {
                instrument: vec![sel(instrument)],
                exclude: vec![sel(exclude)],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn running_processes_are_decided_by_their_executable() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let me = exe_of(std::process::id()).unwrap();
        let mut exe = me.clone();
        for _ in 0..500 {
            exe = exe_of(pid).unwrap();
            if exe != me {
                break; // exec'd
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let mut traced = Fake(HashMap::new());
        let r1 = scan_running(&by_exe(&exe, "*/nothing-like-this"), &mut traced);
        let mut excluded = Fake(HashMap::new());
        let r2 = scan_running(&by_exe("*", &exe), &mut excluded);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(traced.state(pid), PROC_TRACED);
        assert_eq!(excluded.state(pid), PROC_EXCLUDED);
        assert!(r1.traced >= 1 && r2.excluded >= 1 && r1.processes > 1);
        // A child of a selected process inherits its state, as at fork.
        let mut inner = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        let sh = exe_of(inner.id()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let grandchild = crate::process::running_pids()
            .into_iter()
            .find(|&p| parent_of(p) == Some(inner.id()))
            .unwrap();
        let mut inherit = Fake(HashMap::new());
        scan_running(&by_exe(&sh, "*/nothing-like-this"), &mut inherit);
        let _ = inner.kill();
        let _ = inner.wait();
        unsafe { libc::kill(grandchild as i32, libc::SIGKILL) };
        assert_eq!(inherit.state(inner.id()), PROC_TRACED);
        assert_eq!(
            inherit.state(grandchild),
            PROC_TRACED,
            "sleep inherits from sh"
        );
        // The collector (this process) never selects itself.
        assert_eq!(excluded.state(std::process::id()), 0);
        assert_eq!(traced.state(std::process::id()), 0);
    }
}
