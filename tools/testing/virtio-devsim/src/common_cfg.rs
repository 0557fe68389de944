// SPDX-License-Identifier: GPL-2.0
//! Common configuration structure (`struct virtio_pci_common_cfg`):
//! feature negotiation, device status and queue configuration.
//!
//! The owner function's is 64 bytes long (`struct
//! virtio_pci_modern_common_cfg`): `queue_notify_data` and `queue_reset`
//! read 0 (their features are not offered), `admin_queue_index` (0x3c)
//! is the admin queue's index, the number of request queues, and
//! `admin_queue_num` (0x3e) is 1. `num_queues` counts the request queues.

use std::sync::atomic::Ordering;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1,
};
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::QueueT;

use crate::device::Device;
use crate::layout::{OWNER_ADMIN_QUEUE_NUM, VIRTIO_MSI_NO_VECTOR};
use crate::regs::Field;

const DEVICE_FEATURE_SELECT: Field = Field::new(0x00, 4);
const DEVICE_FEATURE: Field = Field::new(0x04, 4);
const DRIVER_FEATURE_SELECT: Field = Field::new(0x08, 4);
const DRIVER_FEATURE: Field = Field::new(0x0c, 4);
const CONFIG_MSIX_VECTOR: Field = Field::new(0x10, 2);
const NUM_QUEUES: Field = Field::new(0x12, 2);
const DEVICE_STATUS: Field = Field::new(0x14, 1);
const CONFIG_GENERATION: Field = Field::new(0x15, 1);
const QUEUE_SELECT: Field = Field::new(0x16, 2);
const QUEUE_SIZE: Field = Field::new(0x18, 2);
const QUEUE_MSIX_VECTOR: Field = Field::new(0x1a, 2);
const QUEUE_ENABLE: Field = Field::new(0x1c, 2);
const QUEUE_NOTIFY_OFF: Field = Field::new(0x1e, 2);
const QUEUE_DESC: Field = Field::new(0x20, 8);
const QUEUE_DRIVER: Field = Field::new(0x28, 8);
const QUEUE_DEVICE: Field = Field::new(0x30, 8);
const ADMIN_QUEUE_INDEX: Field = Field::new(0x3c, 2);
const ADMIN_QUEUE_NUM: Field = Field::new(0x3e, 2);

/// `VIRTIO_F_ADMIN_VQ`: the owner function has an admin virtqueue.
pub const VIRTIO_F_ADMIN_VQ: u32 = 41;

/// Transport-level feature bits offered by the device.
pub const TRANSPORT_FEATURES: u64 =
    (1 << VIRTIO_F_VERSION_1) | (1 << VIRTIO_F_ACCESS_PLATFORM) | (1 << VIRTIO_RING_F_EVENT_IDX);

/// Device-wide registers of the common configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct CommonRegs {
    /// `device_feature_select`.
    pub device_feature_select: u32,
    /// `driver_feature_select`.
    pub driver_feature_select: u32,
    /// Features written by the driver.
    pub driver_features: u64,
    /// `config_msix_vector`.
    pub msix_config: u16,
    /// `queue_select`.
    pub queue_select: u16,
    /// `device_status`.
    pub status: u8,
}

impl Device {
    /// Every feature bit the device offers.
    pub fn offered_features(&self) -> u64 {
        let admin = if self.shared.admin.is_some() {
            1 << VIRTIO_F_ADMIN_VQ
        } else {
            0
        };
        TRANSPORT_FEATURES | admin | self.shared.blk.features()
    }

    /// Whether `bit` was negotiated (FEATURES_OK accepted).
    pub fn negotiated(&self, bit: u32) -> bool {
        self.common.status & VIRTIO_CONFIG_S_FEATURES_OK as u8 != 0
            && self.common.driver_features & (1 << bit) != 0
    }

    /// An MSI-X vector register value: vectors the table lacks read back as
    /// NO_VECTOR, telling the driver the assignment failed.
    fn checked_vector(&self, v: u16) -> u16 {
        if (v as usize) < self.shared.msix.count() {
            v
        } else {
            VIRTIO_MSI_NO_VECTOR
        }
    }

    pub(crate) fn common_read(&mut self, off: u64, buf: &mut [u8]) {
        let c = self.common;
        let features = match c.device_feature_select {
            0 => self.offered_features() as u32,
            1 => (self.offered_features() >> 32) as u32,
            _ => 0,
        };
        let driver_features = match c.driver_feature_select {
            0 => c.driver_features as u32,
            1 => (c.driver_features >> 32) as u32,
            _ => 0,
        };
        DEVICE_FEATURE_SELECT.read(off, buf, c.device_feature_select.into());
        DEVICE_FEATURE.read(off, buf, features.into());
        DRIVER_FEATURE_SELECT.read(off, buf, c.driver_feature_select.into());
        DRIVER_FEATURE.read(off, buf, driver_features.into());
        CONFIG_MSIX_VECTOR.read(off, buf, c.msix_config.into());
        NUM_QUEUES.read(off, buf, self.shared.request_queues() as u64);
        if let Some(index) = self.shared.admin_queue() {
            ADMIN_QUEUE_INDEX.read(off, buf, index as u64);
            ADMIN_QUEUE_NUM.read(off, buf, OWNER_ADMIN_QUEUE_NUM.into());
        }
        DEVICE_STATUS.read(off, buf, c.status.into());
        CONFIG_GENERATION.read(off, buf, 0);
        QUEUE_SELECT.read(off, buf, c.queue_select.into());

        let Some(slot) = self.shared.queues.get(c.queue_select as usize) else {
            // A queue that does not exist reads as size 0.
            return;
        };
        let vq = slot.lock();
        QUEUE_SIZE.read(off, buf, vq.queue.size().into());
        QUEUE_MSIX_VECTOR.read(off, buf, vq.msix_vector.into());
        QUEUE_ENABLE.read(off, buf, vq.enabled() as u64);
        QUEUE_NOTIFY_OFF.read(off, buf, c.queue_select.into());
        QUEUE_DESC.read(off, buf, vq.queue.desc_table());
        QUEUE_DRIVER.read(off, buf, vq.queue.avail_ring());
        QUEUE_DEVICE.read(off, buf, vq.queue.used_ring());
    }

    pub(crate) fn common_write(&mut self, off: u64, data: &[u8]) {
        if let Some(v) =
            DEVICE_FEATURE_SELECT.write(off, data, self.common.device_feature_select.into())
        {
            self.common.device_feature_select = v as u32;
        }
        if let Some(v) =
            DRIVER_FEATURE_SELECT.write(off, data, self.common.driver_feature_select.into())
        {
            self.common.driver_feature_select = v as u32;
        }
        if let Some(v) = DRIVER_FEATURE.write(off, data, 0) {
            self.write_driver_features(v as u32);
        }
        if let Some(v) = CONFIG_MSIX_VECTOR.write(off, data, self.common.msix_config.into()) {
            self.common.msix_config = self.checked_vector(v as u16);
        }
        if let Some(v) = DEVICE_STATUS.write(off, data, self.common.status.into()) {
            self.write_status(v as u8);
        }
        if let Some(v) = QUEUE_SELECT.write(off, data, self.common.queue_select.into()) {
            self.common.queue_select = v as u16;
        }
        self.write_queue_fields(off, data);
    }

    fn write_driver_features(&mut self, v: u32) {
        // Features are frozen once FEATURES_OK was accepted.
        if self.common.status & VIRTIO_CONFIG_S_FEATURES_OK as u8 != 0 {
            return;
        }
        let f = &mut self.common.driver_features;
        match self.common.driver_feature_select {
            0 => *f = (*f & !0xffff_ffff) | v as u64,
            1 => *f = (*f & 0xffff_ffff) | ((v as u64) << 32),
            _ => {}
        }
    }

    fn write_status(&mut self, v: u8) {
        if v == 0 {
            self.virtio_reset();
            return;
        }
        let mut v = v;
        let features_ok = VIRTIO_CONFIG_S_FEATURES_OK as u8;
        if v & features_ok != 0 && self.common.status & features_ok == 0 {
            let f = self.common.driver_features;
            let acceptable =
                f & !self.offered_features() == 0 && f & (1 << VIRTIO_F_VERSION_1) != 0;
            if acceptable {
                let event_idx = f & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
                for q in &self.shared.queues {
                    q.lock().queue.set_event_idx(event_idx);
                }
            } else {
                // The driver reads FEATURES_OK back and sees the refusal.
                v &= !features_ok;
            }
        }
        self.common.status = v;
        self.shared.status.store(v, Ordering::Release);
    }

    fn write_queue_fields(&mut self, off: u64, data: &[u8]) {
        let event_idx = self.negotiated(VIRTIO_RING_F_EVENT_IDX);
        let vector_ok = |v: u64| self.checked_vector(v as u16);
        let Some(slot) = self.shared.queues.get(self.common.queue_select as usize) else {
            return;
        };
        let mut vq = slot.lock();
        if let Some(v) = QUEUE_MSIX_VECTOR.write(off, data, vq.msix_vector.into()) {
            vq.msix_vector = vector_ok(v);
        }
        if let Some(v) = QUEUE_ENABLE.write(off, data, vq.enabled() as u64) {
            // Writing 0 is not allowed by the specification and ignored.
            if v == 1 && !vq.enabled() {
                vq.enable(event_idx);
            }
        }
        // The ring layout only changes while the queue is disabled.
        if vq.enabled() {
            return;
        }
        if let Some(v) = QUEUE_SIZE.write(off, data, vq.queue.size().into()) {
            vq.queue.set_size(v as u16);
        }
        if let Some(v) = QUEUE_DESC.write(off, data, vq.queue.desc_table()) {
            vq.queue
                .set_desc_table_address(Some(v as u32), Some((v >> 32) as u32));
        }
        if let Some(v) = QUEUE_DRIVER.write(off, data, vq.queue.avail_ring()) {
            vq.queue
                .set_avail_ring_address(Some(v as u32), Some((v >> 32) as u32));
        }
        if let Some(v) = QUEUE_DEVICE.write(off, data, vq.queue.used_ring()) {
            vq.queue
                .set_used_ring_address(Some(v as u32), Some((v >> 32) as u32));
        }
    }
}
