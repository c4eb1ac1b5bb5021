//! The core of otelcol-ebpf: loads the eBPF programs, turns captured syscalls into spans
//! and hands them to the Go receiver as OTLP bytes through the C ABI in `ffi`.

pub mod buildinfo;
pub mod cgroup;
pub mod config;
pub mod conn;
pub mod discovery;
pub mod error;
pub mod events;
pub mod ffi;
pub mod loader;
pub mod otlp;
pub mod process;
pub mod protocols;
pub mod record;
pub mod runtime;
pub mod spans;
pub mod stats;
