// SPDX-License-Identifier: GPL-2.0

//! Pure, allocation-free logic of the virtio-pci VFIO migration driver.
//!
//! Every module is one self-contained file that uses only `core` and its
//! sibling modules (through `super::`), so the kernel driver can include each
//! file with `#[path = "..."] mod name;` under one parent module, while the
//! same code is tested on the host with `cargo test`, proptest and fuzzing.
//!
//! - [`virtio_pci_caps`]: PCI/virtio capability constants and register layouts.
//! - [`cap_walker`]: validating walker of the virtio vendor capabilities.
//! - [`mig_fsm`]: the VFIO migration state machine and per-arc device actions.
//! - [`mig_stream`]: the versioned migration stream codec and compatibility check.
//! - [`dirty_bitmap`]: harvesting of the device dirty bitmap.

#![cfg_attr(not(test), no_std)]

pub mod cap_walker;
pub mod dirty_bitmap;
pub mod mig_fsm;
pub mod mig_stream;
pub mod virtio_pci_caps;
