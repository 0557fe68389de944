// SPDX-License-Identifier: GPL-2.0

//! The register windows migration works with, mapped from the validated capabilities.

use kernel::{
    io::{
        Mmio,
        Region, //
    },
    prelude::*,
    virtio::pci::{
        CapRegion,
        CapWindow,
        Capabilities,
        CommonCfg,
        DeviceCfg,
        DeviceStateCfg, //
    },
};

/// The structures migration works with, valid while the device is open.
pub(crate) struct Regs<'a> {
    /// Common configuration.
    pub(crate) common: CommonCfg<'a>,
    /// Device state capability.
    pub(crate) state: DeviceStateCfg<'a>,
    /// Device-specific configuration.
    pub(crate) device: DeviceCfg<'a>,
}

impl<'a> Regs<'a> {
    /// Maps the structures `caps` describes through `bar`, the BAR mappings of the open device;
    /// fails with `ENODEV` without the device state capability.
    pub(crate) fn map(
        caps: &Capabilities,
        bar: impl Fn(u8) -> Result<Mmio<'a, Region>>,
    ) -> Result<Self> {
        let window = |region: Option<CapRegion>| -> Result<CapWindow<'a>> {
            let region = region.ok_or(ENODEV)?;
            Ok(CapWindow::new(bar(region.bar)?, region))
        };
        Ok(Self {
            common: CommonCfg::new(window(caps.common())?),
            state: DeviceStateCfg::new(window(caps.device_state())?),
            device: DeviceCfg::new(window(caps.device())?),
        })
    }
}
