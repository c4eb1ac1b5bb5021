//! uprobes on OpenSSL (see ebpf-programs/tls.h): loaded once, attached to every libssl
//! file any process has mapped, found again as processes come (containers bring their
//! own copies; Python maps libssl only when `ssl` is imported).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use aya::Ebpf;

use super::uprobes::Uprobes;
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

/// The programs this module attaches.
pub(super) fn programs() -> impl Iterator<Item = &'static str> {
    ENTRIES.iter().map(|e| e.0).chain([RETURN])
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
    pub fn scan(&mut self, bpf: &mut Ebpf, probes: &mut Uprobes) {
        let paths = SYSTEM_LIBSSL
            .iter()
            .map(|s| s.to_string())
            .chain(mapped_libssl());
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = (meta.dev(), meta.ino());
            if !self.seen.insert(id) {
                continue;
            }
            if self.attach(bpf, probes, &path, id) {
                self.libs.push(path);
            }
        }
    }

    fn attach(&mut self, bpf: &mut Ebpf, probes: &mut Uprobes, path: &str, id: (u64, u64)) -> bool {
        let Ok(data) = std::fs::read(path) else {
            self.failures += 1;
            return false;
        };
        let mut points = Vec::new();
        for &(prog, sym) in ENTRIES {
            match symbol_offset(&data, sym) {
                Some(at) => points.extend([(prog, at), (RETURN, at)]),
                None => self.failures += 1, // BoringSSL has no SSL_write_ex
            }
        }
        if points.is_empty() {
            return false;
        }
        match probes.attach(bpf, path, id, &points) {
            Ok(()) => true,
            Err(e) => {
                self.failures += 1;
                self.refused += e.denied as u64;
                false
            }
        }
    }
}

/// The file offset of the function `name` an ELF shared library exports.
fn symbol_offset(data: &[u8], name: &str) -> Option<u64> {
    use object::{Object, ObjectSegment, ObjectSymbol};
    let file = object::File::parse(data).ok()?;
    let sym = file
        .dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.is_definition() && s.name() == Ok(name))?;
    let addr = sym.address();
    file.segments().find_map(|seg| {
        let (off, size) = seg.file_range();
        let rel = addr.checked_sub(seg.address())?;
        (rel < size).then_some(off + rel)
    })
}
