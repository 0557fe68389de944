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
    bindings,
    device,
    io::{
        Io,
        Mmio,
        Region, //
    },
    pci,
    prelude::*, //
};
use core::mem::offset_of;
use virtio_mig_core::{
    cap_walker::{
        self,
        Bar,
        Bars,
        CapFault,
        CapInfo,
        VirtioCaps, //
    },
    layout::{
        self,
        common,
        device_state,
        tracker,
        Reg, //
    },
};

pub use virtio_mig_core::{
    cap_walker::CapRegion,
    layout::DeviceStatus,
    mig_stream::Selectors, //
};

// The constants Linux defines too must be its values.
const _: () = {
    use bindings as b;

    assert!(layout::PCI_CFG_SPACE_SIZE as u32 == b::PCI_CFG_SPACE_SIZE);
    assert!(layout::PCI_STATUS as u32 == b::PCI_STATUS);
    assert!(layout::PCI_STATUS_CAP_LIST as u32 == b::PCI_STATUS_CAP_LIST);
    assert!(layout::PCI_CAPABILITY_LIST as u32 == b::PCI_CAPABILITY_LIST);
    assert!(layout::PCI_CAP_LIST_ID as u32 == b::PCI_CAP_LIST_ID);
    assert!(layout::PCI_CAP_LIST_NEXT as u32 == b::PCI_CAP_LIST_NEXT);
    assert!(layout::PCI_CAP_ID_VNDR as u32 == b::PCI_CAP_ID_VNDR);
    assert!(layout::PCI_CAP_ID_MSIX as u32 == b::PCI_CAP_ID_MSIX);
    assert!(layout::PCI_STD_NUM_BARS as u32 == b::PCI_STD_NUM_BARS);

    assert!(layout::VIRTIO_PCI_CAP_COMMON_CFG as u32 == b::VIRTIO_PCI_CAP_COMMON_CFG);
    assert!(layout::VIRTIO_PCI_CAP_NOTIFY_CFG as u32 == b::VIRTIO_PCI_CAP_NOTIFY_CFG);
    assert!(layout::VIRTIO_PCI_CAP_ISR_CFG as u32 == b::VIRTIO_PCI_CAP_ISR_CFG);
    assert!(layout::VIRTIO_PCI_CAP_DEVICE_CFG as u32 == b::VIRTIO_PCI_CAP_DEVICE_CFG);
    assert!(layout::VIRTIO_PCI_CAP_PCI_CFG as u32 == b::VIRTIO_PCI_CAP_PCI_CFG);
    assert!(layout::VIRTIO_PCI_CAP_SHARED_MEMORY_CFG as u32 == b::VIRTIO_PCI_CAP_SHARED_MEMORY_CFG);
    assert!(layout::VIRTIO_PCI_CAP_VENDOR_CFG as u32 == b::VIRTIO_PCI_CAP_VENDOR_CFG);

    assert!(layout::VIRTIO_PCI_CAP_VNDR as u32 == b::VIRTIO_PCI_CAP_VNDR);
    assert!(layout::VIRTIO_PCI_CAP_NEXT as u32 == b::VIRTIO_PCI_CAP_NEXT);
    assert!(layout::VIRTIO_PCI_CAP_LEN as u32 == b::VIRTIO_PCI_CAP_LEN);
    assert!(layout::VIRTIO_PCI_CAP_CFG_TYPE as u32 == b::VIRTIO_PCI_CAP_CFG_TYPE);
    assert!(layout::VIRTIO_PCI_CAP_BAR as u32 == b::VIRTIO_PCI_CAP_BAR);
    assert!(layout::VIRTIO_PCI_CAP_ID as usize == offset_of!(b::virtio_pci_cap, id));
    assert!(layout::VIRTIO_PCI_CAP_OFFSET as u32 == b::VIRTIO_PCI_CAP_OFFSET);
    assert!(layout::VIRTIO_PCI_CAP_LENGTH as u32 == b::VIRTIO_PCI_CAP_LENGTH);
    assert!(layout::VIRTIO_PCI_CAP_SIZE as usize == size_of::<b::virtio_pci_cap>());
    assert!(layout::VIRTIO_PCI_NOTIFY_CAP_MULT as u32 == b::VIRTIO_PCI_NOTIFY_CAP_MULT);
    assert!(layout::VIRTIO_PCI_NOTIFY_CAP_SIZE as usize == size_of::<b::virtio_pci_notify_cap>());
    assert!(
        layout::VIRTIO_PCI_CAP64_OFFSET_HI as usize == offset_of!(b::virtio_pci_cap64, offset_hi)
    );
    assert!(
        layout::VIRTIO_PCI_CAP64_LENGTH_HI as usize == offset_of!(b::virtio_pci_cap64, length_hi)
    );
    assert!(layout::VIRTIO_PCI_CAP64_SIZE as usize == size_of::<b::virtio_pci_cap64>());
    assert!(
        layout::VIRTIO_PCI_CFG_CAP_DATA as usize == offset_of!(b::virtio_pci_cfg_cap, pci_cfg_data)
    );
    assert!(layout::VIRTIO_PCI_CFG_CAP_SIZE as usize == size_of::<b::virtio_pci_cfg_cap>());

    assert!(common::DEVICE_FEATURE_SELECT.offset() as u32 == b::VIRTIO_PCI_COMMON_DFSELECT);
    assert!(common::DEVICE_FEATURE.offset() as u32 == b::VIRTIO_PCI_COMMON_DF);
    assert!(common::DRIVER_FEATURE_SELECT.offset() as u32 == b::VIRTIO_PCI_COMMON_GFSELECT);
    assert!(common::DRIVER_FEATURE.offset() as u32 == b::VIRTIO_PCI_COMMON_GF);
    assert!(common::CONFIG_MSIX_VECTOR.offset() as u32 == b::VIRTIO_PCI_COMMON_MSIX);
    assert!(common::NUM_QUEUES.offset() as u32 == b::VIRTIO_PCI_COMMON_NUMQ);
    assert!(common::DEVICE_STATUS.offset() as u32 == b::VIRTIO_PCI_COMMON_STATUS);
    assert!(common::CONFIG_GENERATION.offset() as u32 == b::VIRTIO_PCI_COMMON_CFGGENERATION);
    assert!(common::QUEUE_SELECT.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_SELECT);
    assert!(common::QUEUE_SIZE.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_SIZE);
    assert!(common::QUEUE_MSIX_VECTOR.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_MSIX);
    assert!(common::QUEUE_ENABLE.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_ENABLE);
    assert!(common::QUEUE_NOTIFY_OFF.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_NOFF);
    assert!(common::QUEUE_DESC.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_DESCLO);
    assert!(common::QUEUE_DRIVER.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_AVAILLO);
    assert!(common::QUEUE_DEVICE.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_USEDLO);
    assert!(common::QUEUE_NOTIFY_DATA.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_NDATA);
    assert!(common::QUEUE_RESET.offset() as u32 == b::VIRTIO_PCI_COMMON_Q_RESET);
    assert!(common::ADMIN_QUEUE_INDEX.offset() as u32 == b::VIRTIO_PCI_COMMON_ADM_Q_IDX);
    assert!(common::ADMIN_QUEUE_NUM.offset() as u32 == b::VIRTIO_PCI_COMMON_ADM_Q_NUM);
    assert!(common::MIN_LEN as usize == size_of::<b::virtio_pci_common_cfg>());

    assert!(DeviceStatus::ACKNOWLEDGE.0 as u32 == b::VIRTIO_CONFIG_S_ACKNOWLEDGE);
    assert!(DeviceStatus::DRIVER.0 as u32 == b::VIRTIO_CONFIG_S_DRIVER);
    assert!(DeviceStatus::DRIVER_OK.0 as u32 == b::VIRTIO_CONFIG_S_DRIVER_OK);
    assert!(DeviceStatus::FEATURES_OK.0 as u32 == b::VIRTIO_CONFIG_S_FEATURES_OK);
    assert!(DeviceStatus::NEEDS_RESET.0 as u32 == b::VIRTIO_CONFIG_S_NEEDS_RESET);
    assert!(DeviceStatus::FAILED.0 as u32 == b::VIRTIO_CONFIG_S_FAILED);
    assert!(layout::VIRTIO_MSI_NO_VECTOR as u32 == b::VIRTIO_MSI_NO_VECTOR);
    assert!(layout::VIRTIO_F_RING_PACKED == 1 << b::VIRTIO_F_RING_PACKED);
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

/// The BARs of `pdev` that decode I/O port space, one bit per BAR index.
fn io_bars(pdev: &pci::Device<device::Bound>) -> u32 {
    // SAFETY: `pdev` is a valid, bound PCI device; `pci_select_bars` only reads the flags of its
    // resources.
    let mask =
        unsafe { bindings::pci_select_bars(pdev.as_raw(), bindings::IORESOURCE_IO as c_ulong) };
    // CAST: one bit per resource of the device (17 of them), never the sign bit.
    mask as u32
}

// The walker's explanations of the capabilities it leaves out, for the kernel's log macros.
impl crate::fmt::Display for CapFault {
    fn fmt(&self, f: &mut crate::fmt::Formatter<'_>) -> crate::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}

/// The validated virtio structures of a modern virtio-pci function.
///
/// # Invariants
///
/// Every region in `found` lies inside a memory BAR that was present, with the size recorded in
/// `bars`, when the capabilities were walked.
#[derive(Clone, Copy, Debug)]
pub struct Capabilities {
    found: VirtioCaps,
    bars: Bars,
}

impl Capabilities {
    /// Walks the capability list of `pdev`, validating every virtio structure against the BARs,
    /// and logs each capability found.
    ///
    /// Fails with `ENODEV` when the list is malformed, when the common, notify, ISR or
    /// device-specific structure is malformed, or when one a modern virtio-pci driver needs
    /// (common, notify, ISR) is missing. Any other malformed capability is left out, its
    /// facility absent: see [`Capabilities::ignored`].
    pub fn discover(pdev: &pci::Device<device::Bound>) -> Result<Self> {
        let io = io_bars(pdev);
        let mut bars = [Bar::ABSENT; layout::PCI_STD_NUM_BARS];
        for (index, bar) in (0u32..).zip(bars.iter_mut()) {
            let size = pdev.resource_len(index)?;
            *bar = if io & (1 << index) != 0 {
                Bar::io(size)
            } else {
                Bar::memory(size)
            };
        }
        let reader = ConfigSpaceReader(pdev.config_space());
        let found = cap_walker::walk(&reader, &bars, |cap| log_cap(pdev, cap)).map_err(|err| {
            dev_err!(pdev, "malformed capability list: {}\n", err.reason());
            ENODEV
        })?;
        if let Some(cfg_type) = found.missing(&cap_walker::REQUIRED_MODERN) {
            dev_err!(pdev, "no {} capability\n", layout::cfg_type_name(cfg_type));
            return Err(ENODEV);
        }
        // INVARIANT: `walk` checked every region against `bars`.
        Ok(Self { found, bars })
    }

    /// The malformed capabilities [`Capabilities::discover`] left out, for the driver to log.
    pub fn ignored(&self) -> impl Iterator<Item = &CapFault> {
        self.found.ignored()
    }

    /// The common configuration structure (always present).
    pub fn common(&self) -> Option<CapRegion> {
        self.found.common
    }

    /// The notification area (always present).
    pub fn notify(&self) -> Option<CapRegion> {
        self.found.notify
    }

    /// `notify_off_multiplier` of the notification area.
    pub fn notify_off_multiplier(&self) -> u32 {
        self.found.notify_off_multiplier
    }

    /// The device-specific configuration, if the device has one.
    pub fn device(&self) -> Option<CapRegion> {
        self.found.device
    }

    /// The memory dirty-pages tracker, if the device has one.
    pub fn memory_track(&self) -> Option<CapRegion> {
        self.found.memory_track
    }

    /// The device state structure, if the device has one.
    pub fn device_state(&self) -> Option<CapRegion> {
        self.found.device_state
    }

    /// Size of `bar` when the capabilities were walked, 0 for an absent BAR.
    pub fn bar_size(&self, bar: u8) -> u64 {
        self.bars.get(usize::from(bar)).map_or(0, |bar| bar.size)
    }
}

/// A register width a [`CapWindow`] can access: 8, 16, 32 bits, or 64 bits as two 32-bit
/// halves, low first (virtio allows drivers 32-bit accesses only).
pub trait RegWidth: Copy {
    /// Reads the register at byte `off` of `io`.
    fn read(io: &Mmio<'_, Region>, off: usize) -> Result<Self>;

    /// Writes `value` to the register at byte `off` of `io`.
    fn write(io: &Mmio<'_, Region>, off: usize, value: Self) -> Result;
}

macro_rules! reg_width {
    ($($ty:ty, $try_read:ident, $try_write:ident;)*) => {$(
        impl RegWidth for $ty {
            fn read(io: &Mmio<'_, Region>, off: usize) -> Result<Self> {
                io.$try_read(off)
            }

            fn write(io: &Mmio<'_, Region>, off: usize, value: Self) -> Result {
                io.$try_write(value, off)
            }
        }
    )*};
}

reg_width! {
    u8, try_read8, try_write8;
    u16, try_read16, try_write16;
    u32, try_read32, try_write32;
}

// The virtio specification lets a driver access a 64-bit field as a whole or as two 32-bit
// halves; one access is half the round trips.
#[cfg(CONFIG_64BIT)]
reg_width! {
    u64, try_read64, try_write64;
}

#[cfg(not(CONFIG_64BIT))]
impl RegWidth for u64 {
    fn read(io: &Mmio<'_, Region>, off: usize) -> Result<Self> {
        let lo = io.try_read32(off)?;
        let hi = io.try_read32(off + 4)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    fn write(io: &Mmio<'_, Region>, off: usize, value: Self) -> Result {
        io.try_write32(value as u32, off)?;
        io.try_write32((value >> 32) as u32, off + 4)
    }
}

/// One virtio structure inside a mapped BAR.
///
/// Every access is checked against the structure's validated length and against the BAR
/// mapping, so a register a short structure lacks is an error, never an access to a
/// neighbouring structure.
pub struct CapWindow<'a> {
    io: Mmio<'a, Region>,
    region: CapRegion,
}

impl<'a> CapWindow<'a> {
    /// The window of `region` in `io`, the mapping of BAR `region.bar`.
    pub fn new(io: Mmio<'a, Region>, region: CapRegion) -> Self {
        Self { io, region }
    }

    fn offset(&self, off: u16, width: u16) -> Result<usize> {
        if !self.region.contains(u32::from(off), u32::from(width)) {
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

    fn read<T: RegWidth>(&self, reg: Reg<T>) -> Result<T> {
        T::read(&self.io, self.offset(reg.offset(), reg.width())?)
    }

    fn write<T: RegWidth>(&self, reg: Reg<T>, value: T) -> Result {
        T::write(&self.io, self.offset(reg.offset(), reg.width())?, value)
    }
}

/// The common configuration structure (`struct virtio_pci_common_cfg`).
///
/// The `queue_*` accessors reach the queue [`CommonCfg::select_queue`] selected last.
pub struct CommonCfg<'a>(CapWindow<'a>);

macro_rules! queue_registers {
    ($($(#[$doc:meta])* $get:ident, $(#[$set_doc:meta])* $set:ident, $reg:ident: $ty:ty;)*) => {$(
        $(#[$doc])*
        pub fn $get(&self) -> Result<$ty> {
            self.0.read(common::$reg)
        }

        $(#[$set_doc])*
        pub fn $set(&self, value: $ty) -> Result {
            self.0.write(common::$reg, value)
        }
    )*};
}

impl<'a> CommonCfg<'a> {
    /// The common configuration in `window`.
    pub fn new(window: CapWindow<'a>) -> Self {
        Self(window)
    }

    /// All 64 feature bits the device offers; `device_feature_select` is left at 1.
    pub fn device_features(&self) -> Result<u64> {
        self.0.write(common::DEVICE_FEATURE_SELECT, 0)?;
        let lo = self.0.read(common::DEVICE_FEATURE)?;
        self.0.write(common::DEVICE_FEATURE_SELECT, 1)?;
        let hi = self.0.read(common::DEVICE_FEATURE)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// The selector registers as they are now: whoever uses the device (the guest) relies on
    /// them between its accesses, so a second user writes back what it found.
    pub fn selectors(&self) -> Result<Selectors> {
        Ok(Selectors {
            device_feature_select: self.0.read(common::DEVICE_FEATURE_SELECT)?,
            driver_feature_select: self.0.read(common::DRIVER_FEATURE_SELECT)?,
            queue_select: self.0.read(common::QUEUE_SELECT)?,
        })
    }

    /// Writes the selector registers.
    pub fn set_selectors(&self, selectors: &Selectors) -> Result {
        self.0.write(
            common::DEVICE_FEATURE_SELECT,
            selectors.device_feature_select,
        )?;
        self.0.write(
            common::DRIVER_FEATURE_SELECT,
            selectors.driver_feature_select,
        )?;
        self.0.write(common::QUEUE_SELECT, selectors.queue_select)
    }

    /// Writes the selector registers of `to` that differ from `now`, what they hold.
    pub fn change_selectors(&self, now: &Selectors, to: &Selectors) -> Result {
        if now.device_feature_select != to.device_feature_select {
            self.0
                .write(common::DEVICE_FEATURE_SELECT, to.device_feature_select)?;
        }
        if now.driver_feature_select != to.driver_feature_select {
            self.0
                .write(common::DRIVER_FEATURE_SELECT, to.driver_feature_select)?;
        }
        if now.queue_select != to.queue_select {
            self.0.write(common::QUEUE_SELECT, to.queue_select)?;
        }
        Ok(())
    }

    /// All 64 feature bits the driver accepted, word `last` (0 or 1; any other value means 1)
    /// read last: `driver_feature_select` is left at it.
    pub fn driver_features_ending_at(&self, last: u32) -> Result<u64> {
        let last = last.min(1);
        self.0.write(common::DRIVER_FEATURE_SELECT, 1 - last)?;
        let first = self.0.read(common::DRIVER_FEATURE)?;
        self.0.write(common::DRIVER_FEATURE_SELECT, last)?;
        let second = self.0.read(common::DRIVER_FEATURE)?;
        let (lo, hi) = if last == 1 {
            (first, second)
        } else {
            (second, first)
        };
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// All 64 feature bits the driver accepted.
    pub fn driver_features(&self) -> Result<u64> {
        self.0.write(common::DRIVER_FEATURE_SELECT, 0)?;
        let lo = self.0.read(common::DRIVER_FEATURE)?;
        self.0.write(common::DRIVER_FEATURE_SELECT, 1)?;
        let hi = self.0.read(common::DRIVER_FEATURE)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// Accepts `features`.
    pub fn set_driver_features(&self, features: u64) -> Result {
        self.0.write(common::DRIVER_FEATURE_SELECT, 0)?;
        self.0.write(common::DRIVER_FEATURE, features as u32)?;
        self.0.write(common::DRIVER_FEATURE_SELECT, 1)?;
        self.0
            .write(common::DRIVER_FEATURE, (features >> 32) as u32)
    }

    /// `config_msix_vector`.
    pub fn config_msix_vector(&self) -> Result<u16> {
        self.0.read(common::CONFIG_MSIX_VECTOR)
    }

    /// Sets `config_msix_vector`.
    pub fn set_config_msix_vector(&self, vector: u16) -> Result {
        self.0.write(common::CONFIG_MSIX_VECTOR, vector)
    }

    /// `num_queues`.
    pub fn num_queues(&self) -> Result<u16> {
        self.0.read(common::NUM_QUEUES)
    }

    /// `device_status`.
    pub fn device_status(&self) -> Result<DeviceStatus> {
        self.0.read(common::DEVICE_STATUS).map(DeviceStatus)
    }

    /// Writes `device_status` ([`DeviceStatus::RESET`] resets the device).
    pub fn set_device_status(&self, status: DeviceStatus) -> Result {
        self.0.write(common::DEVICE_STATUS, status.0)
    }

    /// `config_generation`.
    pub fn config_generation(&self) -> Result<u8> {
        self.0.read(common::CONFIG_GENERATION)
    }

    /// Selects the queue the `queue_*` registers refer to.
    pub fn select_queue(&self, index: u16) -> Result {
        self.0.write(common::QUEUE_SELECT, index)
    }

    queue_registers! {
        /// `queue_size` of the selected queue (its maximum after a reset).
        queue_size,
        /// Sets `queue_size` of the selected queue.
        set_queue_size, QUEUE_SIZE: u16;
        /// `queue_msix_vector` of the selected queue.
        queue_msix_vector,
        /// Sets `queue_msix_vector` of the selected queue.
        set_queue_msix_vector, QUEUE_MSIX_VECTOR: u16;
        /// `queue_enable` of the selected queue: 1 once the driver enabled it.
        queue_enable,
        /// Sets `queue_enable` of the selected queue; 1 enables (and starts) it.
        set_queue_enable, QUEUE_ENABLE: u16;
        /// Descriptor table address of the selected queue.
        queue_desc,
        /// Sets the descriptor table address of the selected queue.
        set_queue_desc, QUEUE_DESC: u64;
        /// Available ring address of the selected queue.
        queue_driver,
        /// Sets the available ring address of the selected queue.
        set_queue_driver, QUEUE_DRIVER: u64;
        /// Used ring address of the selected queue.
        queue_device,
        /// Sets the used ring address of the selected queue.
        set_queue_device, QUEUE_DEVICE: u64;
    }

    /// `queue_notify_off` of the selected queue.
    pub fn queue_notify_off(&self) -> Result<u16> {
        self.0.read(common::QUEUE_NOTIFY_OFF)
    }

    /// `admin_queue_index`: the first admin queue (with `VIRTIO_F_ADMIN_VQ`).
    pub fn admin_queue_index(&self) -> Result<u16> {
        self.0.read(common::ADMIN_QUEUE_INDEX)
    }

    /// `admin_queue_num`: how many admin queues the device has.
    pub fn admin_queue_num(&self) -> Result<u16> {
        self.0.read(common::ADMIN_QUEUE_NUM)
    }
}

/// The notification area (`VIRTIO_PCI_CAP_NOTIFY_CFG`).
pub struct NotifyCfg<'a> {
    window: CapWindow<'a>,
    multiplier: u32,
}

impl<'a> NotifyCfg<'a> {
    /// The notification area in `window`, whose capability has `notify_off_multiplier`
    /// `multiplier`.
    pub fn new(window: CapWindow<'a>, multiplier: u32) -> Self {
        Self { window, multiplier }
    }

    /// Tells the device that queue `index`, whose `queue_notify_off` is `notify_off`, has new
    /// buffers.
    pub fn notify(&self, notify_off: u16, index: u16) -> Result {
        let off = u32::from(notify_off)
            .checked_mul(self.multiplier)
            .and_then(|off| u16::try_from(off).ok())
            .ok_or(EINVAL)?;
        self.window.write(Reg::<u16>::at(off), index)
    }
}

/// The device-specific configuration (`VIRTIO_PCI_CAP_DEVICE_CFG`): bytes whose meaning depends
/// on the device type.
pub struct DeviceCfg<'a>(CapWindow<'a>);

impl<'a> DeviceCfg<'a> {
    /// The device-specific configuration in `window`.
    pub fn new(window: CapWindow<'a>) -> Self {
        Self(window)
    }

    /// Length of the configuration in bytes.
    pub fn len(&self) -> u32 {
        self.0.len()
    }

    /// Whether the device has no configuration at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The byte at `off`.
    pub fn read_byte(&self, off: u16) -> Result<u8> {
        self.0.read(Reg::<u8>::at(off))
    }

    /// The 16-bit field at `off`.
    pub fn read_u16(&self, off: u16) -> Result<u16> {
        self.0.read(Reg::<u16>::at(off))
    }

    /// The 32-bit field at `off`, or one half of a 64-bit field: the virtio specification has
    /// drivers read device-specific 64-bit fields 32 bits at a time.
    pub fn read_u32(&self, off: u16) -> Result<u32> {
        self.0.read(Reg::<u32>::at(off))
    }

    /// Writes the 8-bit field at `off`.
    pub fn write_byte(&self, off: u16, value: u8) -> Result {
        self.0.write(Reg::<u8>::at(off), value)
    }

    /// Writes the 16-bit field at `off`.
    pub fn write_u16(&self, off: u16, value: u16) -> Result {
        self.0.write(Reg::<u16>::at(off), value)
    }

    /// Writes the 32-bit field at `off` (or one half of a 64-bit one).
    pub fn write_u32(&self, off: u16, value: u32) -> Result {
        self.0.write(Reg::<u32>::at(off), value)
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
        self.0.write(device_state::QUEUE_SELECT, index)
    }

    /// Whether the selected queue is stopped (every request in flight completed).
    pub fn queue_stopped(&self) -> Result<bool> {
        Ok(self.0.read(device_state::QUEUE_STATUS)? == device_state::QUEUE_STOPPED)
    }

    /// Asks the device to stop the selected queue; it reads as stopped once every request in
    /// flight completed.
    pub fn stop_queue(&self) -> Result {
        self.0
            .write(device_state::QUEUE_STATUS, device_state::QUEUE_STOPPED)
    }

    /// Resumes the selected queue from its `last_avail_idx`.
    pub fn resume_queue(&self) -> Result {
        self.0
            .write(device_state::QUEUE_STATUS, device_state::QUEUE_RUNNING)
    }

    /// `last_avail_idx` of the selected queue; only meaningful while the queue is stopped.
    pub fn last_avail_idx(&self) -> Result<u16> {
        self.0.read(device_state::LAST_AVAIL_IDX)
    }

    /// Sets `last_avail_idx` of the selected, stopped queue.
    pub fn set_last_avail_idx(&self, idx: u16) -> Result {
        self.0.write(device_state::LAST_AVAIL_IDX, idx)
    }
}

/// The memory dirty-pages tracker structure (`VIRTIO_PCI_CAP_MEMORY_TRACK_CFG`).
pub struct TrackerCfg<'a>(CapWindow<'a>);

impl<'a> TrackerCfg<'a> {
    /// The tracker structure in `window`.
    pub fn new(window: CapWindow<'a>) -> Self {
        Self(window)
    }

    /// `enable`: 1 while the device records its writes, 0 once it stopped.
    pub fn enable(&self) -> Result<u8> {
        self.0.read(tracker::ENABLE)
    }

    /// Starts (`true`) or stops recording.
    pub fn set_enable(&self, on: bool) -> Result {
        self.0.write(tracker::ENABLE, u8::from(on))
    }

    /// `gra_power`: each bit covers `2^(12 + gra_power)` bytes. The device may raise it.
    pub fn gra_power(&self) -> Result<u8> {
        self.0.read(tracker::GRA_POWER)
    }

    /// Writes `gra_power`; read it back, the device may have raised it.
    pub fn set_gra_power(&self, power: u8) -> Result {
        self.0.write(tracker::GRA_POWER, power)
    }

    /// Sets `bitmap_addr` and `bitmap_length` (bytes).
    pub fn set_bitmap(&self, addr: u64, length: u64) -> Result {
        self.0.write(tracker::BITMAP_ADDR, addr)?;
        self.0.write(tracker::BITMAP_LENGTH, length)
    }
}

fn log_cap(pdev: &pci::Device<device::Bound>, cap: &CapInfo) {
    match cap.virtio {
        Some(v) => dev_info!(
            pdev,
            "cap @{:#04x}: virtio {} (cfg_type {}) bar {} offset {:#x} length {:#x}\n",
            cap.pos,
            layout::cfg_type_name(v.cfg_type),
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
            memory_bars,
            walk,
            Bar,
            Bars,
            CapFault,
            WalkError, //
        },
        layout, //
    };

    /// BARs of the reference layout: everything lives in a 32 KiB memory BAR 4.
    const BARS: Bars = memory_bars([0, 0x1000, 0, 0, 0x8000, 0]);

    /// Offset of the capability of the common configuration, first in the list.
    const COMMON: usize = 0x40;
    /// Offset of the tracker capability, fifth in the list.
    const TRACKER: usize = 0x40 + 4 * 20;

    /// A config space with the virtio structures of the reference device layout.
    struct Image([u8; 256]);

    impl Image {
        fn new() -> Self {
            let mut image = Self([0; 256]);
            image.0[usize::from(layout::PCI_STATUS)] = layout::PCI_STATUS_CAP_LIST as u8;
            image.0[usize::from(layout::PCI_CAPABILITY_LIST)] = 0x40;
            let layout = [
                (layout::VIRTIO_PCI_CAP_COMMON_CFG, 0x0000, 0x38),
                (layout::VIRTIO_PCI_CAP_NOTIFY_CFG, 0x3000, 0x1000),
                (layout::VIRTIO_PCI_CAP_ISR_CFG, 0x1000, 1),
                (layout::VIRTIO_PCI_CAP_DEVICE_CFG, 0x2000, 0x3c),
                (layout::VIRTIO_PCI_CAP_MEMORY_TRACK_CFG, 0x4000, 24),
                (layout::VIRTIO_PCI_CAP_DEVICE_STATE_CFG, 0x5000, 8),
            ];
            let mut pos = 0x40;
            for (i, &(cfg_type, offset, length)) in layout.iter().enumerate() {
                let len = if cfg_type == layout::VIRTIO_PCI_CAP_NOTIFY_CFG {
                    20
                } else {
                    16
                };
                let next = if i + 1 == layout.len() { 0 } else { pos + 20 };
                image.cap(pos, next, len, cfg_type, offset, length);
                if cfg_type == layout::VIRTIO_PCI_CAP_NOTIFY_CFG {
                    image.0[pos + 16] = 4;
                }
                pos += 20;
            }
            image
        }

        /// Writes a virtio structure capability for a region of BAR 4.
        fn cap(&mut self, pos: usize, next: usize, len: u8, cfg_type: u8, off: u32, l: u32) {
            let c = &mut self.0[pos..pos + 16];
            c[..6].copy_from_slice(&[layout::PCI_CAP_ID_VNDR, next as u8, len, cfg_type, 4, 0]);
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
        assert!(found
            .missing(&virtio_mig_core::cap_walker::REQUIRED_MODERN)
            .is_none());
    }

    #[test]
    fn rejects_short_cap_len() {
        let mut image = Image::new();
        // The common configuration capability claims to be 8 bytes long.
        image.0[COMMON + 2] = 8;
        assert!(matches!(
            walk(&image.0[..], &BARS, |_| {}),
            Err(WalkError::CapLenTooSmall { .. })
        ));
    }

    #[test]
    fn rejects_region_past_bar_end() {
        let mut image = Image::new();
        image.0[COMMON + 8..][..4].copy_from_slice(&0x7ff0u32.to_le_bytes());
        assert!(walk(&image.0[..], &BARS, |_| {}).is_err());
    }

    #[test]
    fn rejects_absent_bar() {
        let mut image = Image::new();
        image.0[COMMON + 4] = 2;
        assert!(walk(&image.0[..], &BARS, |_| {}).is_err());
    }

    #[test]
    fn rejects_io_bar() {
        let mut bars = BARS;
        bars[4] = Bar::io(0x8000);
        assert!(matches!(
            walk(&Image::new().0[..], &bars, |_| {}),
            Err(WalkError::IoBar { bar: 4, .. })
        ));
    }

    #[test]
    fn leaves_out_malformed_tracker() {
        let mut image = Image::new();
        image.0[TRACKER + 2] = 8;
        let found = walk(&image.0[..], &BARS, |_| {});
        assert!(found.is_ok());
        let Ok(found) = found else { return };
        assert!(found.memory_track.is_none());
        assert!(found.device_state.is_some());
        let mut ignored = found.ignored();
        assert!(matches!(
            ignored.next(),
            Some(CapFault {
                cfg_type: layout::VIRTIO_PCI_CAP_MEMORY_TRACK_CFG,
                error: WalkError::CapLenTooSmall { .. },
            })
        ));
        assert!(ignored.next().is_none());
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
