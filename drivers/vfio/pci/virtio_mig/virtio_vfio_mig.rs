// SPDX-License-Identifier: GPL-2.0

//! VFIO variant driver with live migration for modern virtio-pci functions.

mod data_file;
mod dirty_log;
mod driver;
mod migration;
mod queues;
mod regs;
mod snapshot;

kernel::module_vfio_pci_driver! {
    type: driver::VirtioVfioMig,
    name: "virtio_vfio_mig",
    authors: ["The virtio-vfio-mig authors"],
    description: "VFIO variant driver with live migration for virtio-pci devices",
    license: "GPL v2",
    params: {
        stop_timeout_ms: u32 {
            default: 3000,
            description: "Longest wait, in ms, for the device to stop a queue or its tracker",
        },
        max_bitmap_kib: u32 {
            default: 4096,
            description: "Most memory, in KiB, of a dirty bitmap; coarser pages keep it below",
        },
    },
}
