//! libFuzzer entry of the `peer_message` target; see `kuberaft::fuzzing::peer_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kuberaft::fuzzing::peer_message::run(data));
