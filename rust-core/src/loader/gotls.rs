//! uprobes on Go's crypto/tls (see the end of ebpf-programs/tls.h): every Go program
//! carries its own copy, so each Go executable a process runs is probed once, found as
//! processes come. (*Conn).Read gets a probe on each of its RET instructions instead of
//! a uretprobe, which would break Go's stack copying.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

use aya::Ebpf;
use object::{Object, ObjectSection, ObjectSymbol};

use super::gopclntab;
use super::uprobes::Uprobes;
use crate::process::{is_go_binary, running_pids};

const WRITE: &str = "crypto/tls.(*Conn).Write";
const READ: &str = "crypto/tls.(*Conn).Read";
pub(super) const PROGRAMS: &[&str] = &["on_go_tls_write", "on_go_tls_read", "on_go_tls_read_ret"];

#[derive(Default)]
pub struct GoTls {
    /// Executables looked at, by (device, inode), probed or not, with their modification
    /// time: a new file on a deleted one's inode (`go test` deletes its programs) is new.
    seen: HashMap<(u64, u64), Mtime>,
    /// Executables probed (by device and inode) and their paths, for the start-up line.
    pub exes: Vec<((u64, u64), String)>,
    /// Executables with any probe attached (crypto/tls or goroutine context).
    probed: HashSet<(u64, u64)>,
    /// Executables whose probes were removed because no process ran them any more.
    pub released: u64,
    /// Go programs that may use crypto/tls but could not be probed (Go before 1.18
    /// without a symbol table; no RET found; attach refused).
    pub failures: u64,
    /// The first few of them, with the reason, for the start-up line.
    pub failed: Vec<String>,
    /// Programs whose probes the kernel refused for lack of privilege.
    pub refused: u64,
    /// Go programs using net/http whose goroutine-context probes could not be attached
    /// (loader/goctx.rs): their calls go without a parent.
    pub ctx_failures: u64,
}

/// Offsets from the start of `func` of its RET instructions. Go ends every return of a
/// function with a frame with `ADDQ $n, SP; POPQ BP; RET` (Go 1.21+) or `MOVQ n-8(SP),
/// BP; ADDQ $n, SP; RET` (1.18-1.20): matching the whole epilogue, not a lone 0xc3 byte,
/// keeps bytes inside other instructions out. At the RET both leave the same state.
pub fn go_returns(code: &[u8]) -> Vec<u64> {
    // ADDQ $imm8, SP or ADDQ $imm32, SP ending at `end`: where it starts.
    let addq = |end: usize| {
        if end >= 4 && code[end - 4..end - 1] == [0x48, 0x83, 0xc4] {
            Some(end - 4)
        } else if end >= 7 && code[end - 7..end - 4] == [0x48, 0x81, 0xc4] {
            Some(end - 7)
        } else {
            None
        }
    };
    // MOVQ disp8(SP), BP or MOVQ disp32(SP), BP ending at `end`.
    let restore_bp = |end: usize| {
        (end >= 5 && code[end - 5..end - 1] == [0x48, 0x8b, 0x6c, 0x24])
            || (end >= 8 && code[end - 8..end - 4] == [0x48, 0x8b, 0xac, 0x24])
    };
    let mut out = Vec::new();
    for (i, &b) in code.iter().enumerate() {
        if b != 0xc3 {
            continue;
        }
        let pop_bp = i >= 1 && code[i - 1] == 0x5d && addq(i - 1).is_some();
        let old = addq(i).is_some_and(restore_bp);
        if pop_bp || old {
            out.push(i as u64);
        }
    }
    out
}

/// Offset of the first instruction after a Go function's stack check (`CMPQ SP,
/// 16(R14)` or, for large frames, `LEAQ -n(SP), R12; CMPQ R12, 16(R14)`, then `JBE` to
/// the code that grows the stack and jumps back to the function's start). A probe at
/// offset 0 would fire again after each growth (the same call seen twice); after the
/// check it fires once, the arguments still in their registers. None: not Go's prologue
/// (then nothing is probed: the address may not be a function's start at all).
pub fn after_stack_check(code: &[u8]) -> Option<u64> {
    let mut i = match code {
        [0x4c, 0x8d, 0x64, 0x24, ..] => 5,
        [0x4c, 0x8d, 0xa4, 0x24, ..] => 8,
        _ => 0,
    };
    match code.get(i..i + 4)? {
        [0x49 | 0x4d, 0x3b, 0x66, 0x10 | 0x18] => i += 4,
        _ => return None,
    }
    match code.get(i..)? {
        [0x76, ..] => i += 2,
        [0x0f, 0x86, ..] => i += 6,
        _ => return None,
    }
    (i <= code.len()).then_some(i as u64)
}

/// Where the probes go in one executable, as file offsets.
pub(super) struct Sites {
    write: u64,
    read: u64,
    pub(super) read_rets: Vec<u64>,
}

/// (virtual address, size) of a function: from the symbol table, or in a stripped
/// program from Go's own function table. None: the program has no such function.
fn func_range(
    file: &object::File<'_>,
    text: u64,
    name: &str,
) -> Result<Option<(u64, u64)>, &'static str> {
    if file.symbols().next().is_some() {
        return Ok(file
            .symbols()
            .find(|s| s.name_bytes().ok() == Some(name.as_bytes()))
            .map(|s| (s.address(), s.size())));
    }
    let tab = file
        .section_by_name(".gopclntab")
        .and_then(|s| s.data().ok())
        .filter(|t| gopclntab::valid(t))
        .ok_or("no symbol table, and no function table of Go 1.18 or later")?;
    Ok(gopclntab::lookup(tab, name, text))
}

/// File offset and code of a function of a Go program; None: it has no such function.
pub(super) fn find_func<'a>(
    file: &object::File<'a>,
    name: &str,
) -> Result<Option<(u64, &'a [u8])>, &'static str> {
    let text = file.section_by_name(".text").ok_or("no .text section")?;
    let (addr, (off, _)) = (
        text.address(),
        text.file_range().ok_or("no .text in the file")?,
    );
    let code = text.data().map_err(|_| "unreadable .text")?;
    let Some((start, size)) = func_range(file, addr, name)? else {
        return Ok(None);
    };
    let outside = "function outside .text";
    let rel = start.checked_sub(addr).ok_or(outside)?;
    let end = rel.checked_add(size).ok_or(outside)?;
    let (from, to) = (usize::try_from(rel), usize::try_from(end));
    let bytes = code.get(from.map_err(|_| outside)?..to.map_err(|_| outside)?);
    Ok(Some((off + rel, bytes.ok_or(outside)?)))
}

/// An x86-64 Go program's `.go.buildinfo` section: Err says why there is none.
pub fn go_buildinfo<'a>(file: &object::File<'a>) -> Result<&'a [u8], &'static str> {
    if file.architecture() != object::Architecture::X86_64 {
        return Err("not an x86-64 program");
    }
    file.section_by_name(".go.buildinfo")
        .and_then(|s| s.data().ok())
        .ok_or("no Go build info")
}

/// The probe sites of a Go program, or None if it does not use crypto/tls.
pub(super) fn sites(path: &str) -> Result<Option<Sites>, &'static str> {
    let data = std::fs::read(path).map_err(|_| "unreadable")?;
    let file = object::File::parse(&*data).map_err(|_| "not an ELF file")?;
    // Go 1.18 and later write the build info inline (flag 2): older ones may predate the
    // register ABI the probes read.
    let info = go_buildinfo(&file)?;
    if info.len() < 16 || &info[..14] != b"\xff Go buildinf:" || info[15] & 2 == 0 {
        return Err("Go older than 1.18");
    }
    let find = |name: &str| find_func(&file, name);
    let (Some((write, write_code)), Some((read, read_code))) = (find(WRITE)?, find(READ)?) else {
        return Ok(None);
    };
    // Go's stack check at both entries also proves the addresses are functions' starts.
    let prologue = "no Go function prologue where crypto/tls should start";
    let write = write + after_stack_check(write_code).ok_or(prologue)?;
    let read_entry = read + after_stack_check(read_code).ok_or(prologue)?;
    let read_rets: Vec<u64> = go_returns(read_code).iter().map(|r| read + r).collect();
    if read_rets.is_empty() {
        return Err("no RET found in crypto/tls.(*Conn).Read");
    }
    Ok(Some(Sites {
        write,
        read: read_entry,
        read_rets,
    }))
}

type Mtime = (i64, i64);

/// Executables of running processes by (device, inode), each with a path this process
/// can open and its modification time; the collector's own left out.
fn running_exes(own: (u64, u64)) -> HashMap<(u64, u64), (String, Mtime)> {
    let mut out = HashMap::new();
    for pid in running_pids() {
        let path = format!("/proc/{pid}/exe");
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let id = (meta.dev(), meta.ino());
        if id != own {
            out.entry(id)
                .or_insert((path, (meta.mtime(), meta.mtime_nsec())));
        }
    }
    out
}

/// The collector's own executable, never probed.
fn own_exe() -> (u64, u64) {
    std::fs::metadata("/proc/self/exe")
        .map(|m| (m.dev(), m.ino()))
        .unwrap_or_default()
}

impl GoTls {
    /// Probes every Go executable not looked at yet, and removes the probes of those
    /// deleted that no process runs any more: a program built, run and deleted (`go test`
    /// makes one per package) would otherwise keep its links, and its file, for the
    /// collector's life. A program still on disk keeps them: run again, it needs them.
    pub fn scan(&mut self, bpf: &mut Ebpf, probes: &mut Uprobes) {
        let running = running_exes(own_exe());
        for (&id, (path, mtime)) in &running {
            if self.seen.get(&id) != Some(mtime) {
                self.probe(bpf, probes, path, id, *mtime);
            }
        }
        let gone: Vec<_> = self
            .probed
            .iter()
            .filter(|id| !running.contains_key(id) && probes.deleted(**id))
            .copied()
            .collect();
        for id in gone {
            if probes.release(id) {
                self.probed.remove(&id);
                self.seen.remove(&id);
                self.exes.retain(|(e, _)| *e != id);
                super::goh2::forget(id);
                self.released += 1;
            }
        }
    }

    /// Probes the executable of `pid` now (it just started), unless looked at before.
    pub fn probe_pid(&mut self, bpf: &mut Ebpf, probes: &mut Uprobes, pid: u32) {
        let path = format!("/proc/{pid}/exe");
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        let id = (meta.dev(), meta.ino());
        let mtime = (meta.mtime(), meta.mtime_nsec());
        if id != own_exe() && self.seen.get(&id) != Some(&mtime) {
            self.probe(bpf, probes, &path, id, mtime);
        }
    }

    fn probe(
        &mut self,
        bpf: &mut Ebpf,
        probes: &mut Uprobes,
        proc_path: &str,
        id: (u64, u64),
        mtime: Mtime,
    ) {
        // The file by its own name when this process sees it there (the same file): a
        // short-lived program (a compiler's tools) takes /proc/<pid>/exe away with it.
        let linked = std::fs::read_link(proc_path).ok();
        let own_name = linked
            .as_ref()
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == id));
        let path = match own_name.and_then(|p| p.to_str()) {
            Some(p) => p.to_string(),
            None => proc_path.to_string(),
        };
        let path = path.as_str();
        if std::fs::File::open(path).is_err() {
            return; // gone before it was looked at: not seen
        }
        self.seen.insert(id, mtime);
        if !is_go_binary(path) {
            return;
        }
        let shown = linked
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| path.to_string());
        // Goroutine context (net/http hand-offs, goroutine creation); a program
        // that cannot be followed keeps its calls parentless.
        match super::goctx::attach(bpf, probes, path, id) {
            Ok(true) => {
                self.probed.insert(id);
            }
            Ok(false) => {}
            Err(why) => {
                self.ctx_failures += 1;
                if self.failed.len() < 8 {
                    self.failed
                        .push(format!("{shown}: goroutine context: {why}"));
                }
            }
        }
        let probed = sites(path).and_then(|found| match found {
            Some(sites) => self.attach(bpf, probes, path, id, &sites).map(|()| true),
            None => Ok(false), // no crypto/tls in it
        });
        match probed {
            Ok(true) => {
                self.probed.insert(id);
                self.exes.push((id, shown));
            }
            Ok(false) => {}
            Err(why) => {
                self.failures += 1;
                if self.failed.len() < 8 {
                    self.failed.push(format!("{shown}: {why}"));
                }
            }
        }
    }

    fn attach(
        &mut self,
        bpf: &mut Ebpf,
        probes: &mut Uprobes,
        path: &str,
        id: (u64, u64),
        sites: &Sites,
    ) -> Result<(), &'static str> {
        let mut points = vec![
            ("on_go_tls_write", sites.write),
            ("on_go_tls_read", sites.read),
        ];
        points.extend(sites.read_rets.iter().map(|&r| ("on_go_tls_read_ret", r)));
        // All or none: half the probes would drop a direction's ciphertext and never
        // send its plaintext.
        probes.attach(bpf, path, id, &points).map_err(|e| {
            if e.denied {
                self.refused += 1;
                "uprobe attach refused: permission denied"
            } else {
                "uprobe attach refused"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_go_epilogues_only() {
        let code = [
            0x49, 0x3b, 0x66, 0x10, // CMPQ SP, 16(R14)
            0xc3, // a lone 0xc3: not a return here
            0x48, 0x83, 0xc4, 0x28, 0x5d, 0xc3, // ADDQ $0x28, SP; POPQ BP; RET
            0x90, 0x5d, 0xc3, // POPQ BP; RET without the ADDQ: not Go's epilogue
            0x48, 0x81, 0xc4, 0x00, 0x01, 0x00, 0x00, 0x5d, 0xc3, // ADDQ $0x100, SP; ...
        ];
        assert_eq!(go_returns(&code), vec![10, 22]);
        // Go 1.18-1.20 (runtime.newproc1 of go1.20.14, crypto/tls Read of go1.18.10).
        let old = [
            0x48, 0x8b, 0x6c, 0x24, 0x40, // MOVQ 0x40(SP), BP
            0x48, 0x83, 0xc4, 0x48, 0xc3, // ADDQ $0x48, SP; RET
            0x48, 0x83, 0xc4, 0x48, 0xc3, // ADDQ without restoring BP: not an epilogue
            0x48, 0x8b, 0xac, 0x24, 0x10, 0x02, 0, 0, // MOVQ 0x210(SP), BP
            0x48, 0x81, 0xc4, 0x18, 0x02, 0, 0, 0xc3, // ADDQ $0x218, SP; RET
        ];
        assert_eq!(go_returns(&old), vec![9, 30]);
        // Stack checks as Go 1.26 emits them (crypto/tls Read, Write, readRecordOrCCS).
        let read = [0x49, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x7a, 0x03, 0, 0, 0x55];
        assert_eq!(after_stack_check(&read), Some(10));
        let write = [
            0x4c, 0x8d, 0x64, 0x24, 0xb8, 0x4d, 0x3b, 0x66, 0x10, 0x0f, 0x86, 0x93, 7, 0, 0, 0x55,
        ];
        assert_eq!(after_stack_check(&write), Some(15));
        let big = [
            0x4c, 0x8d, 0xa4, 0x24, 0xa8, 0xfe, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x76, 0x10,
        ];
        assert_eq!(after_stack_check(&big), Some(14));
        assert_eq!(after_stack_check(&[0x55, 0x48, 0x89, 0xe5]), None);
        assert_eq!(after_stack_check(&read[..4]), None);
        assert!(go_returns(&[]).is_empty());
        assert!(go_returns(&[0xc3]).is_empty());
    }
}
