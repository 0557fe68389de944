// SPDX-License-Identifier: GPL-2.0

//! VFIO migration uAPI types.
//!
//! C header: [`include/uapi/linux/vfio.h`](srctree/include/uapi/linux/vfio.h)

use crate::{
    bindings,
    prelude::*, //
};

/// A state of the VFIO migration state machine (`enum vfio_device_mig_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum State {
    /// The device failed a transition; only a reset leaves this state.
    Error = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_ERROR,
    /// Stopped: no DMA, no interrupts, state frozen.
    Stop = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP,
    /// Running normally.
    Running = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING,
    /// Stopped, with the saving data stream open.
    StopCopy = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP_COPY,
    /// Stopped, accepting a state through the resuming data stream.
    Resuming = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RESUMING,
    /// Running but not initiating peer-to-peer DMA or interrupts.
    RunningP2p = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING_P2P,
    /// Running, with the saving data stream open for pre-copy.
    PreCopy = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY,
    /// [`State::PreCopy`] without peer-to-peer activity.
    PreCopyP2p = bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY_P2P,
}

impl State {
    /// Converts the raw value the VFIO core passes in.
    pub fn from_raw(raw: bindings::vfio_device_mig_state) -> Result<Self> {
        Ok(match raw {
            bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_ERROR => Self::Error,
            bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP => Self::Stop,
            bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING => Self::Running,
            bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP_COPY => Self::StopCopy,
            bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RESUMING => Self::Resuming,
            bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING_P2P => Self::RunningP2p,
            bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY => Self::PreCopy,
            bindings::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY_P2P => Self::PreCopyP2p,
            _ => return Err(EINVAL),
        })
    }

    /// The raw value for the VFIO core.
    pub fn into_raw(self) -> bindings::vfio_device_mig_state {
        self as bindings::vfio_device_mig_state
    }
}

/// `VFIO_MIGRATION_STOP_COPY`: the device supports STOP_COPY (mandatory for migration).
pub const FLAG_STOP_COPY: u32 = bindings::VFIO_MIGRATION_STOP_COPY;
/// `VFIO_MIGRATION_P2P`: the device supports the `*_P2P` states.
pub const FLAG_P2P: u32 = bindings::VFIO_MIGRATION_P2P;
/// `VFIO_MIGRATION_PRE_COPY`: the device supports the `PRE_COPY*` states.
pub const FLAG_PRE_COPY: u32 = bindings::VFIO_MIGRATION_PRE_COPY;

#[cfg(CONFIG_VIRTIO_VFIO_MIG_KUNIT_TEST)]
#[macros::kunit_tests(rust_vfio_migration)]
mod tests {
    use super::*;

    const ALL: [State; 8] = [
        State::Error,
        State::Stop,
        State::Running,
        State::StopCopy,
        State::Resuming,
        State::RunningP2p,
        State::PreCopy,
        State::PreCopyP2p,
    ];

    #[test]
    fn raw_values_round_trip() {
        for state in ALL {
            assert_eq!(State::from_raw(state.into_raw()), Ok(state));
        }
    }

    #[test]
    fn raw_values_are_the_uapi_ones() {
        // include/uapi/linux/vfio.h numbers the states 0 (ERROR) to 7 (PRE_COPY_P2P).
        for (raw, state) in (0u32..).zip(ALL) {
            assert_eq!(state.into_raw(), raw);
        }
    }

    #[test]
    fn unknown_raw_value_is_rejected() {
        assert_eq!(State::from_raw(8), Err(EINVAL));
        assert_eq!(State::from_raw(u32::MAX), Err(EINVAL));
    }
}
