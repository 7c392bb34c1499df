#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    quorate_crypto::fuzzing::strict_signature(data);
});
