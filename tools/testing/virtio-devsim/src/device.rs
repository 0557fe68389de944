// SPDX-License-Identifier: GPL-2.0
//! The device: state shared with the queue workers, region dispatch, and
//! the vfio-user backend interface.
//!
//! One [`Device`] is one PCI function. With `--owner-socket` the process
//! has two, each served on its own socket with its own connection and DMA
//! mappings: the member ([`Device::new`]), whose device writes feed its
//! [`WriteRecorder`], and the owner ([`Device::new_owner`]), whose admin
//! virtqueue commands ([`Admin`]) start, stop and read the member's
//! recording. They share nothing else.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio::{
    vfio_region_info, VFIO_IRQ_INFO_EVENTFD, VFIO_PCI_BAR5_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, ServerBackend, ServerRegion};
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_DRIVER_OK;

use crate::admin::Admin;
use crate::blk::Blk;
use crate::common_cfg::CommonRegs;
use crate::config::{Config, Faults, Role};
use crate::irq::Msix;
use crate::layout::*;
use crate::memory::{DmaSpace, WriteSink};
use crate::pci_config::{ConfigEvent, PciConfig};
use crate::queue::{QueueSlot, VirtQueue};
use crate::recording::WriteRecorder;
use crate::regs::Field;
use crate::stats::Stats;
use crate::tracker::{Tracker, TrackerOptions};
use crate::worker;

/// `writeback` of `struct virtio_blk_config`.
const WRITEBACK: Field = Field::new(DEVICE_CFG_WRITEBACK, 1);

/// A callback run when the device drops its connection on purpose.
pub type DisconnectHook = Box<dyn Fn() + Send + Sync>;

/// Every device write goes to the tracker, and to the write recorder of a
/// member.
struct Fanout {
    tracker: Arc<Tracker>,
    recorder: Arc<WriteRecorder>,
}

impl WriteSink for Fanout {
    fn on_write(&self, addr: u64, len: usize) {
        self.tracker.log(addr, len);
        self.recorder.record(addr, len);
    }
}

/// State used by both the register interface and the queue workers.
pub struct Shared {
    /// Device configuration.
    pub cfg: Config,
    /// What the function is in the process.
    pub role: Role,
    /// The member's write record store (member only).
    pub recorder: Option<Arc<WriteRecorder>>,
    /// The admin command processor (owner only).
    pub admin: Option<Arc<Admin>>,
    /// Set by a worker that reset the function on its own
    /// (`--fault-owner-reset-after-reads`); the register side completes
    /// the reset at the next access.
    pub reset_pending: AtomicBool,
    /// Held through such a reset, so that the register side sees it whole.
    reset_lock: Mutex<()>,
    /// The write hook of `mem` (it holds a weak reference).
    _sink: Arc<dyn WriteSink>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Guest memory (DMA mappings).
    pub mem: Arc<DmaSpace>,
    /// The memory dirty pages tracker.
    pub tracker: Arc<Tracker>,
    /// MSI-X vectors.
    pub msix: Msix,
    /// The block backend.
    pub blk: Blk,
    /// Device status, mirrored for the workers.
    pub status: AtomicU8,
    /// ISR status byte.
    pub isr: AtomicU8,
    /// The virtqueues.
    pub queues: Vec<QueueSlot>,
    /// Set while the function is quiesced (in D3hot, or during a
    /// function-level reset): no queue fetches new buffers. Workers read it
    /// under the queue lock.
    pub quiesced: AtomicBool,
    disconnect: Mutex<Option<DisconnectHook>>,
}

impl Shared {
    /// Whether the driver set DRIVER_OK.
    pub fn driver_ok(&self) -> bool {
        self.status.load(Ordering::Acquire) & VIRTIO_CONFIG_S_DRIVER_OK as u8 != 0
    }

    /// Signals a used-buffer notification on `vector`.
    pub fn interrupt_queue(&self, vector: u16) {
        self.isr.fetch_or(1, Ordering::SeqCst);
        if vector != VIRTIO_MSI_NO_VECTOR {
            self.msix.signal(vector);
        }
    }

    /// Index of the admin virtqueue (owner only).
    pub fn admin_queue(&self) -> Option<usize> {
        self.admin
            .as_ref()
            .map(|_| OWNER_ADMIN_QUEUE_INDEX as usize)
    }

    /// Number of request queues (`num_queues`): every queue but the admin
    /// queue.
    pub fn request_queues(&self) -> usize {
        self.queues.len() - self.admin_queue().map_or(0, |_| 1)
    }

    /// The function resets itself (`--fault-owner-reset-after-reads`):
    /// device status 0, every queue disabled, recording stopped. The
    /// registers follow at the next access ([`Shared::reset_pending`]).
    pub(crate) fn reset_by_device(&self) {
        let _whole = self.reset_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.status.store(0, Ordering::Release);
        for q in &self.queues {
            q.lock().reset();
        }
        if let Some(admin) = &self.admin {
            admin.reset();
        }
        self.reset_pending.store(true, Ordering::SeqCst);
    }

    /// Counts a completed request and applies `--fault-disconnect-after-requests`.
    pub fn request_completed(&self) {
        let served = self.stats.requests_served.fetch_add(1, Ordering::SeqCst) + 1;
        if self.cfg.faults.disconnect_after_requests == Some(served) {
            eprintln!("virtio-devsim: fault: disconnecting after {served} requests");
            if let Ok(hook) = self.disconnect.lock() {
                if let Some(hook) = hook.as_ref() {
                    hook();
                }
            }
        }
    }
}

/// What triggered a function-level reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetCause {
    /// `VFIO_USER_DEVICE_RESET` from the client.
    Client,
    /// Initiate Function Level Reset in the PCI Express capability.
    Flr,
    /// The power state went from D3hot to D0 (No_Soft_Reset is clear).
    PowerManagement,
}

/// The device model. It is the vfio-user backend: every client message ends
/// up in one of its [`ServerBackend`] methods.
pub struct Device {
    pub(crate) shared: Arc<Shared>,
    pub(crate) pci: PciConfig,
    pub(crate) common: CommonRegs,
    /// `queue_select` of the device state block.
    pub(crate) state_select: u16,
    msix_bar: Vec<u8>,
    blk_config: [u8; DEVICE_CFG_LEN as usize],
    /// Ranges the client mapped without a file descriptor (unreachable).
    unbacked: Vec<(u64, u64)>,
    kicks: Vec<Sender<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// The configuration of the owner function derived from the process's:
/// one request queue, none of the member's tracker, timing or fault
/// options but the admin ones.
fn owner_config(cfg: &Config) -> Config {
    Config {
        queues: OWNER_REQUEST_QUEUES,
        serial: OWNER_SERIAL.to_string(),
        stats_file: None,
        request_delay_ms: 0,
        min_gra_power: 0,
        byte_granular_dirty: false,
        pasid: false,
        no_tracker: true,
        faults: Faults {
            admin_hang: cfg.faults.admin_hang,
            admin_status: cfg.faults.admin_status,
            stray_records: cfg.faults.stray_records,
            owner_reset_after_reads: cfg.faults.owner_reset_after_reads,
            ..Faults::default()
        },
        ..cfg.clone()
    }
}

impl Device {
    /// Creates the function at `--socket` and its queue workers: the only
    /// function, or the member of an owner when `cfg.owner_socket` is set.
    pub fn new(cfg: Config) -> io::Result<Self> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
        let role = Role::of(&cfg);
        let blk = Blk::open(&cfg)?;
        let stats = Arc::new(Stats::default());
        let recorder = (role == Role::Member)
            .then(|| Arc::new(WriteRecorder::new(cfg.record_capacity, stats.clone())));
        Self::build(cfg, role, stats, blk, recorder, None)
    }

    /// Creates the owner function of `member` (made by [`Device::new`] with
    /// `cfg.owner_socket` set): a virtio-blk function of capacity 0 with
    /// an admin virtqueue that controls the member's write recording. The
    /// admin counters go to the member's statistics, which also render the
    /// owner's own (prefixed `owner_`).
    pub fn new_owner(cfg: &Config, member: &Device) -> io::Result<Self> {
        let recorder = member.shared.recorder.clone().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the function is no member")
        })?;
        let cfg = owner_config(cfg);
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
        let blk = Blk::inert(&cfg.serial, cfg.queues, cfg.queue_size)?;
        let process = member.shared.stats.clone();
        let admin = Arc::new(Admin::new(&cfg, recorder, process.clone()));
        let stats = Arc::new(Stats::default());
        process.attach_owner(stats.clone());
        Self::build(cfg, Role::Owner, stats, blk, None, Some(admin))
    }

    fn build(
        cfg: Config,
        role: Role,
        stats: Arc<Stats>,
        blk: Blk,
        recorder: Option<Arc<WriteRecorder>>,
        admin: Option<Arc<Admin>>,
    ) -> io::Result<Self> {
        let mem = Arc::new(DmaSpace::new(stats.clone()));
        let tracker = Arc::new(Tracker::new(
            mem.clone(),
            TrackerOptions {
                min_gra_power: cfg.min_gra_power,
                byte_granular: cfg.byte_granular_dirty,
                bits_past_length: cfg.faults.bits_past_length,
            },
            stats.clone(),
        ));
        // Every device write into guest memory is reported to the tracker
        // (and recorded, for a member).
        let sink: Arc<dyn WriteSink> = match &recorder {
            Some(recorder) => Arc::new(Fanout {
                tracker: tracker.clone(),
                recorder: recorder.clone(),
            }),
            None => tracker.clone(),
        };
        mem.set_write_sink(Arc::downgrade(&sink));
        let blk_config = blk.config_space();
        let nq = cfg.queues as usize + admin.as_ref().map_or(0, |_| 1);
        let queues = (0..nq)
            .map(|_| QueueSlot::new(VirtQueue::new(cfg.queue_size)))
            .collect();
        let shared = Arc::new(Shared {
            msix: Msix::new(nq + 1, stats.clone()),
            cfg,
            role,
            recorder,
            admin,
            reset_pending: AtomicBool::new(false),
            reset_lock: Mutex::new(()),
            _sink: sink,
            stats,
            mem,
            tracker,
            blk,
            status: AtomicU8::new(0),
            isr: AtomicU8::new(0),
            queues,
            quiesced: AtomicBool::new(false),
            disconnect: Mutex::new(None),
        });
        let mut kicks = Vec::new();
        let mut workers = Vec::new();
        for index in 0..shared.queues.len() {
            let (tx, rx) = channel();
            workers.push(worker::spawn(shared.clone(), index, rx)?);
            kicks.push(tx);
        }
        Ok(Self {
            pci: PciConfig::for_role(&shared.cfg, role),
            common: CommonRegs::default(),
            state_select: 0,
            msix_bar: vec![0; MSIX_BAR_SIZE as usize],
            blk_config,
            unbacked: Vec::new(),
            kicks,
            workers,
            shared,
        })
    }

    /// State shared with the workers (statistics, tracker, queues).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Sets the action of `--fault-disconnect-after-requests`.
    pub fn set_disconnect_hook(&self, hook: DisconnectHook) {
        if let Ok(mut h) = self.shared.disconnect.lock() {
            *h = Some(hook);
        }
    }

    /// The vfio regions: BAR0..5, ROM, config space, VGA.
    pub fn regions(&self) -> Vec<ServerRegion> {
        (0..VFIO_PCI_NUM_REGIONS)
            .map(|index| {
                let size = match index {
                    i if i == MSIX_BAR as u32 => MSIX_BAR_SIZE,
                    i if i == VIRTIO_BAR as u32 => VIRTIO_BAR_SIZE,
                    VFIO_PCI_CONFIG_REGION_INDEX => self.pci.len() as u64,
                    _ => 0,
                };
                let flags = if size > 0 {
                    VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
                } else {
                    0
                };
                ServerRegion {
                    region_info: vfio_region_info {
                        argsz: std::mem::size_of::<vfio_region_info>() as u32,
                        flags,
                        index,
                        cap_offset: 0,
                        size,
                        offset: 0,
                    },
                    sparse_areas: Vec::new(),
                    mmap_fd: None,
                }
            })
            .collect()
    }

    /// The vfio interrupt indexes: MSI-X, plus an error interrupt that is
    /// never raised (it lets the client enable error recovery). No INTx, no
    /// MSI.
    pub fn irqs(&self) -> Vec<IrqInfo> {
        (0..VFIO_PCI_NUM_IRQS)
            .map(|index| {
                let count = match index {
                    VFIO_PCI_MSIX_IRQ_INDEX => self.shared.msix.count() as u32,
                    VFIO_PCI_ERR_IRQ_INDEX => 1,
                    _ => 0,
                };
                IrqInfo {
                    index,
                    flags: if count > 0 { VFIO_IRQ_INFO_EVENTFD } else { 0 },
                    count,
                }
            })
            .collect()
    }

    /// Wakes the worker of queue `index`.
    pub(crate) fn kick(&self, index: usize) {
        if let Some(tx) = self.kicks.get(index) {
            let _ = tx.send(());
        }
    }

    /// Virtio device reset (`device_status` written 0): every queue, the
    /// common configuration, the device configuration (`writeback`), the
    /// ISR, the tracker and the device state block return to their initial
    /// values. The owner's reset also stops the member's recording; a
    /// member's keeps it.
    pub(crate) fn virtio_reset(&mut self) {
        self.shared.reset_pending.store(false, Ordering::SeqCst);
        self.common = CommonRegs::default();
        self.blk_config = self.shared.blk.config_space();
        self.shared.status.store(0, Ordering::Release);
        self.shared.isr.store(0, Ordering::SeqCst);
        for q in &self.shared.queues {
            q.lock().reset();
        }
        if let Some(admin) = &self.shared.admin {
            admin.reset();
        }
        self.shared.tracker.reset();
        self.state_select = 0;
        Stats::add(&self.shared.stats.resets, 1);
    }

    /// Stops fetching on every queue and waits until the requests already
    /// fetched completed (their used entries published), at most
    /// [`RESET_DRAIN_TIMEOUT_MS`]. Requests still in flight after that are
    /// abandoned: they will never touch guest memory. Either way nothing is
    /// in flight when this returns.
    pub(crate) fn quiesce(&mut self) {
        self.shared.quiesced.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_millis(RESET_DRAIN_TIMEOUT_MS);
        loop {
            // A worker that fetched before seeing `quiesced` counted its
            // requests under the same lock, so nothing is missed here.
            let in_flight: u32 = self.shared.queues.iter().map(|q| q.lock().in_flight).sum();
            if in_flight == 0 {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "virtio-devsim: {in_flight} requests still in flight after \
                     {RESET_DRAIN_TIMEOUT_MS} ms: abandoned"
                );
                for q in &self.shared.queues {
                    q.lock().abandon_in_flight();
                }
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Function-level reset: `VFIO_USER_DEVICE_RESET`, Function Level Reset,
    /// or the power state going from D3hot to D0. Requests in flight
    /// complete first (see [`Device::quiesce`]); then the virtio reset
    /// (common configuration, queues, ISR, tracker, device state), PCI
    /// configuration space and the MSI-X table. The MSI-X eventfds the
    /// client installed are kept: they are the client's, not the function's.
    pub fn function_reset(&mut self, cause: ResetCause) {
        self.quiesce();
        self.virtio_reset();
        self.pci.reset();
        self.msix_bar.fill(0);
        let stats = &self.shared.stats;
        Stats::add(&stats.function_resets, 1);
        match cause {
            ResetCause::Client => {}
            ResetCause::Flr => Stats::add(&stats.flr_resets, 1),
            ResetCause::PowerManagement => Stats::add(&stats.pm_resets, 1),
        }
        self.shared.quiesced.store(false, Ordering::SeqCst);
    }

    fn config_write(&mut self, offset: u64, data: &[u8]) {
        match self.pci.write(offset, data) {
            // D3hot: no DMA and no interrupts until the function is back in
            // D0, which resets it (No_Soft_Reset is clear).
            Some(ConfigEvent::EnterD3hot) => self.quiesce(),
            Some(ConfigEvent::LeaveD3hot) => self.function_reset(ResetCause::PowerManagement),
            Some(ConfigEvent::Flr) => self.function_reset(ResetCause::Flr),
            None => {}
        }
    }

    /// Completes a reset the function did on its own, before the driver
    /// sees any register.
    fn sync_reset(&mut self) {
        let pending = {
            let _whole = self
                .shared
                .reset_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.reset_pending.load(Ordering::SeqCst)
        };
        if pending {
            self.virtio_reset();
        }
    }

    /// The register block at `offset` of the virtio BAR: blocks of
    /// capabilities the function lacks read 0 and ignore writes.
    fn classify(&self, offset: u64) -> (Area, u64) {
        let common_len = if self.shared.role == Role::Owner {
            OWNER_COMMON_CFG_LEN
        } else {
            COMMON_CFG_LEN
        };
        let (area, off) = Area::of_virtio_bar_with(offset, common_len);
        let present = match area {
            Area::MemoryTrack => self.shared.role != Role::Owner && !self.shared.cfg.no_tracker,
            Area::DeviceState => self.shared.role != Role::Owner,
            _ => true,
        };
        if present {
            (area, off)
        } else {
            (Area::Unassigned, offset)
        }
    }

    fn virtio_bar_read(&mut self, offset: u64, data: &mut [u8]) {
        let (area, off) = self.classify(offset);
        self.shared.stats.mmio_read(area);
        data.fill(0);
        match area {
            Area::Common => self.common_read(off, data),
            Area::Isr => {
                // Reading the ISR acknowledges it.
                if let Some(b) = data.first_mut() {
                    *b = self.shared.isr.swap(0, Ordering::SeqCst);
                }
            }
            Area::Device => copy_out(&self.blk_config, off, data),
            Area::MemoryTrack => self.shared.tracker.read(off, data),
            Area::DeviceState => self.device_state_read(off, data),
            _ => {}
        }
    }

    fn virtio_bar_write(&mut self, offset: u64, data: &[u8]) {
        let (area, off) = self.classify(offset);
        self.shared.stats.mmio_write(area);
        match area {
            Area::Common => self.common_write(off, data),
            Area::Notify => {
                // Queue n is notified at n * notify_off_multiplier.
                let index = off / NOTIFY_OFF_MULTIPLIER as u64;
                if index < self.shared.queues.len() as u64 {
                    self.kick(index as usize);
                }
            }
            Area::MemoryTrack => {
                let pasid = self.pci.pasid_enabled();
                self.shared.tracker.write(off, data, pasid)
            }
            Area::DeviceState => self.device_state_write(off, data),
            Area::Device => self.device_config_write(off, data),
            // The ISR is read-only.
            _ => {}
        }
    }

    /// Device configuration writes: only `writeback` is writable, the
    /// other bytes ignore writes.
    fn device_config_write(&mut self, off: u64, data: &[u8]) {
        let at = DEVICE_CFG_WRITEBACK as usize;
        let old = self.blk_config[at];
        if let Some(v) = WRITEBACK.write(off, data, old.into()) {
            if v as u8 != old {
                self.blk_config[at] = v as u8;
                Stats::add(&self.shared.stats.config_writes, 1);
            }
        }
    }

    /// Counts an access to a BAR while the function does not decode memory,
    /// which a driver must never make; the access is served anyway.
    fn count_bar_access(&self, region: u32) {
        if region <= VFIO_PCI_BAR5_REGION_INDEX && !self.pci.memory_enabled() {
            Stats::add(&self.shared.stats.bar_accesses_while_disabled, 1);
        }
    }
}

/// Copies the bytes of `src` starting at `off` into `dst` (bytes past the
/// end of `src` are left alone).
pub(crate) fn copy_out(src: &[u8], off: u64, dst: &mut [u8]) {
    for (i, b) in dst.iter_mut().enumerate() {
        if let Some(v) = usize::try_from(off)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| src.get(o))
        {
            *b = *v;
        }
    }
}

impl ServerBackend for Device {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.sync_reset();
        self.count_bar_access(region);
        data.fill(0);
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                self.shared.stats.mmio_read(Area::Config);
                self.pci.read(offset, data);
            }
            r if r == VIRTIO_BAR as u32 => self.virtio_bar_read(offset, data),
            r if r == MSIX_BAR as u32 => {
                self.shared.stats.mmio_read(Area::Msix);
                copy_out(&self.msix_bar, offset, data);
            }
            _ => self.shared.stats.mmio_read(Area::Unassigned),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.sync_reset();
        self.count_bar_access(region);
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                self.shared.stats.mmio_write(Area::Config);
                self.config_write(offset, data);
            }
            r if r == VIRTIO_BAR as u32 => self.virtio_bar_write(offset, data),
            r if r == MSIX_BAR as u32 => {
                self.shared.stats.mmio_write(Area::Msix);
                // The table is plain storage; the PBA is read-only.
                for (i, b) in data.iter().enumerate() {
                    let at = offset.saturating_add(i as u64);
                    if at < MSIX_PBA_OFFSET as u64 {
                        self.msix_bar[at as usize] = *b;
                    }
                }
            }
            _ => self.shared.stats.mmio_write(Area::Unassigned),
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> io::Result<()> {
        match fd {
            Some(file) => self.shared.mem.map(address, size, file, offset),
            None => {
                // Without a file descriptor the memory is only reachable
                // through DMA_READ/DMA_WRITE messages, which this server does
                // not use: the range (typically ROM) stays unreachable for
                // the device.
                self.unbacked.push((address, size));
                Ok(())
            }
        }
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> io::Result<()> {
        if flags.contains(DmaUnmapFlags::UNMAP_ALL) {
            self.unbacked.clear();
            self.shared.mem.unmap_all();
            return Ok(());
        }
        if let Some(i) = self.unbacked.iter().position(|r| *r == (address, size)) {
            self.unbacked.swap_remove(i);
            return Ok(());
        }
        if let Err(e) = self.shared.mem.unmap(address, size) {
            eprintln!("virtio-devsim: DMA unmap of {address:#x}+{size:#x}: {e}");
        }
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        self.function_reset(ResetCause::Client);
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        self.shared.msix.set_irqs(index, flags, start, count, fds)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // Abandon the requests still in flight, then close the channels,
        // which ends the workers.
        for q in &self.shared.queues {
            q.lock().abandon_in_flight();
        }
        self.kicks.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        // An owner that goes away stops its members' recording: nobody
        // could read or stop it any more.
        if let Some(admin) = &self.shared.admin {
            admin.reset();
        }
    }
}
