#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quorate_protocol::fuzzing::tlog(data);
});
