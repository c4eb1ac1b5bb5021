//! The only C ABI of the crate. Every body runs inside `ffi_guard!`, so a panic becomes
//! `OTEL_EBPF_ERR_PANIC` instead of unwinding into Go.
//!
//! Threading: one handle may be used from several threads; `next_batch` may block while
//! `stats` is called from another thread. `stop` and `free` must not race with other calls
//! on the same handle.

// The functions take raw pointers from C, which cannot see Rust's `unsafe`: each one
// checks its pointers for null before use and says what it needs in its doc comment.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::config::Config;
use crate::error::{Error, LoadError};
use crate::runtime::{Batch, Receiver};
use crate::stats;

/// Result codes. The values are part of the ABI and are never renumbered.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtelEbpfResult {
    Ok = 0,
    /// `next_batch` waited `timeout_ms` and had nothing to hand over.
    Timeout = 1,
    /// `next_batch` after `stop`: no more batches will come.
    Stopped = 2,
    ErrInvalidArgument = 10,
    ErrConfig = 11,
    ErrPermission = 12,
    ErrUnsupportedKernel = 13,
    ErrLoad = 14,
    ErrState = 15,
    ErrPanic = 99,
}

/// Opaque receiver handle.
pub struct OtelEbpfReceiver {
    inner: Receiver,
}

/// A byte buffer owned by the core; release it with `otel_ebpf_buffer_free`.
#[repr(C)]
pub struct OtelEbpfBuffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
    /// Number of spans encoded in the buffer.
    pub spans: u64,
}

macro_rules! ffi_guard {
    ($body:block) => {
        match catch_unwind(AssertUnwindSafe(|| $body)) {
            Ok(r) => r,
            Err(_) => OtelEbpfResult::ErrPanic,
        }
    };
    // With an error buffer: the panic's message goes into it.
    ($err:expr, $err_len:expr, $body:block) => {
        match catch_unwind(AssertUnwindSafe(|| $body)) {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                write_err($err, $err_len, &format!("internal error (panic): {msg}"));
                OtelEbpfResult::ErrPanic
            }
        }
    };
}

fn write_err(buf: *mut c_char, len: usize, msg: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let n = msg.len().min(len - 1);
    // SAFETY: the caller promises `buf` holds `len` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), buf as *mut u8, n);
        *buf.add(n) = 0;
    }
}

fn code_of(e: &Error) -> OtelEbpfResult {
    match e {
        Error::Config(_) => OtelEbpfResult::ErrConfig,
        Error::Load(LoadError::Permission { .. }) => OtelEbpfResult::ErrPermission,
        Error::Load(LoadError::Unsupported { .. }) => OtelEbpfResult::ErrUnsupportedKernel,
        Error::Load(_) | Error::Io(_) => OtelEbpfResult::ErrLoad,
        Error::State(_) => OtelEbpfResult::ErrState,
    }
}

fn fail(e: Error, err: *mut c_char, err_len: usize) -> OtelEbpfResult {
    write_err(err, err_len, &e.to_string());
    code_of(&e)
}

/// Creates a receiver from a JSON config (`config` holds `config_len` bytes, borrowed for
/// the call). On success `*out` owns a handle to release with `otel_ebpf_receiver_free`.
/// On failure a NUL-terminated message is copied into `err` (capacity `err_len`).
#[no_mangle]
pub extern "C" fn otel_ebpf_receiver_new(
    config: *const u8,
    config_len: usize,
    out: *mut *mut OtelEbpfReceiver,
    err: *mut c_char,
    err_len: usize,
) -> OtelEbpfResult {
    ffi_guard!(err, err_len, {
        if config.is_null() || out.is_null() {
            write_err(err, err_len, "null argument");
            return OtelEbpfResult::ErrInvalidArgument;
        }
        // SAFETY: the caller promises `config` holds `config_len` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(config, config_len) };
        match Config::from_json(bytes) {
            Ok(cfg) => {
                let h = Box::new(OtelEbpfReceiver {
                    inner: Receiver::new(cfg),
                });
                // SAFETY: checked non-null above.
                unsafe { *out = Box::into_raw(h) };
                OtelEbpfResult::Ok
            }
            Err(e) => fail(e.into(), err, err_len),
        }
    })
}

/// Loads and attaches the eBPF programs and starts the core's threads.
#[no_mangle]
pub extern "C" fn otel_ebpf_receiver_start(
    r: *mut OtelEbpfReceiver,
    err: *mut c_char,
    err_len: usize,
) -> OtelEbpfResult {
    ffi_guard!(err, err_len, {
        // SAFETY: the caller passes a live handle or NULL.
        let Some(r) = (unsafe { r.as_mut() }) else {
            return OtelEbpfResult::ErrInvalidArgument;
        };
        match r.inner.start() {
            Ok(()) => OtelEbpfResult::Ok,
            Err(e) => fail(e, err, err_len),
        }
    })
}

/// Waits up to `timeout_ms` for the next batch of spans, encoded as an OTLP
/// `ExportTraceServiceRequest`. On `Ok`, `*out` owns the bytes: release them with
/// `otel_ebpf_buffer_free`. Thread-safe against `stats`.
#[no_mangle]
pub extern "C" fn otel_ebpf_receiver_next_batch(
    r: *const OtelEbpfReceiver,
    timeout_ms: u32,
    out: *mut OtelEbpfBuffer,
) -> OtelEbpfResult {
    ffi_guard!({
        // SAFETY: the caller passes a live handle or NULL.
        let (Some(r), false) = (unsafe { r.as_ref() }, out.is_null()) else {
            return OtelEbpfResult::ErrInvalidArgument;
        };
        match r.inner.next_batch(Duration::from_millis(timeout_ms as u64)) {
            Batch::Data { bytes, spans } => {
                let mut bytes = std::mem::ManuallyDrop::new(bytes);
                // SAFETY: checked non-null above.
                unsafe {
                    *out = OtelEbpfBuffer {
                        ptr: bytes.as_mut_ptr(),
                        len: bytes.len(),
                        cap: bytes.capacity(),
                        spans,
                    }
                };
                OtelEbpfResult::Ok
            }
            Batch::Timeout => OtelEbpfResult::Timeout,
            Batch::Stopped => OtelEbpfResult::Stopped,
        }
    })
}

/// Releases a buffer filled by `otel_ebpf_receiver_next_batch`. NULL or an empty buffer
/// is a no-op; the buffer is zeroed afterwards.
#[no_mangle]
pub extern "C" fn otel_ebpf_buffer_free(buf: *mut OtelEbpfBuffer) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller passes a buffer filled by next_batch, or NULL.
        let Some(b) = (unsafe { buf.as_mut() }) else {
            return;
        };
        if !b.ptr.is_null() {
            // SAFETY: ptr/len/cap come from a Vec<u8> we leaked in next_batch.
            drop(unsafe { Vec::from_raw_parts(b.ptr, b.len, b.cap) });
        }
        b.ptr = std::ptr::null_mut();
        b.len = 0;
        b.cap = 0;
        b.spans = 0;
    }));
}

/// Number of counters `otel_ebpf_receiver_stats` reports.
#[no_mangle]
pub extern "C" fn otel_ebpf_stats_count() -> usize {
    stats::NAMES.len()
}

/// Name of counter `i` (a static NUL-terminated string), or NULL past the end.
#[no_mangle]
pub extern "C" fn otel_ebpf_stats_name(i: usize) -> *const c_char {
    match stats::C_NAMES.get(i) {
        Some(s) => s.as_ptr() as *const c_char,
        None => std::ptr::null(),
    }
}

/// Copies up to `cap` counter values into `values`, in the order of `otel_ebpf_stats_name`,
/// and stores how many were written in `*written`. Thread-safe.
#[no_mangle]
pub extern "C" fn otel_ebpf_receiver_stats(
    r: *const OtelEbpfReceiver,
    values: *mut u64,
    cap: usize,
    written: *mut usize,
) -> OtelEbpfResult {
    ffi_guard!({
        // SAFETY: the caller passes a live handle or NULL.
        let Some(r) = (unsafe { r.as_ref() }) else {
            return OtelEbpfResult::ErrInvalidArgument;
        };
        if values.is_null() && cap > 0 {
            return OtelEbpfResult::ErrInvalidArgument;
        }
        let v = r.inner.stats();
        let n = v.len().min(cap);
        // SAFETY: the caller promises `values` holds `cap` u64s.
        unsafe {
            std::ptr::copy_nonoverlapping(v.as_ptr(), values, n);
            if !written.is_null() {
                *written = n;
            }
        }
        OtelEbpfResult::Ok
    })
}

/// Copies a one-line, human-readable description of the kernel features found and the
/// hooks attached into `buf` (NUL-terminated, truncated to `len`).
#[no_mangle]
pub extern "C" fn otel_ebpf_receiver_info(
    r: *const OtelEbpfReceiver,
    buf: *mut c_char,
    len: usize,
) -> OtelEbpfResult {
    ffi_guard!({
        // SAFETY: the caller passes a live handle or NULL.
        let Some(r) = (unsafe { r.as_ref() }) else {
            return OtelEbpfResult::ErrInvalidArgument;
        };
        write_err(buf, len, &r.inner.info());
        OtelEbpfResult::Ok
    })
}

/// Copies the next line the core has for the collector's log (a process found
/// SDK-instrumented, ...) into `buf` (NUL-terminated, truncated to `len`): `Ok`, or
/// `Timeout` when there is none.
#[no_mangle]
pub extern "C" fn otel_ebpf_receiver_next_notice(
    r: *const OtelEbpfReceiver,
    buf: *mut c_char,
    len: usize,
) -> OtelEbpfResult {
    ffi_guard!({
        // SAFETY: the caller passes a live handle or NULL.
        let Some(r) = (unsafe { r.as_ref() }) else {
            return OtelEbpfResult::ErrInvalidArgument;
        };
        if buf.is_null() || len == 0 {
            return OtelEbpfResult::ErrInvalidArgument;
        }
        match r.inner.next_notice() {
            Some(line) => {
                write_err(buf, len, &line);
                OtelEbpfResult::Ok
            }
            None => OtelEbpfResult::Timeout,
        }
    })
}

/// Detaches every program, stops the threads and flushes what is pending; a later
/// `next_batch` drains the last batches and then returns `Stopped`. Safe to call twice.
#[no_mangle]
pub extern "C" fn otel_ebpf_receiver_stop(r: *mut OtelEbpfReceiver) -> OtelEbpfResult {
    ffi_guard!({
        // SAFETY: the caller passes a live handle or NULL.
        let Some(r) = (unsafe { r.as_mut() }) else {
            return OtelEbpfResult::ErrInvalidArgument;
        };
        r.inner.stop();
        OtelEbpfResult::Ok
    })
}

/// Stops (if needed) and releases the handle. NULL is a no-op.
#[no_mangle]
pub extern "C" fn otel_ebpf_receiver_free(r: *mut OtelEbpfReceiver) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !r.is_null() {
            // SAFETY: `r` came from otel_ebpf_receiver_new and is not used after this call.
            let mut h = unsafe { Box::from_raw(r) };
            h.inner.stop();
        }
    }));
}
