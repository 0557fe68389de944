// SPDX-License-Identifier: GPL-2.0

//! Virtio device abstractions.
//!
//! Only what a driver needs to operate a virtio device from outside the virtio core is here: the
//! virtio-pci transport extension that a VFIO variant driver uses to reach the device's
//! capabilities.

pub mod admin;
pub mod dirty_bitmap;
pub mod pci;
