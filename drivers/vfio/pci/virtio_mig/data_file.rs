// SPDX-License-Identifier: GPL-2.0

//! The migration data files: the saving stream userspace reads and the resuming stream it
//! writes.

use kernel::{
    bindings,
    fs::File,
    ioctl::_IO,
    new_mutex, pci,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    },
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceReader,
        UserSliceWriter, //
    },
    vfio::file::{
        self,
        DataFile,
        Mode, //
    },
};

use virtio_mig_core::mig_stream::{
    self,
    DeviceIdentity,
    Frame,
    FrameHeader,
    StreamError,
    MAX_FRAME_LEN, //
};

/// Most bytes a resuming file accepts: a pre-copy frame and a final frame of the largest size.
pub(crate) const MAX_RESUME_LEN: usize = 2 * MAX_FRAME_LEN;

/// `VFIO_MIG_GET_PRECOPY_INFO`.
const VFIO_MIG_GET_PRECOPY_INFO: u32 = _IO(bindings::VFIO_TYPE as u32, bindings::VFIO_BASE + 21);

/// Bytes of `struct vfio_precopy_info` userspace must provide (the whole structure).
const PRECOPY_INFO_LEN: usize = 24;
const _: () = assert!(size_of::<bindings::vfio_precopy_info>() == PRECOPY_INFO_LEN);

/// The state of a saving stream.
pub(crate) struct Saving {
    /// Every byte of the stream produced so far.
    pub(crate) data: KVec<u8>,
    /// How much of `data` userspace has read.
    pos: usize,
    /// Bytes at the start of `data` that pre-copy offered.
    pub(crate) precopy_len: usize,
    /// The device is in a PRE_COPY state: an end of data is temporary.
    pub(crate) precopy: bool,
    /// The final frame is in `data`: an end of data is the end of the stream.
    pub(crate) complete: bool,
    /// The arc that made the file was left: reads fail.
    pub(crate) closed: bool,
}

/// A saving stream, shared by its file and the device until the device leaves the arc.
#[pin_data]
pub(crate) struct SavingStream {
    #[pin]
    pub(crate) inner: Mutex<Saving>,
}

impl SavingStream {
    /// A new, empty saving stream and its file.
    pub(crate) fn create() -> Result<(Arc<Self>, ARef<File>)> {
        let stream = Arc::pin_init(
            pin_init!(Self {
                inner <- new_mutex!(Saving {
                    data: KVec::new(),
                    pos: 0,
                    precopy_len: 0,
                    precopy: false,
                    complete: false,
                    closed: false,
                }),
            }),
            GFP_KERNEL,
        )?;
        let shared = stream.clone();
        let file = file::create(
            c"virtio_vfio_mig_saving",
            try_pin_init!(SavingFile { stream: shared }),
            Mode::Read,
        )?;
        Ok((stream, file))
    }
}

/// The file side of a [`SavingStream`].
#[pin_data]
struct SavingFile {
    stream: Arc<SavingStream>,
}

#[vtable]
impl DataFile for SavingFile {
    fn read(this: Pin<&Self>, out: &mut UserSliceWriter) -> Result<usize> {
        let mut s = this.stream.inner.lock();
        if s.closed {
            return Err(ENODEV);
        }
        let pending = s.data.get(s.pos..).unwrap_or(&[]);
        if pending.is_empty() {
            // A temporary end in pre-copy; a permanent one once the final frame was read.
            return if s.precopy && !s.complete {
                Err(ENOMSG)
            } else {
                Ok(0)
            };
        }
        let n = pending.len().min(out.len());
        out.write_slice(&pending[..n])?;
        s.pos += n;
        Ok(n)
    }

    fn ioctl(this: Pin<&Self>, cmd: u32, arg: UserPtr) -> Result<isize> {
        if cmd != VFIO_MIG_GET_PRECOPY_INFO {
            return Err(ENOTTY);
        }
        let (mut reader, mut writer) = UserSlice::new(arg, PRECOPY_INFO_LEN).reader_writer();
        let argsz: u32 = reader.read()?;
        if (argsz as usize) < PRECOPY_INFO_LEN {
            return Err(EINVAL);
        }
        let s = this.stream.inner.lock();
        if !s.precopy || s.closed {
            return Err(EINVAL);
        }
        // The identity frame is all pre-copy offers; the rest needs the device stopped.
        let initial_bytes = s.precopy_len.saturating_sub(s.pos) as u64;
        let dirty_bytes = 0u64;
        drop(s);
        // `struct vfio_precopy_info`: argsz, flags, initial_bytes, dirty_bytes.
        let mut info = [0u8; PRECOPY_INFO_LEN];
        info[..4].copy_from_slice(&argsz.to_ne_bytes());
        info[8..16].copy_from_slice(&initial_bytes.to_ne_bytes());
        info[16..24].copy_from_slice(&dirty_bytes.to_ne_bytes());
        writer.write_slice(&info)?;
        Ok(0)
    }
}

/// The state of a resuming stream.
pub(crate) struct Resuming {
    /// Every byte userspace wrote.
    pub(crate) data: KVec<u8>,
    /// The arc that made the file was left: writes fail.
    pub(crate) closed: bool,
    /// The first frame was complete and its identity fits this device.
    identity_checked: bool,
}

impl Resuming {
    /// Checks the first frame as soon as it is complete, so an incompatible or malformed stream
    /// is refused while the source still runs (the pre-copy frame exists for this), not only at
    /// RESUMING -> STOP.
    fn check_first_frame(&mut self, pdev: &pci::Device, identity: &DeviceIdentity) -> Result {
        if self.identity_checked {
            return Ok(());
        }
        let frame = match FrameHeader::peek(&self.data) {
            Err(StreamError::Truncated { .. }) => return Ok(()),
            Ok(header) if self.data.len() < header.total_length => return Ok(()),
            Ok(_) => Frame::parse(&self.data),
            Err(e) => Err(e),
        };
        let frame = frame.map_err(|e| {
            dev_err!(pdev, "rejecting migration stream: {}\n", e.reason());
            EINVAL
        })?;
        mig_stream::check_compat(&frame.identity, identity).map_err(|e| {
            dev_err!(
                pdev,
                "rejecting migration stream: incompatible device: {}\n",
                e.reason()
            );
            EOPNOTSUPP
        })?;
        self.identity_checked = true;
        Ok(())
    }
}

/// A resuming stream, shared by its file and the device until the device leaves RESUMING.
#[pin_data]
pub(crate) struct ResumingStream {
    #[pin]
    pub(crate) inner: Mutex<Resuming>,
    /// The destination device, for messages.
    pdev: ARef<pci::Device>,
    /// The destination's identity, which the stream's must be compatible with.
    identity: DeviceIdentity,
}

impl ResumingStream {
    /// A new, empty resuming stream into the device `identity` describes, and its file.
    pub(crate) fn create(
        pdev: &pci::Device<kernel::device::Bound>,
        identity: DeviceIdentity,
    ) -> Result<(Arc<Self>, ARef<File>)> {
        let pdev: ARef<pci::Device> = pdev.into();
        let stream = Arc::pin_init(
            pin_init!(Self {
                inner <- new_mutex!(Resuming {
                    data: KVec::new(),
                    closed: false,
                    identity_checked: false,
                }),
                pdev,
                identity,
            }),
            GFP_KERNEL,
        )?;
        let shared = stream.clone();
        let file = file::create(
            c"virtio_vfio_mig_resuming",
            try_pin_init!(ResumingFile { stream: shared }),
            Mode::Write,
        )?;
        Ok((stream, file))
    }
}

/// The file side of a [`ResumingStream`].
#[pin_data]
struct ResumingFile {
    stream: Arc<ResumingStream>,
}

#[vtable]
impl DataFile for ResumingFile {
    fn write(this: Pin<&Self>, input: &mut UserSliceReader) -> Result<usize> {
        let mut s = this.stream.inner.lock();
        if s.closed {
            return Err(ENODEV);
        }
        let n = input.len();
        let start = s.data.len();
        if n > MAX_RESUME_LEN - start {
            return Err(EFBIG);
        }
        s.data.extend_with(n, 0, GFP_KERNEL)?;
        let stream = &this.stream;
        let result = input
            .read_slice(&mut s.data[start..])
            .and_then(|()| s.check_first_frame(&stream.pdev, &stream.identity));
        if let Err(e) = result {
            // A refused write adds nothing to the stream.
            s.data.truncate(start);
            return Err(e);
        }
        Ok(n)
    }
}
