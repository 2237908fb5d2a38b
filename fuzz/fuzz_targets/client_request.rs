//! libFuzzer entry of the `client_request` target; see `kuberaft::fuzzing::client_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kuberaft::fuzzing::client_request::run(data));
