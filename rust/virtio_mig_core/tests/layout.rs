// SPDX-License-Identifier: GPL-2.0
//! Layout checks of the capability constants and register definitions.

use virtio_mig_core::layout::*;

#[test]
fn cfg_type_values() {
    assert_eq!(VIRTIO_PCI_CAP_COMMON_CFG, 1);
    assert_eq!(VIRTIO_PCI_CAP_NOTIFY_CFG, 2);
    assert_eq!(VIRTIO_PCI_CAP_ISR_CFG, 3);
    assert_eq!(VIRTIO_PCI_CAP_DEVICE_CFG, 4);
    assert_eq!(VIRTIO_PCI_CAP_PCI_CFG, 5);
    assert_eq!(VIRTIO_PCI_CAP_SHARED_MEMORY_CFG, 8);
    assert_eq!(VIRTIO_PCI_CAP_VENDOR_CFG, 9);
    assert_eq!(VIRTIO_PCI_CAP_MEMORY_TRACK_CFG, 10);
    assert_eq!(VIRTIO_PCI_CAP_DEVICE_STATE_CFG, 11);
    assert_eq!(cfg_type_name(10), "memory-track");
    assert_eq!(cfg_type_name(77), "unknown");
}

#[test]
fn common_cfg_layout_is_packed_and_ordered() {
    // (offset, width) of every field in declaration order.
    let fields: [(u16, u16); 20] = [
        (common::DEVICE_FEATURE_SELECT.offset(), 4),
        (common::DEVICE_FEATURE.offset(), 4),
        (common::DRIVER_FEATURE_SELECT.offset(), 4),
        (common::DRIVER_FEATURE.offset(), 4),
        (common::CONFIG_MSIX_VECTOR.offset(), 2),
        (common::NUM_QUEUES.offset(), 2),
        (common::DEVICE_STATUS.offset(), 1),
        (common::CONFIG_GENERATION.offset(), 1),
        (common::QUEUE_SELECT.offset(), 2),
        (common::QUEUE_SIZE.offset(), 2),
        (common::QUEUE_MSIX_VECTOR.offset(), 2),
        (common::QUEUE_ENABLE.offset(), 2),
        (common::QUEUE_NOTIFY_OFF.offset(), 2),
        (common::QUEUE_DESC.offset(), 8),
        (common::QUEUE_DRIVER.offset(), 8),
        (common::QUEUE_DEVICE.offset(), 8),
        (common::QUEUE_NOTIFY_DATA.offset(), 2),
        (common::QUEUE_RESET.offset(), 2),
        (common::ADMIN_QUEUE_INDEX.offset(), 2),
        (common::ADMIN_QUEUE_NUM.offset(), 2),
    ];
    let mut next = 0;
    for (off, width) in fields {
        assert_eq!(off, next);
        assert_eq!(off % width, 0, "field at {off:#x} is misaligned");
        next = off + width;
        if off == common::QUEUE_DEVICE.offset() {
            assert_eq!(u32::from(next), common::MIN_LEN);
        }
    }
    assert_eq!(u32::from(next), common::FULL_LEN);
}

#[test]
fn new_cap_layouts() {
    assert_eq!(tracker::ENABLE.offset(), 0);
    assert_eq!(tracker::GRA_POWER.offset(), 1);
    assert_eq!(tracker::PASID.offset(), 4);
    assert_eq!(tracker::BITMAP_ADDR.offset(), 8);
    assert_eq!(tracker::BITMAP_LENGTH.offset(), 16);
    assert_eq!(tracker::LEN, 24);
    assert_eq!(tracker::PASID_MASK, 0xf_ffff);
    assert_eq!(device_state::QUEUE_SELECT.offset(), 0);
    assert_eq!(device_state::LAST_AVAIL_IDX.offset(), 2);
    assert_eq!(device_state::QUEUE_STATUS.offset(), 4);
    assert_eq!(device_state::LEN, 8);
}

#[test]
fn minimum_lengths() {
    assert_eq!(min_cap_len(VIRTIO_PCI_CAP_COMMON_CFG), 16);
    assert_eq!(min_cap_len(VIRTIO_PCI_CAP_NOTIFY_CFG), 20);
    assert_eq!(min_cap_len(VIRTIO_PCI_CAP_SHARED_MEMORY_CFG), 24);
    assert_eq!(min_region_len(VIRTIO_PCI_CAP_COMMON_CFG), Some(0x38));
    assert_eq!(min_region_len(VIRTIO_PCI_CAP_NOTIFY_CFG), Some(2));
    assert_eq!(min_region_len(VIRTIO_PCI_CAP_ISR_CFG), Some(1));
    assert_eq!(min_region_len(VIRTIO_PCI_CAP_DEVICE_CFG), Some(0));
    assert_eq!(min_region_len(VIRTIO_PCI_CAP_MEMORY_TRACK_CFG), Some(24));
    assert_eq!(min_region_len(VIRTIO_PCI_CAP_DEVICE_STATE_CFG), Some(8));
    assert_eq!(min_region_len(VIRTIO_PCI_CAP_PCI_CFG), None);
    assert_eq!(min_region_len(VIRTIO_PCI_CAP_VENDOR_CFG), None);
}

#[test]
fn register_widths() {
    assert_eq!(common::DEVICE_FEATURE.width(), 4);
    assert_eq!(common::NUM_QUEUES.width(), 2);
    assert_eq!(common::DEVICE_STATUS.width(), 1);
    assert_eq!(common::QUEUE_DESC.width(), 8);
    assert_eq!(tracker::BITMAP_ADDR.width(), 8);
    assert_eq!(device_state::QUEUE_STATUS.width(), 1);
}

#[test]
fn device_status_bits() {
    let status = DeviceStatus::ACKNOWLEDGE
        .union(DeviceStatus::DRIVER)
        .union(DeviceStatus::FEATURES_OK)
        .union(DeviceStatus::DRIVER_OK);
    assert_eq!(status, DeviceStatus(0x0f));
    assert!(status.contains(DeviceStatus::FEATURES_OK));
    assert!(!status.contains(DeviceStatus::FAILED));
    assert_eq!(
        status.difference(DeviceStatus::DRIVER_OK),
        DeviceStatus(0x0b)
    );
    assert_eq!(
        status.intersection(DeviceStatus::ACKNOWLEDGE.union(DeviceStatus::DRIVER)),
        DeviceStatus(0x03)
    );
}
