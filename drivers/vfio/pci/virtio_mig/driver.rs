// SPDX-License-Identifier: GPL-2.0

//! The variant driver: which functions it takes, what it finds at probe, and the VFIO device it
//! registers for each.

use kernel::{
    device::Core,
    fs::File,
    pci,
    prelude::*,
    sync::aref::ARef,
    vfio::{
        migration::{
            self,
            State, //
        },
        pci::{
            Driver,
            Opened, //
        },
    },
    virtio::pci::Capabilities, //
};

/// First and last device ID of modern (virtio 1.0) virtio-pci functions: 0x1040 + device type.
const MODERN_DEVICE_IDS: core::ops::RangeInclusive<u16> = 0x1040..=0x107f;

/// Per-function state of the driver.
pub(crate) struct VirtioVfioMig {
    /// The validated virtio structures, found once at probe.
    caps: Capabilities,
}

kernel::pci_device_table!(
    PCI_TABLE,
    <VirtioVfioMig as Driver>::IdInfo,
    [(
        // Override-only: the driver never takes a device from virtio_pci by itself.
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, !0).vfio_override_only(),
        ()
    )]
);

#[vtable]
impl Driver for VirtioVfioMig {
    type IdInfo = ();

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;
    const NAME: &'static CStr = c"virtio-vfio-mig";

    fn probe(
        pdev: &pci::Device<Core<'_>>,
        _info: Option<&Self::IdInfo>,
    ) -> impl PinInit<Self, Error> {
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
        Ok(Self { caps })
    }

    fn migration_flags(&self) -> u32 {
        if self.caps.caps().device_state.is_some() {
            migration::FLAG_STOP_COPY | migration::FLAG_P2P | migration::FLAG_PRE_COPY
        } else {
            0
        }
    }

    fn dirty_logging(&self) -> bool {
        self.caps.caps().memory_track.is_some()
    }

    fn migration_set_state(
        dev: &Opened<'_, Self>,
        new: State,
    ) -> Result<Option<ARef<File>>> {
        dev_dbg!(dev.device().pdev(), "migration to {:?} not implemented yet\n", new);
        Err(EOPNOTSUPP)
    }

    fn migration_get_state(_dev: &Opened<'_, Self>) -> Result<State> {
        Ok(State::Running)
    }

    fn migration_get_data_size(_dev: &Opened<'_, Self>) -> Result<usize> {
        Err(EOPNOTSUPP)
    }
}
