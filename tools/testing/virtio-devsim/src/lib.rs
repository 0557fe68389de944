// SPDX-License-Identifier: GPL-2.0
//! virtio-devsim: a virtio-blk device model served over vfio-user, with the
//! virtio-pci memory dirty pages tracker and device state capabilities,
//! and optionally an owner function whose admin virtqueue records the
//! writes of the first function (admin write recording).
//!
//! The crate is a library so that the device logic can be tested without a
//! socket; `main.rs` only parses the command line and runs the server.

pub mod admin;
pub mod blk;
pub mod common_cfg;
pub mod config;
pub mod device;
pub mod device_state;
pub mod irq;
pub mod layout;
pub mod memory;
pub mod pci_config;
pub mod queue;
pub mod recording;
pub mod regs;
pub mod server;
pub mod stats;
pub mod tracker;
pub mod worker;

pub use config::Config;
pub use device::Device;
