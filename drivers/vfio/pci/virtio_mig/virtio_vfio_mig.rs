// SPDX-License-Identifier: GPL-2.0

//! VFIO variant driver with live migration for modern virtio-pci functions, and the driver of
//! the owner functions whose admin queue records the pages a member's device writes.

mod admin_log;
mod data_file;
mod dirty_log;
mod driver;
mod log_ranges;
mod migration;
mod owner;
mod queues;
mod regs;
mod snapshot;

use kernel::{
    driver::Registration,
    pci,
    prelude::*,
    vfio, //
};

/// Both drivers. Owners register first and go last (fields drop in declaration order): members
/// never outlive the driver of their owner.
#[pin_data]
struct VirtioVfioMigModule {
    #[pin]
    members: Registration<vfio::pci::Adapter<driver::VirtioVfioMig>>,
    #[pin]
    owners: Registration<pci::Adapter<owner::OwnerDriver>>,
}

impl kernel::InPlaceModule for VirtioVfioMigModule {
    fn init(module: &'static kernel::ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            owners <- Registration::new(c"virtio_mig_owner", module),
            members <- Registration::new(<Self as kernel::ModuleMetadata>::NAME, module),
        })
    }
}

module! {
    type: VirtioVfioMigModule,
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
        admin_timeout_ms: u32 {
            default: 1000,
            description: "Longest wait, in ms, for an owner function to complete an admin command",
        },
    },
}
