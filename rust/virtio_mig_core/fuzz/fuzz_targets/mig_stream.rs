//! Fuzzes the migration stream parser with arbitrary bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_mig_core::mig_stream::{check_state_compat, Frame, FrameHeader, MAX_QUEUES};

fuzz_target!(|data: &[u8]| {
    let _ = FrameHeader::peek(data);
    let mut rest = data;
    // Walk a stream of frames as the resuming side does.
    while let Ok(frame) = Frame::parse(rest) {
        assert!(frame.len <= rest.len());
        assert!(usize::from(frame.identity.num_queues) <= MAX_QUEUES);
        assert_eq!(frame.queues().count(), usize::from(frame.num_queue_sections));
        if frame.is_final() {
            assert_eq!(frame.num_queue_sections, frame.identity.num_queues);
            assert!(frame.driver.is_some() && frame.config_msix_vector.is_some());
        }
        let _ = check_state_compat(&frame, &frame.identity);
        rest = &rest[frame.len..];
    }
});
