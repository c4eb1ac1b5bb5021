//! What a span's resource says about its process, read once from /proc per process.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cgroup::CgroupInfo;
use crate::record::AttrValue;

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub exe_path: String,
    pub exe_name: String,
    pub service_name: String,
    /// The resource attributes after `service.name`, in the order they are exported,
    /// each key once (see [`ProcessInfo::build`]).
    pub resource: Vec<(String, AttrValue)>,
    /// A Go program: its goroutines move between threads, so what a thread serves says
    /// nothing about the goroutine making a call on it.
    pub goroutines: bool,
}

/// What is known of a process before its resource is made.
#[derive(Debug, Default, Clone)]
pub struct Facts<'a> {
    pub pid: u32,
    /// The kernel's name for it: the executable's name when there is no path.
    pub comm: &'a str,
    pub exe_path: &'a str,
    /// Its environment (NUL-separated `K=V`).
    pub environ: &'a [u8],
    /// The name it was started under when not its file's (see [`invoked_name`]).
    pub invoked: Option<&'a str>,
    pub cgroup: CgroupInfo,
    /// The main module's version from a Go program's build info.
    pub go_version: Option<String>,
}

impl ProcessInfo {
    /// Reads /proc/<pid>; `comm` and `exec_path` (from the kernel) stand in when the
    /// process is already gone, as short-lived clients often are.
    pub fn read(pid: u32, comm: &str, exec_path: Option<&str>) -> ProcessInfo {
        let exe_path = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| {
                p.to_string_lossy()
                    .trim_end_matches(" (deleted)")
                    .to_string()
            })
            .or_else(|| exec_path.map(str::to_string))
            .unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let main_comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let invoked = invoked_name(main_comm.trim_end_matches('\n'), &cmdline);
        // Through /proc: the file as the process sees it, even in another mount
        // namespace (a container) or deleted since.
        let go = crate::buildinfo::read_go_elf(&format!("/proc/{pid}/exe"));
        let mut info = Self::build(Facts {
            pid,
            comm,
            exe_path: &exe_path,
            environ: &environ,
            invoked: invoked.as_deref(),
            cgroup: CgroupInfo::read(pid),
            go_version: go
                .buildinfo
                .as_deref()
                .and_then(crate::buildinfo::main_module_version),
        });
        info.goroutines = go.is_go;
        info
    }

    pub fn from_parts(pid: u32, comm: &str, exe_path: &str, environ: &[u8]) -> ProcessInfo {
        Self::build(Facts {
            pid,
            comm,
            exe_path,
            environ,
            ..Default::default()
        })
    }

    /// `invoked`: the name the program was started under when it is not its file's
    /// (see [`invoked_name`]): the service name unless the environment gives one.
    pub fn with_invoked(
        pid: u32,
        comm: &str,
        exe_path: &str,
        environ: &[u8],
        invoked: Option<&str>,
    ) -> ProcessInfo {
        Self::build(Facts {
            pid,
            comm,
            exe_path,
            environ,
            invoked,
            ..Default::default()
        })
    }

    /// The resource, as an SDK in the process would make it: the `OTEL_*` variables
    /// first, then what the receiver finds itself.
    ///
    /// - `service.name`: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, the invoked name,
    ///   the executable's name.
    /// - `service.namespace`, `service.version`: OTEL_SERVICE_NAMESPACE /
    ///   OTEL_SERVICE_VERSION, OTEL_RESOURCE_ATTRIBUTES; for the version, a Go program's
    ///   main module version.
    /// - every other OTEL_RESOURCE_ATTRIBUTES pair (`k8s.container.name` comes only from
    ///   there: no cgroup path carries it).
    /// - `process.*`, and `container.id` / `k8s.pod.uid` from the cgroup, unless the
    ///   environment set that key already.
    pub fn build(f: Facts<'_>) -> ProcessInfo {
        let exe_name = match f.exe_path.rsplit('/').next() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => f.comm.to_string(),
        };
        let mut own = [None::<String>, None, None]; // OTEL_SERVICE_{NAME,NAMESPACE,VERSION}
        let mut attrs = Vec::new();
        for var in f.environ.split(|&b| b == 0) {
            let var = String::from_utf8_lossy(var);
            let Some((k, v)) = var.split_once('=') else {
                continue;
            };
            let slot = match k {
                "OTEL_SERVICE_NAME" => 0,
                "OTEL_SERVICE_NAMESPACE" => 1,
                "OTEL_SERVICE_VERSION" => 2,
                "OTEL_RESOURCE_ATTRIBUTES" => {
                    attrs = parse_resource_attributes(v);
                    continue;
                }
                _ => continue,
            };
            if !v.is_empty() {
                own[slot] = Some(v.to_string());
            }
        }
        // The last of a key repeated in OTEL_RESOURCE_ATTRIBUTES wins.
        let from_attrs = |key: &str| {
            attrs
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let [name, namespace, version] = own;
        let service_name = name
            .or_else(|| from_attrs("service.name"))
            .or_else(|| f.invoked.map(str::to_string))
            .unwrap_or_else(|| exe_name.clone());
        let mut resource: Vec<(String, AttrValue)> = Vec::new();
        let mut put = |k: &str, v: AttrValue| {
            if k != "service.name" && !resource.iter().any(|(have, _)| have == k) {
                resource.push((k.to_string(), v));
            }
        };
        if let Some(ns) = namespace.or_else(|| from_attrs("service.namespace")) {
            put("service.namespace", AttrValue::Str(ns));
        }
        if let Some(v) = version
            .or_else(|| from_attrs("service.version"))
            .or(f.go_version)
        {
            put("service.version", AttrValue::Str(v));
        }
        for (k, _) in &attrs {
            if let Some(v) = from_attrs(k) {
                put(k, AttrValue::Str(v));
            }
        }
        put("process.pid", AttrValue::Int(f.pid as i64));
        put("process.executable.name", AttrValue::Str(exe_name.clone()));
        if !f.exe_path.is_empty() {
            put(
                "process.executable.path",
                AttrValue::Str(f.exe_path.to_string()),
            );
        }
        if let Some(id) = f.cgroup.container_id {
            put("container.id", AttrValue::Str(id));
        }
        if let Some(uid) = f.cgroup.pod_uid {
            put("k8s.pod.uid", AttrValue::Str(uid));
        }
        ProcessInfo {
            pid: f.pid,
            exe_path: f.exe_path.to_string(),
            exe_name,
            service_name,
            resource,
            goroutines: false,
        }
    }

    /// A resource attribute's string value (tests, log lines).
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_str())
    }
}

/// The name a multi-call binary was started under (`redis-server`, a link to
/// `redis-check-rdb`; busybox's `sh`): the base name of argv[0] when the kernel's name
/// for the process (`comm`, set from the executed path's base name, cut to 15 bytes)
/// agrees with it. A process that rewrote its argv (`postgres: user db idle`) or renamed
/// itself does not agree: `None`, and the executable's name stands.
pub fn invoked_name(comm: &str, cmdline: &[u8]) -> Option<String> {
    let argv0 = cmdline.split(|&b| b == 0).next()?;
    // A title the program set over its argv (`redis-server 127.0.0.1:6379`): its first word.
    let argv0 = argv0.split(|&b| b == b' ').next()?;
    let base = String::from_utf8_lossy(argv0.rsplit(|&b| b == b'/').next()?).into_owned();
    let agrees = if comm.len() >= 15 {
        base.starts_with(comm)
    } else {
        base == comm
    };
    (agrees && !base.is_empty()).then_some(base)
}

/// Whether the ELF file at `path` is a Go program (it has a `.go.buildinfo` or
/// `.note.go.buildid` section).
pub fn is_go_binary(path: &str) -> bool {
    crate::buildinfo::read_go_elf(path).is_go
}

/// The pids of the processes running now (the numeric entries of /proc).
pub fn running_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Whether a TCP socket listens on `port` in the network namespace of `pid`, from
/// /proc/<pid>/net/tcp{,6}: a connection on that local port was accepted there (the server
/// end). None when neither table can be read.
pub fn listens_on(pid: u32, port: u16) -> Option<bool> {
    const LISTEN: &str = "0A";
    let mut read_any = false;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        read_any = true;
        for line in text.lines().skip(1) {
            // sl local_address rem_address st ...
            let mut f = line.split_whitespace().skip(1);
            let (Some(local), Some(_), Some(st)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let lport = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if st == LISTEN && lport == Some(port) {
                return Some(true);
            }
        }
    }
    read_any.then_some(false)
}

/// The endpoints this collector listens on (its receivers, its telemetry), so that
/// requests to them never become spans. Read from our own descriptors and TCP tables.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OwnEndpoints {
    /// (bound address, port); an unspecified address means every address of `addrs`.
    pub listeners: Vec<(std::net::IpAddr, u16)>,
    /// The addresses of our network namespace's interfaces.
    pub addrs: std::collections::HashSet<std::net::IpAddr>,
    /// Our network namespace (loopback addresses are only ours in it).
    pub netns: u32,
}

impl OwnEndpoints {
    /// Asks our own descriptors (a few hundred `readlink`s and, for listening TCP
    /// sockets, `getsockname`), not the namespace's TCP tables, which hold every
    /// connection of the host. A descriptor closed and reused meanwhile only makes one
    /// read stale until the next.
    pub fn read() -> OwnEndpoints {
        let mut listeners = Vec::new();
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            for fd in fds.flatten() {
                let is_socket = std::fs::read_link(fd.path())
                    .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:["));
                let num = fd.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
                if let (true, Some(num)) = (is_socket, num) {
                    listeners.extend(tcp_listener(num));
                }
            }
        }
        let netns = std::fs::metadata("/proc/self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m) as u32)
            .unwrap_or(0);
        OwnEndpoints {
            listeners,
            addrs: interface_addrs(),
            netns,
        }
    }

    /// Whether a connection to `remote` made from network namespace `netns` reaches us.
    pub fn is_ours(&self, remote: std::net::IpAddr, port: u16, netns: u32) -> bool {
        let remote = canonical(remote);
        if remote.is_loopback() && netns != self.netns {
            return false;
        }
        self.listeners.iter().any(|&(bound, p)| {
            p == port
                && (bound == remote || (bound.is_unspecified() && self.addrs.contains(&remote)))
        })
    }
}

/// v4-mapped IPv6 addresses as IPv4.
fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The bound address of our descriptor `fd` if it is a listening TCP socket.
fn tcp_listener(fd: i32) -> Option<(std::net::IpAddr, u16)> {
    let opt = |name: i32| {
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: writes at most `len` bytes into `v`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut v as *mut i32).cast(),
                &mut len,
            )
        };
        (r == 0).then_some(v)
    };
    // Go (1.24+) listens with MPTCP where the kernel has it; plain TCP clients still
    // reach it.
    let tcp = matches!(
        opt(libc::SO_PROTOCOL)?,
        libc::IPPROTO_TCP | libc::IPPROTO_MPTCP
    );
    if opt(libc::SO_ACCEPTCONN)? != 1 || !tcp {
        return None;
    }
    let mut sa: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: writes at most `len` bytes into `sa`.
    if unsafe {
        libc::getsockname(
            fd,
            (&mut sa as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return None;
    }
    sockaddr_ip(&sa)
}

/// Address and port of an AF_INET/AF_INET6 socket address.
fn sockaddr_ip(sa: &libc::sockaddr_storage) -> Option<(std::net::IpAddr, u16)> {
    let p = sa as *const libc::sockaddr_storage;
    // SAFETY: the family says which struct the storage holds.
    unsafe {
        match sa.ss_family as i32 {
            libc::AF_INET => {
                let sin = &*p.cast::<libc::sockaddr_in>();
                let ip = std::net::IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes());
                Some((ip, u16::from_be(sin.sin_port)))
            }
            libc::AF_INET6 => {
                let sin6 = &*p.cast::<libc::sockaddr_in6>();
                let ip = canonical(std::net::IpAddr::from(sin6.sin6_addr.s6_addr));
                Some((ip, u16::from_be(sin6.sin6_port)))
            }
            _ => None,
        }
    }
}

/// The addresses of this network namespace's interfaces (getifaddrs).
fn interface_addrs() -> std::collections::HashSet<std::net::IpAddr> {
    let mut out = std::collections::HashSet::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while let Some(ifa) = cur.as_ref() {
            if let Some(sa) = ifa.ifa_addr.as_ref() {
                match sa.sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        out.insert(std::net::IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        out.insert(canonical(std::net::IpAddr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// How a connection seen mid-stream learns which end it is: `listens_on`, or a stand-in
/// for replays (where the recorded pids are not this host's).
pub type ListenProbe = fn(pid: u32, port: u16) -> Option<bool>;

/// `k1=v1,k2=v2` with percent-encoded values, as the OTel SDK spec defines it; malformed
/// pairs are skipped.
pub fn parse_resource_attributes(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let k = k.trim();
            if k.is_empty() {
                return None;
            }
            Some((k.to_string(), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Process infos by pid, filled lazily; entries go when the process exits.
/// Reads a process's info: /proc in production, a stand-in when replaying recordings.
pub type ProcReader = fn(pid: u32, comm: &str, exec_path: Option<&str>) -> ProcessInfo;

pub struct ProcessTable {
    procs: HashMap<u32, Arc<ProcessInfo>>,
    exec_paths: HashMap<u32, String>,
    reader: ProcReader,
}

impl Default for ProcessTable {
    fn default() -> Self {
        Self::with_reader(ProcessInfo::read)
    }
}

impl ProcessTable {
    pub fn with_reader(reader: ProcReader) -> Self {
        ProcessTable {
            procs: HashMap::new(),
            exec_paths: HashMap::new(),
            reader,
        }
    }

    pub fn get(&mut self, pid: u32, comm: &str) -> Arc<ProcessInfo> {
        if let Some(p) = self.procs.get(&pid) {
            return p.clone();
        }
        let exec = self.exec_paths.get(&pid).map(String::as_str);
        let p = Arc::new((self.reader)(pid, comm, exec));
        self.procs.insert(pid, p.clone());
        p
    }

    /// The process replaced its image: forget what we knew.
    pub fn exec(&mut self, pid: u32, filename: &str) {
        self.procs.remove(&pid);
        self.exec_paths.insert(pid, filename.to_string());
    }

    pub fn exit(&mut self, pid: u32) {
        self.procs.remove(&pid);
        self.exec_paths.remove(&pid);
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_endpoints() {
        let me = OwnEndpoints::read();
        assert!(me.addrs.contains(&"127.0.0.1".parse().unwrap()));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = OwnEndpoints::read();
        assert!(me.listeners.contains(&("127.0.0.1".parse().unwrap(), port)));
        assert!(me.is_ours("127.0.0.1".parse().unwrap(), port, me.netns));
        assert!(me.is_ours("::ffff:127.0.0.1".parse().unwrap(), port, me.netns));
        assert!(
            !me.is_ours("127.0.0.1".parse().unwrap(), port, me.netns + 1),
            "another namespace's loopback"
        );
        assert!(!me.is_ours("127.0.0.1".parse().unwrap(), port ^ 1, me.netns));
        // A dual-stack listener on every address; a connected socket is no listener.
        let any = std::net::TcpListener::bind("[::]:0").unwrap();
        let any_port = any.local_addr().unwrap().port();
        let _conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let me = OwnEndpoints::read();
        assert!(me.listeners.contains(&("::".parse().unwrap(), any_port)));
        assert!(me.is_ours("127.0.0.1".parse().unwrap(), any_port, me.netns));
        assert_eq!(me.listeners.iter().filter(|l| l.1 == port).count(), 1);
        drop(l);
    }

    #[test]
    fn service_name_precedence() {
        let p = ProcessInfo::from_parts(
            1,
            "python3",
            "/usr/bin/python3.11",
            b"A=1\0OTEL_RESOURCE_ATTRIBUTES=service.name=svc,deployment.environment=prod%20eu\0",
        );
        assert_eq!(p.service_name, "svc");
        assert_eq!(p.attr("deployment.environment"), Some("prod eu"));
        assert_eq!(p.resource[0].0, "deployment.environment");
        let p = ProcessInfo::from_parts(
            1,
            "python3",
            "/usr/bin/python3.11",
            b"OTEL_SERVICE_NAME=orders\0OTEL_RESOURCE_ATTRIBUTES=service.name=svc\0",
        );
        assert_eq!(p.service_name, "orders");
        let p = ProcessInfo::from_parts(1, "python3", "/usr/bin/python3.11", b"");
        assert_eq!(p.service_name, "python3.11");
        let p = ProcessInfo::from_parts(1, "curl", "", b"");
        assert_eq!(p.service_name, "curl");
        // A multi-call binary: the name it was started under, unless the env says.
        let p = ProcessInfo::with_invoked(
            1,
            "redis-server",
            "/usr/bin/redis-check-rdb",
            b"",
            Some("redis-server"),
        );
        assert_eq!(
            (p.service_name.as_str(), p.exe_name.as_str()),
            ("redis-server", "redis-check-rdb")
        );
        let p = ProcessInfo::with_invoked(
            1,
            "x",
            "/usr/bin/redis-check-rdb",
            b"OTEL_SERVICE_NAME=cache\0",
            Some("redis-server"),
        );
        assert_eq!(p.service_name, "cache");
    }

    fn keys(p: &ProcessInfo) -> Vec<&str> {
        p.resource.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn resource_from_environment_cgroup_and_build_info() {
        let id = "ab".repeat(32);
        let uid = "8a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
        let cgroup = CgroupInfo::parse(&format!("0::/kubepods/burstable/pod{uid}/{id}\n"));
        let facts = |environ: &'static [u8]| Facts {
            pid: 7,
            comm: "cart",
            exe_path: "/app/cart",
            environ,
            cgroup: cgroup.clone(),
            go_version: Some("v1.4.2".into()),
            ..Default::default()
        };
        // Found by the receiver only.
        let p = ProcessInfo::build(facts(b""));
        assert_eq!(p.service_name, "cart");
        assert_eq!(
            keys(&p),
            [
                "service.version",
                "process.pid",
                "process.executable.name",
                "process.executable.path",
                "container.id",
                "k8s.pod.uid"
            ]
        );
        assert_eq!(p.attr("service.version"), Some("v1.4.2"));
        assert_eq!(p.attr("container.id"), Some(id.as_str()));
        assert_eq!(p.attr("k8s.pod.uid"), Some(uid));
        // OTEL_RESOURCE_ATTRIBUTES wins over the build info and the cgroup; each key once.
        let p = ProcessInfo::build(facts(
            b"OTEL_RESOURCE_ATTRIBUTES=service.namespace=shop,service.version=2.0.1,k8s.container.name=cart,container.id=given,service.version=2.0.2\0",
        ));
        assert_eq!(
            keys(&p),
            [
                "service.namespace",
                "service.version",
                "k8s.container.name",
                "container.id",
                "process.pid",
                "process.executable.name",
                "process.executable.path",
                "k8s.pod.uid"
            ]
        );
        assert_eq!(p.attr("service.namespace"), Some("shop"));
        assert_eq!(p.attr("service.version"), Some("2.0.2"), "the last one");
        assert_eq!(p.attr("container.id"), Some("given"));
        assert_eq!(p.attr("k8s.container.name"), Some("cart"));
        // OTEL_SERVICE_* win over OTEL_RESOURCE_ATTRIBUTES; empty ones say nothing.
        let p = ProcessInfo::build(facts(
            b"OTEL_SERVICE_VERSION=3\0OTEL_SERVICE_NAMESPACE=\0OTEL_RESOURCE_ATTRIBUTES=service.namespace=shop,service.version=2\0",
        ));
        assert_eq!(p.attr("service.version"), Some("3"));
        assert_eq!(p.attr("service.namespace"), Some("shop"));
        let p = ProcessInfo::build(facts(b"OTEL_SERVICE_NAMESPACE=ops\0"));
        assert_eq!(p.attr("service.namespace"), Some("ops"));
        // Nothing known: no attribute at all, never an empty one.
        let p = ProcessInfo::from_parts(1, "curl", "", b"");
        assert_eq!(keys(&p), ["process.pid", "process.executable.name"]);
    }

    #[test]
    fn resource_of_this_process() {
        // This test binary: a Rust program, in no container here.
        let me = ProcessInfo::read(std::process::id(), "x", None);
        assert!(!me.goroutines);
        assert_eq!(me.attr("service.version"), None);
        assert_eq!(
            me.exe_path,
            std::env::current_exe().unwrap().to_string_lossy()
        );
    }

    #[test]
    fn invoked_names() {
        for (comm, cmdline, want) in [
            (
                "redis-server",
                &b"/usr/bin/redis-server\0--port\x006379\0"[..],
                Some("redis-server"),
            ),
            // The title redis sets over its argv.
            (
                "redis-server",
                b"/usr/bin/redis-server 127.0.0.1:6379\0\0",
                Some("redis-server"),
            ),
            ("sh", b"sh\0-c\0true\0", Some("sh")),
            (
                "python3.11",
                b"/usr/bin/python3.11\0app.py\0",
                Some("python3.11"),
            ),
            // comm is cut to 15 bytes.
            (
                "otelcol-contrib",
                b"./otelcol-contrib-linux\0",
                Some("otelcol-contrib-linux"),
            ),
            // argv rewritten by the program, or a renamed process: no agreement.
            (
                "postgres",
                b"postgres: postgres shop 127.0.0.1(5432) idle\0",
                None,
            ),
            ("worker", b"/usr/bin/app\0", None),
            ("", b"", None),
        ] {
            assert_eq!(
                super::invoked_name(comm, cmdline).as_deref(),
                want,
                "{comm}"
            );
        }
    }
}
