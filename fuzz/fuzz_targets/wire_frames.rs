//! The incremental frame decoder (§8.3) under fuzzer-chosen limits and chunk sizes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quorate_protocol::wire::fuzzing::frame_decoder(data);
});
