// SPDX-License-Identifier: GPL-2.0

//! Constants and register layouts of virtio-pci capabilities.
//!
//! Covers the PCI configuration-space fields the capability walker needs, the
//! `struct virtio_pci_cap` layout, the virtio structure types (including the
//! two project-defined ones, [`VIRTIO_PCI_CAP_MEMORY_TRACK_CFG`] and
//! [`VIRTIO_PCI_CAP_DEVICE_STATE_CFG`]), and the registers of the common
//! configuration, memory tracker and device state structures ([`Reg`]).
//!
//! All multi-byte fields are little endian. The names of the values Linux
//! defines too are the C ones; the kernel checks them against its headers.

use core::marker::PhantomData;

// ---------------------------------------------------------------------------
// PCI configuration space.
// ---------------------------------------------------------------------------

/// Size of the conventional PCI configuration space, in bytes.
pub const PCI_CFG_SPACE_SIZE: u16 = 0x100;

/// Offset of the 16-bit PCI status register.
pub const PCI_STATUS: u16 = 0x06;

/// Bit of [`PCI_STATUS`] telling that a capability list is present.
pub const PCI_STATUS_CAP_LIST: u16 = 1 << 4;

/// Offset of the 8-bit capability pointer (first capability).
pub const PCI_CAPABILITY_LIST: u16 = 0x34;

/// Lowest offset a capability may live at (the standard header ends here).
pub const PCI_CAP_MIN_OFFSET: u16 = 0x40;

/// Offset of the capability id inside any PCI capability.
pub const PCI_CAP_LIST_ID: u16 = 0;

/// Offset of the next-capability pointer inside any PCI capability.
pub const PCI_CAP_LIST_NEXT: u16 = 1;

/// PCI capability id of a vendor-specific capability (all virtio structures).
pub const PCI_CAP_ID_VNDR: u8 = 0x09;

/// PCI capability id of MSI-X.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;

/// Number of standard BARs of a type 0 function.
pub const PCI_STD_NUM_BARS: usize = 6;

// ---------------------------------------------------------------------------
// Virtio structure types (`cfg_type`).
// ---------------------------------------------------------------------------

/// Common configuration structure.
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// Notification structure.
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// ISR status byte.
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
/// Device-specific configuration.
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// PCI configuration access window (the capability itself, not a BAR region).
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;
/// Shared memory region (uses the 64-bit `struct virtio_pci_cap64`).
pub const VIRTIO_PCI_CAP_SHARED_MEMORY_CFG: u8 = 8;
/// Vendor-specific data (`struct virtio_pci_vndr_data`, not a BAR region).
pub const VIRTIO_PCI_CAP_VENDOR_CFG: u8 = 9;
/// Memory dirty pages tracker (project-defined, see the device interface doc).
pub const VIRTIO_PCI_CAP_MEMORY_TRACK_CFG: u8 = 10;
/// Device state: per-queue stop/resume and ring index (project-defined).
pub const VIRTIO_PCI_CAP_DEVICE_STATE_CFG: u8 = 11;

/// Human readable name of a `cfg_type`, for log messages.
pub const fn cfg_type_name(cfg_type: u8) -> &'static str {
    match cfg_type {
        VIRTIO_PCI_CAP_COMMON_CFG => "common",
        VIRTIO_PCI_CAP_NOTIFY_CFG => "notify",
        VIRTIO_PCI_CAP_ISR_CFG => "isr",
        VIRTIO_PCI_CAP_DEVICE_CFG => "device",
        VIRTIO_PCI_CAP_PCI_CFG => "pci-cfg",
        VIRTIO_PCI_CAP_SHARED_MEMORY_CFG => "shared-memory",
        VIRTIO_PCI_CAP_VENDOR_CFG => "vendor",
        VIRTIO_PCI_CAP_MEMORY_TRACK_CFG => "memory-track",
        VIRTIO_PCI_CAP_DEVICE_STATE_CFG => "device-state",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------------------
// `struct virtio_pci_cap` and its extensions.
// ---------------------------------------------------------------------------

/// Offset of `cap_vndr` (the PCI capability id, [`PCI_CAP_ID_VNDR`]).
pub const VIRTIO_PCI_CAP_VNDR: u16 = 0;
/// Offset of `cap_next`.
pub const VIRTIO_PCI_CAP_NEXT: u16 = 1;
/// Offset of `cap_len` (length of the capability structure, in bytes).
pub const VIRTIO_PCI_CAP_LEN: u16 = 2;
/// Offset of `cfg_type`.
pub const VIRTIO_PCI_CAP_CFG_TYPE: u16 = 3;
/// Offset of `bar`.
pub const VIRTIO_PCI_CAP_BAR: u16 = 4;
/// Offset of `id` (distinguishes several capabilities of one type).
pub const VIRTIO_PCI_CAP_ID: u16 = 5;
/// Offset of the little-endian 32-bit `offset` within the BAR.
pub const VIRTIO_PCI_CAP_OFFSET: u16 = 8;
/// Offset of the little-endian 32-bit `length` of the structure.
pub const VIRTIO_PCI_CAP_LENGTH: u16 = 12;
/// Size of `struct virtio_pci_cap`; the minimum `cap_len` of any virtio cap.
pub const VIRTIO_PCI_CAP_SIZE: u8 = 16;

/// Offset of `notify_off_multiplier` in `struct virtio_pci_notify_cap`.
pub const VIRTIO_PCI_NOTIFY_CAP_MULT: u16 = 16;
/// Size of `struct virtio_pci_notify_cap`; minimum `cap_len` of a notify cap.
pub const VIRTIO_PCI_NOTIFY_CAP_SIZE: u8 = 20;

/// Offset of `offset_hi` in `struct virtio_pci_cap64`.
pub const VIRTIO_PCI_CAP64_OFFSET_HI: u16 = 16;
/// Offset of `length_hi` in `struct virtio_pci_cap64`.
pub const VIRTIO_PCI_CAP64_LENGTH_HI: u16 = 20;
/// Size of `struct virtio_pci_cap64`; minimum `cap_len` of a shared memory cap.
pub const VIRTIO_PCI_CAP64_SIZE: u8 = 24;

/// Offset of `pci_cfg_data` in `struct virtio_pci_cfg_cap`.
pub const VIRTIO_PCI_CFG_CAP_DATA: u16 = 16;
/// Size of `struct virtio_pci_cfg_cap`; minimum `cap_len` of a PCI cfg cap.
pub const VIRTIO_PCI_CFG_CAP_SIZE: u8 = 20;

/// Minimum `cap_len` for a capability of the given `cfg_type`.
pub const fn min_cap_len(cfg_type: u8) -> u8 {
    match cfg_type {
        VIRTIO_PCI_CAP_NOTIFY_CFG => VIRTIO_PCI_NOTIFY_CAP_SIZE,
        VIRTIO_PCI_CAP_PCI_CFG => VIRTIO_PCI_CFG_CAP_SIZE,
        VIRTIO_PCI_CAP_SHARED_MEMORY_CFG => VIRTIO_PCI_CAP64_SIZE,
        _ => VIRTIO_PCI_CAP_SIZE,
    }
}

// ---------------------------------------------------------------------------
// Registers of the virtio structures.
// ---------------------------------------------------------------------------

/// A register of a virtio structure: its offset from the start of the
/// structure, and its width, that of `T` (`u8`, `u16`, `u32` or `u64`).
///
/// Offsets live only in the register definitions below ([`common`],
/// [`tracker`], [`device_state`]); code that accesses a structure names the
/// register, never a number.
#[derive(Debug, PartialEq, Eq)]
pub struct Reg<T> {
    offset: u16,
    width: PhantomData<T>,
}

impl<T> Clone for Reg<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Reg<T> {}

impl<T> Reg<T> {
    /// The register at `offset` in its structure.
    pub const fn at(offset: u16) -> Self {
        Self {
            offset,
            width: PhantomData,
        }
    }

    /// Offset of the register from the start of its structure.
    pub const fn offset(self) -> u16 {
        self.offset
    }

    /// Width of the register in bytes.
    pub const fn width(self) -> u16 {
        // At most 8: the cast cannot truncate.
        size_of::<T>() as u16
    }
}

/// The common configuration structure (`struct virtio_pci_common_cfg` and
/// the modern tail). The `queue_*` registers are those of the queue
/// [`QUEUE_SELECT`](common::QUEUE_SELECT) selects.
pub mod common {
    use super::Reg;

    /// `le32 device_feature_select` (read-write): which 32 bits of the
    /// offered features [`DEVICE_FEATURE`] shows.
    pub const DEVICE_FEATURE_SELECT: Reg<u32> = Reg::at(0x00);
    /// `le32 device_feature` (read-only): 32 bits of the features the device
    /// offers.
    pub const DEVICE_FEATURE: Reg<u32> = Reg::at(0x04);
    /// `le32 driver_feature_select` (read-write): which 32 bits of the
    /// accepted features [`DRIVER_FEATURE`] shows.
    pub const DRIVER_FEATURE_SELECT: Reg<u32> = Reg::at(0x08);
    /// `le32 driver_feature` (read-write): 32 bits of the features the
    /// driver accepted.
    pub const DRIVER_FEATURE: Reg<u32> = Reg::at(0x0c);
    /// `le16 config_msix_vector` (read-write): MSI-X vector of configuration
    /// changes.
    pub const CONFIG_MSIX_VECTOR: Reg<u16> = Reg::at(0x10);
    /// `le16 num_queues` (read-only): number of virtqueues.
    pub const NUM_QUEUES: Reg<u16> = Reg::at(0x12);
    /// `u8 device_status` (read-write): [`DeviceStatus`](super::DeviceStatus)
    /// bits; writing 0 resets the device.
    pub const DEVICE_STATUS: Reg<u8> = Reg::at(0x14);
    /// `u8 config_generation` (read-only): changes whenever the device
    /// configuration does.
    pub const CONFIG_GENERATION: Reg<u8> = Reg::at(0x15);
    /// `le16 queue_select` (read-write): the queue the `queue_*` registers
    /// refer to.
    pub const QUEUE_SELECT: Reg<u16> = Reg::at(0x16);
    /// `le16 queue_size` (read-write): ring size; reads the maximum after a
    /// reset.
    pub const QUEUE_SIZE: Reg<u16> = Reg::at(0x18);
    /// `le16 queue_msix_vector` (read-write): MSI-X vector of the queue.
    pub const QUEUE_MSIX_VECTOR: Reg<u16> = Reg::at(0x1a);
    /// `le16 queue_enable` (read-write): 1 once the driver enabled the queue.
    pub const QUEUE_ENABLE: Reg<u16> = Reg::at(0x1c);
    /// `le16 queue_notify_off` (read-only): the queue's notification offset,
    /// in units of the notify capability's multiplier.
    pub const QUEUE_NOTIFY_OFF: Reg<u16> = Reg::at(0x1e);
    /// `le64 queue_desc` (read-write): descriptor table address, accessed as
    /// two dwords, low first.
    pub const QUEUE_DESC: Reg<u64> = Reg::at(0x20);
    /// `le64 queue_driver` (read-write): available ring address, as two
    /// dwords.
    pub const QUEUE_DRIVER: Reg<u64> = Reg::at(0x28);
    /// `le64 queue_device` (read-write): used ring address, as two dwords.
    pub const QUEUE_DEVICE: Reg<u64> = Reg::at(0x30);
    /// `le16 queue_notify_data` (read-only); only when the structure is long
    /// enough.
    pub const QUEUE_NOTIFY_DATA: Reg<u16> = Reg::at(0x38);
    /// `le16 queue_reset` (read-write); only when the structure is long
    /// enough.
    pub const QUEUE_RESET: Reg<u16> = Reg::at(0x3a);
    /// `le16 admin_queue_index` (read-only); only when the structure is long
    /// enough.
    pub const ADMIN_QUEUE_INDEX: Reg<u16> = Reg::at(0x3c);
    /// `le16 admin_queue_num` (read-only); only when the structure is long
    /// enough.
    pub const ADMIN_QUEUE_NUM: Reg<u16> = Reg::at(0x3e);

    /// Size of the base `struct virtio_pci_common_cfg`; the minimum length of
    /// the structure.
    pub const MIN_LEN: u32 = 0x38;
    /// Size of the structure including the modern tail
    /// (`queue_notify_data` … `admin_queue_num`).
    pub const FULL_LEN: u32 = 0x40;
}

/// Virtio device status bits (the `device_status` register).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStatus(pub u8);

impl DeviceStatus {
    /// The status of a reset device: no bit set.
    pub const RESET: Self = Self(0);
    /// The guest OS noticed the device.
    pub const ACKNOWLEDGE: Self = Self(1);
    /// The guest OS knows how to drive the device.
    pub const DRIVER: Self = Self(2);
    /// The driver is ready.
    pub const DRIVER_OK: Self = Self(4);
    /// Feature negotiation is complete.
    pub const FEATURES_OK: Self = Self(8);
    /// The device needs a reset.
    pub const NEEDS_RESET: Self = Self(0x40);
    /// The driver gave up on the device.
    pub const FAILED: Self = Self(0x80);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits of `self` that are also in `mask`.
    pub const fn intersection(self, mask: Self) -> Self {
        Self(self.0 & mask.0)
    }

    /// `self` without the bits of `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// `self` with the bits of `other` set too.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// MSI-X vector value meaning "no vector".
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// Feature bit `VIRTIO_F_RING_PACKED`: the driver negotiated packed
/// virtqueues.
pub const VIRTIO_F_RING_PACKED: u64 = 1 << 34;

// ---------------------------------------------------------------------------
// Minimum lengths of the other regions.
// ---------------------------------------------------------------------------

/// Minimum length of the notify region (one 16-bit notification).
pub const NOTIFY_MIN_LEN: u32 = 2;
/// Minimum length of the ISR region (one status byte).
pub const ISR_MIN_LEN: u32 = 1;
/// Minimum length of the device-specific region (it may be empty).
pub const DEVICE_CFG_MIN_LEN: u32 = 0;

/// Minimum region length for a known BAR-backed `cfg_type`, or `None` when the
/// type does not describe a BAR region this crate knows about.
pub const fn min_region_len(cfg_type: u8) -> Option<u32> {
    match cfg_type {
        VIRTIO_PCI_CAP_COMMON_CFG => Some(common::MIN_LEN),
        VIRTIO_PCI_CAP_NOTIFY_CFG => Some(NOTIFY_MIN_LEN),
        VIRTIO_PCI_CAP_ISR_CFG => Some(ISR_MIN_LEN),
        VIRTIO_PCI_CAP_DEVICE_CFG => Some(DEVICE_CFG_MIN_LEN),
        VIRTIO_PCI_CAP_MEMORY_TRACK_CFG => Some(tracker::LEN),
        VIRTIO_PCI_CAP_DEVICE_STATE_CFG => Some(device_state::LEN),
        _ => None,
    }
}

/// Required alignment of the region `offset` for a known BAR-backed
/// `cfg_type` (the widest register inside it), `1` for other types.
pub const fn region_align(cfg_type: u8) -> u32 {
    match cfg_type {
        VIRTIO_PCI_CAP_COMMON_CFG | VIRTIO_PCI_CAP_DEVICE_CFG => 4,
        VIRTIO_PCI_CAP_NOTIFY_CFG | VIRTIO_PCI_CAP_DEVICE_STATE_CFG => 2,
        VIRTIO_PCI_CAP_MEMORY_TRACK_CFG => 8,
        _ => 1,
    }
}

/// The memory dirty pages tracker structure (`cfg_type` 10).
pub mod tracker {
    use super::Reg;

    /// `u8 enable` (read-write): 1 starts tracking, 0 stops it; reads 0
    /// once the device stopped, and after a reset.
    pub const ENABLE: Reg<u8> = Reg::at(0);
    /// `u8 gra_power` (read-write): a bit covers `2^(12 + gra_power)` bytes.
    /// The device may raise it; read it back after writing.
    pub const GRA_POWER: Reg<u8> = Reg::at(1);
    /// `le32 {pasid:20, reserved:12}` (read-write): the PASID the device
    /// writes the bitmap with, set only when PASID is enabled.
    pub const PASID: Reg<u32> = Reg::at(4);
    /// `le64 bitmap_addr` (read-write): DMA address of the bitmap.
    pub const BITMAP_ADDR: Reg<u64> = Reg::at(8);
    /// `le64 bitmap_length` (read-write): bitmap length in bytes; the device
    /// sets no bit beyond it.
    pub const BITMAP_LENGTH: Reg<u64> = Reg::at(16);

    /// Size of the structure; its minimum length.
    pub const LEN: u32 = 24;
    /// Mask of the valid PASID bits in the `pasid` dword.
    pub const PASID_MASK: u32 = (1 << 20) - 1;
    /// Page shift of `gra_power == 0` (4 KiB).
    pub const BASE_PAGE_SHIFT: u32 = 12;
}

/// The device state structure (`cfg_type` 11).
pub mod device_state {
    use super::Reg;

    /// `le16 queue_select` (read-write): the queue the other registers refer
    /// to.
    pub const QUEUE_SELECT: Reg<u16> = Reg::at(0);
    /// `le16 last_avail_idx` (read-write): where the device resumes reading
    /// the available ring; accessed only while the queue is stopped.
    pub const LAST_AVAIL_IDX: Reg<u16> = Reg::at(2);
    /// `u8 queue_status` (read-write): [`QUEUE_RUNNING`] or
    /// [`QUEUE_STOPPED`]. Writing 0 asks the device to stop; it reads back 0
    /// once the requests in flight completed.
    pub const QUEUE_STATUS: Reg<u8> = Reg::at(4);

    /// Size of the structure (padded); its minimum length.
    pub const LEN: u32 = 8;
    /// `queue_status` of a stopped queue.
    pub const QUEUE_STOPPED: u8 = 0;
    /// `queue_status` of a running queue.
    pub const QUEUE_RUNNING: u8 = 1;
}

// ---------------------------------------------------------------------------
// Admin write-recording opcodes (provisional, see the design document).
// ---------------------------------------------------------------------------

/// Admin command: query write-recording capabilities (provisional).
pub const VIRTIO_ADMIN_CMD_WRITE_RECORD_CAP_QUERY: u16 = 0x13;
/// Admin command: start write recording for IOVA ranges (provisional).
pub const VIRTIO_ADMIN_CMD_WRITE_RECORD_START: u16 = 0x14;
/// Admin command: stop write recording (provisional).
pub const VIRTIO_ADMIN_CMD_WRITE_RECORD_STOP: u16 = 0x15;
/// Admin command: read and clear write records (provisional).
pub const VIRTIO_ADMIN_CMD_WRITE_RECORD_READ: u16 = 0x16;
