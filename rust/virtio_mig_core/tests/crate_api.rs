// SPDX-License-Identifier: GPL-2.0
//! The crate's API as its kernel users reach it, one call per module.

use virtio_mig_core as vmig;

#[test]
fn every_module_works_through_the_crate_root() {
    let bars = vmig::cap_walker::memory_bars([0; 6]);
    let cfg = [0u8; 256];
    let caps = vmig::cap_walker::find_virtio_caps(&cfg[..], &bars).unwrap();
    assert_eq!(caps.common, None);
    assert_eq!(
        vmig::mig_fsm::next_step(
            vmig::mig_fsm::State::Running,
            vmig::mig_fsm::State::Stop,
            vmig::mig_fsm::Flags::ALL
        ),
        Ok(vmig::mig_fsm::State::RunningP2p)
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
    assert!(vmig::dirty_bitmap::harvest_runs(&words, &range, |_, _| n += 1).is_ok());
    assert_eq!(n, 1);
    let mut hdr = [0u8; vmig::admin::HEADER_LEN];
    let h = vmig::admin::Header {
        opcode: vmig::admin::opcode::WRITE_RECORDS_READ,
        group_type: vmig::admin::group_type::SLOT,
        member_id: 1,
    };
    assert_eq!(h.encode(&mut hdr), Ok(vmig::admin::HEADER_LEN));
    assert_eq!(vmig::write_records::choose_page_size(1, 4096), Some(4096));
    let mut ranges = [vmig::write_records::IovaRange { start: 0, last: 0 }];
    assert_eq!(
        vmig::write_records::prepare_ranges(&mut ranges, 1, 4096),
        Ok(1)
    );
}
