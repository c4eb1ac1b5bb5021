//! uprobes that carry a grpc-go call's context from the calling goroutine to the
//! connection's writer goroutine (ebpf-programs/go_grpc.h): the stream's headers queued
//! (`executeAndPut`) and encoded (`writeHeader`). Both exist under these names, with the
//! same register layout, in grpc-go v1.54.0, v1.72.1 and v1.84.0.

use super::gotls::{after_stack_check, find_func};

const PUT: &str = "google.golang.org/grpc/internal/transport.(*controlBuffer).executeAndPut";
const WRITE_HEADER: &str = "google.golang.org/grpc/internal/transport.(*loopyWriter).writeHeader";
pub(super) const PROGRAMS: &[&str] = &["on_go_grpc_put", "on_go_grpc_write_header"];

/// (program, file offset) pairs for a Go program with grpc-go's HTTP/2 transport; empty
/// when it has none. Both or neither: half would never hand a context over.
pub fn sites(file: &object::File) -> Result<Vec<(&'static str, u64)>, &'static str> {
    let entry = |name: &str| -> Result<Option<u64>, &'static str> {
        let Some((at, code)) = find_func(file, name)? else {
            return Ok(None);
        };
        let start = after_stack_check(code).ok_or("no Go function prologue in grpc-go")?;
        Ok(Some(at + start))
    };
    let (Some(put), Some(write)) = (entry(PUT)?, entry(WRITE_HEADER)?) else {
        return Ok(Vec::new());
    };
    Ok(vec![
        ("on_go_grpc_put", put),
        ("on_go_grpc_write_header", write),
    ])
}
