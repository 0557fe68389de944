// SPDX-License-Identifier: GPL-2.0

//! Rust VFIO PCI variant driver sample.
//!
//! The smallest useful variant driver: it offers QEMU's `pci-testdev` to userspace exactly as
//! `vfio-pci` would, because every VFIO callback it does not implement is `vfio_pci_core`'s.
//! A real variant driver adds callbacks (migration, dirty logging, open/close hooks) to
//! [`vfio::pci::Driver`].
//!
//! It never binds by itself; bind it through `driver_override`:
//!
//! ```text
//! echo rust_vfio_pci_variant > /sys/bus/pci/devices/$BDF/driver_override
//! echo $BDF > /sys/bus/pci/drivers_probe
//! ```

use kernel::{
    device::Core,
    io::Io,
    pci,
    prelude::*,
    vfio, //
};

struct SampleVariant {
    bar0_len: u64,
}

kernel::pci_device_table!(
    PCI_TABLE,
    <SampleVariant as vfio::pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::REDHAT, 0x5).vfio_override_only(),
        ()
    )]
);

#[vtable]
impl vfio::pci::Driver for SampleVariant {
    type IdInfo = ();

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;
    const NAME: &'static CStr = c"rust-vfio-pci-variant";

    fn probe(
        pdev: &pci::Device<Core<'_>>,
        _info: Option<&Self::IdInfo>,
    ) -> impl PinInit<Self, Error> {
        let bar0_len = pdev.resource_len(0)?;
        dev_info!(
            pdev,
            "offering the device through VFIO (BAR0: {bar0_len} bytes)\n"
        );
        Ok(Self { bar0_len })
    }

    fn open_device(dev: &vfio::pci::Opened<'_, Self>) -> Result {
        // The BARs are mapped now; a real driver would bring its device-specific state up here.
        dev_dbg!(dev.device().pdev(), "first user opened the device\n");
        // pci-testdev's BAR0 holds a hit counter at 0xc. BARs are reached under the memory
        // lock, and only while the function decodes memory.
        let count = dev.memory()?.bar(0)?.try_read32(0xc)?;
        dev_dbg!(
            dev.device().pdev(),
            "BAR0 ({} bytes) count {count}\n",
            dev.bar0_len
        );
        Ok(())
    }
}

kernel::module_vfio_pci_driver! {
    type: SampleVariant,
    name: "rust_vfio_pci_variant",
    authors: ["The virtio-vfio-mig authors"],
    description: "Rust VFIO PCI variant driver sample",
    license: "GPL v2",
}
