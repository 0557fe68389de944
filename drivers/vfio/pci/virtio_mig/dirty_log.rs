// SPDX-License-Identifier: GPL-2.0

//! Device dirty-page logging through the memory dirty-pages tracker capability.
//!
//! The device sets a bit for every page it writes in a bitmap that the driver allocates and
//! whose bit 0 is the page at address 0. The bitmap is kernel memory, so the device can reach it
//! only with untranslated DMA (VFIO no-IOMMU mode); with a user IOMMU domain logging is refused,
//! never pointed into the user's address space.
//!
//! Reports are conservative: whenever the records cannot be trusted (the device was reset, its
//! granularity or enable bit changed under us), the whole requested range is reported dirty.
//!
//! The tracker's registers are read once per round of reports rather than at every report: a
//! report that does not start past the end of the previous one begins a new round. A change
//! the check misses in the middle of a round (a reset the guest does through a BAR it maps) is
//! found at the start of the next one and makes every range report everything once, so the
//! pages written since are reported in that round. The last round of a migration runs with the
//! device stopped, and a function reset is always seen at once.

use kernel::{
    device::Bound,
    new_mutex, new_spinlock, pci,
    prelude::*,
    sync::{
        Mutex,
        SpinLock, //
    },
    time::Delta,
    vfio::log::{
        IovaBitmap,
        IovaRanges, //
    },
    virtio::{
        dirty_bitmap::DeviceDirtyBitmap,
        pci::TrackerCfg, //
    },
};
use virtio_mig_core::dirty_bitmap::{
    self,
    HarvestRange,
    MIN_PAGE_SHIFT, //
};

use crate::{
    log_ranges::{
        last_byte,
        TrackedRanges,
        UserBitmap, //
    },
    queues,
    regs::Bars,
};

/// A way of recording the pages a device writes, behind `VFIO_DEVICE_FEATURE_DMA_LOGGING_*`.
///
/// The driver holds one backend per device and hands it, per call, what it reaches the device
/// through while the device is open.
pub(crate) trait LogBackend {
    /// What the backend works with while the device is open.
    type Device<'a>;

    /// `DMA_LOGGING_START`: starts recording `ranges` at `*page_size`, which the backend may
    /// raise.
    fn start(&self, dev: &Self::Device<'_>, ranges: &IovaRanges<'_>, page_size: &mut u64)
        -> Result;

    /// `DMA_LOGGING_STOP`; stopping a stopped log succeeds.
    fn stop(&self, dev: &Self::Device<'_>) -> Result;

    /// `DMA_LOGGING_REPORT`: reports and forgets the pages dirtied in `[iova, iova + length)`.
    fn read_and_clear(
        &self,
        dev: &Self::Device<'_>,
        iova: u64,
        length: u64,
        dirty: &mut IovaBitmap<'_>,
    ) -> Result;

    /// The device was reset: what it recorded since the last report is lost.
    fn reset_done(&self);
}

/// What the tracker backend works with: the function and its tracker registers.
pub(crate) struct Tracker<'a> {
    /// The function, for messages and the bitmap allocation.
    pub(crate) pdev: &'a pci::Device<Bound>,
    /// Whether the function's DMA is untranslated (VFIO no-IOMMU mode).
    pub(crate) untranslated: bool,
    /// The registers, among them the memory dirty-pages tracker capability's.
    pub(crate) bars: Bars<'a>,
}

/// A logging session.
struct Session {
    bitmap: DeviceDirtyBitmap,
    /// Granularity of the bitmap, `12 + gra_power` as read back from the device.
    gra_shift: u32,
    ranges: TrackedRanges,
    /// End of the last report of the current round: a report that starts before it begins a
    /// new round, whose first report checks the tracker's registers.
    round_end: Option<u64>,
}

/// Per-device dirty-logging state.
#[pin_data]
pub(crate) struct DirtyLog {
    #[pin]
    session: Mutex<Option<Session>>,
    /// The device was reset, which stops its tracker: re-arm it and report everything.
    #[pin]
    reset_pending: SpinLock<bool>,
}

fn max_bitmap_bytes() -> u64 {
    u64::from(crate::module_parameters::max_bitmap_kib.value()) * 1024
}

/// Points the tracker at `bitmap` with granularity `gra_power` and enables it; returns the
/// granularity shift the device actually uses.
fn arm(tracker: &TrackerCfg<'_>, bitmap: &DeviceDirtyBitmap, gra_power: u8) -> Result<u32> {
    tracker.set_enable(false)?;
    tracker.set_bitmap(bitmap.dma_address(), bitmap.len_bytes() as u64)?;
    tracker.set_gra_power(gra_power)?;
    tracker.set_enable(true)?;
    // The device may raise the granularity, never lower it.
    let actual = tracker.gra_power()?;
    if actual < gra_power || tracker.enable()? != 1 {
        return Err(EIO);
    }
    Ok(MIN_PAGE_SHIFT + u32::from(actual))
}

fn stop_timeout() -> Delta {
    Delta::from_millis(i64::from(crate::module_parameters::stop_timeout_ms.value()))
}

/// Frees `bitmap` once `stopped` confirms the tracker stopped, or keeps it for good: a device
/// may never write freed memory.
fn release_bitmap(pdev: &pci::Device<Bound>, bitmap: DeviceDirtyBitmap, stopped: Result) -> Result {
    stopped.inspect_err(|e| {
        dev_err!(
            pdev,
            "the tracker did not stop ({:?}); keeping its bitmap\n",
            e
        );
        core::mem::forget(bitmap);
    })
}

/// Disables the tracker and waits, bounded, until the device confirms it.
fn disarm(tracker: &TrackerCfg<'_>, timeout: Delta) -> Result {
    tracker.set_enable(false)?;
    queues::poll(|| tracker.enable(), |&enable| enable == 0, timeout).map(|_| ())
}

impl DirtyLog {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            session <- new_mutex!(None),
            reset_pending <- new_spinlock!(false),
        })
    }

    /// The device was disabled after its last user closed it: bus mastering is off, so the
    /// bitmap of a session that could not be stopped at close (the function was in D3hot) is
    /// no longer written and can go. Returns whether there was one.
    pub(crate) fn device_disabled(&self) -> bool {
        self.session.lock().take().is_some()
    }
}

impl LogBackend for DirtyLog {
    type Device<'a> = Tracker<'a>;

    fn start(&self, dev: &Tracker<'_>, ranges: &IovaRanges<'_>, page_size: &mut u64) -> Result {
        let pdev = dev.pdev;
        let mut session = self.session.lock();
        if session.is_some() {
            return Err(EBUSY);
        }
        if !dev.untranslated {
            dev_err!(
                pdev,
                "dirty logging needs untranslated DMA (no-IOMMU): the tracker bitmap is kernel \
                 memory and this device has no PASID path to it\n"
            );
            return Err(EOPNOTSUPP);
        }
        if !page_size.is_power_of_two() || *page_size < 1 << MIN_PAGE_SHIFT {
            return Err(EINVAL);
        }
        let page_shift = page_size.trailing_zeros();
        let tracked = TrackedRanges::new(pdev, ranges)?;
        let end = tracked.end()?;
        // Bit 0 is address 0: the bitmap covers everything up to the highest tracked byte. Past
        // the memory cap, coarser pages keep it bounded.
        let mut gra_shift = page_shift;
        let mut bytes = dirty_bitmap::bitmap_bytes(end, gra_shift).ok_or(EINVAL)?;
        while bytes > max_bitmap_bytes() {
            gra_shift += 1;
            bytes = dirty_bitmap::bitmap_bytes(end, gra_shift).ok_or(EINVAL)?;
        }
        // The bitmap is one contiguous DMA allocation: when memory that large is not available,
        // coarser pages need a smaller one.
        let bitmap = loop {
            match DeviceDirtyBitmap::new(pdev.as_ref(), usize::try_from(bytes / 8)?) {
                Err(e) if e == ENOMEM && bytes > 8 => {
                    gra_shift += 1;
                    bytes = dirty_bitmap::bitmap_bytes(end, gra_shift).ok_or(EINVAL)?;
                }
                result => break result?,
            }
        };
        let gra_power = u8::try_from(gra_shift - MIN_PAGE_SHIFT)?;
        let armed = dev.bars.with_tracker(|cfg| {
            arm(cfg, &bitmap, gra_power).map_err(|e| (e, disarm(cfg, stop_timeout())))
        });
        let gra_shift = match armed {
            Ok(Ok(shift)) => shift,
            // The function cannot decode memory (D3hot): the tracker was not touched and the
            // bitmap can go.
            Err(e) => {
                dev_dbg!(pdev, "tracker registers not reachable ({:?})\n", e);
                return Err(e);
            }
            Ok(Err((e, stopped))) => {
                dev_err!(pdev, "the tracker did not accept gra_power {}\n", gra_power);
                // It may have been enabled on the way: free the bitmap only once the device
                // confirms it stopped writing it.
                // The refusal is what the user needs to hear; a failed stop was logged.
                let _ = release_bitmap(pdev, bitmap, stopped);
                return Err(e);
            }
        };
        // Honest granularity: a coarser device page marks every user page it covers.
        *page_size = 1u64 << gra_shift.max(page_shift);
        *self.reset_pending.lock() = false;
        dev_dbg!(
            pdev,
            "dirty logging: {} ranges up to {:#x}, {} KiB bitmap, {} byte pages\n",
            tracked.len(),
            end,
            bytes / 1024,
            1u64 << gra_shift
        );
        *session = Some(Session {
            bitmap,
            gra_shift,
            ranges: tracked,
            round_end: None,
        });
        Ok(())
    }

    fn stop(&self, dev: &Tracker<'_>) -> Result {
        let mut session = self.session.lock();
        let Some(s) = session.take() else {
            return Ok(());
        };
        match dev.bars.with_tracker(|cfg| disarm(cfg, stop_timeout())) {
            Ok(stopped) => release_bitmap(dev.pdev, s.bitmap, stopped),
            // A function that cannot decode memory (D3hot) keeps the session: it is stopped
            // once the function is back in D0, or let go when the device is disabled
            // (`device_disabled`).
            Err(e) => {
                dev_dbg!(dev.pdev, "tracker registers not reachable ({:?})\n", e);
                *session = Some(s);
                Err(e)
            }
        }
    }

    /// A device reset stops the tracker: the records since are lost.
    fn reset_done(&self) {
        *self.reset_pending.lock() = true;
    }

    fn read_and_clear(
        &self,
        dev: &Tracker<'_>,
        iova: u64,
        length: u64,
        dirty: &mut IovaBitmap<'_>,
    ) -> Result {
        let pdev = dev.pdev;
        let mut guard = self.session.lock();
        let session = (*guard).as_mut().ok_or(EINVAL)?;
        let last = last_byte(iova, length)?;
        let reset = core::mem::replace(&mut *self.reset_pending.lock(), false);
        let expected_power = u8::try_from(session.gra_shift - MIN_PAGE_SHIFT)?;
        let new_round = !matches!(session.round_end, Some(end) if iova >= end);
        session.round_end = last.checked_add(1);
        if reset || new_round {
            // The registers only: the user's bitmap is written after the memory lock is gone.
            // A virtio reset, which the driver does not see, clears `enable`; `gra_power`
            // changes only when written, and the driver read it back after its own write.
            let checked = dev.bars.with_tracker(|cfg| -> Result<bool> {
                let intact = !reset && cfg.enable()? == 1;
                if !intact {
                    session.gra_shift = arm(cfg, &session.bitmap, expected_power)?;
                }
                Ok(intact)
            });
            match checked {
                Ok(Ok(true)) => {}
                Ok(intact) => {
                    dev_dbg!(pdev, "tracker records lost; re-arming and reporting all\n");
                    session.ranges.lose_all();
                    intact?;
                }
                // The function cannot decode memory (D3hot), so the tracker cannot be checked:
                // report everything and check (and re-arm) at the next report.
                Err(e) => {
                    dev_dbg!(
                        pdev,
                        "tracker registers not reachable ({:?}); reporting all\n",
                        e
                    );
                    session.ranges.lose_all();
                    *self.reset_pending.lock() = true;
                }
            }
        }
        // The words handed to the user's bitmap count its pages, whatever logging started with.
        let range = HarvestRange {
            iova,
            length,
            page_shift: dirty.page_shift(),
            gra_shift: session.gra_shift,
        };
        let mut out = UserBitmap(dirty);
        session.ranges.report_untracked(iova, last, &mut out);
        dirty_bitmap::harvest(session.bitmap.words(), &range, &mut out).map_err(|e| {
            dev_dbg!(pdev, "harvest refused: {:?}\n", e);
            EINVAL
        })?;
        if let Err(e) = dirty.error() {
            // The user's bitmap missed pages whose records were just cleared: report the whole
            // range again next time rather than lose them.
            dev_dbg!(
                pdev,
                "report of [{:#x}, {:#x}] failed ({:?})\n",
                iova,
                last,
                e
            );
            session.ranges.lose(iova, last);
            return Err(e);
        }
        Ok(())
    }
}
