// SPDX-License-Identifier: GPL-2.0

//! Device dirty-page logging through the write recording of the function's owner (admin
//! commands `WRITE_RECORD_CAP_QUERY`, `WRITE_RECORDS_START`/`STOP`/`READ`).
//!
//! The owner DMAs the records through its own kernel DMA domain, so this backend works whatever
//! IOMMU domain translates the member's DMA. A report reads the records of the requested range
//! until the device has no more, and marks their pages in the user's bitmap.
//!
//! Reports are conservative: an overflow of the device's record store makes every range report
//! everything once; any other doubt (a failed or timed-out command, an owner reset, a record
//! outside the range asked for, a device that keeps saying "more") reports the whole requested
//! range and every other range once, and starts recording again.

use kernel::{
    device::Bound,
    new_mutex, pci,
    prelude::*,
    sync::Mutex,
    vfio::log::{
        IovaBitmap,
        IovaRanges, //
    },
    virtio::admin::{
        Epoch,
        Member,
        StartEntry,
        WriteRecordCaps, //
    },
};
use virtio_mig_core::{
    dirty_bitmap::DirtySink,
    write_records::{
        self,
        IovaRange, //
    },
};

use crate::{
    dirty_log::LogBackend,
    log_ranges::{
        last_byte,
        TrackedRanges,
        UserBitmap, //
    },
};

/// Most entries one `WRITE_RECORDS_START` carries in the owner's command buffer.
const MAX_START_ENTRIES: usize = 250;

/// A logging session.
struct Session {
    ranges: TrackedRanges,
    /// The page size the device records at.
    page_size: u64,
    /// What `WRITE_RECORDS_START` asked for: the ranges combined to the device's limit and
    /// aligned to its page size.
    entries: KVec<StartEntry>,
    /// Most `WRITE_RECORDS_READ` per report.
    read_budget: u32,
    /// The owner initialisation recording was started in.
    epoch: Epoch,
    /// Recording must start again: its records cannot be trusted.
    rearm: bool,
}

/// What one `WRITE_RECORDS_READ` gave.
enum ReadOutcome {
    /// The records were marked.
    Marked { more: bool, overflow: bool },
    /// The owner was reset since recording started: the records are gone.
    Lost,
    /// The result was malformed or held a record it should not.
    Faulty,
}

/// Per-device state of the admin write-recording backend.
#[pin_data]
pub(crate) struct AdminLog {
    /// The owner, if one was bound when the function was probed.
    member: Option<Member>,
    #[pin]
    session: Mutex<Option<Session>>,
}

impl AdminLog {
    pub(crate) fn new(member: Option<Member>) -> impl PinInit<Self> {
        pin_init!(Self {
            member,
            session <- new_mutex!(None),
        })
    }

    /// The owner this backend works through, if any.
    pub(crate) fn member(&self) -> Option<&Member> {
        self.member.as_ref()
    }

    /// Stops whatever the owner records for this member, then starts `session`'s recording.
    /// `planned` are the capabilities the session was just planned with; without them (a
    /// re-arm, perhaps after an owner reset that changed what it supports) they are asked
    /// again.
    fn arm(member: &Member, session: &mut Session, planned: Option<&WriteRecordCaps>) -> Result {
        // A user that went away, or an earlier failure, may have left recording on.
        let _ = member.stop_write_records();
        let queried;
        let caps = match planned {
            Some(caps) => caps,
            None => {
                queried = member.write_record_caps()?;
                &queried
            }
        };
        if !caps.supports_page_size(session.page_size)
            || session.entries.len() > usize::try_from(caps.max_ranges)?
        {
            return Err(EOPNOTSUPP);
        }
        session.epoch = member.start_write_records(session.page_size, &session.entries)?;
        session.rearm = false;
        Ok(())
    }
}

/// The ranges to record: aligned outward to the device's page size, then merged across the
/// smallest gaps down to what the device accepts.
fn plan(tracked: &TrackedRanges, page_size: u64, max_ranges: usize) -> Result<KVec<StartEntry>> {
    let mut ranges = KVec::with_capacity(tracked.len(), GFP_KERNEL)?;
    for r in tracked.iter() {
        ranges.push(
            IovaRange {
                start: r.start,
                last: r.last,
            },
            GFP_KERNEL,
        )?;
    }
    let n = write_records::align_ranges(&mut ranges, page_size).map_err(|_| EINVAL)?;
    let n = write_records::combine_ranges(&mut ranges[..n], max_ranges.clamp(1, MAX_START_ENTRIES));
    let mut entries = KVec::with_capacity(n, GFP_KERNEL)?;
    for r in ranges[..n].iter() {
        entries.push(write_records::start_entry(r, page_size), GFP_KERNEL)?;
    }
    Ok(entries)
}

impl LogBackend for AdminLog {
    type Device<'a> = &'a pci::Device<Bound>;

    fn start(
        &self,
        pdev: &&pci::Device<Bound>,
        ranges: &IovaRanges<'_>,
        page_size: &mut u64,
    ) -> Result {
        let pdev = *pdev;
        let member = self.member.as_ref().ok_or(ENODEV)?;
        let mut guard = self.session.lock();
        if guard.is_some() {
            return Err(EBUSY);
        }
        if !page_size.is_power_of_two() || *page_size < 1 << 12 {
            return Err(EINVAL);
        }
        let tracked = TrackedRanges::new(pdev, ranges)?;
        let caps = member.write_record_caps().inspect_err(|e| {
            dev_err!(
                pdev,
                "owner {:?}: write record capabilities unavailable ({:?})\n",
                member,
                e
            )
        })?;
        let Some(device_page) = write_records::choose_page_size(caps.page_size_bitmap, *page_size)
        else {
            dev_err!(
                pdev,
                "owner records no page size usable for {} byte pages (sizes {:#x})\n",
                *page_size,
                caps.page_size_bitmap
            );
            return Err(EOPNOTSUPP);
        };
        let entries = plan(&tracked, device_page, usize::try_from(caps.max_ranges)?)?;
        let records_per_read = member.records_per_read();
        let mut session = Session {
            ranges: tracked,
            page_size: device_page,
            entries,
            read_budget: write_records::read_budget(caps.record_capacity, records_per_read),
            epoch: member.epoch(),
            rearm: true,
        };
        Self::arm(member, &mut session, Some(&caps)).inspect_err(|e| {
            dev_err!(
                pdev,
                "owner {:?} did not start write recording ({:?})\n",
                member,
                e
            )
        })?;
        // Honest granularity: a coarser device page marks every user page it covers.
        *page_size = device_page.max(*page_size);
        dev_dbg!(
            pdev,
            "dirty logging through {:?}: {} ranges as {} records of {} byte pages\n",
            member,
            session.ranges.len(),
            session.entries.len(),
            device_page
        );
        *guard = Some(session);
        Ok(())
    }

    fn stop(&self, pdev: &&pci::Device<Bound>) -> Result {
        let Some(member) = self.member.as_ref() else {
            return Ok(());
        };
        if self.session.lock().take().is_none() {
            return Ok(());
        }
        // A command that does not complete resets the owner, which stops recording too; an
        // owner that is gone records nothing.
        match member.stop_write_records() {
            Err(e) if e != ENODEV => {
                dev_err!(
                    *pdev,
                    "owner {:?}: stopping write recording failed ({:?})\n",
                    member,
                    e
                );
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// A reset of the member keeps what its owner records.
    fn reset_done(&self) {}

    fn read_and_clear(
        &self,
        pdev: &&pci::Device<Bound>,
        iova: u64,
        length: u64,
        dirty: &mut IovaBitmap<'_>,
    ) -> Result {
        let pdev = *pdev;
        let member = self.member.as_ref().ok_or(ENODEV)?;
        let mut guard = self.session.lock();
        let session = (*guard).as_mut().ok_or(EINVAL)?;
        let last = last_byte(iova, length)?;
        let mut out = UserBitmap(dirty);
        // READ takes the records of every page it touches: a page the window holds only in
        // part is reported dirty without being read, so that its records stay for a report
        // that holds it whole.
        let plan =
            write_records::plan_report(iova, length, session.page_size).map_err(|_| EINVAL)?;
        plan.report_edges(&mut out);
        let (read_iova, read_length) = plan.read_request().unwrap_or((iova, 0));
        // Recording that has to start again was off since the report that found the doubt:
        // whatever the device wrote meanwhile is reported once, range by range.
        let mut doubt = false;
        if session.rearm {
            doubt = Self::arm(member, session, None).is_err();
            session.ranges.lose_all();
        }
        let mut reads = 0;
        while !doubt && read_length > 0 {
            if reads == session.read_budget {
                dev_dbg!(pdev, "owner still has records after {} reads\n", reads);
                doubt = true;
                break;
            }
            reads += 1;
            let (page_size, epoch) = (session.page_size, session.epoch);
            let outcome = member.read_write_records(read_iova, read_length, |records, now| {
                if now != epoch {
                    return ReadOutcome::Lost;
                }
                let Ok(records) = records else {
                    return ReadOutcome::Faulty;
                };
                match write_records::apply_records(
                    records.iter(),
                    page_size,
                    read_iova,
                    read_length,
                    &mut out,
                ) {
                    Ok(_) => ReadOutcome::Marked {
                        more: records.more(),
                        overflow: records.overflow(),
                    },
                    Err(fault) => {
                        dev_dbg!(pdev, "owner returned a bad record ({:?})\n", fault);
                        ReadOutcome::Faulty
                    }
                }
            });
            match outcome {
                Err(e) if e == ENODEV => {
                    dev_err!(
                        pdev,
                        "owner {:?} is gone: no dirty pages can be reported\n",
                        member
                    );
                    session.ranges.lose(iova, last);
                    return Err(ENODEV);
                }
                Ok(ReadOutcome::Marked { more, overflow }) => {
                    if overflow {
                        dev_dbg!(pdev, "owner's record store overflowed: reporting all\n");
                        session.ranges.lose_all();
                    }
                    if !more {
                        break;
                    }
                }
                Ok(ReadOutcome::Lost | ReadOutcome::Faulty) => doubt = true,
                Err(e) => {
                    dev_dbg!(pdev, "reading write records failed ({:?})\n", e);
                    doubt = true;
                }
            }
        }
        if doubt {
            // The records of this range and possibly others are gone: report all of them once,
            // and record afresh from now on.
            out.set_range(iova, length);
            session.ranges.lose_all();
            session.rearm = true;
            if let Err(e) = Self::arm(member, session, None) {
                dev_dbg!(pdev, "restarting write recording failed ({:?})\n", e);
            }
        }
        session.ranges.report_untracked(iova, last, &mut out);
        if let Err(e) = dirty.error() {
            // The user's bitmap missed pages whose records were just taken from the device.
            session.ranges.lose(iova, last);
            return Err(e);
        }
        Ok(())
    }
}
