// SPDX-License-Identifier: GPL-2.0

//! Reading the device state into a stream frame, and programming a validated frame into the
//! device.

use kernel::{
    device::Bound,
    pci,
    prelude::*,
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
    virtio::pci::DeviceStatus, //
};
use virtio_mig_core::{
    device_config,
    layout::VIRTIO_F_RING_PACKED,
    mig_stream::{
        self,
        DeviceIdentity,
        DriverState,
        Frame,
        QueueSet,
        QueueState,
        SavedState,
        Selectors,
        MAX_DEVICE_CONFIG_LEN, //
    },
};

use crate::{
    queues,
    regs::Regs, //
};

/// Virtio device IDs of modern functions start here (0x1040 + device type).
pub(crate) const MODERN_DEVICE_ID_BASE: u16 = 0x1040;

/// Runs `f`, which selects queues and feature words, with the guest's selectors and puts them
/// back after it: the guest may be between a select and the access it selected for. `f`
/// returns what its accesses left in the selectors, so that only those that differ are
/// written; after a failure all of them are.
fn keeping_selectors<R>(
    regs: &Regs<'_>,
    f: impl FnOnce(Selectors) -> Result<(R, Selectors)>,
) -> Result<R> {
    let guest = regs.common.selectors()?;
    match f(guest) {
        Ok((result, left)) => {
            regs.common.change_selectors(&left, &guest)?;
            Ok(result)
        }
        Err(e) => {
            // The failure is what the caller needs to hear.
            let _ = regs.common.set_selectors(&guest);
            Err(e)
        }
    }
}

/// What the device says of itself and does not change: read once, when the device is opened.
pub(crate) struct DeviceConstants {
    /// Who the device is and what it offers.
    pub(crate) identity: DeviceIdentity,
    /// `queue_notify_off` of each queue, which a save records without reading it again.
    pub(crate) notify_offs: KVec<u16>,
}

/// Reads the [`DeviceConstants`] after `vfio_pci_core` reset the device at open (queue sizes
/// then read as the device's maxima).
pub(crate) fn constants(pdev: &pci::Device<Bound>, regs: &Regs<'_>) -> Result<DeviceConstants> {
    keeping_selectors(regs, |guest| read_constants(pdev, regs, guest))
}

/// Reads the constants; returns them and the selectors their reads left.
fn read_constants(
    pdev: &pci::Device<Bound>,
    regs: &Regs<'_>,
    guest: Selectors,
) -> Result<(DeviceConstants, Selectors)> {
    let mut left = guest;
    let num_queues = queues::num_queues(regs)?;
    let mut max_queue_size = 0;
    let mut notify_offs = KVec::with_capacity(usize::from(num_queues), GFP_KERNEL)?;
    for q in 0..num_queues {
        regs.common.select_queue(q)?;
        left.queue_select = q;
        max_queue_size = max_queue_size.max(regs.common.queue_size()?);
        notify_offs.push(regs.common.queue_notify_off()?, GFP_KERNEL)?;
    }
    let config_len = regs.device.len().min(MAX_DEVICE_CONFIG_LEN as u32);
    let device_features = regs.common.device_features()?;
    left.device_feature_select = 1;
    let identity = DeviceIdentity {
        device_type: u32::from(pdev.device_id().saturating_sub(MODERN_DEVICE_ID_BASE)),
        vendor_id: pdev.vendor_id().as_raw(),
        device_id: pdev.device_id(),
        subsystem_vendor_id: pdev.subsystem_vendor_id(),
        subsystem_id: pdev.subsystem_device_id(),
        device_features,
        num_queues,
        max_queue_size,
        device_config_len: config_len,
    };
    Ok((
        DeviceConstants {
            identity,
            notify_offs,
        },
        left,
    ))
}

/// Encodes the complete state of the quiesced device as a final frame appended to `out`.
///
/// Reads what the driver cannot know (what the guest programmed), each register once: every
/// queue's configuration, the position of the enabled ones, the device configuration field by
/// field at its natural width, and the selectors; the [`DeviceConstants`] are not read again.
/// The reads end on the guest's own selectors where they can (a feature word, an existing
/// queue), a queue already selected is not selected again, and the driver writes back the
/// selectors the reads left elsewhere, or all of them after a failure.
pub(crate) fn save(regs: &Regs<'_>, device: &DeviceConstants, out: &mut KVec<u8>) -> Result {
    keeping_selectors(regs, |guest| save_frame(regs, device, guest, out))
}

/// Saves the frame; returns the selectors its reads left.
fn save_frame(
    regs: &Regs<'_>,
    device: &DeviceConstants,
    guest: Selectors,
    out: &mut KVec<u8>,
) -> Result<((), Selectors)> {
    let identity = &device.identity;
    let mut left = guest;
    let driver_features = regs
        .common
        .driver_features_ending_at(guest.driver_feature_select)?;
    left.driver_feature_select = guest.driver_feature_select.min(1);
    if driver_features & VIRTIO_F_RING_PACKED != 0 {
        // The device state capability describes split rings only: saving would lose the
        // packed rings' wrap counters.
        return Err(EOPNOTSUPP);
    }
    let n = identity.num_queues;
    // The guest's queue last, if it exists.
    let guest_queue = (guest.queue_select < n).then_some(guest.queue_select);
    let order = Iterator::chain((0..n).filter(|&q| Some(q) != guest_queue), guest_queue);
    let mut queue_states = KVec::with_capacity(usize::from(n), GFP_KERNEL)?;
    for q in order {
        if left.queue_select != q {
            regs.common.select_queue(q)?;
            left.queue_select = q;
        }
        let enable = regs.common.queue_enable()?;
        let last_avail_idx = if enable != 0 {
            // The queue is stopped: its position is stable and may be read.
            regs.state.select_queue(q)?;
            regs.state.last_avail_idx()?
        } else {
            0
        };
        queue_states.push(
            QueueState {
                index: q,
                size: regs.common.queue_size()?,
                enable,
                msix_vector: regs.common.queue_msix_vector()?,
                notify_off: *device.notify_offs.get(usize::from(q)).ok_or(EINVAL)?,
                last_avail_idx,
                desc_addr: regs.common.queue_desc()?,
                driver_addr: regs.common.queue_driver()?,
                device_addr: regs.common.queue_device()?,
            },
            GFP_KERNEL,
        )?;
    }
    // In index order, as the stream format writes them: the guest's queue moves from the end
    // to its place.
    if let Some(g) = guest_queue {
        queue_states
            .get_mut(usize::from(g)..)
            .ok_or(EINVAL)?
            .rotate_right(1);
    }
    let (config, config_generation) = read_device_config(regs, identity)?;
    let state = SavedState {
        identity: *identity,
        driver: DriverState {
            driver_features,
            device_status: regs.common.device_status()?.0,
            config_generation,
        },
        config_msix_vector: regs.common.config_msix_vector()?,
        selectors: guest,
        queues: &queue_states,
        device_config: &config,
    };
    let len = mig_stream::final_frame_len(queue_states.len(), config.len());
    let start = out.len();
    out.extend_with(len, 0, GFP_KERNEL)?;
    match mig_stream::encode_final(&mut out[start..], &state) {
        Ok(written) if written == len => Ok(((), left)),
        _ => {
            out.truncate(start);
            Err(EINVAL)
        }
    }
}

/// How many times a device configuration that changes while it is read is read again.
const CONFIG_READ_ATTEMPTS: usize = 3;

/// Reads the device configuration, each field once at its natural width (reserved bytes stay
/// 0), and the `config_generation` it belongs to. A generation that changes during the read
/// means a torn read, which is retried a few times and then fails with `EAGAIN`.
fn read_device_config(regs: &Regs<'_>, identity: &DeviceIdentity) -> Result<(KVec<u8>, u8)> {
    let len = u16::try_from(identity.device_config_len)?;
    let mut config = KVec::new();
    config.extend_with(usize::from(len), 0, GFP_KERNEL)?;
    for _ in 0..CONFIG_READ_ATTEMPTS {
        let generation = regs.common.config_generation()?;
        for read in device_config::reads(identity.device_type, len) {
            let at = usize::from(read.offset);
            match read.width {
                1 => config[at] = regs.device.read_byte(read.offset)?,
                2 => config[at..at + 2]
                    .copy_from_slice(&regs.device.read_u16(read.offset)?.to_le_bytes()),
                _ => config[at..at + 4]
                    .copy_from_slice(&regs.device.read_u32(read.offset)?.to_le_bytes()),
            }
        }
        if regs.common.config_generation()? == generation {
            return Ok((config, generation));
        }
    }
    Err(EAGAIN)
}

/// Programs the validated final `frame` into the device, leaving every enabled queue stopped at
/// its saved position, and returns those queues (to resume on the way to RUNNING).
pub(crate) fn restore(regs: &Regs<'_>, frame: &Frame<'_>, timeout: Delta) -> Result<QueueSet> {
    let driver = frame.driver.ok_or(EINVAL)?;
    let status = DeviceStatus(driver.device_status);
    // Start from a reset device: it forgets any queue and feature state it had. The reset is
    // done when the status reads back 0.
    regs.common.set_device_status(DeviceStatus::RESET)?;
    let started = Instant::<Monotonic>::now();
    queues::poll(
        || regs.common.device_status(),
        |&now| now == DeviceStatus::RESET,
        timeout,
    )?;
    regs.common.set_device_status(
        status.intersection(DeviceStatus::ACKNOWLEDGE.union(DeviceStatus::DRIVER)),
    )?;
    regs.common.set_driver_features(driver.driver_features)?;
    if status.contains(DeviceStatus::FEATURES_OK) {
        regs.common
            .set_device_status(status.difference(DeviceStatus::DRIVER_OK))?;
        if !regs
            .common
            .device_status()?
            .contains(DeviceStatus::FEATURES_OK)
        {
            return Err(EIO);
        }
        // What the guest wrote into the device configuration, now that the features that
        // make it writable are accepted.
        if let Some(config) = frame.device_config {
            write_device_config(regs, frame, driver.driver_features, config)?;
        }
    }
    if let Some(vector) = frame.config_msix_vector {
        regs.common.set_config_msix_vector(vector)?;
    }
    let mut restored = QueueSet::default();
    for q in frame.queues() {
        regs.common.select_queue(q.index)?;
        regs.common.set_queue_size(q.size)?;
        regs.common.set_queue_msix_vector(q.msix_vector)?;
        regs.common.set_queue_desc(q.desc_addr)?;
        regs.common.set_queue_driver(q.driver_addr)?;
        regs.common.set_queue_device(q.device_addr)?;
        if q.enable == 0 {
            continue;
        }
        regs.common.set_queue_enable(1)?;
        restored.insert(q.index);
    }
    // Enabling a queue starts it: stop each again before placing it at its saved position.
    // Both waits share one budget.
    let num_queues = u16::try_from(frame.queues().count())?;
    queues::quiesce(regs, num_queues, timeout - started.elapsed())?;
    for q in frame.queues().filter(|q| restored.contains(q.index)) {
        regs.state.select_queue(q.index)?;
        regs.state.set_last_avail_idx(q.last_avail_idx)?;
        if regs.state.last_avail_idx()? != q.last_avail_idx {
            return Err(EIO);
        }
    }
    // The guest finds the selectors where it left them on the source.
    if let Some(selectors) = frame.selectors {
        regs.common.set_selectors(&selectors)?;
    }
    // The queues stay stopped until RUNNING, so DRIVER_OK starts nothing yet.
    regs.common.set_device_status(status)?;
    Ok(restored)
}

/// Writes the fields of `config` (the source's device configuration) that the driver may write
/// with `driver_features`, each at its natural width.
fn write_device_config(
    regs: &Regs<'_>,
    frame: &Frame<'_>,
    driver_features: u64,
    config: &[u8],
) -> Result {
    let len = u16::try_from(config.len())?;
    for field in device_config::writable(frame.identity.device_type, driver_features, len) {
        let at = usize::from(field.offset);
        let bytes = config
            .get(at..at + usize::from(field.width))
            .ok_or(EINVAL)?;
        match *bytes {
            [b] => regs.device.write_byte(field.offset, b)?,
            [b0, b1] => regs
                .device
                .write_u16(field.offset, u16::from_le_bytes([b0, b1]))?,
            [b0, b1, b2, b3] => regs
                .device
                .write_u32(field.offset, u32::from_le_bytes([b0, b1, b2, b3]))?,
            _ => return Err(EINVAL),
        }
    }
    Ok(())
}
