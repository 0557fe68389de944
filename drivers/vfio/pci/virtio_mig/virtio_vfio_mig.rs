// SPDX-License-Identifier: GPL-2.0

//! VFIO variant driver with live migration for modern virtio-pci functions.

mod driver;

kernel::module_vfio_pci_driver! {
    type: driver::VirtioVfioMig,
    name: "virtio_vfio_mig",
    authors: ["The virtio-vfio-mig authors"],
    description: "VFIO variant driver with live migration for virtio-pci devices",
    license: "GPL v2",
}
