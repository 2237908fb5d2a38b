//! libFuzzer entry of the `kv_command` target; see `kuberaft::fuzzing::kv_command`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kuberaft::fuzzing::kv_command::run(data));
