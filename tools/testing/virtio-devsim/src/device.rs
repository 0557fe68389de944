// SPDX-License-Identifier: GPL-2.0
//! The device: state shared with the queue workers, region dispatch, and
//! the vfio-user backend interface.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use vfio_bindings::bindings::vfio::{
    vfio_region_info, VFIO_IRQ_INFO_EVENTFD, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_ERR_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, ServerBackend, ServerRegion};
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_DRIVER_OK;

use crate::blk::Blk;
use crate::common_cfg::CommonRegs;
use crate::config::Config;
use crate::irq::Msix;
use crate::layout::*;
use crate::memory::{DmaSpace, WriteSink};
use crate::pci_config::{ConfigEvent, PciConfig};
use crate::queue::{QueueSlot, VirtQueue};
use crate::stats::Stats;
use crate::tracker::{Tracker, TrackerOptions};
use crate::worker;

/// A callback run when the device drops its connection on purpose.
pub type DisconnectHook = Box<dyn Fn() + Send + Sync>;

/// State used by both the register interface and the queue workers.
pub struct Shared {
    /// Device configuration.
    pub cfg: Config,
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

impl Device {
    /// Creates the device and its queue workers.
    pub fn new(cfg: Config) -> io::Result<Self> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.0))?;
        let stats = Arc::new(Stats::default());
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
        // Every device write into guest memory is reported to the tracker.
        let sink: Arc<dyn WriteSink> = tracker.clone();
        mem.set_write_sink(Arc::downgrade(&sink));
        let blk = Blk::open(&cfg)?;
        let blk_config = blk.config_space();
        let queues = (0..cfg.queues)
            .map(|_| QueueSlot::new(VirtQueue::new(cfg.queue_size)))
            .collect();
        let shared = Arc::new(Shared {
            msix: Msix::new(cfg.queues as usize + 1, stats.clone()),
            cfg,
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
            pci: PciConfig::new(&shared.cfg),
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
    /// common configuration, the ISR, the tracker and the device state
    /// block return to their initial values.
    pub(crate) fn virtio_reset(&mut self) {
        self.common = CommonRegs::default();
        self.shared.status.store(0, Ordering::Release);
        self.shared.isr.store(0, Ordering::SeqCst);
        for q in &self.shared.queues {
            q.lock().reset();
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

    fn virtio_bar_read(&mut self, offset: u64, data: &mut [u8]) {
        let (area, off) = Area::of_virtio_bar(offset);
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
        let (area, off) = Area::of_virtio_bar(offset);
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
            // The ISR and the device configuration are read-only.
            _ => {}
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
    }
}
