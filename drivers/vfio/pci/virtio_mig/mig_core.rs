// SPDX-License-Identifier: GPL-2.0

//! The migration logic shared with the host-tested `virtio_mig_core` crate: the state machine
//! and the stream format. The files are the crate's own; the driver uses part of their API.

#[path = "../../../../rust/virtio_mig_core/src/mig_fsm.rs"]
#[expect(dead_code, reason = "shared with host tests that use all of it")]
#[expect(
    unreachable_pub,
    reason = "the crate's public API, private to the driver"
)]
pub(crate) mod mig_fsm;

#[path = "../../../../rust/virtio_mig_core/src/mig_stream.rs"]
#[expect(dead_code, reason = "shared with host tests that use all of it")]
#[expect(
    unreachable_pub,
    reason = "the crate's public API, private to the driver"
)]
pub(crate) mod mig_stream;
