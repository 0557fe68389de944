// SPDX-License-Identifier: GPL-2.0
//! Builds the sources the way the kernel driver includes them: each file as a
//! `#[path]` module under one parent module, siblings reached by `super::`.

#![deny(missing_docs, unsafe_code)]

#[allow(dead_code)]
#[path = "../src"]
mod vmig {
    #[path = "cap_walker.rs"]
    pub mod cap_walker;
    #[path = "dirty_bitmap.rs"]
    pub mod dirty_bitmap;
    #[path = "mig_fsm.rs"]
    pub mod mig_fsm;
    #[path = "mig_stream.rs"]
    pub mod mig_stream;
    #[path = "virtio_pci_caps.rs"]
    pub mod virtio_pci_caps;
}

#[test]
fn included_modules_work() {
    let bars = [0u64; 6];
    let cfg = [0u8; 256];
    let caps = vmig::cap_walker::find_virtio_caps(&cfg[..], &bars).unwrap();
    assert_eq!(caps.common, None);
    assert_eq!(
        vmig::mig_fsm::next_step(
            vmig::mig_fsm::MigState::Running,
            vmig::mig_fsm::MigState::Stop,
            vmig::mig_fsm::MigFlags::ALL
        ),
        Ok(vmig::mig_fsm::MigState::RunningP2p)
    );
    let mut buf = [0u8; vmig::mig_stream::PRECOPY_FRAME_LEN];
    let id = vmig::mig_stream::DeviceIdentity::default();
    assert!(vmig::mig_stream::encode_precopy(&mut buf, &id).is_ok());
    assert!(vmig::mig_stream::Frame::parse(&buf).is_ok());
    let words = [core::sync::atomic::AtomicU64::new(1)];
    let range = vmig::dirty_bitmap::HarvestRange {
        iova: 0,
        length: 64 << 12,
        page_shift: 12,
        gra_shift: 12,
    };
    let mut n = 0;
    assert!(vmig::dirty_bitmap::harvest(&words, &range, |_, _| n += 1).is_ok());
    assert_eq!(n, 1);
}
