// SPDX-License-Identifier: GPL-2.0

//! Pure, allocation-free logic of the virtio-pci VFIO migration driver.
//!
//! A crate of the kernel build (`rust/Makefile` builds it beside `pin_init`
//! and the kernel crate depends on it), and tested on the host with
//! `cargo test`, proptest and fuzzing. It uses only `core`.
//!
//! - [`layout`]: PCI/virtio capability constants and register definitions.
//! - [`cap_walker`]: validating walker of the virtio vendor capabilities.
//! - [`mig_fsm`]: the VFIO migration state machine and per-arc device actions.
//! - [`mig_stream`]: the versioned migration stream codec and compatibility check.
//! - [`dirty_bitmap`]: harvesting of the device dirty bitmap.
//! - [`device_config`]: field-by-field reads of a device type's configuration.
//! - [`admin`]: codec of the virtio admin commands of write recording.
//! - [`write_records`]: driver-side write recording: range preparation,
//!   page size choice, application of the records to a [`dirty_bitmap::DirtySink`].

#![cfg_attr(not(test), no_std)]

pub mod admin;
pub mod cap_walker;
pub mod device_config;
pub mod dirty_bitmap;
pub mod layout;
pub mod mig_fsm;
pub mod mig_stream;
pub mod write_records;
