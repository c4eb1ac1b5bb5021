//! Fuzz the PostgreSQL session parser and its detection helpers (input layout and checks:
//! common/feeds.rs).
#![no_main]

#[path = "common/feeds.rs"]
mod feeds;

use libfuzzer_sys::fuzz_target;
use otelcol_ebpf_core::protocols::postgres::{plausible_midstream, sniff, PgSession};

fuzz_target!(|data: &[u8]| {
    feeds::fuzz(
        &feeds::Parser {
            new: PgSession::new,
            lost_sync: PgSession::lost_sync,
            sniff,
            midstream: plausible_midstream,
            sniff_prefixes: 9,
            // The raw TLS records it skips count in lost_sync, which exempts it already.
            went_tls: |_| false,
        },
        data,
    )
});
