//! Fuzz the Redis session (both directions) and its detection helpers (input layout and
//! checks: common/two_streams.rs).
#![no_main]

#[path = "common/two_streams.rs"]
mod two_streams;

use libfuzzer_sys::fuzz_target;
use otelcol_ebpf_core::protocols::redis::{plausible_midstream, sniff, RedisSession};

fuzz_target!(|data: &[u8]| {
    two_streams::fuzz(
        &two_streams::Parser {
            new: RedisSession::new,
            losses: RedisSession::losses,
            sniff,
            midstream: plausible_midstream,
            after_close: b"PING\r\n",
        },
        data,
    )
});
