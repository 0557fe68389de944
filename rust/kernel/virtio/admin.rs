// SPDX-License-Identifier: GPL-2.0

//! Virtio admin commands sent through an owner function for its members.
//!
//! An *owner* is a virtio-pci function with an admin virtqueue (`VIRTIO_F_ADMIN_VQ`) bound to a
//! host kernel driver; it executes commands on behalf of the *members* of its group. The driver
//! of a member (a VFIO variant driver, whose function the VFIO user owns) reaches its owner with
//! [`Member::find`] and sends typed commands through it. The owner DMAs through its own kernel
//! DMA domain, so this works whatever IOMMU domain translates the member's DMA.
//!
//! Two pairings of owner and member are known:
//! - the SR-IOV group: the owner is the PF and the member id is the VF number;
//! - the slot group (provisional): the owner is function 0 of a multi-function slot and the
//!   member id is the function number of one of the other functions.
//!
//! Commands of all members of one owner are serialized: one is in flight at a time, with a
//! bounded wait. A command that does not complete resets the owner, which ends what every
//! member had started there; [`Epoch`] tells a member that this happened.
//!
//! The command layouts are the host-tested `virtio_mig_core::admin` codec's.

mod queue;

use crate::{
    bindings,
    device::{
        self,
        Bound,
        Core, //
    },
    dma::{
        Device as _,
        DmaMask, //
    },
    io::poll::read_poll_timeout,
    io::IoBase,
    new_mutex,
    pci::{
        self,
        DevresBar, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    },
    time::Delta,
};
use core::sync::atomic::{
    AtomicU8,
    Ordering, //
};
use queue::SplitQueue;
use virtio_mig_core::{
    admin::{
        self as codec,
        group_type,
        opcode,
        status,
        CodecError,
        Header, //
    },
    layout::{
        DeviceStatus,
        VIRTIO_MSI_NO_VECTOR, //
    },
};

use super::pci::{
    CapRegion,
    CapWindow,
    Capabilities,
    CommonCfg,
    NotifyCfg, //
};

pub use virtio_mig_core::admin::{
    ReadRecords,
    StartEntry,
    WriteRecordCaps, //
};

/// Feature bit `VIRTIO_F_VERSION_1`.
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit `VIRTIO_F_ADMIN_VQ`.
const VIRTIO_F_ADMIN_VQ: u64 = 1 << codec::VIRTIO_F_ADMIN_VQ;

/// The opcodes of write recording; an owner offers write recording for a group type only if it
/// supports all of them there.
const WRITE_RECORDING: u64 = 1 << opcode::WRITE_RECORD_CAP_QUERY
    | 1 << opcode::WRITE_RECORDS_START
    | 1 << opcode::WRITE_RECORDS_STOP
    | 1 << opcode::WRITE_RECORDS_READ;
/// The group types the driver knows, in the order it asks an owner about them.
const GROUP_TYPES: [u16; 2] = [group_type::SLOT, group_type::SRIOV];

/// One initialisation of an owner. What a member started in one epoch is gone in the next: the
/// owner was reset in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Epoch(u64);

/// Where an owner sits: its PCI bus and device/function number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Location {
    bus: usize,
    devfn: u8,
}

impl Location {
    fn of(pdev: &pci::Device<Bound>) -> Self {
        let raw = pdev.as_raw();
        // SAFETY: `raw` is a valid `struct pci_dev` for the lifetime of `pdev`.
        let (bus, devfn) = unsafe { ((*raw).bus as usize, (*raw).devfn as u8) };
        Self { bus, devfn }
    }
}

/// The owner's registers and queue while it is bound.
struct Live {
    caps: Capabilities,
    bars: KVec<(u8, DevresBar)>,
    queue: SplitQueue,
    queue_index: u16,
    notify_off: u16,
    /// The device must be (re)initialised before the next command.
    needs_init: bool,
}

/// The command channel of an owner.
struct Channel {
    /// `None` once the owner is unbound.
    live: Option<Live>,
    epoch: u64,
    /// Group types whose write-recording commands the owner accepts, one bit per type.
    groups: u32,
    /// Command header and data, copied to the device-readable buffer.
    request: KVec<u8>,
    /// The device-writable buffer, copied out once the command completed.
    response: KVec<u8>,
}

/// An owner function: its admin queue and the members it serves.
#[pin_data]
pub struct Owner {
    location: Location,
    pdev: ARef<pci::Device>,
    timeout: Delta,
    #[pin]
    chan: Mutex<Channel>,
}

kernel::sync::global_lock! {
    // SAFETY: `registry()` initialises it once, before any use.
    unsafe(uninit) static BOUND_OWNERS: Mutex<KVec<Arc<Owner>>> = KVec::new();
}

/// 0: `BOUND_OWNERS` is not initialised, 1: being initialised, 2: ready.
static OWNERS_STATE: AtomicU8 = AtomicU8::new(0);

/// The registry of bound owners.
fn registry() -> kernel::sync::lock::GlobalGuard<BOUND_OWNERS> {
    loop {
        match OWNERS_STATE.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: Only the caller that moved the state from 0 gets here, once.
                unsafe { BOUND_OWNERS.init() };
                OWNERS_STATE.store(2, Ordering::Release);
                break;
            }
            Err(2) => break,
            // Another CPU is initialising the lock: a handful of instructions.
            Err(_) => core::hint::spin_loop(),
        }
    }
    BOUND_OWNERS.lock()
}

/// Maps a completion status to an errno.
fn status_error(status: u16) -> Error {
    match status {
        status::EAGAIN => EAGAIN,
        status::ENOMEM => ENOMEM,
        status::EINVAL => EINVAL,
        _ => EIO,
    }
}

fn codec_error(_: CodecError) -> Error {
    EINVAL
}

impl Live {
    fn bar(&self, region: CapRegion) -> Result<&DevresBar> {
        self.bars
            .iter()
            .find(|(bar, _)| *bar == region.bar)
            .map(|(_, bar)| bar)
            .ok_or(ENODEV)
    }

    /// Runs `f` on the common configuration. `f` must not sleep: the mapping is held in an RCU
    /// read-side section, so that it goes away with the owner's binding.
    fn common<R>(&self, f: impl FnOnce(&CommonCfg<'_>) -> Result<R>) -> Result<R> {
        let region = self.caps.common().ok_or(ENODEV)?;
        let bar = self.bar(region)?.try_access().ok_or(ENODEV)?;
        f(&CommonCfg::new(CapWindow::new((&*bar).as_view(), region)))
    }

    fn notify(&self) -> Result {
        let region = self.caps.notify().ok_or(ENODEV)?;
        let bar = self.bar(region)?.try_access().ok_or(ENODEV)?;
        NotifyCfg::new(
            CapWindow::new((&*bar).as_view(), region),
            self.caps.notify_off_multiplier(),
        )
        .notify(self.notify_off, self.queue_index)
    }

    /// Resets the device and waits, bounded, until it reads back reset: only then does it no
    /// longer use the queue memory.
    fn reset(&mut self, timeout: Delta) -> Result {
        self.needs_init = true;
        self.common(|c| c.set_device_status(DeviceStatus::RESET))?;
        read_poll_timeout(
            || self.common(|c| c.device_status()),
            |s| *s == DeviceStatus::RESET,
            Delta::from_micros(100),
            timeout,
        )
        .map(|_| ())
    }

    /// Brings the device up with its admin queue, as the virtio initialisation sequence says.
    fn init(&mut self, timeout: Delta) -> Result {
        self.reset(timeout)?;
        let mut status = DeviceStatus::ACKNOWLEDGE;
        self.common(|c| c.set_device_status(status))?;
        status = status.union(DeviceStatus::DRIVER);
        self.common(|c| c.set_device_status(status))?;
        let offered = self.common(|c| c.device_features())?;
        let wanted = VIRTIO_F_VERSION_1 | VIRTIO_F_ADMIN_VQ;
        if offered & wanted != wanted {
            return Err(ENODEV);
        }
        self.common(|c| c.set_driver_features(wanted))?;
        status = status.union(DeviceStatus::FEATURES_OK);
        self.common(|c| c.set_device_status(status))?;
        if !self
            .common(|c| c.device_status())?
            .contains(DeviceStatus::FEATURES_OK)
        {
            return Err(EIO);
        }
        let (index, num) = self.common(|c| Ok((c.admin_queue_index()?, c.admin_queue_num()?)))?;
        if num == 0 {
            return Err(ENODEV);
        }
        let max = self.common(|c| {
            c.select_queue(index)?;
            c.queue_size()
        })?;
        let size = self.queue.reset(max)?;
        let (desc, driver, used) = self.queue.ring_addresses();
        self.notify_off = self.common(|c| {
            c.select_queue(index)?;
            c.set_queue_size(size)?;
            c.set_queue_desc(desc)?;
            c.set_queue_driver(driver)?;
            c.set_queue_device(used)?;
            // Completions are polled.
            c.set_queue_msix_vector(VIRTIO_MSI_NO_VECTOR)?;
            let notify_off = c.queue_notify_off()?;
            c.set_queue_enable(1)?;
            Ok(notify_off)
        })?;
        self.queue_index = index;
        status = status.union(DeviceStatus::DRIVER_OK);
        self.common(|c| c.set_device_status(status))?;
        self.needs_init = false;
        Ok(())
    }
}

impl Channel {
    /// Makes the owner ready for a command: re-initialises it when it was reset, by the driver
    /// after a timeout or by anything else (found in its status), and declares the commands
    /// the driver uses again.
    fn ensure_ready(&mut self, owner: &Owner) -> Result {
        let pdev = &*owner.pdev;
        let live = self.live.as_mut().ok_or(ENODEV)?;
        if !live.needs_init {
            let status = live.common(|c| c.device_status())?;
            if status.contains(DeviceStatus::DRIVER_OK)
                && !status.contains(DeviceStatus::NEEDS_RESET)
            {
                return Ok(());
            }
            dev_warn!(pdev, "owner function was reset (status {:#x})\n", status.0);
        }
        // What members recorded is gone with the reset.
        self.epoch += 1;
        self.groups = 0;
        live.init(owner.timeout)
            .inspect_err(|e| dev_err!(pdev, "owner initialisation failed ({:?})\n", e))?;
        self.discover_groups(owner)
    }

    /// Executes one command on a ready owner and returns its completion and the length of its
    /// result, which is in `self.response[STATUS_LEN..]`. `data` encodes the command-specific
    /// data into the buffer it is given and returns its length.
    fn exec(
        &mut self,
        owner: &Owner,
        header: Header,
        data: impl FnOnce(&mut [u8]) -> core::result::Result<usize, CodecError>,
        result_len: usize,
    ) -> Result<(codec::Completion, usize)> {
        let pdev = &*owner.pdev;
        let hlen = header.encode(&mut self.request[..]).map_err(codec_error)?;
        let dlen = data(&mut self.request[hlen..]).map_err(codec_error)?;
        let writable = codec::STATUS_LEN + result_len;
        if writable > self.response.len() {
            return Err(E2BIG);
        }
        let live = self.live.as_mut().ok_or(ENODEV)?;
        live.queue.fill_readable(&self.request[..hlen + dlen])?;
        live.queue.submit(hlen + dlen, writable)?;
        live.notify()?;
        let queue = &live.queue;
        let done = read_poll_timeout(
            || queue.has_used(),
            |&used| used,
            Delta::from_micros(50),
            owner.timeout,
        );
        if let Err(e) = done {
            dev_err!(
                pdev,
                "admin command {:#x} not completed ({:?}); resetting the owner\n",
                header.opcode,
                e
            );
            if live.reset(owner.timeout).is_err() {
                // The device may still use the queue memory: never reuse or free it.
                dev_err!(pdev, "owner function did not reset; giving it up\n");
                if let Some(live) = self.live.take() {
                    core::mem::forget(live.queue);
                }
            }
            return Err(ETIMEDOUT);
        }
        let used = live.queue.pop_used()?.ok_or(EIO)?;
        if used.id != 0 {
            dev_err!(pdev, "admin queue returned chain {}\n", used.id);
            live.needs_init = true;
            return Err(EIO);
        }
        let copied = usize::try_from(used.len)?.min(writable);
        live.queue.copy_writable(&mut self.response[..copied])?;
        let (completion, result) = codec::parse_completion(&self.response[..writable], used.len)
            .map_err(|e| {
                dev_err!(
                    pdev,
                    "admin command {:#x}: bad completion length {} ({:?})\n",
                    header.opcode,
                    used.len,
                    e
                );
                EIO
            })?;
        Ok((completion, result.len()))
    }

    /// Executes a command that must succeed; returns the result length.
    fn exec_ok(
        &mut self,
        owner: &Owner,
        header: Header,
        data: impl FnOnce(&mut [u8]) -> core::result::Result<usize, CodecError>,
        result_len: usize,
    ) -> Result<usize> {
        let (completion, len) = self.exec(owner, header, data, result_len)?;
        if completion.status != status::OK {
            dev_dbg!(
                &*owner.pdev,
                "admin command {:#x} for member {}: status {} qualifier {}\n",
                header.opcode,
                header.member_id,
                completion.status,
                completion.qualifier
            );
            return Err(status_error(completion.status));
        }
        Ok(len)
    }

    /// Finds the group types where the owner offers write recording, and declares their use.
    fn discover_groups(&mut self, owner: &Owner) -> Result {
        let mut groups = 0;
        for &group in GROUP_TYPES.iter() {
            let query = Header {
                opcode: opcode::LIST_QUERY,
                group_type: group,
                member_id: 0,
            };
            let supported = match self.exec_ok(owner, query, |_| Ok(0), 8) {
                Ok(len) => {
                    let result = &self.response[codec::STATUS_LEN..codec::STATUS_LEN + len];
                    codec::parse_opcode_bitmap(result).unwrap_or(0)
                }
                // A group type the owner does not have.
                Err(e) if e == EINVAL => 0,
                Err(e) => return Err(e),
            };
            if supported & WRITE_RECORDING != WRITE_RECORDING {
                continue;
            }
            let used =
                (WRITE_RECORDING | 1 << opcode::LIST_QUERY | 1 << opcode::LIST_USE) & supported;
            let declare = Header {
                opcode: opcode::LIST_USE,
                ..query
            };
            self.exec_ok(
                owner,
                declare,
                |out| codec::encode_opcode_bitmap(used, out),
                0,
            )?;
            groups |= 1 << group;
        }
        self.groups = groups;
        Ok(())
    }
}

impl Owner {
    /// Takes `pdev` as an owner: brings its admin queue up, finds the groups it serves and
    /// registers it for [`Member::find`]. Commands wait at most `timeout`.
    pub fn probe(pdev: &pci::Device<Core<'_>>, timeout: Delta) -> Result<Arc<Self>> {
        let caps = Capabilities::discover(pdev)?;
        let (common, notify) = (caps.common().ok_or(ENODEV)?, caps.notify().ok_or(ENODEV)?);
        pdev.enable_device_mem()?;
        pdev.set_master();
        // SAFETY: No DMA allocation or mapping of this driver exists yet for `pdev`.
        unsafe { pdev.dma_set_mask_and_coherent(DmaMask::new::<64>())? };
        let mut bars = KVec::new();
        for bar in [common.bar, notify.bar] {
            if bars.iter().any(|(b, _)| *b == bar) {
                continue;
            }
            let mapping = pdev
                .iomap_region(u32::from(bar), c"virtio-mig-owner")?
                .into_devres()?;
            bars.push((bar, mapping), GFP_KERNEL)?;
        }
        let live = Live {
            caps,
            bars,
            queue: SplitQueue::new(pdev.as_ref())?,
            queue_index: 0,
            notify_off: 0,
            needs_init: true,
        };
        let mut request = KVec::new();
        request.resize(queue::READABLE_LEN, 0, GFP_KERNEL)?;
        let mut response = KVec::new();
        response.resize(queue::WRITABLE_LEN, 0, GFP_KERNEL)?;
        let bound: &pci::Device<Bound> = pdev;
        let owner = Arc::pin_init(
            pin_init!(Self {
                location: Location::of(bound),
                pdev: bound.into(),
                timeout,
                chan <- new_mutex!(Channel {
                    live: Some(live),
                    epoch: 0,
                    groups: 0,
                    request,
                    response,
                }),
            }),
            GFP_KERNEL,
        )?;
        let ready = {
            let mut chan = owner.chan.lock();
            chan.ensure_ready(&owner).map(|()| {
                let queue_index = chan.live.as_ref().map_or(0, |live| live.queue_index);
                (chan.groups, queue_index)
            })
        };
        let (groups, queue_index) = match ready {
            Ok(found) => found,
            Err(e) => {
                dev_err!(pdev, "admin queue does not work ({:?})\n", e);
                // The device may have started on the queue: reset it before the memory goes.
                owner.remove();
                return Err(e);
            }
        };
        registry().push(owner.clone(), GFP_KERNEL)?;
        let slot = groups & 1 << group_type::SLOT != 0;
        let sriov = groups & 1 << group_type::SRIOV != 0;
        let served = match (slot, sriov) {
            (true, true) => "the functions of its slot and its VFs",
            (true, false) => "the functions of its slot",
            (false, true) => "its VFs",
            (false, false) => "no member",
        };
        dev_info!(
            pdev,
            "owner: admin queue {}, write recording for {}\n",
            queue_index,
            served
        );
        Ok(owner)
    }

    /// Gives the owner up when its driver unbinds: members' commands fail with `ENODEV` from
    /// now on. Waits for a command in flight.
    pub fn remove(&self) {
        {
            let mut owners = registry();
            owners.retain(|o| !core::ptr::eq(&**o, self));
        }
        let mut chan = self.chan.lock();
        if let Some(mut live) = chan.live.take() {
            if live.reset(self.timeout).is_err() {
                dev_err!(
                    &*self.pdev,
                    "owner function did not reset; keeping its queue\n"
                );
                core::mem::forget(live.queue);
            }
        }
    }

    fn supports(&self, group: u16) -> bool {
        let chan = self.chan.lock();
        chan.live.is_some() && chan.groups & 1 << group != 0
    }
}

/// The owner of one member function, and the member's identity in the owner's group.
pub struct Member {
    owner: Arc<Owner>,
    group: u16,
    id: u64,
}

impl Member {
    /// The owner of `pdev`, if one is bound and offers write recording for `pdev`'s group.
    pub fn find(pdev: &pci::Device<Bound>) -> Option<Self> {
        let raw = pdev.as_raw();
        // SAFETY: `raw` is a valid `struct pci_dev` while `pdev` is bound.
        let (is_vf, location) = unsafe { ((*raw).is_virtfn() != 0, Location::of(pdev)) };
        let (at, group, id) = if is_vf {
            // SAFETY: A VF's `physfn` is its PF, which outlives it.
            let pf = unsafe { (*raw).__bindgen_anon_1.physfn };
            // SAFETY: `raw` is a VF.
            let vf = unsafe { bindings::pci_iov_vf_id(raw) };
            // SAFETY: `pf` is a valid `struct pci_dev`, as above.
            let at = unsafe {
                Location {
                    bus: (*pf).bus as usize,
                    devfn: (*pf).devfn as u8,
                }
            };
            (at, group_type::SRIOV, u64::try_from(vf).ok()? + 1)
        } else {
            let function = location.devfn & 7;
            if function == 0 {
                return None;
            }
            let at = Location {
                devfn: location.devfn & !7,
                ..location
            };
            (at, group_type::SLOT, u64::from(function))
        };
        let owner = registry().iter().find(|o| o.location == at).cloned()?;
        if !owner.supports(group) {
            return None;
        }
        Some(Self { owner, group, id })
    }

    /// The owner function, for messages.
    pub fn owner(&self) -> &pci::Device {
        &self.owner.pdev
    }

    /// The member id in the owner's group.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the group is the provisional slot group (else the SR-IOV group).
    pub fn in_slot_group(&self) -> bool {
        self.group == group_type::SLOT
    }

    fn header(&self, opcode: u16) -> Header {
        Header {
            opcode,
            group_type: self.group,
            member_id: self.id,
        }
    }

    /// Executes `opcode` with `data`; `f` gets the result and the epoch it ran in.
    fn command<R>(
        &self,
        opcode: u16,
        data: impl FnOnce(&mut [u8]) -> core::result::Result<usize, CodecError>,
        result_len: usize,
        f: impl FnOnce(&[u8], Epoch) -> Result<R>,
    ) -> Result<R> {
        let mut chan = self.owner.chan.lock();
        chan.ensure_ready(&self.owner)?;
        let len = chan.exec_ok(&self.owner, self.header(opcode), data, result_len)?;
        let epoch = Epoch(chan.epoch);
        f(
            &chan.response[codec::STATUS_LEN..codec::STATUS_LEN + len],
            epoch,
        )
    }

    /// `WRITE_RECORD_CAP_QUERY`.
    pub fn write_record_caps(&self) -> Result<WriteRecordCaps> {
        self.command(
            opcode::WRITE_RECORD_CAP_QUERY,
            |_| Ok(0),
            16,
            |r, _| {
                WriteRecordCaps::parse(r).map_err(|e| {
                    dev_err!(
                        &*self.owner.pdev,
                        "bad write record capabilities ({:?})\n",
                        e
                    );
                    EIO
                })
            },
        )
    }

    /// `WRITE_RECORDS_START` of `entries` at `page_size`; returns the epoch recording runs in.
    pub fn start_write_records(&self, page_size: u64, entries: &[StartEntry]) -> Result<Epoch> {
        self.command(
            opcode::WRITE_RECORDS_START,
            |out| codec::encode_start(page_size, entries, out),
            0,
            |_, epoch| Ok(epoch),
        )
    }

    /// `WRITE_RECORDS_STOP`.
    pub fn stop_write_records(&self) -> Result {
        self.command(opcode::WRITE_RECORDS_STOP, |_| Ok(0), 0, |_, _| Ok(()))
    }

    /// `WRITE_RECORDS_READ` of `[iova, iova + length)`: `f` gets the records (taken from the
    /// device) and the epoch they belong to.
    pub fn read_write_records<R>(
        &self,
        iova: u64,
        length: u64,
        f: impl FnOnce(core::result::Result<ReadRecords<'_>, CodecError>, Epoch) -> R,
    ) -> Result<R> {
        self.command(
            opcode::WRITE_RECORDS_READ,
            |out| codec::encode_read(iova, length, out),
            queue::WRITABLE_LEN - codec::STATUS_LEN,
            |r, epoch| Ok(f(ReadRecords::parse(r), epoch)),
        )
    }

    /// The owner's current epoch (no command is sent).
    pub fn epoch(&self) -> Epoch {
        Epoch(self.owner.chan.lock().epoch)
    }
}

impl Member {
    /// Most records one `WRITE_RECORDS_READ` returns.
    pub fn records_per_read(&self) -> usize {
        codec::max_read_entries(queue::WRITABLE_LEN)
    }
}

// Messages name the member by its owner's PCI address and its member id.
impl core::fmt::Debug for Member {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let owner: &device::Device = self.owner.pdev.as_ref();
        write!(f, "{}/{}", owner.name().to_str().unwrap_or("?"), self.id)
    }
}
