#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quorate_protocol::secagg::fuzzing::client(data);
});
