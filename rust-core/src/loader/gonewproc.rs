//! Where a new goroutine's g is known after runtime.newproc1 (ebpf-programs/goroutine.h,
//! fan-out). A uprobe on newproc1's RET costs two traps, the breakpoint and the
//! single-step of the RET (measured on this VM: a third of a fan-out service's CPU,
//! docs/benchmarks.md). Its caller, the closure `runtime.newproc.func1` that runs on the
//! system stack, passes the new g straight to `runtime.runqput(pp, newg, true)` (RBX) in
//! Go 1.18 to 1.27; the kernel emulates a CALL, so a probe there costs one trap.

use super::gotls::find_func;

const CLOSURE: &str = "runtime.newproc.func1";
const RUNQPUT: &str = "runtime.runqput";

/// File offset of the CALL to runtime.runqput in runtime.newproc.func1: None when either
/// function is missing or the call is not there exactly once.
pub fn queued_site(file: &object::File<'_>) -> Option<u64> {
    let (at, code) = find_func(file, CLOSURE).ok()??;
    let (runqput, _) = find_func(file, RUNQPUT).ok()??;
    let calls = calls_to(at, code, runqput);
    (calls.len() == 1).then(|| calls[0])
}

/// File offsets of `CALL rel32` instructions in `code` (at file offset `at`) whose target
/// is `target`: an exact 4-byte displacement keeps other bytes out.
fn calls_to(at: u64, code: &[u8], target: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..code.len().saturating_sub(4) {
        if code[i] != 0xe8 {
            continue;
        }
        let rel = i32::from_le_bytes(code[i + 1..i + 5].try_into().unwrap());
        let next = at + i as u64 + 5;
        if next.checked_add_signed(rel.into()) == Some(target) {
            out.push(at + i as u64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_call_by_its_target() {
        // runtime.newproc.func1 of go1.18.10 at 0x43e020, runqput at 0x43ff40.
        let code = [
            0x48, 0x8b, 0x42, 0x08, // MOVQ 0x8(DX), AX
            0xe8, 0x5b, 0x00, 0x00, 0x00, // CALL runtime.newproc1
            0x48, 0x89, 0xc3, // MOVQ AX, BX
            0xe8, 0xdb, 0x3e, 0x00, 0x00, // CALL runtime.runqput
            0xc3,
        ];
        let at = 0x43e060 - 12;
        assert_eq!(calls_to(at, &code, 0x43e060 + 5 + 0x3edb), vec![0x43e060]);
        assert_eq!(calls_to(at, &code, 0x43e058 + 5 + 0x5b), vec![0x43e058]);
        assert_eq!(calls_to(at, &code, 0x43e060), Vec::<u64>::new());
        assert_eq!(
            calls_to(at, &code[..15], 0x43e060 + 5 + 0x3edb),
            Vec::<u64>::new()
        );
        // A backward call (negative displacement).
        let back = [0xe8, 0xfb, 0xff, 0xff, 0xff];
        assert_eq!(calls_to(0x1000, &back, 0x1000), vec![0x1000]);
    }
}
