// SPDX-License-Identifier: GPL-2.0
//! Fuzzes the migration stream parser.
//!
//! The first input byte picks the mode: even, the rest is parsed as is; odd,
//! the rest becomes the section area of a frame with a valid header, length
//! and CRC, so the fuzzer reaches the section checks behind the CRC.

#![no_main]

use libfuzzer_sys::fuzz_target;
use virtio_mig_core::mig_stream::{
    check_state_compat, crc32, Frame, FrameHeader, FRAME_FINAL, FRAME_PRECOPY, HEADER_LEN,
    MAGIC, MAX_FRAME_LEN, MAX_QUEUES, VERSION,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        parse_stream(rest);
        return;
    }
    let total = HEADER_LEN + rest.len() + 4;
    if total > MAX_FRAME_LEN {
        return;
    }
    let flags = if mode & 2 == 0 { FRAME_FINAL } else { FRAME_PRECOPY };
    let mut frame = Vec::with_capacity(total);
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&VERSION.to_le_bytes());
    frame.extend_from_slice(&flags.to_le_bytes());
    frame.extend_from_slice(&(total as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(rest);
    let crc = crc32(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    parse_stream(&frame);
});

/// Walks a stream of frames as the resuming side does, checking what an
/// accepted frame guarantees.
fn parse_stream(mut rest: &[u8]) {
    let _ = FrameHeader::peek(rest);
    while let Ok(frame) = Frame::parse(rest) {
        assert!(frame.len <= rest.len());
        assert!(usize::from(frame.identity.num_queues) <= MAX_QUEUES);
        assert_eq!(frame.queues().count(), usize::from(frame.num_queue_sections));
        if frame.is_final() {
            assert_eq!(frame.num_queue_sections, frame.identity.num_queues);
            assert!(frame.driver.is_some() && frame.config_msix_vector.is_some());
            let cfg = frame.device_config.map_or(0, <[u8]>::len);
            assert_eq!(cfg as u64, u64::from(frame.identity.device_config_len));
        }
        let _ = check_state_compat(&frame, &frame.identity);
        rest = &rest[frame.len..];
    }
}
