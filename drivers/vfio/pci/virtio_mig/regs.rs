// SPDX-License-Identifier: GPL-2.0

//! The register windows migration and dirty logging work with, mapped from the validated
//! capabilities, and reached only while the device decodes memory.

use kernel::{
    io::{
        Mmio,
        Region, //
    },
    prelude::*,
    vfio::pci::Opened,
    virtio::pci::{
        CapRegion,
        CapWindow,
        Capabilities,
        CommonCfg,
        DeviceCfg,
        DeviceStateCfg,
        TrackerCfg, //
    },
};

use crate::driver::VirtioVfioMig;

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

/// The registers of an open device. Each access sequence holds `vfio_pci_core`'s memory lock
/// and runs with the function decoding memory (turned on for the sequence if the user has it
/// off, see `Opened::memory`); a function in D3hot or a low-power state cannot decode, and the
/// caller gets `EIO` without the device being touched.
#[derive(Clone, Copy)]
pub(crate) struct Bars<'a>(pub(crate) &'a Opened<'a, VirtioVfioMig>);

impl Bars<'_> {
    /// Runs `f` on the register windows migration works with.
    pub(crate) fn with_regs<R>(self, f: impl FnOnce(&Regs<'_>) -> R) -> Result<R> {
        let memory = self.0.memory()?;
        let regs = Regs::map(&self.0.caps, |bar| memory.bar(bar))?;
        Ok(f(&regs))
    }

    /// Runs `f` on the memory dirty-pages tracker's registers; `ENODEV` without the capability.
    pub(crate) fn with_tracker<R>(self, f: impl FnOnce(&TrackerCfg<'_>) -> R) -> Result<R> {
        let region = self.0.caps.memory_track().ok_or(ENODEV)?;
        let memory = self.0.memory()?;
        let cfg = TrackerCfg::new(CapWindow::new(memory.bar(region.bar)?, region));
        Ok(f(&cfg))
    }
}
