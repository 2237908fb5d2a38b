//! libFuzzer entry of the `config_file` target; see `kuberaft::fuzzing::config_file`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kuberaft::fuzzing::config_file::run(data));
