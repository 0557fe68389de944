// SPDX-License-Identifier: GPL-2.0
//! Layout checks of the capability constants.

use virtio_mig_core::virtio_pci_caps::*;

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
        (COMMON_DEVICE_FEATURE_SELECT, 4),
        (COMMON_DEVICE_FEATURE, 4),
        (COMMON_DRIVER_FEATURE_SELECT, 4),
        (COMMON_DRIVER_FEATURE, 4),
        (COMMON_CONFIG_MSIX_VECTOR, 2),
        (COMMON_NUM_QUEUES, 2),
        (COMMON_DEVICE_STATUS, 1),
        (COMMON_CONFIG_GENERATION, 1),
        (COMMON_QUEUE_SELECT, 2),
        (COMMON_QUEUE_SIZE, 2),
        (COMMON_QUEUE_MSIX_VECTOR, 2),
        (COMMON_QUEUE_ENABLE, 2),
        (COMMON_QUEUE_NOTIFY_OFF, 2),
        (COMMON_QUEUE_DESC, 8),
        (COMMON_QUEUE_DRIVER, 8),
        (COMMON_QUEUE_DEVICE, 8),
        (COMMON_QUEUE_NOTIFY_DATA, 2),
        (COMMON_QUEUE_RESET, 2),
        (COMMON_ADMIN_QUEUE_INDEX, 2),
        (COMMON_ADMIN_QUEUE_NUM, 2),
    ];
    let mut next = 0;
    for (off, width) in fields {
        assert_eq!(off, next);
        assert_eq!(off % width, 0, "field at {off:#x} is misaligned");
        next = off + width;
        if off == COMMON_QUEUE_DEVICE {
            assert_eq!(u32::from(next), COMMON_CFG_MIN_LEN);
        }
    }
    assert_eq!(u32::from(next), COMMON_CFG_FULL_LEN);
}

#[test]
fn new_cap_layouts() {
    assert_eq!(TRACK_ENABLE, 0);
    assert_eq!(TRACK_GRA_POWER, 1);
    assert_eq!(TRACK_PASID, 4);
    assert_eq!(TRACK_BITMAP_ADDR, 8);
    assert_eq!(TRACK_BITMAP_LENGTH, 16);
    assert_eq!(MEMORY_TRACK_LEN, 24);
    assert_eq!(TRACK_PASID_MASK, 0xf_ffff);
    assert_eq!(STATE_QUEUE_SELECT, 0);
    assert_eq!(STATE_LAST_AVAIL_IDX, 2);
    assert_eq!(STATE_QUEUE_STATUS, 4);
    assert_eq!(DEVICE_STATE_LEN, 8);
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
