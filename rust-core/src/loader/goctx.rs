//! uprobes that follow a request's trace context between goroutines of a Go program
//! (ebpf-programs/goroutine.h): net/http's hand-off from the calling goroutine to the
//! connection's writer, and goroutine creation. Attached per Go executable, with the
//! Go TLS probes' scan.

use aya::Ebpf;

use super::gotls::{after_stack_check, find_func, go_returns};
use super::uprobes::Uprobes;

const ROUND_TRIP: &str = "net/http.(*persistConn).roundTrip";
const REQUEST_WRITE: &str = "net/http.(*Request).write";
const REQUEST_DONE: &str = "net/http.(*response).finishRequest";
const NEWPROC: &str = "runtime.newproc1";
pub(super) const PROGRAMS: &[&str] = &[
    "on_go_round_trip",
    "on_go_request_write",
    "on_go_request_done",
    "on_go_newproc",
    "on_go_newproc_ret",
    "on_go_newproc_queued",
];

/// (program, file offset) pairs for a Go program using net/http's client; empty when it
/// does not. The server's end of a request is followed when the program has net/http's
/// server too, runtime.newproc1 when its returns are found.
pub(super) fn sites(path: &str) -> Result<Vec<(&'static str, u64)>, &'static str> {
    use object::Object;
    let data = std::fs::read(path).map_err(|_| "unreadable")?;
    let file = object::File::parse(&*data).map_err(|_| "not an ELF file")?;
    if file.architecture() != object::Architecture::X86_64 {
        return Err("not an x86-64 program");
    }
    let entry = |name: &str| -> Result<Option<(u64, Vec<u64>)>, &'static str> {
        let Some((at, code)) = find_func(&file, name)? else {
            return Ok(None);
        };
        let start = after_stack_check(code).ok_or("no Go function prologue")?;
        Ok(Some((
            at + start,
            go_returns(code).iter().map(|r| at + r).collect(),
        )))
    };
    let mut out = super::gogrpc::sites(&file)?;
    let (Some((rt, _)), Some((wr, _))) = (entry(ROUND_TRIP)?, entry(REQUEST_WRITE)?) else {
        return Ok(out);
    };
    out.extend([("on_go_round_trip", rt), ("on_go_request_write", wr)]);
    if let Some((done, _)) = entry(REQUEST_DONE)? {
        out.push(("on_go_request_done", done));
    }
    if let Ok(Some((np, rets))) = entry(NEWPROC) {
        // The new g where runtime.newproc queues it (one trap), else at newproc1's RETs.
        let inherit = if let Some(at) = super::gonewproc::queued_site(&file) {
            out.extend([("on_go_newproc", np), ("on_go_newproc_queued", at)]);
            true
        } else if !rets.is_empty() {
            out.push(("on_go_newproc", np));
            out.extend(rets.into_iter().map(|r| ("on_go_newproc_ret", r)));
            true
        } else {
            false
        };
        if inherit {
            out.extend(super::goh2::sites(&file)?); // needs newproc1 for its handlers
        }
    }
    Ok(out)
}

/// Attaches the probes to the Go program at `path`: true when it uses net/http's client.
pub fn attach(
    bpf: &mut Ebpf,
    probes: &mut Uprobes,
    path: &str,
    id: (u64, u64),
) -> Result<bool, &'static str> {
    let points = sites(path)?;
    probes
        .attach(bpf, path, id, &points)
        .map_err(|_| "uprobe attach refused")?;
    if points
        .iter()
        .any(|(name, _)| *name == "on_go_h2_headers_ret")
    {
        super::goh2::note_probed(path);
    }
    Ok(!points.is_empty())
}
