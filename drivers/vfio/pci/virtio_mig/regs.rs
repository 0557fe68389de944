// SPDX-License-Identifier: GPL-2.0

//! The device's register structures, reached through the BAR mappings of the open device.

use kernel::{
    prelude::*,
    vfio::pci::Opened,
    virtio::pci::{
        virtio_pci_caps as caps,
        CapRegion,
        CapWindow,
        CommonCfg,
        DeviceStateCfg, //
    },
};

use crate::driver::VirtioVfioMig;

/// The structures migration works with, valid while the device is open.
pub(crate) struct Regs<'a> {
    /// Common configuration.
    pub(crate) common: CommonCfg<'a>,
    /// Device state capability.
    pub(crate) state: DeviceStateCfg<'a>,
    /// Notification area, to kick a resumed queue.
    pub(crate) notify: CapWindow<'a>,
    /// `notify_off_multiplier`.
    pub(crate) notify_mult: u32,
    /// Device-specific configuration.
    pub(crate) device: CapWindow<'a>,
}

fn window<'a>(
    dev: &'a Opened<'_, VirtioVfioMig>,
    region: Option<CapRegion>,
) -> Result<CapWindow<'a>> {
    let region = region.ok_or(ENODEV)?;
    Ok(CapWindow::new(dev.bar(region.bar)?, region))
}

impl<'a> Regs<'a> {
    /// Maps the structures of `dev`; fails with `ENODEV` without the device state capability.
    pub(crate) fn new(dev: &'a Opened<'_, VirtioVfioMig>) -> Result<Self> {
        let found = dev.caps().caps();
        Ok(Self {
            common: CommonCfg::new(window(dev, found.common)?),
            state: DeviceStateCfg::new(window(dev, found.device_state)?),
            notify: window(dev, found.notify)?,
            notify_mult: found.notify_off_multiplier,
            device: window(dev, found.device)?,
        })
    }

    /// Notifies the device that queue `index` (selected in the common configuration) has work.
    pub(crate) fn kick(&self, index: u16) -> Result {
        let notify_off = self.common.queue_reg16(caps::COMMON_QUEUE_NOTIFY_OFF)?;
        let off = u32::from(notify_off)
            .checked_mul(self.notify_mult)
            .and_then(|off| u16::try_from(off).ok())
            .ok_or(EINVAL)?;
        self.notify.write16(off, index)
    }
}
