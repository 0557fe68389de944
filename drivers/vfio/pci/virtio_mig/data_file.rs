// SPDX-License-Identifier: GPL-2.0

//! The migration data files: the saving stream userspace reads and the resuming stream it
//! writes.

use kernel::{
    device::Bound,
    fs::File,
    new_mutex, pci,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    },
    uaccess::{
        UserSliceReader,
        UserSliceWriter, //
    },
    vfio::file::{
        self,
        DataFile,
        Mode,
        PrecopyInfo, //
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

/// The state of a saving stream.
struct Saving {
    /// Every byte of the stream produced so far.
    data: KVec<u8>,
    /// How much of `data` userspace has read.
    pos: usize,
    /// Bytes at the start of `data` that pre-copy offered.
    precopy_len: usize,
    /// The device is in a PRE_COPY state: an end of data is temporary.
    precopy: bool,
    /// The final frame is in `data`: an end of data is the end of the stream.
    complete: bool,
    /// The arc that made the file was left: reads fail.
    closed: bool,
}

/// A saving stream, shared by its file and the device until the device leaves the arc.
///
/// `inner` is never held across a copy to userspace: the reset path takes it under
/// `vfio_pci_core`'s `memory_lock`, and a user buffer on the device's own BAR mapping faults
/// while holding `mmap_lock` into `memory_lock`. Readers are serialized by `reader` instead,
/// which only the file takes.
#[pin_data]
pub(crate) struct SavingStream {
    #[pin]
    inner: Mutex<Saving>,
    #[pin]
    reader: Mutex<()>,
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
                reader <- new_mutex!(()),
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

    /// The device left the arc: reads fail from now on.
    pub(crate) fn close(&self) {
        self.inner.lock().closed = true;
    }

    /// Appends the pre-copy frame of the device `identity`; the device is in a PRE_COPY state
    /// from now on.
    pub(crate) fn append_precopy(&self, identity: &DeviceIdentity) -> Result {
        let mut s = self.inner.lock();
        let start = s.data.len();
        s.data
            .extend_with(mig_stream::PRECOPY_FRAME_LEN, 0, GFP_KERNEL)?;
        if mig_stream::encode_precopy(&mut s.data[start..], identity).is_err() {
            s.data.truncate(start);
            return Err(EINVAL);
        }
        s.precopy_len = s.data.len();
        s.precopy = true;
        Ok(())
    }

    /// Appends the final frame `save` writes; the stream ends after it.
    pub(crate) fn append_final(&self, save: impl FnOnce(&mut KVec<u8>) -> Result) -> Result {
        let mut s = self.inner.lock();
        save(&mut s.data)?;
        s.precopy = false;
        s.complete = true;
        Ok(())
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
        let stream = &this.stream;
        // Only readers move `pos`: it cannot change while this one holds `reader`.
        let _reader = stream.reader.lock();
        let (chunk, pos) = {
            let s = stream.inner.lock();
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
            let mut chunk = KVec::with_capacity(n, GFP_KERNEL)?;
            chunk.extend_from_slice(&pending[..n], GFP_KERNEL)?;
            (chunk, s.pos)
        };
        out.write_slice(&chunk)?;
        stream.inner.lock().pos = pos + chunk.len();
        Ok(chunk.len())
    }

    fn precopy_info(this: Pin<&Self>) -> Result<PrecopyInfo> {
        let s = this.stream.inner.lock();
        if !s.precopy || s.closed {
            return Err(EINVAL);
        }
        // The identity frame is all pre-copy offers; the rest needs the device stopped.
        Ok(PrecopyInfo {
            initial_bytes: s.precopy_len.saturating_sub(s.pos) as u64,
            dirty_bytes: 0,
        })
    }
}

/// The state of a resuming stream.
struct Resuming {
    /// Every byte userspace wrote.
    data: KVec<u8>,
    /// The arc that made the file was left: writes fail.
    closed: bool,
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
///
/// As for [`SavingStream`], `inner` is never held across a copy from userspace; writers are
/// serialized by `writer`.
#[pin_data]
pub(crate) struct ResumingStream {
    #[pin]
    inner: Mutex<Resuming>,
    #[pin]
    writer: Mutex<()>,
    /// The destination device, for messages.
    pdev: ARef<pci::Device>,
    /// The destination's identity, which the stream's must be compatible with.
    identity: DeviceIdentity,
}

impl ResumingStream {
    /// A new, empty resuming stream into the device `identity` describes, and its file.
    pub(crate) fn create(
        pdev: &pci::Device<Bound>,
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
                writer <- new_mutex!(()),
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

    /// The device left RESUMING: writes fail from now on.
    pub(crate) fn close(&self) {
        self.inner.lock().closed = true;
    }

    /// Calls `load` with every byte written so far, writers held off meanwhile.
    pub(crate) fn with_data<R>(&self, load: impl FnOnce(&[u8]) -> R) -> R {
        load(&self.inner.lock().data)
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
        let stream = &this.stream;
        // Only writers grow `data`: its length cannot change while this one holds `writer`.
        let _writer = stream.writer.lock();
        let n = input.len();
        {
            let s = stream.inner.lock();
            if s.closed {
                return Err(ENODEV);
            }
            if n > MAX_RESUME_LEN - s.data.len() {
                return Err(EFBIG);
            }
        }
        let mut chunk = KVec::new();
        chunk.extend_with(n, 0, GFP_KERNEL)?;
        input.read_slice(&mut chunk)?;
        let mut s = stream.inner.lock();
        if s.closed {
            return Err(ENODEV);
        }
        let start = s.data.len();
        s.data.extend_from_slice(&chunk, GFP_KERNEL)?;
        if let Err(e) = s.check_first_frame(&stream.pdev, &stream.identity) {
            // A refused write adds nothing to the stream.
            s.data.truncate(start);
            return Err(e);
        }
        Ok(n)
    }
}
