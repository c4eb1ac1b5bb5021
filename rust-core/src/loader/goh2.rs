//! uprobes giving HTTP/2 requests served by Go's net/http their trace context in the
//! kernel (ebpf-programs/go_h2server.h): at (*serverConn).processHeaders's entry and
//! at its RETs. Attached with the goroutine-context probes (goctx.rs).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use super::gotls::{after_stack_check, find_func, go_returns};

/// processHeaders by package, and the program that knows where that release keeps the
/// connection in its serverConn.
const HEADERS: &[(&str, &str)] = &[
    (
        "net/http.(*http2serverConn).processHeaders",
        "on_go_h2_headers",
    ),
    (
        "golang.org/x/net/http2.(*serverConn).processHeaders",
        "on_go_h2_headers",
    ),
    (
        "net/http/internal/http2.(*serverConn).processHeaders",
        "on_go_h2_headers_27",
    ),
    (
        "google.golang.org/grpc/internal/transport.(*http2Server).operateHeaders",
        "on_go_grpc_headers",
    ),
];
pub(super) const PROGRAMS: &[&str] = &[
    "on_go_h2_headers",
    "on_go_h2_headers_27",
    "on_go_grpc_headers",
    "on_go_h2_headers_ret",
];

/// Executables (device, inode) whose HTTP/2 server is probed: only their streams wait
/// for the kernel's ids (another Go HTTP/2 server's would wait in vain, then take ids in
/// the order its responses end, not the order its requests came).
static PROBED: Mutex<Option<HashSet<(u64, u64)>>> = Mutex::new(None);

/// The probes are attached to the executable at `path`.
pub(super) fn note_probed(path: &str) {
    if let (Ok(m), Ok(mut set)) = (std::fs::metadata(path), PROBED.lock()) {
        set.get_or_insert_with(HashSet::new)
            .insert((m.dev(), m.ino()));
    }
}

/// The executable (device, inode) is probed no more.
pub(super) fn forget(file: (u64, u64)) {
    if let Ok(mut set) = PROBED.lock() {
        if let Some(s) = set.as_mut() {
            s.remove(&file);
        }
    }
}

/// Whether process `pid` runs an executable whose HTTP/2 server is probed.
pub fn probed(pid: u32) -> bool {
    let Ok(m) = std::fs::metadata(format!("/proc/{pid}/exe")) else {
        return false;
    };
    PROBED
        .lock()
        .ok()
        .and_then(|set| set.as_ref().map(|s| s.contains(&(m.dev(), m.ino()))))
        .unwrap_or(false)
}

/// (program, file offset) pairs for every HTTP/2 server in the program; a function
/// whose RETs are not found is left alone (its serve goroutine's context would outlive it).
pub(super) fn sites(file: &object::File<'_>) -> Result<Vec<(&'static str, u64)>, &'static str> {
    let mut out = Vec::new();
    for &(name, program) in HEADERS {
        let Some((at, code)) = find_func(file, name)? else {
            continue;
        };
        let start = after_stack_check(code).ok_or("no Go function prologue")?;
        let rets = go_returns(code);
        if rets.is_empty() {
            continue;
        }
        out.push((program, at + start));
        out.extend(rets.into_iter().map(|r| ("on_go_h2_headers_ret", at + r)));
    }
    Ok(out)
}
