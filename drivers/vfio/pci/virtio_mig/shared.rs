// SPDX-License-Identifier: GPL-2.0

//! The logic shared with the host-tested `virtio_mig_core` crate: the migration state machine,
//! the stream format and the dirty-bitmap harvest. The files are the crate's own; the driver
//! uses part of their API.

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

#[path = "../../../../rust/virtio_mig_core/src/dirty_bitmap.rs"]
#[expect(dead_code, reason = "shared with host tests that use all of it")]
#[expect(
    unreachable_pub,
    reason = "the crate's public API, private to the driver"
)]
pub(crate) mod dirty_bitmap;
