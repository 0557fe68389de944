// SPDX-License-Identifier: GPL-2.0

//! VFIO (Virtual Function I/O) abstractions.
//!
//! Lets a Rust driver offer a device to userspace through VFIO as a *variant driver* of
//! `vfio-pci`: [`pci::Driver`] is the PCI driver and the VFIO device in one; everything the
//! driver does not override is the behaviour of `vfio_pci_core`, so a VFIO user sees the device
//! as with plain `vfio-pci`. A driver may add the VFIO migration uAPI ([`migration`]) and
//! device dirty-page logging ([`log`]).
//!
//! C headers: [`include/linux/vfio.h`](srctree/include/linux/vfio.h),
//! [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h)

pub mod file;
pub mod log;
pub mod migration;
pub mod pci;
