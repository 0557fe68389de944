// SPDX-License-Identifier: GPL-2.0

//! VFIO migration uAPI types.
//!
//! The states and flags are those of the state machine model in `virtio_mig_core::mig_fsm`,
//! checked here against the uAPI values, so the model, the drivers and the VFIO core speak one
//! vocabulary.
//!
//! C header: [`include/uapi/linux/vfio.h`](srctree/include/uapi/linux/vfio.h)

use crate::{
    bindings,
    error::to_result,
    prelude::*, //
};

pub use virtio_mig_core::mig_fsm::{
    Flags,
    State, //
};

const _: () = {
    use bindings as b;

    assert!(State::Error.as_u32() == b::vfio_device_mig_state_VFIO_DEVICE_STATE_ERROR);
    assert!(State::Stop.as_u32() == b::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP);
    assert!(State::Running.as_u32() == b::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING);
    assert!(State::StopCopy.as_u32() == b::vfio_device_mig_state_VFIO_DEVICE_STATE_STOP_COPY);
    assert!(State::Resuming.as_u32() == b::vfio_device_mig_state_VFIO_DEVICE_STATE_RESUMING);
    assert!(State::RunningP2p.as_u32() == b::vfio_device_mig_state_VFIO_DEVICE_STATE_RUNNING_P2P);
    assert!(State::PreCopy.as_u32() == b::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY);
    assert!(State::PreCopyP2p.as_u32() == b::vfio_device_mig_state_VFIO_DEVICE_STATE_PRE_COPY_P2P);
    assert!(Flags::STOP_COPY.0 == b::VFIO_MIGRATION_STOP_COPY);
    assert!(Flags::P2P.0 == b::VFIO_MIGRATION_P2P);
    assert!(Flags::PRE_COPY.0 == b::VFIO_MIGRATION_PRE_COPY);
};

/// The state with the raw value the VFIO core passes in.
pub(crate) fn from_raw(raw: bindings::vfio_device_mig_state) -> Result<State> {
    State::from_u32(raw).ok_or(EINVAL)
}

/// The next single arc on the way from `cur` to `target` that the VFIO core prescribes for
/// `vdev` (`vfio_mig_get_next_state()`), which skips the states its migration flags lack.
///
/// ERROR is left only by a reset: from it there is no arc (`EINVAL`), and the VFIO core is not
/// asked, since it warns about a driver that asks.
///
/// # Safety
///
/// `vdev` must point to a valid `struct vfio_device` for the duration of the call.
pub(crate) unsafe fn next_state(
    vdev: *mut bindings::vfio_device,
    cur: State,
    target: State,
) -> Result<State> {
    if cur == State::Error {
        return Err(EINVAL);
    }
    let mut next = State::Error.as_u32();
    // SAFETY: `vdev` is valid per the safety requirements; `next` is valid for writes.
    to_result(unsafe {
        bindings::vfio_mig_get_next_state(vdev, cur.as_u32(), target.as_u32(), &mut next)
    })?;
    from_raw(next)
}

#[cfg(CONFIG_VIRTIO_VFIO_MIG_KUNIT_TEST)]
#[macros::kunit_tests(rust_vfio_migration)]
mod tests {
    use super::*;
    use crate::types::Opaque;
    use virtio_mig_core::mig_fsm::{
        next_step,
        ALL_STATES, //
    };

    #[test]
    fn raw_values_round_trip() {
        for state in ALL_STATES {
            assert_eq!(from_raw(state.as_u32()), Ok(state));
        }
    }

    #[test]
    fn raw_values_are_the_uapi_ones() {
        // include/uapi/linux/vfio.h numbers the states 0 (ERROR) to 7 (PRE_COPY_P2P).
        for (raw, state) in (0u32..).zip(ALL_STATES) {
            assert_eq!(state.as_u32(), raw);
        }
    }

    #[test]
    fn unknown_raw_value_is_rejected() {
        assert_eq!(from_raw(8), Err(EINVAL));
        assert_eq!(from_raw(u32::MAX), Err(EINVAL));
    }

    /// The host model of the VFIO core's path choice is the VFIO core's, for every flag set a
    /// migratable device may advertise.
    #[test]
    fn the_model_agrees_with_the_vfio_core() {
        let vdev = KBox::new(Opaque::<bindings::vfio_device>::zeroed(), GFP_KERNEL);
        assert!(vdev.is_ok());
        let Ok(vdev) = vdev else { return };
        for flags in [
            Flags::STOP_COPY,
            Flags(Flags::STOP_COPY.0 | Flags::P2P.0),
            Flags(Flags::STOP_COPY.0 | Flags::PRE_COPY.0),
            Flags::ALL,
        ] {
            // SAFETY: `vdev` is valid and only this test uses it.
            unsafe { (*vdev.get()).migration_flags = flags.0 };
            for cur in ALL_STATES.into_iter().filter(|&s| flags.supports(s)) {
                for target in ALL_STATES {
                    // SAFETY: `vdev` is valid; the VFIO core reads only its migration flags.
                    let kernel = unsafe { next_state(vdev.get(), cur, target) };
                    assert_eq!(kernel.ok(), next_step(cur, target, flags).ok());
                }
            }
        }
    }
}
