// SPDX-License-Identifier: GPL-2.0
//! Fixed numbers of the device model: PCI identity, BAR layout, capability
//! chain and the offsets of every register block.
//!
//! The kernel driver and the documentation rely on these values; they are
//! part of the device's contract and must not change.

/// PCI vendor id (Red Hat, Inc. / virtio).
pub const PCI_VENDOR_ID: u16 = 0x1af4;
/// PCI device id of a modern (non-transitional) virtio-blk device.
pub const PCI_DEVICE_ID: u16 = 0x1042;
/// PCI revision: 1 marks a modern virtio device.
pub const PCI_REVISION: u8 = 0x01;
/// Class code: mass storage controller, "other" subclass, programming interface 0.
pub const PCI_CLASS_CODE: u32 = 0x01_80_00;
/// Subsystem vendor id.
pub const PCI_SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
/// Subsystem id.
pub const PCI_SUBSYSTEM_ID: u16 = 0x1100;

/// Command register: Memory Space Enable. The function decodes its memory
/// BARs only while it is set (and the function is in D0).
pub const PCI_COMMAND_MEMORY: u16 = 0x0002;

/// Size of the conventional PCI configuration space.
pub const CONFIG_SPACE_SIZE: usize = 0x100;
/// Size of the PCI Express extended configuration space (used with `--pasid`).
pub const EXT_CONFIG_SPACE_SIZE: usize = 0x1000;

/// Index of the BAR holding every virtio register block.
pub const VIRTIO_BAR: u8 = 4;
/// Size of [`VIRTIO_BAR`] (64-bit, non-prefetchable memory).
pub const VIRTIO_BAR_SIZE: u64 = 0x8000;
/// Index of the BAR holding the MSI-X table and PBA.
pub const MSIX_BAR: u8 = 1;
/// Size of [`MSIX_BAR`] (32-bit memory).
pub const MSIX_BAR_SIZE: u64 = 0x1000;
/// Offset of the MSI-X table in [`MSIX_BAR`].
pub const MSIX_TABLE_OFFSET: u32 = 0x0;
/// Offset of the MSI-X pending bit array in [`MSIX_BAR`].
pub const MSIX_PBA_OFFSET: u32 = 0x800;
/// Size of one MSI-X table entry.
pub const MSIX_ENTRY_SIZE: u64 = 16;

/// Common configuration structure (`struct virtio_pci_common_cfg`).
pub const COMMON_CFG_OFFSET: u64 = 0x0000;
/// Length advertised for the common configuration structure.
pub const COMMON_CFG_LEN: u64 = 0x38;
/// Length of the owner's common configuration: up to `admin_queue_num`
/// (`struct virtio_pci_modern_common_cfg`, 64 bytes).
pub const OWNER_COMMON_CFG_LEN: u64 = 0x40;
/// ISR status byte.
pub const ISR_OFFSET: u64 = 0x1000;
/// Length of the ISR region.
pub const ISR_LEN: u64 = 1;
/// Device-specific configuration (`struct virtio_blk_config`).
pub const DEVICE_CFG_OFFSET: u64 = 0x2000;
/// Length of the device-specific configuration.
pub const DEVICE_CFG_LEN: u64 = 0x3c;
/// Offset of `writeback` in the device-specific configuration, the one
/// field the driver may write (`VIRTIO_BLK_F_CONFIG_WCE`).
pub const DEVICE_CFG_WRITEBACK: u64 = 0x20;
/// Notification area: queue `n` is kicked by writing at `NOTIFY_OFFSET + 4 * n`.
pub const NOTIFY_OFFSET: u64 = 0x3000;
/// Length of the notification area.
pub const NOTIFY_LEN: u64 = 0x1000;
/// `notify_off_multiplier` of the notify capability.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
/// Memory dirty pages tracker register block.
pub const MEMORY_TRACK_OFFSET: u64 = 0x4000;
/// Length of the memory dirty pages tracker register block.
pub const MEMORY_TRACK_LEN: u64 = 24;
/// Device state register block.
pub const DEVICE_STATE_OFFSET: u64 = 0x5000;
/// Length of the device state register block.
pub const DEVICE_STATE_LEN: u64 = 8;

/// `cfg_type` of the common configuration capability.
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// `cfg_type` of the notification capability.
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
/// `cfg_type` of the ISR capability.
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
/// `cfg_type` of the device-specific configuration capability.
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// `cfg_type` of the memory dirty pages tracker capability (new).
pub const VIRTIO_PCI_CAP_MEMORY_TRACK_CFG: u8 = 10;
/// `cfg_type` of the device state capability (new).
pub const VIRTIO_PCI_CAP_DEVICE_STATE_CFG: u8 = 11;

/// Offset of the first capability in configuration space.
pub const CAP_LIST_START: u8 = 0x40;
/// Length of a `struct virtio_pci_cap`.
pub const VIRTIO_CAP_LEN: u8 = 16;
/// Length of a `struct virtio_pci_notify_cap`.
pub const VIRTIO_NOTIFY_CAP_LEN: u8 = 20;
/// Length of the MSI-X capability.
pub const MSIX_CAP_LEN: u8 = 12;

/// Configuration space offset of the common configuration capability.
pub const CAP_COMMON_AT: u8 = CAP_LIST_START;
/// Configuration space offset of the notification capability.
pub const CAP_NOTIFY_AT: u8 = CAP_COMMON_AT + VIRTIO_CAP_LEN;
/// Configuration space offset of the ISR capability.
pub const CAP_ISR_AT: u8 = CAP_NOTIFY_AT + VIRTIO_NOTIFY_CAP_LEN;
/// Configuration space offset of the device configuration capability.
pub const CAP_DEVICE_AT: u8 = CAP_ISR_AT + VIRTIO_CAP_LEN;
/// Configuration space offset of the memory dirty pages tracker capability.
pub const CAP_MEMORY_TRACK_AT: u8 = CAP_DEVICE_AT + VIRTIO_CAP_LEN;
/// Configuration space offset of the device state capability.
pub const CAP_DEVICE_STATE_AT: u8 = CAP_MEMORY_TRACK_AT + VIRTIO_CAP_LEN;
/// Configuration space offset of the MSI-X capability.
pub const CAP_MSIX_AT: u8 = CAP_DEVICE_STATE_AT + VIRTIO_CAP_LEN;
/// Configuration space offset of the PCI Express capability.
pub const CAP_PCIE_AT: u8 = CAP_MSIX_AT + MSIX_CAP_LEN;
/// Length of the PCI Express capability (version 2).
pub const PCIE_CAP_LEN: u8 = 0x3c;
/// Configuration space offset of the PCI Power Management capability (absent
/// with `--fault-no-reset`).
pub const CAP_PM_AT: u8 = CAP_PCIE_AT + PCIE_CAP_LEN;
/// Length of the PCI Power Management capability.
pub const PM_CAP_LEN: u8 = 8;
/// Extended configuration space offset of the PASID extended capability.
pub const EXT_CAP_PASID_AT: u16 = 0x100;
/// Maximum PASID width (bits) the device supports.
pub const PASID_WIDTH: u8 = 20;
/// Length of the PASID extended capability.
pub const EXT_CAP_PASID_LEN: u16 = 8;
/// Extended configuration space offset of the ACS extended capability
/// (with `--owner-socket`): first, or right after the PASID capability.
pub const fn ext_cap_acs_at(pasid: bool) -> u16 {
    if pasid {
        EXT_CAP_PASID_AT + EXT_CAP_PASID_LEN
    } else {
        EXT_CAP_PASID_AT
    }
}
/// ACS capabilities: Source Validation, P2P Request Redirect, P2P
/// Completion Redirect, Upstream Forwarding. The same bits of ACS Control
/// are writable (what Linux enables, and requires for its own IOMMU group).
pub const ACS_CAP: u16 = 0x001d;
/// Header type bit: multi-function device.
pub const PCI_HEADER_TYPE_MULTI_FUNCTION: u8 = 0x80;

/// Request queues of the owner function.
pub const OWNER_REQUEST_QUEUES: u16 = 1;
/// Index of the owner's admin virtqueue (`admin_queue_index`).
pub const OWNER_ADMIN_QUEUE_INDEX: u16 = OWNER_REQUEST_QUEUES;
/// Number of admin virtqueues (`admin_queue_num`).
pub const OWNER_ADMIN_QUEUE_NUM: u16 = 1;
/// Serial of the owner function's (inert) block device.
pub const OWNER_SERIAL: &str = "devsim-owner";

/// PCI capability id: power management.
pub const PCI_CAP_ID_PM: u8 = 0x01;
/// PCI capability id: vendor specific.
pub const PCI_CAP_ID_VNDR: u8 = 0x09;
/// PCI capability id: MSI-X.
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// PCI capability id: PCI Express.
pub const PCI_CAP_ID_EXP: u8 = 0x10;
/// PCI Express extended capability id: PASID.
pub const PCI_EXT_CAP_ID_PASID: u16 = 0x1b;
/// PCI Express extended capability id: Access Control Services.
pub const PCI_EXT_CAP_ID_ACS: u16 = 0x0d;

/// Power Management Capabilities (PMC): version 3 (PCI PM 1.2), no D1/D2,
/// no PME, no auxiliary current.
pub const PM_PMC: u16 = 0x0003;
/// PMCSR power state field (bits 1:0).
pub const PM_STATE_MASK: u16 = 0x0003;
/// PMCSR power state D0.
pub const PM_STATE_D0: u8 = 0;
/// PMCSR power state D3hot.
pub const PM_STATE_D3HOT: u8 = 3;
/// PMCSR No_Soft_Reset (bit 3): clear, so D3hot to D0 resets the function.
pub const PM_NO_SOFT_RESET: u16 = 0x0008;

/// PCI Express Device Capabilities: Role-Based Error Reporting (bit 15).
pub const PCIE_DEVCAP_RBER: u32 = 1 << 15;
/// PCI Express Device Capabilities: Function Level Reset capable (bit 28).
pub const PCIE_DEVCAP_FLR: u32 = 1 << 28;
/// PCI Express Device Control: Initiate Function Level Reset (bit 15).
pub const PCIE_DEVCTL_BCR_FLR: u16 = 1 << 15;
/// PCI Express Device Control after reset: relaxed ordering and no snoop
/// enabled, 128-byte payload, 512-byte read requests.
pub const PCIE_DEVCTL_DEFAULT: u16 = 0x2810;
/// PCI Express Link Capabilities: 2.5 GT/s, x1.
pub const PCIE_LNKCAP: u32 = 0x0000_0011;
/// PCI Express Link Status: 2.5 GT/s, x1.
pub const PCIE_LNKSTA: u16 = 0x0011;

/// Longest a function-level reset waits for requests in flight to complete
/// before abandoning them (below QEMU's 5 s vfio-user message timeout).
pub const RESET_DRAIN_TIMEOUT_MS: u64 = 2000;

/// Size of a block device sector.
pub const SECTOR_SIZE: u64 = 512;
/// Smallest tracker page: bit `n` covers `n << (TRACK_PAGE_SHIFT + gra_power)`.
pub const TRACK_PAGE_SHIFT: u32 = 12;
/// Largest `gra_power` the device accepts (pages of 2^63 bytes).
pub const MAX_GRA_POWER: u8 = 63 - TRACK_PAGE_SHIFT as u8;

/// Virtio "no vector" value for MSI-X vector registers.
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// The region a BAR offset falls in, used for dispatch and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Area {
    /// PCI configuration space.
    Config,
    /// Common configuration structure.
    Common,
    /// ISR status.
    Isr,
    /// Device-specific configuration.
    Device,
    /// Notification area.
    Notify,
    /// Memory dirty pages tracker.
    MemoryTrack,
    /// Device state.
    DeviceState,
    /// MSI-X table and PBA.
    Msix,
    /// Anything not backed by a register block.
    Unassigned,
}

impl Area {
    /// Every area, in the order statistics are printed.
    pub const ALL: [Area; 9] = [
        Area::Config,
        Area::Common,
        Area::Isr,
        Area::Device,
        Area::Notify,
        Area::MemoryTrack,
        Area::DeviceState,
        Area::Msix,
        Area::Unassigned,
    ];

    /// Short name used in statistics keys.
    pub fn name(self) -> &'static str {
        match self {
            Area::Config => "config",
            Area::Common => "common",
            Area::Isr => "isr",
            Area::Device => "device",
            Area::Notify => "notify",
            Area::MemoryTrack => "memory_track",
            Area::DeviceState => "device_state",
            Area::Msix => "msix",
            Area::Unassigned => "unassigned",
        }
    }

    /// Classifies an access at `offset` of the virtio BAR. Returns the area
    /// and the offset relative to the start of that area.
    pub fn of_virtio_bar(offset: u64) -> (Area, u64) {
        Self::of_virtio_bar_with(offset, COMMON_CFG_LEN)
    }

    /// [`Area::of_virtio_bar`] for a function whose common configuration is
    /// `common_len` bytes long.
    pub fn of_virtio_bar_with(offset: u64, common_len: u64) -> (Area, u64) {
        let blocks = [
            (COMMON_CFG_OFFSET, common_len, Area::Common),
            (ISR_OFFSET, ISR_LEN, Area::Isr),
            (DEVICE_CFG_OFFSET, DEVICE_CFG_LEN, Area::Device),
            (NOTIFY_OFFSET, NOTIFY_LEN, Area::Notify),
            (MEMORY_TRACK_OFFSET, MEMORY_TRACK_LEN, Area::MemoryTrack),
            (DEVICE_STATE_OFFSET, DEVICE_STATE_LEN, Area::DeviceState),
        ];
        for (start, len, area) in blocks {
            if offset >= start && offset < start + len {
                return (area, offset - start);
            }
        }
        (Area::Unassigned, offset)
    }
}
