// SPDX-License-Identifier: GPL-2.0

//! The device side of the VFIO migration state machine.
//!
//! The VFIO core breaks every requested transition into single arcs; [`Migration::set_state`]
//! checks each arc against the state machine of `virtio_mig_core` and executes the actions the
//! core crate lists for it. Any failure of the device moves it to ERROR, which only a reset
//! leaves; a stream that is rejected leaves the device as it was.
//!
//! A reset can arrive from the PCI core at any time, possibly while the state lock is held by
//! a thread that waits on something the resetting thread holds. It is therefore deferred: the
//! reset only sets a flag, and whoever holds or next takes the state lock applies it when
//! releasing the lock.

use kernel::{
    fs::File,
    new_mutex, new_spinlock,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex,
        MutexGuard,
        SpinLock, //
    },
    vfio::{
        migration::State,
        pci::Opened, //
    },
};

use crate::{
    data_file::{
        ResumingStream,
        SavingStream, //
    },
    driver::VirtioVfioMig,
    queues::{
        self,
        QueueSet, //
    },
    regs::Regs,
    snapshot,
};
use virtio_mig_core::{
    mig_fsm::{
        self,
        Action,
        MigFlags,
        MigState, //
    },
    mig_stream::{
        self,
        DeviceIdentity,
        Frame,
        FrameHeader,
        FRAME_FINAL, //
    },
};

/// `VIRTIO_F_RING_PACKED`: the driver negotiated packed virtqueues.
const VIRTIO_F_RING_PACKED: u64 = 1 << 34;

/// Migration state protected by [`Migration::state`].
pub(crate) struct Inner {
    state: MigState,
    /// Identity of the device, read when it was opened.
    identity: Option<DeviceIdentity>,
    /// Queues to restart when the device runs again.
    stopped: QueueSet,
    saving: Option<Arc<SavingStream>>,
    resuming: Option<Arc<ResumingStream>>,
}

impl Inner {
    fn close_files(&mut self) {
        if let Some(saving) = self.saving.take() {
            saving.inner.lock().closed = true;
        }
        if let Some(resuming) = self.resuming.take() {
            resuming.inner.lock().closed = true;
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
    flags: MigFlags,
    #[pin]
    state: Mutex<Inner>,
    /// A reset happened that the state does not reflect yet.
    #[pin]
    reset_pending: SpinLock<bool>,
}

/// Timeout of every wait for the device, in milliseconds.
fn timeout_ms() -> u32 {
    crate::module_parameters::stop_timeout_ms.value()
}

fn to_state(state: MigState) -> State {
    match state {
        MigState::Error => State::Error,
        MigState::Stop => State::Stop,
        MigState::Running => State::Running,
        MigState::StopCopy => State::StopCopy,
        MigState::Resuming => State::Resuming,
        MigState::RunningP2p => State::RunningP2p,
        MigState::PreCopy => State::PreCopy,
        MigState::PreCopyP2p => State::PreCopyP2p,
    }
}

fn from_state(state: State) -> MigState {
    match state {
        State::Error => MigState::Error,
        State::Stop => MigState::Stop,
        State::Running => MigState::Running,
        State::StopCopy => MigState::StopCopy,
        State::Resuming => MigState::Resuming,
        State::RunningP2p => MigState::RunningP2p,
        State::PreCopy => MigState::PreCopy,
        State::PreCopyP2p => MigState::PreCopyP2p,
    }
}

impl Migration {
    /// Migration state for a device supporting `flags`.
    pub(crate) fn new(flags: u32) -> impl PinInit<Self> {
        pin_init!(Self {
            flags: MigFlags(flags),
            state <- new_mutex!(Inner {
                state: mig_fsm::RESET_STATE,
                identity: None,
                stopped: QueueSet::default(),
                saving: None,
                resuming: None,
            }),
            reset_pending <- new_spinlock!(false),
        })
    }

    /// The `VFIO_MIGRATION_*` flags of the device.
    pub(crate) fn flags(&self) -> u32 {
        self.flags.0
    }

    /// Takes the state lock, applying a reset that arrived meanwhile.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.state.lock();
        self.apply_pending_reset(&mut inner);
        inner
    }

    fn apply_pending_reset(&self, inner: &mut Inner) {
        let pending = core::mem::replace(&mut *self.reset_pending.lock(), false);
        if pending {
            inner.reset();
        }
    }

    /// Releases the state lock; a reset that arrived while it was held is applied first, so
    /// none is lost between the check and the release.
    fn unlock(&self, mut inner: MutexGuard<'_, Inner>) {
        loop {
            let mut pending = self.reset_pending.lock();
            if !*pending {
                drop(inner);
                drop(pending);
                return;
            }
            *pending = false;
            drop(pending);
            inner.reset();
        }
    }

    /// Called after the PCI core reset the device (FLR, `VFIO_DEVICE_RESET`).
    pub(crate) fn reset_done(&self) {
        *self.reset_pending.lock() = true;
        // Apply it now if nobody holds the state; otherwise the holder does when releasing it.
        if let Some(inner) = self.state.try_lock() {
            self.unlock(inner);
        }
    }

    /// The first user opened the device (just reset by `vfio_pci_core`): start from RUNNING
    /// and learn what the device offers.
    pub(crate) fn open(&self, dev: &Opened<'_, VirtioVfioMig>) -> Result {
        let regs = Regs::new(dev)?;
        let identity = snapshot::identity(dev.device().pdev(), &regs)?;
        let mut inner = self.lock();
        inner.reset();
        inner.identity = Some(identity);
        self.unlock(inner);
        Ok(())
    }

    /// The last user closed the device: drop any data session.
    pub(crate) fn close(&self) {
        let mut inner = self.lock();
        inner.reset();
        inner.identity = None;
        self.unlock(inner);
    }

    pub(crate) fn get_state(&self) -> State {
        let inner = self.lock();
        let state = inner.state;
        self.unlock(inner);
        to_state(state)
    }

    /// Length of the stream a transition to STOP_COPY produces now.
    pub(crate) fn data_size(&self) -> Result<usize> {
        let inner = self.lock();
        let size = inner
            .identity
            .map(|id| {
                mig_stream::final_frame_len(
                    usize::from(id.num_queues),
                    id.device_config_len as usize,
                )
            })
            .ok_or(ENODEV);
        self.unlock(inner);
        size
    }

    /// Moves the device to `new`, one single arc at a time along the path the VFIO state
    /// machine prescribes (as `vfio_mig_get_next_state()` does); returns the data file the last
    /// arc opened, if any.
    pub(crate) fn set_state(
        &self,
        dev: &Opened<'_, VirtioVfioMig>,
        new: State,
    ) -> Result<Option<ARef<File>>> {
        let target = from_state(new);
        let mut inner = self.lock();
        let mut result = Ok(None);
        while inner.state != target {
            let next = match mig_fsm::next_step(inner.state, target, self.flags) {
                Ok(next) => next,
                Err(e) => {
                    dev_dbg!(
                        dev.device().pdev(),
                        "no path from {} to {}: {}\n",
                        inner.state.name(),
                        target.name(),
                        e.reason()
                    );
                    result = Err(EINVAL);
                    break;
                }
            };
            // Only the arc into a target state opens a file; one opened on the way is dropped.
            result = self.step(dev, &mut inner, next);
            if result.is_err() {
                break;
            }
        }
        self.unlock(inner);
        result
    }

    fn step(
        &self,
        dev: &Opened<'_, VirtioVfioMig>,
        inner: &mut Inner,
        new: MigState,
    ) -> Result<Option<ARef<File>>> {
        let cur = inner.state;
        let pdev = dev.device().pdev();
        let actions = match mig_fsm::arc_actions(cur, new) {
            Some(actions) if mig_fsm::is_arc(cur, new, self.flags) => actions,
            _ => {
                dev_dbg!(pdev, "no arc from {} to {}\n", cur.name(), new.name());
                return Err(EINVAL);
            }
        };
        let regs = Regs::new(dev)?;
        let saves = actions
            .iter()
            .any(|a| matches!(a, Action::SavePrecopyData | Action::SaveFinalState));
        if saves && regs.common.driver_features()? & VIRTIO_F_RING_PACKED != 0 {
            // The device state capability describes split rings only: saving would lose the
            // packed rings' wrap counters.
            dev_err!(pdev, "packed virtqueues cannot be migrated\n");
            return Err(EOPNOTSUPP);
        }
        let mut file = None;
        for &action in actions {
            match self.act(dev, &regs, inner, action, &mut file) {
                Ok(()) => {}
                // A rejected stream leaves the device and the state as they were.
                Err(Failure::Rejected(e)) => return Err(e),
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
                    inner.state = MigState::Error;
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
        dev: &Opened<'_, VirtioVfioMig>,
        regs: &Regs<'_>,
        inner: &mut Inner,
        action: Action,
        file: &mut Option<ARef<File>>,
    ) -> Result<(), Failure> {
        let identity = inner.identity.ok_or(ENODEV)?;
        match action {
            Action::QuiesceQueues => {
                let stopped = queues::quiesce(regs, timeout_ms()).inspect_err(|e| {
                    if *e == ETIMEDOUT {
                        dev_err!(
                            dev.device().pdev(),
                            "a queue did not stop within {} ms\n",
                            timeout_ms()
                        );
                    }
                })?;
                inner.stopped = stopped;
            }
            Action::ResumeQueues => {
                queues::resume(regs, &inner.stopped)?;
                inner.stopped.clear();
            }
            Action::OpenSavingFile => {
                let (stream, f) = SavingStream::create()?;
                inner.saving = Some(stream);
                *file = Some(f);
            }
            Action::SavePrecopyData => {
                let saving = inner.saving.as_ref().ok_or(EINVAL)?;
                let mut s = saving.inner.lock();
                let start = s.data.len();
                s.data
                    .extend_with(mig_stream::PRECOPY_FRAME_LEN, 0, GFP_KERNEL)?;
                mig_stream::encode_precopy(&mut s.data[start..], &identity).map_err(|_| EINVAL)?;
                s.precopy_len = s.data.len();
                s.precopy = true;
            }
            Action::SaveFinalState => {
                let saving = inner.saving.as_ref().ok_or(EINVAL)?;
                let mut s = saving.inner.lock();
                snapshot::save(regs, &identity, &mut s.data)?;
                s.precopy = false;
                s.complete = true;
            }
            Action::OpenResumingFile => {
                let (stream, f) = ResumingStream::create(dev.device().pdev(), identity)?;
                inner.resuming = Some(stream);
                *file = Some(f);
            }
            Action::LoadState => {
                let resuming = inner.resuming.clone().ok_or(EINVAL)?;
                let r = resuming.inner.lock();
                // The whole stream is checked before anything is programmed into the device.
                let frame = validate(dev, &r.data, &identity).map_err(Failure::Rejected)?;
                inner.stopped = snapshot::restore(regs, &frame, timeout_ms())?;
            }
            Action::CloseFiles => inner.close_files(),
        }
        Ok(())
    }
}

/// Why an action of an arc failed.
enum Failure {
    /// The resuming stream is invalid or incompatible; nothing was done to the device.
    Rejected(Error),
    /// The device failed: its state is no longer known.
    Device(Error),
}

impl<E: Into<Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::Device(e.into())
    }
}

/// Checks a whole resuming stream (an optional pre-copy frame, then exactly one final frame,
/// nothing after it) against the destination `identity`; returns the final frame.
fn validate<'a>(
    dev: &Opened<'_, VirtioVfioMig>,
    data: &'a [u8],
    identity: &DeviceIdentity,
) -> Result<Frame<'a>> {
    let pdev = dev.device().pdev();
    let mut rest = data;
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
    }
}
