// SPDX-License-Identifier: GPL-2.0

//! The driver of owner functions: it runs their admin queue, through which member functions
//! bound to the variant driver record the pages their device writes.

use kernel::{
    device::Core,
    pci,
    prelude::*,
    sync::Arc,
    time::Delta,
    virtio::admin::Owner, //
};

/// An owner function taken by this driver.
pub(crate) struct OwnerDriver {
    owner: Arc<Owner>,
}

/// Longest wait for one admin command.
pub(crate) fn admin_timeout() -> Delta {
    Delta::from_millis(i64::from(
        crate::module_parameters::admin_timeout_ms.value(),
    ))
}

kernel::pci_device_table!(
    OWNER_TABLE,
    <OwnerDriver as pci::Driver>::IdInfo,
    [(
        // Bound through `driver_override` only: a function is an owner because the
        // administrator says so, not because of its IDs.
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, !0).vfio_override_only(),
        ()
    )]
);

impl pci::Driver for OwnerDriver {
    type IdInfo = ();
    type Data<'bound> = Self;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &OWNER_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self, Error> + 'bound {
        Ok(Self {
            owner: Owner::probe(pdev, admin_timeout())?,
        })
    }

    fn unbind<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self>) {
        this.owner.remove();
    }
}
