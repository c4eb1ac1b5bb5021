//! Fuzz the MongoDB session (both directions) and its detection helpers (input layout and
//! checks: common/two_streams.rs).
#![no_main]

#[path = "common/two_streams.rs"]
mod two_streams;

use libfuzzer_sys::fuzz_target;
use otelcol_ebpf_core::protocols::mongodb::{plausible_midstream, sniff, MongoSession};

fuzz_target!(|data: &[u8]| {
    two_streams::fuzz(
        &two_streams::Parser {
            new: MongoSession::new,
            losses: MongoSession::losses,
            sniff,
            midstream: plausible_midstream,
            // An OP_MSG `ping` header (21 bytes, no body): a request after close.
            after_close: b"\x15\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00\x00\x00\x00\x00\x00",
        },
        data,
    )
});
