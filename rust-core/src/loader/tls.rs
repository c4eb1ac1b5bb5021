//! uprobes on OpenSSL (see ebpf-programs/tls.h): loaded once, attached to every libssl
//! file any process has mapped, found again as processes come (containers bring their
//! own copies; Python maps libssl only when `ssl` is imported).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use aya::programs::uprobe::UProbeScope;
use aya::programs::UProbe;
use aya::Ebpf;

use super::{aya_err, program};
use crate::error::LoadError;
use crate::process::running_pids;

/// (program, symbol): entry probes, then the one return probe on every symbol.
const ENTRIES: &[(&str, &str)] = &[
    ("on_ssl_write", "SSL_write"),
    ("on_ssl_write_ex", "SSL_write_ex"),
    ("on_ssl_read", "SSL_read"),
    ("on_ssl_read_ex", "SSL_read_ex"),
];
const RETURN: &str = "on_ssl_ret";

#[derive(Default)]
pub struct Tls {
    /// Library files probed, by (device, inode): one file may be reached by many paths.
    seen: HashSet<(u64, u64)>,
    /// Paths probed, for the start-up line.
    pub libs: Vec<String>,
    /// Attach failures (a library without those symbols, e.g. BoringSSL).
    pub failures: u64,
    /// Of those, refused by the kernel for lack of privilege.
    pub refused: u64,
}

pub fn load(bpf: &mut Ebpf) -> Result<(), LoadError> {
    let names: Vec<&str> = ENTRIES.iter().map(|e| e.0).chain([RETURN]).collect();
    load_uprobes(bpf, &names)
}

/// Loads uprobe programs (attached later, file by file).
pub(super) fn load_uprobes(bpf: &mut Ebpf, names: &[&str]) -> Result<(), LoadError> {
    for &name in names {
        let p: &mut UProbe = program(bpf, name)?;
        p.load()
            .map_err(|e| aya_err(format!("loading uprobe {name}"), e))?;
    }
    Ok(())
}

/// libssl paths mapped by running processes, as this process can open them (through
/// /proc/<pid>/root, so a container's own copy is found).
fn mapped_libssl() -> Vec<String> {
    let mut out = HashSet::new();
    for pid in running_pids() {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue;
        };
        for line in maps.lines().filter(|l| l.contains("libssl.so")) {
            if let Some(path) = line.split_whitespace().nth(5) {
                out.insert(format!("/proc/{pid}/root{path}"));
            }
        }
    }
    out.into_iter().collect()
}

/// Usual places, so processes that load libssl later are covered from the start.
const SYSTEM_LIBSSL: &[&str] = &[
    "/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3",
    "/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/usr/lib/x86_64-linux-gnu/libssl.so.1.1",
];

impl Tls {
    /// Attaches to every libssl file not probed yet.
    pub fn scan(&mut self, bpf: &mut Ebpf) {
        let paths = SYSTEM_LIBSSL
            .iter()
            .map(|s| s.to_string())
            .chain(mapped_libssl());
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !self.seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            if self.attach(bpf, &path) {
                self.libs.push(path);
            }
        }
    }

    fn attach(&mut self, bpf: &mut Ebpf, path: &str) -> bool {
        let mut any = false;
        for &(prog, sym) in ENTRIES {
            for name in [prog, RETURN] {
                let Some(p) = bpf.program_mut(name) else {
                    continue;
                };
                let Ok(p) = <&mut UProbe>::try_from(p) else {
                    continue;
                };
                match p.attach(sym, path, UProbeScope::AllProcesses) {
                    Ok(_) => any = true,
                    Err(e) => {
                        self.failures += 1;
                        self.refused += super::refused(&e) as u64;
                    }
                }
            }
        }
        any
    }
}
