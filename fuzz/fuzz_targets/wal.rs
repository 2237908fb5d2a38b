//! libFuzzer entry of the `wal` target; see `kuberaft::fuzzing::wal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kuberaft::fuzzing::wal::run(data));
