//! Fuzz the MySQL / MariaDB session parser and its detection helpers (input layout and
//! checks: common/feeds.rs).
#![no_main]

#[path = "common/feeds.rs"]
mod feeds;

use libfuzzer_sys::fuzz_target;
use otelcol_ebpf_core::protocols::mysql::{plausible_midstream, sniff, MySqlSession};

fuzz_target!(|data: &[u8]| {
    feeds::fuzz(
        &feeds::Parser {
            new: MySqlSession::new,
            lost_sync: MySqlSession::lost_sync,
            sniff,
            midstream: plausible_midstream,
            // The greeting's version string can be long.
            sniff_prefixes: 120,
            went_tls: MySqlSession::tls,
        },
        data,
    )
});
