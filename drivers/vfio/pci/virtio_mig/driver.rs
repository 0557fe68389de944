// SPDX-License-Identifier: GPL-2.0

//! PCI binding: which functions the driver takes and what it sets up for each.

use kernel::{
    device::Core,
    pci,
    prelude::*,
    virtio::pci::Capabilities, //
};

/// First and last device ID of modern (virtio 1.0) virtio-pci functions: 0x1040 + device type.
const MODERN_DEVICE_IDS: core::ops::RangeInclusive<u16> = 0x1040..=0x107f;

pub(crate) struct VirtioVfioMig;

/// Per-function state.
pub(crate) struct VirtioVfioMigDevice {
    /// The validated virtio structures, found once at probe.
    #[expect(dead_code, reason = "used by the migration and dirty-logging backends")]
    caps: Capabilities,
}

kernel::pci_device_table!(
    PCI_TABLE,
    <VirtioVfioMig as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, !0).vfio_override_only(),
        ()
    )]
);

impl pci::Driver for VirtioVfioMig {
    type IdInfo = ();
    type Data<'bound> = VirtioVfioMigDevice;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        if !MODERN_DEVICE_IDS.contains(&pdev.device_id()) {
            dev_err!(pdev, "not a modern virtio-pci function\n");
            return Err(ENODEV);
        }
        let caps = Capabilities::discover(pdev)?;
        let found = caps.caps();
        dev_info!(
            pdev,
            "virtio device type {}: memory-track {}, device-state {}\n",
            pdev.device_id() - MODERN_DEVICE_IDS.start(),
            if found.memory_track.is_some() { "present" } else { "absent" },
            if found.device_state.is_some() { "present" } else { "absent" },
        );
        Ok(VirtioVfioMigDevice { caps })
    }
}
