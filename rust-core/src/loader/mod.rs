//! Every aya call: probing the kernel, loading the embedded object, attaching, and the
//! maps userspace reads and writes. Dropping `Kernel` detaches everything.

mod caps;
mod goctx;
mod godwarf;
mod gogrpc;
mod goh2;
mod gonewproc;
pub use goh2::probed as go_h2_server_probed;
mod gopclntab;
mod goruntime;
mod gotls;
mod tls;
mod uprobes;

use std::fmt::Write as _;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, RingBuf, SockHash};
use aya::programs::{BtfTracePoint, CgroupAttachMode, SkMsg, SockOps};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::config::{Config, Propagation};
use crate::error::LoadError;
use std::os::fd::AsRawFd;

use crate::events::{ConnTuple, PROC_ELIGIBLE, PROC_EXCLUDED, PROC_TRACED};

static NET_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/net.bpf.o"));

/// (program function name, tracepoint)
const PROGRAMS: &[(&str, &str)] = &[
    ("on_sys_exit", "sys_exit"),
    ("on_fork", "sched_process_fork"),
    ("on_exec", "sched_process_exec"),
    ("on_exit", "sched_process_exit"),
    ("on_sock_state", "inet_sock_set_state"),
];

pub struct Kernel {
    bpf: Ebpf,
    uprobes: uprobes::Uprobes,
    tls: tls::Tls,
    go_tls: gotls::GoTls,
    pub ring: RingBuf<MapData>,
    /// Apart from `ring`, so decisions can be written while records are being read.
    pub maps: Maps,
    pub info: String,
    /// The kernel inserts traceparent headers.
    pub propagating: bool,
}

pub struct Maps {
    proc_state: HashMap<MapData, u32, u32>,
    port_hits: HashMap<MapData, u32, u8>,
    counters: PerCpuArray<MapData, u64>,
    /// The sockets on_msg may rewrite; None when propagation is off.
    inject_socks: Option<SockHash<MapData, u64>>,
    no_thread_ctx: HashMap<MapData, u32, u8>,
    /// Go processes whose goroutine ids the kernel reads: pid -> goid offset in runtime.g.
    go_goid_off: HashMap<MapData, u32, u64>,
}

pub(crate) fn aya_err(
    what: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> LoadError {
    let what = what.into();
    // EPERM only: the verifier rejects a program with EACCES.
    let text = format!("{e} {:?}", e.source().map(|s| s.to_string()));
    if text.contains("Operation not permitted")
        || text.contains("EPERM")
        || text.contains("os error 1)")
    {
        LoadError::Permission { what }
    } else {
        LoadError::Aya {
            what,
            source: Box::new(Short(e.to_string())),
        }
    }
}

/// The kernel said EPERM or EACCES somewhere in an attach error's chain (perf_event_open
/// answers EACCES for a missing capability).
pub(crate) fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        let t = e.to_string();
        if [
            "Operation not permitted",
            "Permission denied",
            "EPERM",
            "EACCES",
            "os error 1)",
            "os error 13)",
        ]
        .iter()
        .any(|n| t.contains(n))
        {
            return true;
        }
        cur = e.source();
    }
    false
}

fn take_map(bpf: &mut Ebpf, name: &str) -> Result<aya::maps::Map, LoadError> {
    bpf.take_map(name).ok_or_else(|| LoadError::Unsupported {
        feature: format!("map {name}"),
        detail: "missing from the eBPF object (build mismatch)".into(),
    })
}

/// The program `name` of the object, as its aya type.
pub(crate) fn program<'a, T>(bpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    bpf.program_mut(name)
        .ok_or_else(|| LoadError::Unsupported {
            feature: format!("program {name}"),
            detail: "missing from object".into(),
        })?
        .try_into()
        .map_err(|e| aya_err(format!("program {name}"), e))
}

/// An error text cut to its last lines: verifier logs run to thousands of lines.
#[derive(Debug)]
struct Short(String);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<&str> = self.0.lines().collect();
        // OTELCOL_EBPF_VERIFIER_LOG=1: the whole log, for whoever changes the programs.
        if lines.len() <= 12 || std::env::var_os("OTELCOL_EBPF_VERIFIER_LOG").is_some() {
            return f.write_str(&self.0);
        }
        write!(
            f,
            "{} [... {} verifier lines ...] {}",
            lines[0],
            lines.len() - 9,
            lines[lines.len() - 8..].join("\n")
        )
    }
}

impl std::error::Error for Short {}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Checks what start-up needs before touching bpf(2), so the error says what is missing.
pub fn preflight() -> Result<(), LoadError> {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(LoadError::Unsupported {
            feature: "BTF".into(),
            detail:
                "/sys/kernel/btf/vmlinux is missing (needs CONFIG_DEBUG_INFO_BTF=y, kernel 5.8+)"
                    .into(),
        });
    }
    // Checked for root too: a root in a container may hold few capabilities.
    let missing = caps::missing(caps::effective(), caps::REQUIRED, true);
    if !missing.is_empty() {
        return Err(LoadError::Permission {
            what: format!("missing {}", missing.join(", ")),
        });
    }
    // Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK; newer ones ignore it.
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain setrlimit; failure is fine on memcg-accounted kernels.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    Ok(())
}

/// Where the cgroup v2 hierarchy is mounted (sock_ops attaches to its root, which covers
/// every socket of the host, in every container).
fn cgroup2_root() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, path, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| path.to_string())
    })
}

/// sock_ops marks the client sockets of traced processes, sk_msg inserts the headers.
fn attach_propagation(bpf: &mut Ebpf, cgroup: &str) -> Result<SockHash<MapData, u64>, LoadError> {
    let why = "context_propagation: headers (set context_propagation: off to run without)";
    let socks: SockHash<MapData, u64> = SockHash::try_from(take_map(bpf, "inject_socks")?)
        .map_err(|e| aya_err("inject_socks map", e))?;
    let ops: &mut SockOps = program(bpf, "on_sockops")?;
    ops.load()
        .map_err(|e| aya_err(format!("loading sock_ops for {why}"), e))?;
    let dir = std::fs::File::open(cgroup).map_err(|e| LoadError::Unsupported {
        feature: "cgroup v2".into(),
        detail: format!("{cgroup}: {e}"),
    })?;
    ops.attach(&dir, CgroupAttachMode::Single)
        .map_err(|e| aya_err(format!("attaching sock_ops to {cgroup} for {why}"), e))?;
    let msg: &mut SkMsg = program(bpf, "on_msg")?;
    msg.load()
        .map_err(|e| aya_err(format!("loading sk_msg for {why}"), e))?;
    let fd = socks.fd().try_clone().map_err(LoadError::from_io)?;
    msg.attach(&fd)
        .map_err(|e| aya_err(format!("attaching sk_msg for {why}"), e))?;
    Ok(socks)
}

impl Kernel {
    pub fn load(cfg: &Config, ringbuf_bytes: u32) -> Result<Kernel, LoadError> {
        preflight()?;
        let btf = Btf::from_sys_fs().map_err(|e| LoadError::Unsupported {
            feature: "BTF".into(),
            detail: e.to_string(),
        })?;
        let trace_all: u8 = cfg.discovery.is_none() as u8;
        // Without a cgroup v2 mount there is nowhere to attach sock_ops: spans still flow,
        // linked on this node only, and the start-up info says why.
        let cgroup = match cfg.context_propagation {
            Propagation::Headers => cgroup2_root().ok_or("no cgroup v2 mount"),
            Propagation::Off => Err("off in the configuration"),
        };
        let propagate: u8 = cgroup.is_ok() as u8;
        let watch_exec: u8 = cfg.selects_processes() as u8;
        let sample_bound = crate::spans::ids::Sampler::new(&cfg.sampling).bound();
        let parent_based = cfg.sampling.parent_based as u8;
        let mut bpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("trace_all", &trace_all, true)
            .override_global("watch_exec", &watch_exec, true)
            .override_global("propagate", &propagate, true)
            .override_global("sample_bound", &sample_bound, true)
            .override_global("parent_based", &parent_based, true)
            .override_global("tls_on", &1u8, true)
            .override_global("self_tgid", &std::process::id(), true)
            .map_max_entries("events", ringbuf_bytes)
            .load(NET_OBJ)
            .map_err(|e| aya_err("loading net.bpf.o", e))?;

        for (name, tp) in PROGRAMS {
            let prog: &mut BtfTracePoint = program(&mut bpf, name)?;
            prog.load(tp, &btf).map_err(|e| match e {
                aya::programs::ProgramError::LoadError { .. } => {
                    aya_err(format!("loading tp_btf/{tp} (kernel 5.5+ with BTF)"), e)
                }
                e => aya_err(format!("loading tp_btf/{tp}"), e),
            })?;
            prog.attach()
                .map_err(|e| aya_err(format!("attaching tp_btf/{tp}"), e))?;
        }

        let names: Vec<&str> = tls::programs()
            .chain(gotls::PROGRAMS.iter().copied())
            .chain(goctx::PROGRAMS.iter().copied())
            .chain(goh2::PROGRAMS.iter().copied())
            .chain(gogrpc::PROGRAMS.iter().copied())
            .collect();
        let mut uprobes = uprobes::Uprobes::load(&mut bpf, NET_OBJ, &btf, &names)?;
        let mut tls = tls::Tls::default();
        tls.scan(&mut bpf, &mut uprobes);
        let mut go_tls = gotls::GoTls::default();
        go_tls.scan(&mut bpf, &mut uprobes);

        let inject_socks = match &cgroup {
            Ok(root) => Some(attach_propagation(&mut bpf, root)?),
            Err(_) => None,
        };

        let mut proc_state: HashMap<MapData, u32, u32> =
            HashMap::try_from(take_map(&mut bpf, "proc_state")?)
                .map_err(|e| aya_err("proc_state map", e))?;
        // Never trace ourselves: our own exports would become spans, and so on.
        proc_state
            .insert(std::process::id(), PROC_EXCLUDED, 0)
            .map_err(|e| aya_err("proc_state insert", e))?;

        let mut ports: Array<MapData, u8> = Array::try_from(take_map(&mut bpf, "port_flags")?)
            .map_err(|e| aya_err("port_flags map", e))?;
        for (port, flag) in crate::discovery::port_flags(cfg) {
            ports
                .set(port as u32, flag, 0)
                .map_err(|e| aya_err("port_flags set", e))?;
        }
        let port_hits = HashMap::try_from(take_map(&mut bpf, "port_hits")?)
            .map_err(|e| aya_err("port_hits map", e))?;
        let no_thread_ctx = HashMap::try_from(take_map(&mut bpf, "no_thread_ctx")?)
            .map_err(|e| aya_err("no_thread_ctx map", e))?;
        let go_goid_off = HashMap::try_from(take_map(&mut bpf, "go_goid_off")?)
            .map_err(|e| aya_err("go_goid_off map", e))?;
        let counters = PerCpuArray::try_from(take_map(&mut bpf, "counters")?)
            .map_err(|e| aya_err("counters map", e))?;
        let ring = RingBuf::try_from(take_map(&mut bpf, "events")?)
            .map_err(|e| aya_err("events ring buffer", e))?;

        let mut maps = Maps {
            proc_state,
            port_hits,
            counters,
            inject_socks,
            no_thread_ctx,
            go_goid_off,
        };
        // Every hook is attached: processes exec'd or forked from here on are seen by the
        // kernel, so deciding the running ones now leaves no gap.
        let scan = crate::discovery::scan_running(cfg, &mut maps);

        let mut info = format!(
            "kernel {}; BTF yes; ring buffer {} MiB; hooks:",
            kernel_release(),
            ringbuf_bytes >> 20
        );
        for (_, tp) in PROGRAMS {
            let _ = write!(info, " tp_btf/{tp}");
        }
        let _ = write!(
            info,
            "; selection: {}",
            if trace_all == 1 {
                "every process except the collector"
            } else {
                "discovery selectors"
            }
        );
        if trace_all == 1 && !cfg.default_exclude.is_empty() {
            let _ = write!(
                info,
                " and default_exclude ({} running processes decided in {} ms: {} excluded)",
                scan.processes,
                scan.micros / 1000,
                scan.excluded
            );
        }
        if cfg.discovery.is_some() {
            let _ = write!(
                info,
                " ({} running processes decided in {} ms: {} traced, {} excluded, {} waiting for a port)",
                scan.processes,
                scan.micros / 1000,
                scan.traced,
                scan.excluded,
                scan.eligible
            );
        }
        let _ = match &cgroup {
            Ok(root) => write!(
                info,
                "; context propagation: traceparent headers (sock_ops on {root}, sk_msg)"
            ),
            Err(why) => write!(
                info,
                "; context propagation: none ({why}); same-node linking only"
            ),
        };
        let _ = write!(
            info,
            "; TLS: uprobes on {} libssl file(s){}",
            tls.libs.len(),
            if tls.libs.is_empty() {
                String::new()
            } else {
                format!(" ({})", tls.libs.join(", "))
            }
        );
        let _ = write!(
            info,
            ", Go crypto/tls in {} program(s){}",
            go_tls.exes.len(),
            if go_tls.failures + go_tls.ctx_failures > 0 {
                format!(
                    " ({} Go program(s) could not be probed: {})",
                    go_tls.failures + go_tls.ctx_failures,
                    go_tls.failed.join("; ")
                )
            } else {
                String::new()
            }
        );
        let _ = write!(info, " ({})", uprobes.how);
        let _ = write!(info, "{}", caps_note(&tls, &go_tls, uprobes.multi()));
        Ok(Kernel {
            bpf,
            uprobes,
            tls,
            go_tls,
            propagating: maps.inject_socks.is_some(),
            ring,
            maps,
            info,
        })
    }
}

/// What the collector runs without for lack of a capability ("" when nothing).
fn caps_note(tls: &tls::Tls, go_tls: &gotls::GoTls, multi: bool) -> String {
    let eff = caps::effective();
    let mut lost = caps::missing(eff, caps::DEGRADED, false);
    let refused = tls.refused + go_tls.refused;
    if multi && refused > 0 {
        // uprobe_multi links need no CAP_SYS_ADMIN: something else said no (an LSM).
        return format!(
            "; uprobe_multi links refused {refused} time(s) (permission denied): no TLS plaintext{}",
            if lost.is_empty() {
                String::new()
            } else {
                format!("; running without {}", lost.join(", "))
            }
        );
    }
    if !caps::has(eff, caps::SYS_ADMIN) && refused > 0 {
        // Linux 6.16 (and the 2025 stable updates) moved perf uprobes back to CAP_SYS_ADMIN.
        lost.push(format!(
            "CAP_SYS_ADMIN (this kernel refused {} uprobe attach(es) without it: no TLS plaintext)",
            tls.refused + go_tls.refused
        ));
    }
    if lost.is_empty() {
        String::new()
    } else {
        format!("; running without {}", lost.join(", "))
    }
}

impl Kernel {
    /// Probes libssl files mapped and Go programs started since the last call (new
    /// processes, new containers), and forgets Go programs no process runs any more.
    pub fn rescan_tls(&mut self) -> GoProbes {
        self.tls.scan(&mut self.bpf, &mut self.uprobes);
        self.go_tls.scan(&mut self.bpf, &mut self.uprobes);
        self.go_probes()
    }

    /// Probes the Go program `pid` just started, rather than at the next scan: the
    /// requests it serves first would go unfollowed.
    pub fn probe_go_exec(&mut self, pid: u32) -> GoProbes {
        self.go_tls.probe_pid(&mut self.bpf, &mut self.uprobes, pid);
        self.go_probes()
    }

    fn go_probes(&self) -> GoProbes {
        let g = &self.go_tls;
        GoProbes {
            tls_now: g.exes.len() as u64,
            tls_unprobed: g.failures,
            ctx_unprobed: g.ctx_failures,
            released: g.released,
        }
    }
}

/// Go programs: probed for TLS now; so far, those that could not be, those whose
/// goroutine context could not be followed, those whose probes were removed.
pub struct GoProbes {
    pub tls_now: u64,
    pub tls_unprobed: u64,
    pub ctx_unprobed: u64,
    pub released: u64,
}

impl GoProbes {
    pub fn report(&self, stats: &crate::stats::Stats) {
        use crate::stats::set;
        set(&stats.go_tls_programs, self.tls_now);
        set(&stats.go_tls_unprobed, self.tls_unprobed);
        set(&stats.go_context_unprobed, self.ctx_unprobed);
        set(&stats.go_programs_released, self.released);
    }
}

impl Maps {
    /// Kernel-side counter totals summed over CPUs, by `events::COUNTER_*` index.
    pub fn counter(&self, idx: u32) -> u64 {
        self.counters
            .get(&idx, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// The kernel keeps no per-thread request context for `pid` (a Go program) but one
    /// per goroutine, when its Go release's runtime layout is known; its exit removes the
    /// entries.
    pub fn no_thread_context(&mut self, pid: u32) {
        if let Ok(off) = goruntime::goid_offset_of(&format!("/proc/{pid}/exe")) {
            let _ = self.go_goid_off.insert(pid, off, 0);
        }
        let _ = self.no_thread_ctx.insert(pid, 1, 0);
    }

    /// Puts a connected socket of process `pid` (its descriptor `fd`) into the injection
    /// sockhash, after checking the descriptor still names the connection `tuple`.
    pub fn adopt(&mut self, pid: u32, fd: u32, tuple: &ConnTuple) -> std::io::Result<()> {
        use std::os::fd::{FromRawFd, OwnedFd};
        let Some(socks) = self.inject_socks.as_mut() else {
            return Ok(());
        };
        let err = std::io::Error::last_os_error;
        // SAFETY: plain syscalls; each returned descriptor is owned right away.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd < 0 {
            return Err(err());
        }
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
        let sock = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
        if sock < 0 {
            return Err(err());
        }
        let sock = unsafe { OwnedFd::from_raw_fd(sock as i32) };
        if socket_ports(sock.as_raw_fd()) != Some((tuple.sport, tuple.dport)) {
            return Err(std::io::Error::other(
                "descriptor reused for another socket",
            ));
        }
        let mut cookie = 0u64;
        let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
        // SAFETY: writes at most `len` bytes into `cookie`.
        if unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_COOKIE,
                (&mut cookie as *mut u64).cast(),
                &mut len,
            )
        } < 0
        {
            return Err(err());
        }
        socks
            .insert(cookie, sock.as_raw_fd(), 0)
            .map_err(std::io::Error::other)
    }

    /// Writes userspace's exec decision. Returns the state in force afterwards: an
    /// ELIGIBLE process that already used a selected port while PENDING becomes TRACED, and
    /// so does one left without an entry that used a port selector's port.
    pub fn set_proc_state(&mut self, pid: u32, state: Option<u32>) -> Option<u32> {
        match state {
            Some(PROC_ELIGIBLE) => {
                let _ = self.proc_state.insert(pid, PROC_ELIGIBLE, 0);
                // Checked after the write: a connect after it is selected by the kernel.
                if self.port_hits.get(&pid, 0).is_ok() {
                    let _ = self.proc_state.insert(pid, PROC_TRACED, 0);
                    return Some(PROC_TRACED);
                }
                Some(PROC_ELIGIBLE)
            }
            Some(s) => {
                let _ = self.proc_state.insert(pid, s, 0);
                Some(s)
            }
            None => {
                let _ = self.proc_state.remove(&pid);
                // A port selector's port used while PENDING selects it, as the kernel
                // would have done had the process not waited for its exec decision.
                let hits = self.port_hits.get(&pid, 0).unwrap_or(0);
                if hits & crate::events::PORT_INSTRUMENT != 0 {
                    let _ = self.proc_state.insert(pid, PROC_TRACED, 0);
                    return Some(PROC_TRACED);
                }
                None
            }
        }
    }
}

impl crate::discovery::StateStore for Maps {
    fn state(&self, pid: u32) -> u32 {
        self.proc_state.get(&pid, 0).unwrap_or(0)
    }

    fn set(&mut self, pid: u32, state: u32) -> u32 {
        self.set_proc_state(pid, Some(state)).unwrap_or(0)
    }
}

/// (local port, remote port) of a TCP socket descriptor.
fn socket_ports(fd: i32) -> Option<(u16, u16)> {
    let port = |peer: bool| {
        let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let p = (&mut sa as *mut libc::sockaddr_storage).cast();
        // SAFETY: writes at most `len` bytes into `sa`.
        let r = unsafe {
            if peer {
                libc::getpeername(fd, p, &mut len)
            } else {
                libc::getsockname(fd, p, &mut len)
            }
        };
        // sin_port and sin6_port sit at the same offset, in network order.
        (r == 0 && (sa.ss_family as i32 == libc::AF_INET || sa.ss_family as i32 == libc::AF_INET6))
            .then(|| {
                let sin =
                    unsafe { &*(&sa as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                u16::from_be(sin.sin_port)
            })
    };
    Some((port(false)?, port(true)?))
}
