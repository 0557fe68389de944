// SPDX-License-Identifier: GPL-2.0

//! The data file of a migration arc.
//!
//! A transition to `STOP_COPY`, `PRE_COPY` or `RESUMING` hands userspace a file descriptor that
//! streams the device state out (saving) or in (resuming). [`create`] makes that file: an
//! anonymous, non-seekable file whose private data is the driver's [`DataFile`] object, dropped
//! when the last reference to the file goes.
//!
//! C header: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h)

use crate::{
    bindings,
    error::{
        from_err_ptr,
        from_result,
        VTABLE_DEFAULT_ERROR, //
    },
    fs::File,
    ioctl::_IO,
    module::this_module,
    prelude::*,
    sync::aref::ARef,
    transmute::AsBytes,
    types::ForeignOwnable,
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceReader,
        UserSliceWriter, //
    },
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// The driver's side of a migration data file.
///
/// The file has no position of its own: a data stream is consumed in order, so the object keeps
/// its position under its own lock. Callbacks may run concurrently from several threads.
#[vtable]
pub trait DataFile: Send + Sync + Sized + 'static {
    /// Copies the next stream bytes to `out` (a saving file); returns how many, 0 at the end.
    fn read(_this: Pin<&Self>, _out: &mut UserSliceWriter) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Takes the next stream bytes from `input` (a resuming file); returns how many.
    fn write(_this: Pin<&Self>, _input: &mut UserSliceReader) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// How much pre-copy data the stream holds now (`VFIO_MIG_GET_PRECOPY_INFO` on a saving
    /// file); fails with `EINVAL` outside the PRE_COPY states.
    fn precopy_info(_this: Pin<&Self>) -> Result<PrecopyInfo> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The answer to `VFIO_MIG_GET_PRECOPY_INFO`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrecopyInfo {
    /// Bytes of initial data that are still to be read; 0 once it all was.
    pub initial_bytes: u64,
    /// Bytes of data, besides the initial data, that the device has now.
    pub dirty_bytes: u64,
}

/// `VFIO_MIG_GET_PRECOPY_INFO`.
const VFIO_MIG_GET_PRECOPY_INFO: u32 = _IO(bindings::VFIO_TYPE as u32, bindings::VFIO_BASE + 21);

// SAFETY: `struct vfio_precopy_info` is two `u32` followed by two `u64`: it has no padding and
// every byte is initialized.
unsafe impl AsBytes for bindings::vfio_precopy_info {}

/// Open mode of a data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Userspace reads the device state (saving).
    Read,
    /// Userspace writes the device state (resuming).
    Write,
}

/// Creates a data file named `name` backed by `data`; the file holds the only reference.
pub fn create<T: DataFile>(
    name: &'static CStr,
    data: impl PinInit<T, Error>,
    mode: Mode,
) -> Result<ARef<File>> {
    let data = KBox::pin_init(data, GFP_KERNEL)?;
    let flags = match mode {
        Mode::Read => bindings::O_RDONLY,
        Mode::Write => bindings::O_WRONLY,
    };
    let private = data.into_foreign();
    // SAFETY: `name` and the ops table are static; `private` is released by `release` only.
    let file = unsafe {
        bindings::anon_inode_getfile(
            name.as_char_ptr(),
            FileVTable::<T>::build(),
            private.cast(),
            flags as c_int,
        )
    };
    let file = match from_err_ptr(file) {
        Ok(file) => file,
        Err(e) => {
            // SAFETY: The file was not created, so `private` is still ours.
            drop(unsafe { Pin::<KBox<T>>::from_foreign(private) });
            return Err(e);
        }
    };
    // A stream, not a seekable file: position arguments are ignored and `llseek` fails.
    // SAFETY: `file` is a valid, new file and its inode.
    unsafe { bindings::stream_open((*file).f_inode, file) };
    // SAFETY: `anon_inode_getfile` returned a new reference, which the `ARef` now owns.
    Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast::<File>())) })
}

struct FileVTable<T: DataFile>(PhantomData<T>);

impl<T: DataFile> FileVTable<T> {
    const VTABLE: bindings::file_operations = bindings::file_operations {
        owner: this_module::<T::OwnerModule>().as_ptr(),
        read: if T::HAS_READ { Some(Self::read) } else { None },
        write: if T::HAS_WRITE {
            Some(Self::write)
        } else {
            None
        },
        unlocked_ioctl: if T::HAS_PRECOPY_INFO {
            Some(Self::ioctl)
        } else {
            None
        },
        #[cfg(CONFIG_COMPAT)]
        compat_ioctl: if T::HAS_PRECOPY_INFO {
            bindings::compat_ptr_ioctl
        } else {
            None
        },
        release: Some(Self::release),
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::file_operations {
        &Self::VTABLE
    }

    /// # Safety
    ///
    /// `file` must be a file made by [`create`] for `T`, valid for the duration of the call.
    unsafe fn data<'a>(file: *mut bindings::file) -> Pin<&'a T> {
        // SAFETY: `private_data` came from `into_foreign` in `create` and is only released by
        // `release`, which cannot run during another file operation.
        unsafe { <Pin<KBox<T>> as ForeignOwnable>::borrow((*file).private_data.cast()) }
    }

    /// # Safety
    ///
    /// Called by the VFS on a file made by [`create`], with a user buffer of `count` bytes.
    unsafe extern "C" fn read(
        file: *mut bindings::file,
        buf: *mut c_char,
        count: usize,
        _pos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: Per the safety requirements.
        let this = unsafe { Self::data(file) };
        let mut out = UserSlice::new(UserPtr::from_ptr(buf.cast()), count).writer();
        from_result(|| T::read(this, &mut out).map(|n| n as isize))
    }

    /// # Safety
    ///
    /// Called by the VFS on a file made by [`create`], with a user buffer of `count` bytes.
    unsafe extern "C" fn write(
        file: *mut bindings::file,
        buf: *const c_char,
        count: usize,
        _pos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: Per the safety requirements.
        let this = unsafe { Self::data(file) };
        let mut input = UserSlice::new(UserPtr::from_ptr(buf.cast_mut().cast()), count).reader();
        from_result(|| T::write(this, &mut input).map(|n| n as isize))
    }

    /// # Safety
    ///
    /// Called by the VFS on a file made by [`create`].
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: Per the safety requirements.
        let this = unsafe { Self::data(file) };
        from_result(|| {
            if cmd != VFIO_MIG_GET_PRECOPY_INFO {
                return Err(ENOTTY);
            }
            // Userspace provides the whole structure; `argsz` says how much it is.
            let len = size_of::<bindings::vfio_precopy_info>();
            let (mut reader, mut writer) =
                UserSlice::new(UserPtr::from_addr(arg), len).reader_writer();
            let argsz: u32 = reader.read()?;
            if (argsz as usize) < len {
                return Err(EINVAL);
            }
            let info = T::precopy_info(this)?;
            writer.write(&bindings::vfio_precopy_info {
                argsz,
                flags: 0,
                initial_bytes: info.initial_bytes,
                dirty_bytes: info.dirty_bytes,
            })?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the VFS once, when the last reference to a file made by [`create`] goes.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: `private_data` came from `into_foreign` in `create`; this is the last use.
        drop(unsafe {
            <Pin<KBox<T>> as ForeignOwnable>::from_foreign((*file).private_data.cast())
        });
        0
    }
}
