//! Every uprobe the collector attaches (libssl, Go programs), loaded once and attached file
//! by file. Where the kernel has uprobe_multi links (Linux 6.6+), a program gets one link per
//! file for all its offsets. Closing a perf-event uprobe waits out a grace period per probe
//! (about 110 ms here, serialised in the kernel: 2.5 s per Go program using net/http), so a
//! collector probing 50 Go programs took minutes to exit; a multi link waits once, and links
//! closed side by side wait together. aya 0.14 cannot load a program for those links, so the
//! programs are loaded here from the same object through aya-obj, using aya's maps.
//! Older kernels get aya's perf-event uprobes, as before.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use aya::maps::Map;
use aya::programs::uprobe::{UProbeAttachLocation, UProbeScope};
use aya::programs::UProbe;
use aya::{Btf, Ebpf};
use aya_obj::generated::bpf_insn;

use super::{aya_err, program};
use crate::error::LoadError;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_BTF_LOAD: libc::c_long = 18;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_KPROBE: u32 = 2;
const BPF_TRACE_UPROBE_MULTI: u32 = 48;
const BPF_F_UPROBE_MULTI_RETURN: u32 = 1;

/// Why an attach failed.
pub struct Refused {
    /// The kernel said EPERM or EACCES (a missing capability).
    pub denied: bool,
}

pub struct Uprobes {
    /// uprobe_multi programs by name, with "is a return probe"; empty without the links.
    multi: HashMap<String, (OwnedFd, bool)>,
    /// The multi links, by the (device, inode) of the file they probe.
    links: HashMap<(u64, u64), Probed>,
    /// How probes are attached, for the start-up line.
    pub how: String,
}

/// A file's links, and the file itself (O_PATH): the links name it through /proc/self/fd,
/// so they probe the very file whose id they are kept under, and its link count says
/// when it has been deleted.
struct Probed {
    file: File,
    links: Vec<OwnedFd>,
}

impl Uprobes {
    /// Loads the uprobe programs `names` of `elf`, the object `bpf` was loaded from.
    pub fn load(bpf: &mut Ebpf, elf: &[u8], btf: &Btf, names: &[&str]) -> Result<Self, LoadError> {
        // OTELCOL_EBPF_PERF_UPROBES=1: the older kernels' way, for tests and benchmarks.
        let multi = match std::env::var_os("OTELCOL_EBPF_PERF_UPROBES") {
            Some(_) => Err("OTELCOL_EBPF_PERF_UPROBES is set".to_string()),
            None => load_multi(bpf, elf, btf, names),
        };
        let (multi, how) = match multi {
            Ok(m) => (m, "uprobe_multi links".to_string()),
            Err(why) => {
                for &name in names {
                    let p: &mut UProbe = program(bpf, name)?;
                    p.load()
                        .map_err(|e| aya_err(format!("loading uprobe {name}"), e))?;
                }
                (
                    HashMap::new(),
                    format!("perf-event uprobes (no uprobe_multi: {why})"),
                )
            }
        };
        Ok(Uprobes {
            multi,
            links: HashMap::new(),
            how,
        })
    }

    /// Attaches each (program, file offset) to the file at `path`, whose (device, inode)
    /// is `id` (else it changed since: none): all of them or none.
    pub fn attach(
        &mut self,
        bpf: &mut Ebpf,
        path: &str,
        id: (u64, u64),
        points: &[(&str, u64)],
    ) -> Result<(), Refused> {
        if self.multi.is_empty() {
            return attach_perf(bpf, path, points);
        }
        let mut by_prog: Vec<(&str, Vec<u64>)> = Vec::new();
        for &(name, offset) in points {
            match by_prog.iter_mut().find(|(n, _)| *n == name) {
                Some((_, offs)) => offs.push(offset),
                None => by_prog.push((name, vec![offset])),
            }
        }
        let refused = Refused { denied: false };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
            .map_err(|_| Refused { denied: false })?;
        let meta = file.metadata().map_err(|_| Refused { denied: false })?;
        if (meta.dev(), meta.ino()) != id {
            return Err(refused);
        }
        let path_c =
            CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap_or_default();
        let mut made = Vec::with_capacity(by_prog.len());
        for (name, offsets) in &by_prog {
            let Some((prog, ret)) = self.multi.get(*name) else {
                return Err(refused); // dropping `made` detaches
            };
            made.push(link_multi(prog.as_raw_fd(), &path_c, offsets, *ret)?);
        }
        if !made.is_empty() {
            match self.links.get_mut(&id) {
                Some(p) => p.links.extend(made),
                None => {
                    self.links.insert(id, Probed { file, links: made });
                }
            }
        }
        Ok(())
    }

    /// Whether probes are uprobe_multi links.
    pub fn multi(&self) -> bool {
        !self.multi.is_empty()
    }

    /// Whether the probed file `id` has been deleted (no name left): no process can start
    /// it again. False with perf-event uprobes, which are never released.
    pub fn deleted(&self, id: (u64, u64)) -> bool {
        self.links
            .get(&id)
            .and_then(|p| p.file.metadata().ok())
            .is_some_and(|m| m.nlink() == 0)
    }

    /// Detaches every probe of the file `file` (device, inode), closing the links on a
    /// thread of their own (each close waits for a grace period). False with perf-event
    /// uprobes: they stay, since removing them would hold this thread 110 ms per probe.
    pub fn release(&mut self, file: (u64, u64)) -> bool {
        if self.multi.is_empty() {
            return false;
        }
        if let Some(p) = self.links.remove(&file) {
            // A thread that cannot start: the links are closed here instead (dropped).
            let _ = std::thread::Builder::new()
                .name("uprobe-release".into())
                .spawn(move || drop(p));
        }
        true
    }
}

impl Drop for Uprobes {
    fn drop(&mut self) {
        // Each close waits for a grace period; side by side the waits overlap (10 links:
        // 456 ms one after another, 92 ms on 10 threads, measured).
        let links: Vec<OwnedFd> = std::mem::take(&mut self.links)
            .into_values()
            .flat_map(|p| p.links)
            .collect();
        let threads = links.len().min(64);
        if threads < 2 {
            return;
        }
        let mut groups: Vec<Vec<OwnedFd>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, l) in links.into_iter().enumerate() {
            groups[i % threads].push(l);
        }
        std::thread::scope(|s| {
            for g in groups {
                // A thread that cannot start: its group is closed here instead (dropped).
                let _ = std::thread::Builder::new().spawn_scoped(s, move || drop(g));
            }
        });
    }
}

fn attach_perf(bpf: &mut Ebpf, path: &str, points: &[(&str, u64)]) -> Result<(), Refused> {
    let mut links = Vec::new();
    let mut failed = None;
    for &(name, offset) in points {
        let Ok(p) = program::<UProbe>(bpf, name) else {
            failed = Some(false);
            break;
        };
        let at = UProbeAttachLocation::AbsoluteOffset(offset);
        match p.attach(at, path, UProbeScope::AllProcesses) {
            Ok(link) => links.push((name, link)),
            Err(e) => {
                failed = Some(super::refused(&e));
                break;
            }
        }
    }
    let Some(denied) = failed else {
        return Ok(());
    };
    for (name, link) in links {
        if let Ok(p) = program::<UProbe>(bpf, name) {
            let _ = p.detach(link);
        }
    }
    Err(Refused { denied })
}

/// Loads `names` from `elf` as uprobe_multi programs sharing `bpf`'s maps.
fn load_multi(
    bpf: &Ebpf,
    elf: &[u8],
    btf: &Btf,
    names: &[&str],
) -> Result<HashMap<String, (OwnedFd, bool)>, String> {
    let mut obj = aya_obj::Object::parse(elf).map_err(|e| e.to_string())?;
    // The object's BTF as this kernel takes it (the features aya found): the verifier
    // wants func_info for programs with calls, naming types in it. Loaded here, not taken
    // from aya's programs by id: that needs CAP_SYS_ADMIN, which the links themselves do
    // not (perf-event uprobes do, on 6.16+).
    let features = aya::features().btf().ok_or("no BTF support")?;
    let obj_btf = obj
        .fixup_and_sanitize_btf(features)
        .map_err(|e| format!("object BTF: {e}"))?
        .ok_or("no BTF in the object")?
        .to_bytes();
    let btf_fd = load_btf(&obj_btf)?;
    obj.relocate_btf(btf).map_err(|e| e.to_string())?;
    let maps = std::mem::take(&mut obj.maps);
    let text: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
    let fds = maps
        .iter()
        .filter_map(|(name, m)| Some((name.as_str(), map_fd(bpf.map(name)?), m)));
    obj.relocate_maps(fds, &text).map_err(|e| e.to_string())?;
    obj.relocate_calls(&text).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for &name in names {
        let prog = obj
            .programs
            .get(name)
            .ok_or_else(|| format!("program {name} missing"))?;
        let ret = matches!(prog.section, aya_obj::ProgramSection::URetProbe { .. });
        let f = &obj.functions[&prog.function_key()];
        let fd = load_program(name, f, &prog.license, btf_fd.as_raw_fd())?;
        out.insert(name.to_string(), (fd, ret));
    }
    // Kernels before 6.6 load such programs but have no such links: a link to a
    // directory says which (EBADF where the links exist), as libbpf asks.
    if let Some((prog, _)) = out.values().next() {
        let root = CString::new("/").unwrap_or_default();
        match link_multi_raw(prog.as_raw_fd(), &root, &[0], false) {
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
            Err(e) => return Err(format!("this kernel has no uprobe_multi links ({e})")),
            Ok(_) => return Err("this kernel linked a uprobe to a directory".into()),
        }
    }
    Ok(out)
}

fn map_fd(m: &Map) -> RawFd {
    use Map::*;
    let d = match m {
        Array(d)
        | ArrayOfMaps(d)
        | BloomFilter(d)
        | CgroupArray(d)
        | CgroupStorage(d)
        | CgrpStorage(d)
        | CpuMap(d)
        | DevMap(d)
        | DevMapHash(d)
        | HashMap(d)
        | HashOfMaps(d)
        | InodeStorage(d)
        | LpmTrie(d)
        | LruHashMap(d)
        | PerCpuArray(d)
        | PerCpuCgroupStorage(d)
        | PerCpuHashMap(d)
        | PerCpuLruHashMap(d)
        | PerfEventArray(d)
        | ProgramArray(d)
        | Queue(d)
        | ReusePortSockArray(d)
        | RingBuf(d)
        | SockHash(d)
        | SockMap(d)
        | SkStorage(d)
        | Stack(d)
        | StackTraceMap(d)
        | Unsupported(d)
        | XskMap(d) => d,
    };
    d.fd().as_fd().as_raw_fd()
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &T) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a bpf_attr prefix laid out as the kernel's (repr(C), zero padding).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// bpf_attr for BPF_BTF_LOAD.
#[repr(C)]
#[derive(Default)]
struct BtfLoad {
    btf: u64,
    log_buf: u64,
    size: u32,
    log_size: u32,
    log_level: u32,
    pad: u32,
}

fn load_btf(bytes: &[u8]) -> Result<OwnedFd, String> {
    let attr = BtfLoad {
        btf: bytes.as_ptr() as u64,
        size: bytes.len() as u32,
        ..Default::default()
    };
    sys_bpf(BPF_BTF_LOAD, &attr).map_err(|e| format!("loading the object's BTF: {e}"))
}

/// bpf_attr for BPF_PROG_LOAD, up to attach_btf_id.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
}

fn load_program(
    name: &str,
    f: &aya_obj::Function,
    license: &CString,
    btf: RawFd,
) -> Result<OwnedFd, String> {
    let insns: &[bpf_insn] = &f.instructions;
    let (func_info, line_info) = (f.func_info.func_info_bytes(), f.line_info.line_info_bytes());
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_KPROBE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type: BPF_TRACE_UPROBE_MULTI,
        prog_btf_fd: btf as u32,
        ..Default::default()
    };
    if f.func_info_rec_size > 0 {
        attr.func_info_rec_size = f.func_info_rec_size as u32;
        attr.func_info = func_info.as_ptr() as u64;
        attr.func_info_cnt = f.func_info.len() as u32;
    }
    if f.line_info_rec_size > 0 {
        attr.line_info_rec_size = f.line_info_rec_size as u32;
        attr.line_info = line_info.as_ptr() as u64;
        attr.line_info_cnt = f.line_info.len() as u32;
    }
    // The kernel's limit is 15 characters and a NUL.
    for (d, s) in attr.prog_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    let first = match sys_bpf(BPF_PROG_LOAD, &attr) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    // Again with the verifier's log, to say why.
    let mut log = vec![0u8; 1 << 20];
    attr.log_level = 1;
    attr.log_size = log.len() as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    if let Ok(fd) = sys_bpf(BPF_PROG_LOAD, &attr) {
        return Ok(fd);
    }
    let text = String::from_utf8_lossy(&log);
    let text = text.trim_end_matches('\0');
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    Err(format!(
        "loading {name}: {first}{}",
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                tail.into_iter().rev().collect::<Vec<_>>().join("; ")
            )
        }
    ))
}

/// bpf_attr for BPF_LINK_CREATE with its uprobe_multi part.
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    path: u64,
    offsets: u64,
    ref_ctr_offsets: u64,
    cookies: u64,
    cnt: u32,
    multi_flags: u32,
    pid: u32,
    pad: u32,
}

fn link_multi(prog: RawFd, path: &CString, offsets: &[u64], ret: bool) -> Result<OwnedFd, Refused> {
    link_multi_raw(prog, path, offsets, ret).map_err(|e| Refused {
        denied: matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)),
    })
}

fn link_multi_raw(
    prog: RawFd,
    path: &CString,
    offsets: &[u64],
    ret: bool,
) -> std::io::Result<OwnedFd> {
    let attr = LinkCreate {
        prog_fd: prog as u32,
        attach_type: BPF_TRACE_UPROBE_MULTI,
        path: path.as_ptr() as u64,
        offsets: offsets.as_ptr() as u64,
        cnt: offsets.len() as u32,
        multi_flags: if ret { BPF_F_UPROBE_MULTI_RETURN } else { 0 },
        ..Default::default()
    };
    sys_bpf(BPF_LINK_CREATE, &attr)
}
