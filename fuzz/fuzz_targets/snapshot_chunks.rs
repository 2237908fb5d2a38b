//! libFuzzer entry of the `snapshot_chunks` target; see `kuberaft::fuzzing::snapshot_chunks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kuberaft::fuzzing::snapshot_chunks::run(data));
