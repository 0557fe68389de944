// SPDX-License-Identifier: GPL-2.0

//! Virtio-pci transport extension.
//!
//! Finds and validates the virtio structures of a modern virtio-pci function, including the two
//! migration capabilities (memory dirty-pages tracker, device state), so that a driver operating
//! the device from outside the virtio core (a VFIO variant driver) reaches only regions whose
//! bounds were checked once, at probe.
//!
//! The validation logic is the host-tested `virtio_mig_core` crate's.
//!
//! C header: [`include/uapi/linux/virtio_pci.h`](srctree/include/uapi/linux/virtio_pci.h)

use crate::{
    device,
    io::{
        Io,
        Mmio,
        Region, //
    },
    pci,
    prelude::*, //
};
use virtio_mig_core::{
    cap_walker,
    virtio_pci_caps as regs, //
};

pub use virtio_mig_core::{
    cap_walker::{
        CapInfo,
        CapRegion,
        VirtioCaps, //
    },
    virtio_pci_caps,
    virtio_pci_caps::cfg_type_name,
};

/// Conventional config space of a bound PCI function, read through the PCI core accessors.
struct ConfigSpaceReader<'a>(pci::ConfigSpace<'a, pci::Normal>);

impl cap_walker::ConfigSpaceRead for ConfigSpaceReader<'_> {
    type Error = Error;

    fn read8(&self, off: u16) -> Result<u8> {
        self.0.try_read8(usize::from(off))
    }

    fn read32(&self, off: u16) -> Result<u32> {
        self.0.try_read32(usize::from(off))
    }
}

/// The validated virtio structures of a modern virtio-pci function.
///
/// # Invariants
///
/// Every region in `caps` lies inside a BAR that was present, with the size recorded in
/// `bar_sizes`, when the capabilities were walked.
#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    caps: VirtioCaps,
    bar_sizes: [u64; virtio_pci_caps::PCI_STD_NUM_BARS],
}

impl Capabilities {
    /// Walks the capability list of `pdev`, validating every virtio structure against the BAR
    /// sizes, and logs each capability found.
    ///
    /// Fails with `ENODEV` when the list is malformed or a structure a modern virtio-pci driver
    /// needs (common, notify, ISR) is missing.
    pub fn discover(pdev: &pci::Device<device::Bound>) -> Result<Self> {
        let mut bar_sizes = [0u64; virtio_pci_caps::PCI_STD_NUM_BARS];
        for (bar, size) in (0u32..).zip(bar_sizes.iter_mut()) {
            *size = pdev.resource_len(bar)?;
        }
        let reader = ConfigSpaceReader(pdev.config_space());
        let caps =
            cap_walker::walk(&reader, &bar_sizes, |cap| log_cap(pdev, cap)).map_err(|err| {
                dev_err!(pdev, "malformed capability list: {}\n", err.reason());
                ENODEV
            })?;
        if let Some(cfg_type) = caps.missing(&cap_walker::REQUIRED_MODERN) {
            dev_err!(pdev, "no {} capability\n", cfg_type_name(cfg_type));
            return Err(ENODEV);
        }
        // INVARIANT: `walk` checked every region against `bar_sizes`.
        Ok(Self { caps, bar_sizes })
    }

    /// The validated structures.
    pub fn caps(&self) -> &VirtioCaps {
        &self.caps
    }

    /// Size of `bar` when the capabilities were walked, 0 for an absent BAR.
    pub fn bar_size(&self, bar: u8) -> u64 {
        self.bar_sizes.get(usize::from(bar)).copied().unwrap_or(0)
    }
}

/// The registers of one virtio structure inside a mapped BAR.
///
/// Every access is checked against the structure's validated length and against the BAR
/// mapping, so a wrong offset is an error, never an access to a neighbouring structure.
pub struct CapWindow<'a> {
    io: Mmio<'a, Region>,
    region: CapRegion,
}

macro_rules! window_accessors {
    ($($read:ident, $try_read:ident, $write:ident, $try_write:ident, $ty:ty;)*) => {$(
        #[doc = concat!("Reads the `", stringify!($ty), "` register at `off` in the structure.")]
        pub fn $read(&self, off: u16) -> Result<$ty> {
            self.io.$try_read(self.offset(off, size_of::<$ty>())?)
        }

        #[doc = concat!("Writes the `", stringify!($ty), "` register at `off` in the structure.")]
        pub fn $write(&self, off: u16, value: $ty) -> Result {
            self.io.$try_write(value, self.offset(off, size_of::<$ty>())?)
        }
    )*};
}

impl<'a> CapWindow<'a> {
    /// The window of `region` in `io`, the mapping of BAR `region.bar`.
    pub fn new(io: Mmio<'a, Region>, region: CapRegion) -> Self {
        Self { io, region }
    }

    fn offset(&self, off: u16, width: usize) -> Result<usize> {
        // `width` is at most 8: the cast cannot truncate.
        if !self.region.contains(u32::from(off), width as u32) {
            return Err(EINVAL);
        }
        Ok(self.region.offset as usize + usize::from(off))
    }

    /// Length of the structure in bytes.
    pub fn len(&self) -> u32 {
        self.region.length
    }

    /// Whether the structure is empty.
    pub fn is_empty(&self) -> bool {
        self.region.length == 0
    }

    window_accessors! {
        read8, try_read8, write8, try_write8, u8;
        read16, try_read16, write16, try_write16, u16;
        read32, try_read32, write32, try_write32, u32;
    }

    /// Reads a 64-bit register as two 32-bit halves, low first (virtio allows 32-bit access).
    pub fn read64(&self, off: u16) -> Result<u64> {
        let lo = self.read32(off)?;
        let hi = self.read32(off.checked_add(4).ok_or(EINVAL)?)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// Writes a 64-bit register as two 32-bit halves, low first.
    pub fn write64(&self, off: u16, value: u64) -> Result {
        self.write32(off, value as u32)?;
        self.write32(off.checked_add(4).ok_or(EINVAL)?, (value >> 32) as u32)
    }
}

/// The common configuration structure (`struct virtio_pci_common_cfg`).
pub struct CommonCfg<'a>(CapWindow<'a>);

impl<'a> CommonCfg<'a> {
    /// The common configuration in `window`.
    pub fn new(window: CapWindow<'a>) -> Self {
        Self(window)
    }

    /// All 64 feature bits the device offers.
    pub fn device_features(&self) -> Result<u64> {
        self.0.write32(regs::COMMON_DEVICE_FEATURE_SELECT, 0)?;
        let lo = self.0.read32(regs::COMMON_DEVICE_FEATURE)?;
        self.0.write32(regs::COMMON_DEVICE_FEATURE_SELECT, 1)?;
        let hi = self.0.read32(regs::COMMON_DEVICE_FEATURE)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// All 64 feature bits the driver accepted.
    pub fn driver_features(&self) -> Result<u64> {
        self.0.write32(regs::COMMON_DRIVER_FEATURE_SELECT, 0)?;
        let lo = self.0.read32(regs::COMMON_DRIVER_FEATURE)?;
        self.0.write32(regs::COMMON_DRIVER_FEATURE_SELECT, 1)?;
        let hi = self.0.read32(regs::COMMON_DRIVER_FEATURE)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// Accepts `features`.
    pub fn set_driver_features(&self, features: u64) -> Result {
        self.0.write32(regs::COMMON_DRIVER_FEATURE_SELECT, 0)?;
        self.0
            .write32(regs::COMMON_DRIVER_FEATURE, features as u32)?;
        self.0.write32(regs::COMMON_DRIVER_FEATURE_SELECT, 1)?;
        self.0
            .write32(regs::COMMON_DRIVER_FEATURE, (features >> 32) as u32)
    }

    /// `config_msix_vector`.
    pub fn config_msix_vector(&self) -> Result<u16> {
        self.0.read16(regs::COMMON_CONFIG_MSIX_VECTOR)
    }

    /// Sets `config_msix_vector`.
    pub fn set_config_msix_vector(&self, vector: u16) -> Result {
        self.0.write16(regs::COMMON_CONFIG_MSIX_VECTOR, vector)
    }

    /// `num_queues`.
    pub fn num_queues(&self) -> Result<u16> {
        self.0.read16(regs::COMMON_NUM_QUEUES)
    }

    /// `device_status`.
    pub fn device_status(&self) -> Result<u8> {
        self.0.read8(regs::COMMON_DEVICE_STATUS)
    }

    /// Writes `device_status` (0 resets the device).
    pub fn set_device_status(&self, status: u8) -> Result {
        self.0.write8(regs::COMMON_DEVICE_STATUS, status)
    }

    /// `config_generation`.
    pub fn config_generation(&self) -> Result<u8> {
        self.0.read8(regs::COMMON_CONFIG_GENERATION)
    }

    /// Selects the queue the `queue_*` registers refer to.
    pub fn select_queue(&self, index: u16) -> Result {
        self.0.write16(regs::COMMON_QUEUE_SELECT, index)
    }

    /// Reads a 16-bit `queue_*` register of the selected queue (`COMMON_QUEUE_SIZE`, …).
    pub fn queue_reg16(&self, off: u16) -> Result<u16> {
        self.0.read16(off)
    }

    /// Writes a 16-bit `queue_*` register of the selected queue.
    pub fn set_queue_reg16(&self, off: u16, value: u16) -> Result {
        self.0.write16(off, value)
    }

    /// Reads a 64-bit queue address (`COMMON_QUEUE_DESC`, `_DRIVER`, `_DEVICE`).
    pub fn queue_addr(&self, off: u16) -> Result<u64> {
        self.0.read64(off)
    }

    /// Writes a 64-bit queue address.
    pub fn set_queue_addr(&self, off: u16, addr: u64) -> Result {
        self.0.write64(off, addr)
    }
}

/// The device state structure (`VIRTIO_PCI_CAP_DEVICE_STATE_CFG`): per-queue stop/resume and
/// the ring position.
pub struct DeviceStateCfg<'a>(CapWindow<'a>);

impl<'a> DeviceStateCfg<'a> {
    /// The device state structure in `window`.
    pub fn new(window: CapWindow<'a>) -> Self {
        Self(window)
    }

    /// Selects the queue the other registers refer to.
    pub fn select_queue(&self, index: u16) -> Result {
        self.0.write16(regs::STATE_QUEUE_SELECT, index)
    }

    /// `queue_status` of the selected queue: 1 running, 0 stopped.
    pub fn queue_status(&self) -> Result<u8> {
        self.0.read8(regs::STATE_QUEUE_STATUS)
    }

    /// Writes `queue_status`: 0 asks the device to stop the queue (it reads 0 once every
    /// in-flight request completed), 1 resumes it from `last_avail_idx`.
    pub fn set_queue_status(&self, status: u8) -> Result {
        self.0.write8(regs::STATE_QUEUE_STATUS, status)
    }

    /// `last_avail_idx` of the selected queue; only meaningful while the queue is stopped.
    pub fn last_avail_idx(&self) -> Result<u16> {
        self.0.read16(regs::STATE_LAST_AVAIL_IDX)
    }

    /// Sets `last_avail_idx` of the selected, stopped queue.
    pub fn set_last_avail_idx(&self, idx: u16) -> Result {
        self.0.write16(regs::STATE_LAST_AVAIL_IDX, idx)
    }
}

/// The memory dirty-pages tracker structure (`VIRTIO_PCI_CAP_MEMORY_TRACK_CFG`).
pub struct TrackerCfg<'a>(CapWindow<'a>);

impl<'a> TrackerCfg<'a> {
    /// The tracker structure in `window`.
    pub fn new(window: CapWindow<'a>) -> Self {
        Self(window)
    }

    /// `enable`: 1 while the device records its writes.
    pub fn enable(&self) -> Result<u8> {
        self.0.read8(regs::TRACK_ENABLE)
    }

    /// Writes `enable`.
    pub fn set_enable(&self, enable: u8) -> Result {
        self.0.write8(regs::TRACK_ENABLE, enable)
    }

    /// `gra_power`: each bit covers `2^(12 + gra_power)` bytes. The device may raise it.
    pub fn gra_power(&self) -> Result<u8> {
        self.0.read8(regs::TRACK_GRA_POWER)
    }

    /// Writes `gra_power`; read it back, the device may have raised it.
    pub fn set_gra_power(&self, power: u8) -> Result {
        self.0.write8(regs::TRACK_GRA_POWER, power)
    }

    /// Sets `bitmap_addr` and `bitmap_length` (bytes).
    pub fn set_bitmap(&self, addr: u64, length: u64) -> Result {
        self.0.write64(regs::TRACK_BITMAP_ADDR, addr)?;
        self.0.write64(regs::TRACK_BITMAP_LENGTH, length)
    }
}

fn log_cap(pdev: &pci::Device<device::Bound>, cap: &CapInfo) {
    match cap.virtio {
        Some(v) => dev_info!(
            pdev,
            "cap @{:#04x}: virtio {} (cfg_type {}) bar {} offset {:#x} length {:#x}\n",
            cap.pos,
            cfg_type_name(v.cfg_type),
            v.cfg_type,
            v.bar,
            v.offset,
            v.length
        ),
        None => dev_dbg!(pdev, "cap @{:#04x}: id {:#04x}\n", cap.pos, cap.cap_id),
    }
}

#[cfg(CONFIG_VIRTIO_VFIO_MIG_KUNIT_TEST)]
#[macros::kunit_tests(rust_virtio_pci_caps)]
mod tests {
    use virtio_mig_core::{
        cap_walker::{
            walk,
            WalkError, //
        },
        virtio_pci_caps as caps,
    };

    /// BAR sizes of the reference layout: everything lives in a 32 KiB BAR 4.
    const BARS: [u64; 6] = [0, 0x1000, 0, 0, 0x8000, 0];

    /// A config space with the virtio structures of the reference device layout.
    struct Image([u8; 256]);

    impl Image {
        fn new() -> Self {
            let mut image = Self([0; 256]);
            image.0[usize::from(caps::PCI_STATUS)] = caps::PCI_STATUS_CAP_LIST as u8;
            image.0[usize::from(caps::PCI_CAPABILITY_LIST)] = 0x40;
            let layout = [
                (caps::VIRTIO_PCI_CAP_COMMON_CFG, 0x0000, 0x38),
                (caps::VIRTIO_PCI_CAP_NOTIFY_CFG, 0x3000, 0x1000),
                (caps::VIRTIO_PCI_CAP_ISR_CFG, 0x1000, 1),
                (caps::VIRTIO_PCI_CAP_DEVICE_CFG, 0x2000, 0x3c),
                (caps::VIRTIO_PCI_CAP_MEMORY_TRACK_CFG, 0x4000, 24),
                (caps::VIRTIO_PCI_CAP_DEVICE_STATE_CFG, 0x5000, 8),
            ];
            let mut pos = 0x40;
            for (i, &(cfg_type, offset, length)) in layout.iter().enumerate() {
                let len = if cfg_type == caps::VIRTIO_PCI_CAP_NOTIFY_CFG {
                    20
                } else {
                    16
                };
                let next = if i + 1 == layout.len() { 0 } else { pos + 20 };
                image.cap(pos, next, len, cfg_type, offset, length);
                if cfg_type == caps::VIRTIO_PCI_CAP_NOTIFY_CFG {
                    image.0[pos + 16] = 4;
                }
                pos += 20;
            }
            image
        }

        /// Writes a virtio structure capability for a region of BAR 4.
        fn cap(&mut self, pos: usize, next: usize, len: u8, cfg_type: u8, off: u32, l: u32) {
            let c = &mut self.0[pos..pos + 16];
            c[..6].copy_from_slice(&[caps::PCI_CAP_ID_VNDR, next as u8, len, cfg_type, 4, 0]);
            c[8..12].copy_from_slice(&off.to_le_bytes());
            c[12..16].copy_from_slice(&l.to_le_bytes());
        }
    }

    #[test]
    fn finds_every_structure() {
        let image = Image::new();
        let mut seen = 0;
        let found = walk(&image.0[..], &BARS, |_| seen += 1);
        assert!(found.is_ok());
        let Ok(found) = found else { return };
        assert_eq!(seen, 6);
        assert_eq!(found.notify_off_multiplier, 4);
        let track = found.memory_track.map(|r| (r.bar, r.offset, r.length));
        assert_eq!(track, Some((4, 0x4000, 24)));
        let state = found.device_state.map(|r| (r.bar, r.offset, r.length));
        assert_eq!(state, Some((4, 0x5000, 8)));
        assert!(found.missing(&virtio_mig_core::cap_walker::REQUIRED_MODERN).is_none());
    }

    #[test]
    fn rejects_short_cap_len() {
        let mut image = Image::new();
        // The tracker capability (fifth in the list) claims to be 8 bytes long.
        image.0[0x40 + 4 * 20 + 2] = 8;
        assert!(matches!(
            walk(&image.0[..], &BARS, |_| {}),
            Err(WalkError::CapLenTooSmall { .. })
        ));
    }

    #[test]
    fn rejects_region_past_bar_end() {
        let mut image = Image::new();
        image.0[0x40 + 4 * 20 + 8..][..4].copy_from_slice(&0x7ff0u32.to_le_bytes());
        assert!(walk(&image.0[..], &BARS, |_| {}).is_err());
    }

    #[test]
    fn rejects_absent_bar() {
        let mut image = Image::new();
        image.0[0x40 + 4 * 20 + 4] = 2;
        assert!(walk(&image.0[..], &BARS, |_| {}).is_err());
    }

    #[test]
    fn rejects_loop() {
        let mut image = Image::new();
        // The last capability points back at the first.
        image.0[0x40 + 5 * 20 + 1] = 0x40;
        assert!(matches!(
            walk(&image.0[..], &BARS, |_| {}),
            Err(WalkError::Loop { .. })
        ));
    }
}
