// SPDX-License-Identifier: GPL-2.0

//! The device side of the VFIO migration state machine.
//!
//! The VFIO core breaks every requested transition into single arcs; [`Migration::set_state`]
//! takes them one at a time along the path the VFIO core prescribes and executes the actions
//! `virtio_mig_core` lists for each. Any failure of the device moves it to ERROR, which only a
//! reset leaves; a stream that is rejected leaves the device as it was.
//!
//! A reset can arrive from the PCI core at any time, possibly while the state lock is held by
//! a thread that waits on something the resetting thread holds. It is therefore deferred: the
//! reset only sets a flag, and whoever holds or next takes the state lock applies it, the
//! holder when its [`Locked`] guard goes.

use core::ops::{
    Deref,
    DerefMut, //
};
use kernel::{
    device::Bound,
    fs::File,
    new_mutex, new_spinlock, pci,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex,
        MutexGuard,
        SpinLock,
        SpinLockGuard, //
    },
    time::Delta,
    vfio::migration::{
        Flags,
        State, //
    },
};
use virtio_mig_core::{
    layout::VIRTIO_F_RING_PACKED,
    mig_fsm::{
        self,
        Action, //
    },
    mig_stream::{
        self,
        DeviceIdentity,
        Frame,
        FrameHeader,
        QueueSet,
        FRAME_FINAL, //
    },
};

use crate::{
    data_file::{
        ResumingStream,
        SavingStream, //
    },
    queues,
    regs::{
        Bars,
        Regs, //
    },
    snapshot::{
        self,
        DeviceConstants, //
    },
};

/// Migration state protected by [`Migration::state`].
pub(crate) struct Inner {
    state: State,
    /// What the device says of itself, read when it was opened.
    device: Option<DeviceConstants>,
    /// Queues to restart when the device runs again.
    stopped: QueueSet,
    saving: Option<Arc<SavingStream>>,
    resuming: Option<Arc<ResumingStream>>,
}

impl Inner {
    fn close_files(&mut self) {
        if let Some(saving) = self.saving.take() {
            saving.close();
        }
        if let Some(resuming) = self.resuming.take() {
            resuming.close();
        }
    }

    /// The state after a reset: running, no data session, nothing stopped.
    fn reset(&mut self) {
        self.close_files();
        self.stopped.clear();
        self.state = mig_fsm::RESET_STATE;
    }
}

/// Per-device migration state.
#[pin_data]
pub(crate) struct Migration {
    flags: Flags,
    #[pin]
    state: Mutex<Inner>,
    /// A reset happened that the state does not reflect yet.
    #[pin]
    reset_pending: SpinLock<bool>,
}

/// The state lock, held. Dropping it applies a reset that arrived while it was held, so none
/// is lost between the check and the release.
struct Locked<'a> {
    // Declaration order is drop order: `inner` is released while `checked` is still held, so a
    // reset that arrives after the last check finds the state lock free and applies itself.
    inner: MutexGuard<'a, Inner>,
    checked: Option<SpinLockGuard<'a, bool>>,
    reset_pending: &'a SpinLock<bool>,
}

impl Deref for Locked<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        loop {
            let mut pending = self.reset_pending.lock();
            if !*pending {
                self.checked = Some(pending);
                return;
            }
            *pending = false;
            drop(pending);
            self.inner.reset();
        }
    }
}

/// Timeout of every wait for the device.
fn timeout() -> Delta {
    Delta::from_millis(i64::from(crate::module_parameters::stop_timeout_ms.value()))
}

impl Migration {
    /// Migration state for a device supporting `flags`.
    pub(crate) fn new(flags: Flags) -> impl PinInit<Self> {
        pin_init!(Self {
            flags,
            state <- new_mutex!(Inner {
                state: mig_fsm::RESET_STATE,
                device: None,
                stopped: QueueSet::default(),
                saving: None,
                resuming: None,
            }),
            reset_pending <- new_spinlock!(false),
        })
    }

    /// The migration flags of the device.
    pub(crate) fn flags(&self) -> Flags {
        self.flags
    }

    fn guard<'a>(&'a self, inner: MutexGuard<'a, Inner>) -> Locked<'a> {
        Locked {
            inner,
            checked: None,
            reset_pending: &self.reset_pending,
        }
    }

    /// Takes the state lock, applying a reset that arrived meanwhile.
    fn lock(&self) -> Locked<'_> {
        let mut inner = self.guard(self.state.lock());
        if core::mem::replace(&mut *self.reset_pending.lock(), false) {
            inner.reset();
        }
        inner
    }

    /// Called after the PCI core reset the device (FLR, `VFIO_DEVICE_RESET`).
    pub(crate) fn reset_done(&self) {
        *self.reset_pending.lock() = true;
        // Apply it now if nobody holds the state; otherwise the holder does when releasing it.
        if let Some(inner) = self.state.try_lock() {
            drop(self.guard(inner));
        }
    }

    /// The first user opened the device (just reset by `vfio_pci_core`), which offers
    /// `device` (see [`snapshot::constants`]): start from RUNNING.
    pub(crate) fn open(&self, device: DeviceConstants) {
        let mut inner = self.lock();
        inner.reset();
        inner.device = Some(device);
    }

    /// The last user closed the device: drop any data session.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.reset();
        inner.device = None;
    }

    pub(crate) fn get_state(&self) -> State {
        self.lock().state
    }

    /// Length of the stream a transition to STOP_COPY produces now.
    pub(crate) fn data_size(&self) -> Result<usize> {
        self.lock()
            .device
            .as_ref()
            .map(|device| {
                mig_stream::final_frame_len(
                    usize::from(device.identity.num_queues),
                    device.identity.device_config_len as usize,
                )
            })
            .ok_or(ENODEV)
    }

    /// Moves the device to `new`, one single arc at a time along the path `path` prescribes
    /// (the VFIO core's: from a state and a target, the next state); returns the data file the
    /// last arc opened, if any.
    pub(crate) fn set_state(
        &self,
        pdev: &pci::Device<Bound>,
        bars: Bars<'_>,
        path: impl Fn(State, State) -> Result<State>,
        new: State,
    ) -> Result<Option<ARef<File>>> {
        let mut inner = self.lock();
        let mut result = Ok(None);
        while inner.state != new {
            let next = match path(inner.state, new) {
                Ok(next) => next,
                Err(e) => {
                    dev_dbg!(
                        pdev,
                        "no path from {} to {}\n",
                        inner.state.name(),
                        new.name()
                    );
                    result = Err(e);
                    break;
                }
            };
            // Only the arc into a target state opens a file; one opened on the way is dropped.
            result = self.step(pdev, bars, &mut inner, next);
            if result.is_err() {
                break;
            }
        }
        result
    }

    fn step(
        &self,
        pdev: &pci::Device<Bound>,
        bars: Bars<'_>,
        inner: &mut Inner,
        new: State,
    ) -> Result<Option<ARef<File>>> {
        let cur = inner.state;
        let Some(actions) = mig_fsm::arc_actions(cur, new) else {
            dev_dbg!(pdev, "no arc from {} to {}\n", cur.name(), new.name());
            return Err(EINVAL);
        };
        if !actions.iter().any(|a| a.touches_device()) {
            return self.run_arc(pdev, None, inner, cur, new, actions);
        }
        // The whole arc runs under one memory access; a function that cannot decode memory
        // (D3hot) gets nothing done.
        bars.with_regs(|regs| self.run_arc(pdev, Some(regs), inner, cur, new, actions))
            .inspect_err(|e| {
                dev_dbg!(
                    pdev,
                    "{} -> {}: device registers not reachable ({:?}); state unchanged\n",
                    cur.name(),
                    new.name(),
                    e
                )
            })?
    }

    /// Executes the `actions` of the arc from `cur` to `new`; `regs` is there when one of them
    /// touches the device.
    fn run_arc(
        &self,
        pdev: &pci::Device<Bound>,
        regs: Option<&Regs<'_>>,
        inner: &mut Inner,
        cur: State,
        new: State,
        actions: &[Action],
    ) -> Result<Option<ARef<File>>> {
        let mut file = None;
        for &action in actions {
            match self.act(pdev, regs, inner, action, &mut file) {
                Ok(()) => {}
                // A rejected stream or device leaves the device and the state as they were.
                Err(Failure::Rejected(e)) => {
                    if file.is_some() {
                        inner.close_files();
                    }
                    return Err(e);
                }
                Err(Failure::Device(e)) => {
                    dev_err!(
                        pdev,
                        "{} -> {}: {} failed ({:?}); device in ERROR until reset\n",
                        cur.name(),
                        new.name(),
                        action.name(),
                        e
                    );
                    inner.close_files();
                    inner.state = State::Error;
                    return Err(e);
                }
            }
        }
        dev_dbg!(pdev, "migration state {} -> {}\n", cur.name(), new.name());
        inner.state = new;
        Ok(file)
    }

    fn act(
        &self,
        pdev: &pci::Device<Bound>,
        regs: Option<&Regs<'_>>,
        inner: &mut Inner,
        action: Action,
        file: &mut Option<ARef<File>>,
    ) -> Result<(), Failure> {
        let identity = inner
            .device
            .as_ref()
            .ok_or(Failure::Device(ENODEV))?
            .identity;
        // `step` maps the registers for every action that touches the device.
        let regs = || regs.ok_or(Failure::Device(EINVAL));
        match action {
            Action::QuiesceQueues => {
                let stopped = queues::quiesce(regs()?, identity.num_queues, timeout())
                    .inspect_err(|e| {
                        if *e == ETIMEDOUT {
                            dev_err!(
                                pdev,
                                "a queue did not stop within {} ms\n",
                                timeout().as_millis()
                            );
                        }
                    })
                    .map_err(Failure::Device)?;
                inner.stopped = stopped;
            }
            Action::ResumeQueues => {
                queues::resume(regs()?, &inner.stopped).map_err(Failure::Device)?;
                inner.stopped.clear();
            }
            Action::OpenSavingFile => {
                let (stream, f) = SavingStream::create().map_err(Failure::Device)?;
                inner.saving = Some(stream);
                *file = Some(f);
            }
            Action::SavePrecopyData => {
                let saving = inner.saving.as_ref().ok_or(Failure::Device(EINVAL))?;
                saving.append_precopy(&identity).map_err(Failure::Device)?;
            }
            Action::SaveFinalState => {
                let regs = regs()?;
                let saving = inner.saving.as_ref().ok_or(Failure::Device(EINVAL))?;
                let device = inner.device.as_ref().ok_or(Failure::Device(ENODEV))?;
                saving
                    .append_final(|data| snapshot::save(regs, device, data))
                    .map_err(|e| {
                        if e == EOPNOTSUPP {
                            // The device state capability describes split rings only: saving
                            // would lose the packed rings' wrap counters.
                            dev_err!(pdev, "packed virtqueues cannot be migrated\n");
                            Failure::Rejected(e)
                        } else {
                            Failure::Device(e)
                        }
                    })?;
            }
            Action::OpenResumingFile => {
                let (stream, f) =
                    ResumingStream::create(pdev, identity).map_err(Failure::Device)?;
                inner.resuming = Some(stream);
                *file = Some(f);
            }
            Action::LoadState => {
                let regs = regs()?;
                let resuming = inner.resuming.clone().ok_or(Failure::Device(EINVAL))?;
                inner.stopped = resuming.with_data(|data| {
                    // The whole stream is checked before anything is programmed into the
                    // device.
                    let frame = validate(pdev, data, &identity).map_err(Failure::Rejected)?;
                    snapshot::restore(regs, &frame, timeout()).map_err(Failure::Device)
                })?;
            }
            Action::CloseFiles => inner.close_files(),
        }
        Ok(())
    }
}

/// Why an action of an arc failed.
enum Failure {
    /// The resuming stream is invalid or incompatible, or the device's state cannot be saved;
    /// nothing was done to the device.
    Rejected(Error),
    /// The device failed: its state is no longer known.
    Device(Error),
}

/// Checks a whole resuming stream (an optional pre-copy frame, then exactly one final frame,
/// nothing after it) against the destination `identity`; returns the final frame.
fn validate<'a>(
    pdev: &pci::Device<Bound>,
    data: &'a [u8],
    identity: &DeviceIdentity,
) -> Result<Frame<'a>> {
    let mut rest = data;
    let mut precopy_frames = 0;
    loop {
        let frame = match FrameHeader::peek(rest).and_then(|_| Frame::parse(rest)) {
            Ok(frame) => frame,
            Err(e) => {
                dev_err!(pdev, "rejecting migration stream: {}\n", e.reason());
                return Err(EINVAL);
            }
        };
        if frame
            .driver
            .is_some_and(|d| d.driver_features & VIRTIO_F_RING_PACKED != 0)
        {
            dev_err!(pdev, "rejecting migration stream: packed virtqueues\n");
            return Err(EOPNOTSUPP);
        }
        if let Err(e) = mig_stream::check_state_compat(&frame, identity) {
            dev_err!(
                pdev,
                "rejecting migration stream: incompatible device: {}\n",
                e.reason()
            );
            return Err(EOPNOTSUPP);
        }
        rest = rest.get(frame.len..).unwrap_or(&[]);
        if frame.flags == FRAME_FINAL {
            if !rest.is_empty() {
                dev_err!(
                    pdev,
                    "rejecting migration stream: {} bytes after the final frame\n",
                    rest.len()
                );
                return Err(EINVAL);
            }
            return Ok(frame);
        }
        if rest.is_empty() {
            dev_err!(pdev, "rejecting migration stream: it has no final frame\n");
            return Err(EINVAL);
        }
        // A source sends its pre-copy frame once, when it enters PRE_COPY.
        precopy_frames += 1;
        if precopy_frames > 1 {
            dev_err!(
                pdev,
                "rejecting migration stream: more than one pre-copy frame\n"
            );
            return Err(EINVAL);
        }
    }
}
