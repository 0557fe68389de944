// SPDX-License-Identifier: GPL-2.0

//! The VFIO migration device-state machine.
//!
//! The VFIO uAPI (`enum vfio_device_mig_state`) defines eight states; a
//! driver implements only *single arcs* between neighbouring states and walks
//! longer transitions one arc at a time. For every arc, [`arc_actions`] lists
//! the device-side work in order, so the driver only executes [`Action`]s and
//! holds no policy of its own.
//!
//! In the kernel the VFIO core chooses each step (`vfio_mig_get_next_state()`,
//! through `kernel::vfio`). [`next_step`] is the host model of that choice:
//! the host tests check the arc table and the actions against it, and a KUnit
//! test checks that it agrees with the VFIO core for every pair of states and
//! every flag set.
//!
//! A driver loop looks like this (kept as text: the kernel builds its own
//! documentation examples as KUnit tests, where this crate's path differs):
//!
//! ```text
//! while cur != target {
//!     let next = next_step(cur, target, flags)?;
//!     for action in arc_actions(cur, next).unwrap_or(&[]) {
//!         execute(action)?; // on failure the device goes to ERROR
//!     }
//!     cur = next;
//! }
//! ```

use core::fmt;

/// A migration state, with the numeric values of `enum vfio_device_mig_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum State {
    /// The device failed; only a reset leaves this state.
    Error = 0,
    /// Not running, no DMA, no interrupts; state may be saved or loaded.
    Stop = 1,
    /// Normal operation.
    Running = 2,
    /// Stopped, with the saving data file returning the final device state.
    StopCopy = 3,
    /// Stopped, with the resuming data file accepting a device state.
    Resuming = 4,
    /// Running but not initiating DMA to peers (queues quiesced).
    RunningP2p = 5,
    /// Running, with the saving data file returning initial (pre-copy) data.
    PreCopy = 6,
    /// Like [`State::RunningP2p`], with the pre-copy data file still open.
    PreCopyP2p = 7,
}

/// Number of states (size of per-state tables).
pub const NUM_STATES: usize = 8;

/// Every state, in numeric order.
pub const ALL_STATES: [State; NUM_STATES] = [
    State::Error,
    State::Stop,
    State::Running,
    State::StopCopy,
    State::Resuming,
    State::RunningP2p,
    State::PreCopy,
    State::PreCopyP2p,
];

impl State {
    /// The state with uAPI value `v`, if any.
    pub const fn from_u32(v: u32) -> Option<State> {
        match v {
            0 => Some(State::Error),
            1 => Some(State::Stop),
            2 => Some(State::Running),
            3 => Some(State::StopCopy),
            4 => Some(State::Resuming),
            5 => Some(State::RunningP2p),
            6 => Some(State::PreCopy),
            7 => Some(State::PreCopyP2p),
            _ => None,
        }
    }

    /// The uAPI value of the state.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// The uAPI name of the state (without the `VFIO_DEVICE_STATE_` prefix).
    pub const fn name(self) -> &'static str {
        match self {
            State::Error => "ERROR",
            State::Stop => "STOP",
            State::Running => "RUNNING",
            State::StopCopy => "STOP_COPY",
            State::Resuming => "RESUMING",
            State::RunningP2p => "RUNNING_P2P",
            State::PreCopy => "PRE_COPY",
            State::PreCopyP2p => "PRE_COPY_P2P",
        }
    }

    /// Migration flags a device must advertise for this state to exist.
    /// [`State::Error`] is never a valid request target.
    pub const fn required_flags(self) -> Flags {
        match self {
            State::Error => Flags(u32::MAX),
            State::Stop | State::Running | State::StopCopy | State::Resuming => Flags::STOP_COPY,
            State::RunningP2p => Flags(Flags::STOP_COPY.0 | Flags::P2P.0),
            State::PreCopy => Flags(Flags::STOP_COPY.0 | Flags::PRE_COPY.0),
            State::PreCopyP2p => Flags::ALL,
        }
    }

    /// Whether the device runs (processes its queues) in this state.
    pub const fn is_running(self) -> bool {
        matches!(self, State::Running | State::PreCopy)
    }

    /// Whether a saving data file is open in this state.
    pub const fn has_saving_file(self) -> bool {
        matches!(self, State::StopCopy | State::PreCopy | State::PreCopyP2p)
    }

    /// Whether a resuming data file is open in this state.
    pub const fn has_resuming_file(self) -> bool {
        matches!(self, State::Resuming)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Migration capability flags (`VFIO_MIGRATION_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flags(pub u32);

impl Flags {
    /// No migration support.
    pub const NONE: Flags = Flags(0);
    /// `VFIO_MIGRATION_STOP_COPY`: STOP, RUNNING, STOP_COPY, RESUMING.
    pub const STOP_COPY: Flags = Flags(1 << 0);
    /// `VFIO_MIGRATION_P2P`: adds RUNNING_P2P.
    pub const P2P: Flags = Flags(1 << 1);
    /// `VFIO_MIGRATION_PRE_COPY`: adds PRE_COPY (and PRE_COPY_P2P with P2P).
    pub const PRE_COPY: Flags = Flags(1 << 2);
    /// Everything this driver supports.
    pub const ALL: Flags = Flags(Self::STOP_COPY.0 | Self::P2P.0 | Self::PRE_COPY.0);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether a device advertising `self` has `state`.
    pub const fn supports(self, state: State) -> bool {
        self.contains(state.required_flags())
    }

    /// Whether `self` is a valid flag set for a migratable device (STOP_COPY
    /// is mandatory, unknown bits are not allowed).
    pub const fn is_valid(self) -> bool {
        self.contains(Self::STOP_COPY) && self.0 & !Self::ALL.0 == 0
    }
}

/// Why [`next_step`] refused a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsmError {
    /// The current state is ERROR: only a device reset leaves it.
    InError,
    /// The current state is not supported by the flags (driver bug).
    BadCurrent,
    /// The requested state is ERROR or not supported by the flags.
    BadTarget,
    /// The transition is forbidden (STOP_COPY to a PRE_COPY state).
    Blocked,
}

impl FsmError {
    /// Short description, for log messages.
    pub const fn reason(self) -> &'static str {
        match self {
            FsmError::InError => "device is in the ERROR state",
            FsmError::BadCurrent => "current state not supported by the migration flags",
            FsmError::BadTarget => "requested state is ERROR or not supported",
            FsmError::Blocked => "transition is not allowed",
        }
    }
}

impl fmt::Display for FsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// Index of a state in per-state tables.
const fn idx(s: State) -> usize {
    s as usize
}

/// Preferred next state on the path from a state (row) to a target (column),
/// assuming every optional state exists. Unsupported intermediate states are
/// skipped by [`next_step`], which applies the table again from them.
const FIRST_HOP: [[State; NUM_STATES]; NUM_STATES] = {
    use State::{
        Error as E, PreCopy as Pc, PreCopyP2p as Pp, Resuming as Re, Running as Ru,
        RunningP2p as Rp, Stop as St, StopCopy as Sc,
    };
    // Columns: E, St, Ru, Sc, Re, Rp, Pc, Pp.
    [
        /* from ERROR        */ [E, E, E, E, E, E, E, E],
        /* from STOP         */ [E, St, Rp, Sc, Re, Rp, Rp, Rp],
        /* from RUNNING      */ [E, Rp, Ru, Rp, Rp, Rp, Pc, Rp],
        /* from STOP_COPY    */ [E, St, St, Sc, St, St, E, E],
        /* from RESUMING     */ [E, St, St, St, Re, St, St, St],
        /* from RUNNING_P2P  */ [E, St, Ru, St, St, Rp, Ru, Pp],
        /* from PRE_COPY     */ [E, Ru, Ru, Pp, Ru, Ru, Pc, Pp],
        /* from PRE_COPY_P2P */ [E, Rp, Rp, Sc, Rp, Rp, Pc, Pp],
    ]
};

/// The next single arc on the way from `cur` to `target` for a device with
/// migration `flags`; returns `cur` itself when `cur == target`.
///
/// Matches the VFIO core's choice: intermediate states that the flags do not
/// provide are skipped, so without P2P the arc RUNNING→STOP is taken
/// directly, and without PRE_COPY those states are never entered.
pub fn next_step(cur: State, target: State, flags: Flags) -> Result<State, FsmError> {
    if cur == State::Error {
        return Err(FsmError::InError);
    }
    if !flags.supports(cur) {
        return Err(FsmError::BadCurrent);
    }
    if !flags.supports(target) {
        return Err(FsmError::BadTarget);
    }
    let mut next = cur;
    // Each hop moves strictly closer to the target in the full graph, so the
    // walk ends within NUM_STATES hops; the bound only guards the table.
    for _ in 0..NUM_STATES {
        next = FIRST_HOP[idx(next)][idx(target)];
        if next == State::Error {
            return Err(FsmError::Blocked);
        }
        if flags.supports(next) {
            return Ok(next);
        }
    }
    Err(FsmError::Blocked)
}

/// One piece of device-side work done on a state arc, in execution order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Stop every enabled queue through the device state capability
    /// (write 0 to `queue_status`, read back until 0, bounded wait; a
    /// timeout moves the device to ERROR). Remember which queues ran.
    QuiesceQueues,
    /// Restart the queues that were running before [`Action::QuiesceQueues`]
    /// or that the restored state enables (write 1 to `queue_status`).
    ResumeQueues,
    /// Create the saving data file, returned to user space as `data_fd`.
    OpenSavingFile,
    /// Queue the pre-copy frame (device identity for an early compatibility
    /// check) on the saving file.
    SavePrecopyData,
    /// Read the complete device state (common config, per-queue state and
    /// `last_avail_idx`, device config) and queue the final frame on the
    /// saving file; the device must be quiesced.
    SaveFinalState,
    /// Create the resuming data file, returned to user space as `data_fd`.
    OpenResumingFile,
    /// Parse and check the data written to the resuming file and, only when
    /// all of it is valid and compatible, program it into the device (queues
    /// stay stopped). Any error leaves the device untouched.
    LoadState,
    /// Release the saving and resuming files (they read/write no more data).
    CloseFiles,
}

impl Action {
    /// Short name, for tracing.
    pub const fn name(self) -> &'static str {
        match self {
            Action::QuiesceQueues => "quiesce-queues",
            Action::ResumeQueues => "resume-queues",
            Action::OpenSavingFile => "open-saving-file",
            Action::SavePrecopyData => "save-precopy-data",
            Action::SaveFinalState => "save-final-state",
            Action::OpenResumingFile => "open-resuming-file",
            Action::LoadState => "load-state",
            Action::CloseFiles => "close-files",
        }
    }

    /// Whether the action reads or writes the device's registers. An arc with none (closing
    /// the files on STOP_COPY -> STOP, opening the resuming file) works even while the device
    /// does not decode memory.
    pub const fn touches_device(self) -> bool {
        matches!(
            self,
            Action::QuiesceQueues
                | Action::ResumeQueues
                | Action::SaveFinalState
                | Action::LoadState
        )
    }
}

/// Actions of a device reset (FLR or `VFIO_DEVICE_RESET`) in any state,
/// after which the migration state is [`RESET_STATE`].
pub const RESET_ACTIONS: &[Action] = &[Action::CloseFiles];

/// The migration state after a device reset.
pub const RESET_STATE: State = State::Running;

/// The device-side actions of the single arc `from → to`, or `None` when
/// that is not a single arc for any flag set.
///
/// Includes the arcs that only exist when P2P is not advertised
/// (RUNNING↔STOP, PRE_COPY→STOP_COPY), which combine the work of the
/// skipped RUNNING_P2P / PRE_COPY_P2P arcs.
pub const fn arc_actions(from: State, to: State) -> Option<&'static [Action]> {
    use Action::*;
    use State::*;
    let actions: &'static [Action] = match (from, to) {
        (Running, RunningP2p) | (PreCopy, PreCopyP2p) => &[QuiesceQueues],
        (RunningP2p, Running) | (PreCopyP2p, PreCopy) => &[ResumeQueues],
        (RunningP2p, Stop) | (Stop, RunningP2p) => &[],
        (Stop, StopCopy) => &[OpenSavingFile, SaveFinalState],
        (StopCopy, Stop) => &[CloseFiles],
        (Stop, Resuming) => &[OpenResumingFile],
        (Resuming, Stop) => &[LoadState, CloseFiles],
        (Running, PreCopy) | (RunningP2p, PreCopyP2p) => &[OpenSavingFile, SavePrecopyData],
        (PreCopy, Running) | (PreCopyP2p, RunningP2p) => &[CloseFiles],
        (PreCopyP2p, StopCopy) => &[SaveFinalState],
        // Arcs of a device without P2P.
        (Running, Stop) => &[QuiesceQueues],
        (Stop, Running) => &[ResumeQueues],
        (PreCopy, StopCopy) => &[QuiesceQueues, SaveFinalState],
        _ => return None,
    };
    Some(actions)
}

/// Whether `from → to` is a single arc a driver with `flags` must implement.
pub fn is_arc(from: State, to: State, flags: Flags) -> bool {
    from != to && matches!(next_step(from, to, flags), Ok(next) if next == to)
}
