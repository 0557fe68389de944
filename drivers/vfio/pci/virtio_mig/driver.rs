// SPDX-License-Identifier: GPL-2.0

//! The variant driver: which functions it takes, what it finds at probe, and the VFIO device it
//! registers for each.

use kernel::{
    device::{
        Bound,
        Core, //
    },
    dma::DmaMask,
    fs::File,
    pci,
    prelude::*,
    sync::aref::ARef,
    vfio::{
        log::{
            IovaBitmap,
            IovaRanges, //
        },
        migration::{
            Flags,
            State, //
        },
        pci::{
            self as pci_vfio,
            CoreDevice,
            Driver,
            Opened, //
        },
    },
    virtio::{
        admin::Member,
        pci::Capabilities, //
    },
};

use virtio_mig_core::device_config;

use crate::{
    admin_log::AdminLog,
    dirty_log::{
        DirtyLog,
        LogBackend,
        Tracker, //
    },
    migration::Migration,
    regs::Bars,
    snapshot::{
        self,
        MODERN_DEVICE_ID_BASE, //
    },
};

/// Last device ID of modern (virtio 1.0) virtio-pci functions.
const MODERN_DEVICE_ID_LAST: u16 = 0x107f;

/// Per-function state of the driver.
#[pin_data]
pub(crate) struct VirtioVfioMig {
    /// The validated virtio structures, found once at probe.
    pub(crate) caps: Capabilities,
    /// Migration through the device state capability (no flags without it).
    #[pin]
    migration: Migration,
    /// Dirty-page logging through the memory tracker capability.
    #[pin]
    dirty_log: DirtyLog,
    /// Dirty-page logging through the owner's write recording, preferred when there is one.
    #[pin]
    admin_log: AdminLog,
}

impl VirtioVfioMig {
    /// What dirty logging through the tracker works with.
    fn tracker<'a>(dev: &'a Opened<'a, Self>) -> Tracker<'a> {
        Tracker {
            pdev: dev.device().pdev(),
            untranslated: dev.device().is_noiommu(),
            bars: Bars(dev),
        }
    }
}

/// Checks that `pdev` is a modern virtio-pci function and finds its capabilities.
fn discover(pdev: &pci::Device<Core<'_>>) -> Result<Capabilities> {
    let device_id = pdev.device_id();
    if !(MODERN_DEVICE_ID_BASE..=MODERN_DEVICE_ID_LAST).contains(&device_id) {
        dev_err!(pdev, "not a modern virtio-pci function\n");
        return Err(ENODEV);
    }
    let caps = Capabilities::discover(pdev)?;
    // A malformed optional capability costs only its facility: no migration without the device
    // state capability, no dirty logging without the tracker.
    for fault in caps.ignored() {
        dev_warn!(pdev, "ignoring malformed {}\n", fault);
    }
    let presence = |found: bool| if found { "present" } else { "absent" };
    dev_info!(
        pdev,
        "virtio device type {}: memory-track {}, device-state {}\n",
        device_id - MODERN_DEVICE_ID_BASE,
        presence(caps.memory_track().is_some()),
        presence(caps.device_state().is_some()),
    );
    Ok(caps)
}

/// Device types whose whole state is the transport and ring state the stream carries. A
/// network device, for one, also has control-queue state (filters, RSS, offloads) that would
/// be lost silently.
const MIGRATABLE_DEVICE_TYPES: [u16; 1] = [device_config::VIRTIO_ID_BLOCK as u16];

/// Migration needs the device state capability and a device type whose state it captures;
/// with both the device supports every state.
fn migration_flags(pdev: &pci::Device<Core<'_>>, caps: &Capabilities) -> Flags {
    let device_type = pdev.device_id().saturating_sub(MODERN_DEVICE_ID_BASE);
    if caps.device_state().is_none() {
        return Flags::NONE;
    }
    if !MIGRATABLE_DEVICE_TYPES.contains(&device_type) {
        dev_info!(
            pdev,
            "migration not offered: the state of virtio device type {} is not captured\n",
            device_type
        );
        return Flags::NONE;
    }
    Flags::ALL
}

/// The owner function of `pdev` that records its writes, if one is bound.
fn find_owner(pdev: &pci::Device<Core<'_>>) -> Option<Member> {
    let member = Member::find(pdev)?;
    dev_info!(
        pdev,
        "dirty logging through the write recording of owner {:?} ({} group)\n",
        member,
        if member.in_slot_group() {
            "slot"
        } else {
            "SR-IOV"
        }
    );
    Some(member)
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
    // The tracker's bitmap is the driver's own DMA memory, and `bitmap_addr` takes 64 bits, as
    // every address of a virtio 1.x device does: no need to confine it below 4 GiB.
    const DMA_MASK: Option<DmaMask> = Some(DmaMask::new::<64>());

    fn probe(
        pdev: &pci::Device<Core<'_>>,
        _info: Option<&Self::IdInfo>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            caps: discover(pdev)?,
            migration <- Migration::new(migration_flags(pdev, caps)),
            dirty_log <- DirtyLog::new(),
            admin_log <- AdminLog::new(find_owner(pdev)),
        })
    }

    fn migration_flags(&self) -> Flags {
        self.migration.flags()
    }

    fn open_device(dev: &Opened<'_, Self>) -> Result {
        if dev.migration.flags() != Flags::NONE {
            // The registers are read before the state lock is taken: set_state takes the
            // memory lock under it.
            let pdev = dev.device().pdev();
            let device = Bars(dev).with_regs(|regs| snapshot::constants(pdev, regs))??;
            dev.migration.open(device);
        }
        Ok(())
    }

    fn dirty_logging(&self, pdev: &pci::Device<Bound>) -> bool {
        // The owner DMAs the records through its own DMA domain: this works in any IOMMU mode.
        if self.admin_log.member().is_some() {
            return true;
        }
        // The tracker bitmap is kernel memory: a device whose DMA the VFIO user's IOMMU domain
        // translates cannot reach it (there is no PASID path yet), so logging is not offered
        // rather than failing when a migration starts.
        self.caps.memory_track().is_some() && !pci_vfio::dma_is_translated(pdev)
    }

    fn close_device(dev: &Opened<'_, Self>) {
        dev.migration.close();
        // A user that goes away without stopping the log must not leave the device writing.
        // A tracker that cannot be reached (the function in D3hot) stops when the device is
        // disabled.
        if dev.admin_log.member().is_some() {
            let _ = dev.admin_log.stop(&dev.device().pdev());
        } else {
            let _ = dev.dirty_log.stop(&Self::tracker(dev));
        }
    }

    fn device_disabled(dev: &CoreDevice<Self>) {
        if dev.dirty_log.device_disabled() {
            dev_dbg!(
                dev.pdev(),
                "tracker bitmap released after the device was disabled\n"
            );
        }
    }

    fn reset_done(dev: &CoreDevice<Self>) {
        dev.migration.reset_done();
        dev.dirty_log.reset_done();
    }

    fn migration_set_state(dev: &Opened<'_, Self>, new: State) -> Result<Option<ARef<File>>> {
        let core = dev.device();
        dev.migration.set_state(
            core.pdev(),
            Bars(dev),
            |cur, target| core.next_migration_state(cur, target),
            new,
        )
    }

    fn migration_get_state(dev: &Opened<'_, Self>) -> Result<State> {
        Ok(dev.migration.get_state())
    }

    fn migration_get_data_size(dev: &Opened<'_, Self>) -> Result<usize> {
        dev.migration.data_size()
    }

    fn log_start(dev: &Opened<'_, Self>, ranges: &IovaRanges<'_>, page_size: &mut u64) -> Result {
        if dev.admin_log.member().is_some() {
            return dev.admin_log.start(&dev.device().pdev(), ranges, page_size);
        }
        dev.dirty_log.start(&Self::tracker(dev), ranges, page_size)
    }

    fn log_stop(dev: &Opened<'_, Self>) -> Result {
        if dev.admin_log.member().is_some() {
            return dev.admin_log.stop(&dev.device().pdev());
        }
        dev.dirty_log.stop(&Self::tracker(dev))
    }

    fn log_read_and_clear(
        dev: &Opened<'_, Self>,
        iova: u64,
        length: u64,
        dirty: &mut IovaBitmap<'_>,
    ) -> Result {
        if dev.admin_log.member().is_some() {
            return dev
                .admin_log
                .read_and_clear(&dev.device().pdev(), iova, length, dirty);
        }
        dev.dirty_log
            .read_and_clear(&Self::tracker(dev), iova, length, dirty)
    }
}
