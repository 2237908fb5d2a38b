//! libFuzzer entry of the `kv_snapshot` target; see `kuberaft::fuzzing::kv_snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kuberaft::fuzzing::kv_snapshot::run(data));
