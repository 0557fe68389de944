// SPDX-License-Identifier: GPL-2.0

//! VFIO PCI variant drivers.
//!
//! A variant driver is a PCI driver whose device data *is* a `struct vfio_pci_core_device`:
//! `vfio_pci_core` finds it through the PCI driver data, so this module has its own PCI
//! [`Adapter`] instead of [`crate::pci::Adapter`]. The driver's own per-device data `T` lives in
//! the same allocation ([`CoreDevice<T>`]), made by `_vfio_alloc_device()` at probe and freed by
//! the VFIO core when the last reference goes, after the PCI binding ended and every user closed
//! the device.
//!
//! C header: [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h)

use super::{
    log::{
        IovaBitmap,
        IovaRanges, //
    },
    migration::{
        self,
        Flags,
        State, //
    },
};
use crate::{
    bindings,
    device,
    device_id::RawDeviceIdIndex,
    dma::{
        Device as _,
        DmaMask, //
    },
    driver,
    error::{
        from_err_ptr,
        from_result,
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    fs::File,
    io::{
        Mmio,
        MmioRaw,
        Region, //
    },
    pci,
    prelude::*,
    sync::aref::ARef,
    types::Opaque,
    ThisModule, //
};
use core::{
    marker::PhantomData,
    mem::offset_of,
    ptr::addr_of_mut, //
};

/// A VFIO PCI variant driver.
///
/// `Self` is the driver's per-device data. Every callback that is not implemented behaves as in
/// `vfio-pci`. The migration callbacks are wired only when the driver implements them *and*
/// [`Driver::migration_flags`] reports a non-zero set for the device; the same holds for the
/// dirty-logging callbacks and [`Driver::dirty_logging`]. The VFIO core does not serialize the
/// callbacks of a device, and a reset can arrive at any time: the driver keeps its own locks
/// around its migration and logging state.
#[vtable]
pub trait Driver: Send + Sync + Sized + 'static {
    /// The type holding information about each device ID supported by the driver.
    type IdInfo: 'static;

    /// The table of device IDs supported by the driver.
    const ID_TABLE: pci::IdTable<Self::IdInfo>;

    /// Name of the VFIO device ops, as shown by the VFIO core.
    const NAME: &'static CStr;

    /// The DMA mask set before [`Driver::probe`], for memory the driver itself gives the
    /// device (`vfio_pci_core` allocates none and leaves the PCI default of 32 bits); `None`
    /// keeps what the function has.
    const DMA_MASK: Option<DmaMask> = None;

    /// Checks a matching device and returns the driver's per-device data.
    fn probe(
        pdev: &pci::Device<device::Core<'_>>,
        info: Option<&Self::IdInfo>,
    ) -> impl PinInit<Self, Error>;

    /// The migration flags this device supports, [`Flags::NONE`] for none. Asked once, at
    /// probe.
    fn migration_flags(&self) -> Flags {
        Flags::NONE
    }

    /// Whether this device supports dirty-page logging. Asked once, at probe, before the device
    /// is registered; see [`dma_is_translated`].
    fn dirty_logging(&self, _pdev: &pci::Device<device::Bound>) -> bool {
        false
    }

    /// Called when the first user opens the device, after `vfio_pci_core` enabled it and before
    /// it finishes enabling (the BARs are mapped: see [`Opened::memory`]).
    fn open_device(_dev: &Opened<'_, Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the last user closes the device, before `vfio_pci_core` disables it.
    fn close_device(_dev: &Opened<'_, Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the last user closed the device, after `vfio_pci_core` disabled it: bus
    /// mastering is off, so the device no longer reaches memory by DMA, and the BARs are
    /// unmapped. What the driver could not stop in [`Driver::close_device`] (say, because the
    /// function was in D3hot and its registers unreachable) can be let go here.
    fn device_disabled(_dev: &CoreDevice<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called by the PCI core after a function-level or bus reset of the device (including
    /// `VFIO_DEVICE_RESET`). May run concurrently with any other callback.
    fn reset_done(_dev: &CoreDevice<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Moves the device to the requested state `new`. The VFIO core passes the request as is:
    /// the driver walks it one single arc at a time (the path
    /// [`CoreDevice::next_migration_state`] prescribes). Returns the data file the last arc opened, if any (arcs to `STOP_COPY`,
    /// `PRE_COPY` or `RESUMING`).
    fn migration_set_state(_dev: &Opened<'_, Self>, _new: State) -> Result<Option<ARef<File>>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The current migration state.
    fn migration_get_state(_dev: &Opened<'_, Self>) -> Result<State> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Estimated length of the `STOP_COPY` data stream, in bytes.
    fn migration_get_data_size(_dev: &Opened<'_, Self>) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Starts dirty-page logging of `ranges` at `*page_size`; the driver may raise the page size
    /// and must then report the one it uses.
    fn log_start(
        _dev: &Opened<'_, Self>,
        _ranges: &IovaRanges<'_>,
        _page_size: &mut u64,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Stops dirty-page logging. Called again after a stop must succeed.
    fn log_stop(_dev: &Opened<'_, Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the pages dirtied in `[iova, iova + length)` since the last report into `dirty`
    /// and forgets them.
    fn log_read_and_clear(
        _dev: &Opened<'_, Self>,
        _iova: u64,
        _length: u64,
        _dirty: &mut IovaBitmap<'_>,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// Whether DMA of `pdev` goes through an IOMMU, which a VFIO user then owns: such a device
/// reaches kernel memory only through a PASID bound to a kernel domain. Without an IOMMU the
/// device is used in VFIO no-IOMMU mode, where IOVA is the physical address.
pub fn dma_is_translated(pdev: &pci::Device<device::Bound>) -> bool {
    // SAFETY: `pdev` is a valid, bound PCI device; its IOMMU group is set before drivers bind.
    !unsafe { (*pdev.as_raw()).dev.iommu_group }.is_null()
}

/// `PCI_D3hot`, a cast macro bindgen does not translate.
const PCI_D3HOT: bindings::pci_power_t = 3;

/// A VFIO PCI core device with the driver's data `T` (`struct vfio_pci_core_device` + `T`).
///
/// Dereferences to `T`.
///
/// # Invariants
///
/// - `core` is a `struct vfio_pci_core_device` initialized by `_vfio_alloc_device()` and at
///   offset 0, so a `struct vfio_device *` of the device is also a pointer to `Self`.
/// - Whenever a `&CoreDevice<T>` is handed to the driver, `data` is initialized, the device is
///   registered with the VFIO core and `core.pdev` is bound to the driver.
#[repr(C)]
#[pin_data]
pub struct CoreDevice<T> {
    #[pin]
    core: Opaque<bindings::vfio_pci_core_device>,
    data_initialized: bool,
    #[pin]
    data: Opaque<T>,
}

impl<T> CoreDevice<T> {
    fn as_raw(&self) -> *mut bindings::vfio_pci_core_device {
        self.core.get()
    }

    /// # Safety
    ///
    /// `vdev` must be the `vfio_device` of a `CoreDevice<T>` for which the second invariant
    /// holds for `'a`.
    unsafe fn from_vfio_device<'a>(vdev: *mut bindings::vfio_device) -> &'a Self {
        // SAFETY: `vdev` is the first field of `core`, which is at offset 0 of `Self`.
        unsafe { &*vdev.cast::<Self>() }
    }

    /// The PCI function.
    pub fn pdev(&self) -> &pci::Device<device::Bound> {
        // SAFETY: By the type invariants `core.pdev` is a valid PCI device bound to the driver
        // while `self` is reachable.
        unsafe { &*(*self.as_raw()).pdev.cast::<pci::Device<device::Bound>>() }
    }
}

impl<T> CoreDevice<T> {
    /// The next single arc on the way from `cur` to `target`, as the VFIO core prescribes for
    /// the device's migration flags (`vfio_mig_get_next_state()`): states the device lacks are
    /// skipped. Fails with `EINVAL` when there is no path (from ERROR, to an unsupported state,
    /// or from STOP_COPY to a PRE_COPY state).
    pub fn next_migration_state(&self, cur: State, target: State) -> Result<State> {
        // SAFETY: `core` is valid by the type invariants; its `vdev` is a registered device.
        unsafe { migration::next_state(addr_of_mut!((*self.as_raw()).vdev), cur, target) }
    }

    /// Whether the device's DMA is untranslated: VFIO no-IOMMU mode, where IOVA is the physical
    /// address. Otherwise the device DMAs through the VFIO user's IOMMU domain.
    pub fn is_noiommu(&self) -> bool {
        // SAFETY: `core` is valid by the type invariants; `noiommu` is set before registration.
        unsafe { (*self.as_raw()).vdev.noiommu() != 0 }
    }
}

impl<T> core::ops::Deref for CoreDevice<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: By the type invariants `data` is initialized whenever `self` is reachable.
        unsafe { &*self.data.get() }
    }
}

/// A [`CoreDevice`] that has at least one user: `vfio_pci_core` has enabled it and mapped its
/// BARs.
///
/// # Invariants
///
/// The device is open (between `vfio_pci_core_enable()` and `vfio_pci_core_disable()`) for `'a`.
pub struct Opened<'a, T> {
    dev: &'a CoreDevice<T>,
}

impl<'a, T> Opened<'a, T> {
    /// # Safety
    ///
    /// The device must be open for `'a`.
    unsafe fn new(dev: &'a CoreDevice<T>) -> Self {
        // INVARIANT: Per the safety requirements.
        Self { dev }
    }

    /// The device, open.
    pub fn device(&self) -> &'a CoreDevice<T> {
        self.dev
    }

    /// Access to the device's memory BARs, or `EIO` when the function cannot decode memory
    /// (it is in D3hot or a low-power state).
    ///
    /// BAR accesses follow `vfio_pci_core`'s rules: while the function decodes memory the
    /// access holds `memory_lock` for read, as vfio-pci's own BAR accessors do. While the user
    /// has Memory Space Enable cleared (a destination QEMU does, until the incoming state
    /// restores the command register) it holds `memory_lock` for write with Memory Space Enable
    /// turned on, and puts the user's command register back when dropped, as vfio-pci does to
    /// reach the MSI-X table (`vfio_pci_memory_lock_and_enable()`); the user's mappings of the
    /// BARs are zapped then, so nothing else reaches them. A user that changes decoding or the
    /// power state, and a reset, wait until the access is dropped. Never hold one across a user
    /// copy or a page pin: a fault on the device's own BAR mapping takes `memory_lock` under
    /// `mmap_lock`.
    pub fn memory(&self) -> Result<MemoryAccess<'_, T>> {
        let core = self.dev.as_raw();
        // SAFETY: `core` is valid by the type invariants of `CoreDevice`; `memory_lock` was
        // initialized by `vfio_pci_core_init_dev()`.
        unsafe { bindings::down_read(addr_of_mut!((*core).memory_lock)) };
        // SAFETY: The device is open (`vconfig` exists) and `memory_lock` is held, so the
        // answer holds until it is released.
        if unsafe { bindings::__vfio_pci_memory_enabled(core) } {
            // INVARIANT: `memory_lock` is held for read and the device decodes memory.
            return Ok(MemoryAccess {
                dev: self.dev,
                restore: None,
            });
        }
        // SAFETY: Taken just above.
        unsafe { bindings::up_read(addr_of_mut!((*core).memory_lock)) };
        // SAFETY: As above; the helper takes `memory_lock` for write and turns Memory Space
        // Enable on in the physical command register, returning its previous value.
        let cmd = unsafe { bindings::vfio_pci_memory_lock_and_enable(core) };
        // SAFETY: `pdev` is valid while the device is open; `memory_lock` held for write keeps
        // the power state from changing (vfio-pci changes it under the lock).
        if unsafe { (*(*core).pdev).current_state } >= PCI_D3HOT {
            // SAFETY: Undoes the helper above.
            unsafe { bindings::vfio_pci_memory_unlock_and_restore(core, cmd) };
            return Err(EIO);
        }
        // INVARIANT: `memory_lock` is held for write and Memory Space Enable is on.
        Ok(MemoryAccess {
            dev: self.dev,
            restore: Some(cmd),
        })
    }
}

/// The memory BARs of an open device that decodes memory, for as long as this lives.
///
/// # Invariants
///
/// `dev` is open and decodes memory: either `memory_lock` of `dev` is held for read and
/// `__vfio_pci_memory_enabled()` held when it was taken (`restore` is `None`), or it is held
/// for write, the device is in D0 and Memory Space Enable was turned on from the command
/// register value in `restore`.
pub struct MemoryAccess<'a, T> {
    dev: &'a CoreDevice<T>,
    restore: Option<u16>,
}

impl<T> MemoryAccess<'_, T> {
    /// The MMIO mapping `vfio_pci_core` holds for memory BAR `bar`, for as long as the access
    /// lasts. Accesses are bounds-checked against the BAR length. An I/O BAR is refused
    /// (`EINVAL`): its cookie is not an MMIO address.
    pub fn bar(&self, bar: u8) -> Result<Mmio<'_, Region>> {
        if usize::from(bar) >= bindings::PCI_STD_NUM_BARS as usize {
            return Err(EINVAL);
        }
        let pdev = self.dev.pdev();
        // SAFETY: `pdev` is a valid PCI device.
        let memory_bars = unsafe {
            bindings::pci_select_bars(pdev.as_raw(), bindings::IORESOURCE_MEM as c_ulong)
        };
        if memory_bars & (1 << bar) == 0 {
            return Err(EINVAL);
        }
        // SAFETY: `core` is valid by the type invariants of `CoreDevice`.
        let addr = unsafe { (*self.dev.as_raw()).barmap[usize::from(bar)] };
        // `vfio_pci_core` leaves NULL or an error pointer for a BAR it did not map.
        let addr = from_err_ptr(addr)?;
        if addr.is_null() {
            return Err(ENODEV);
        }
        let len = pdev.resource_len(u32::from(bar))?;
        let raw = MmioRaw::new_region(addr as usize, usize::try_from(len)?)?;
        // SAFETY: `vfio_pci_core_enable()` mapped the whole memory BAR at `addr`, and it stays
        // mapped until `vfio_pci_core_disable()`, which cannot run while the device is open (the
        // type invariants); the device decodes it while `self` holds `memory_lock`.
        Ok(unsafe { Mmio::from_raw(raw) })
    }
}

impl<T> Drop for MemoryAccess<'_, T> {
    fn drop(&mut self) {
        let core = self.dev.as_raw();
        match self.restore {
            // SAFETY: By the type invariants `memory_lock` is held for read, by `self`.
            None => unsafe { bindings::up_read(addr_of_mut!((*core).memory_lock)) },
            // SAFETY: By the type invariants `memory_lock` is held for write by `self`, taken
            // by `vfio_pci_memory_lock_and_enable()`, which returned `cmd`.
            Some(cmd) => unsafe { bindings::vfio_pci_memory_unlock_and_restore(core, cmd) },
        }
    }
}

impl<T> core::ops::Deref for Opened<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.dev
    }
}

/// The `vfio_device_ops`, `vfio_migration_ops`, `vfio_log_ops` and `pci_error_handlers` of `T`.
struct VTable<T: Driver>(PhantomData<T>);

impl<T: Driver> VTable<T> {
    const DEVICE_OPS: bindings::vfio_device_ops = bindings::vfio_device_ops {
        name: crate::str::as_char_ptr_in_const_context(T::NAME).cast_mut(),
        init: Some(bindings::vfio_pci_core_init_dev),
        release: Some(Self::release),
        bind_iommufd: Some(bindings::vfio_iommufd_physical_bind),
        unbind_iommufd: Some(bindings::vfio_iommufd_physical_unbind),
        attach_ioas: Some(bindings::vfio_iommufd_physical_attach_ioas),
        detach_ioas: Some(bindings::vfio_iommufd_physical_detach_ioas),
        pasid_attach_ioas: Some(bindings::vfio_iommufd_physical_pasid_attach_ioas),
        pasid_detach_ioas: Some(bindings::vfio_iommufd_physical_pasid_detach_ioas),
        open_device: Some(Self::open_device),
        close_device: Some(Self::close_device),
        read: Some(bindings::vfio_pci_core_read),
        write: Some(bindings::vfio_pci_core_write),
        ioctl: Some(bindings::vfio_pci_core_ioctl),
        get_region_info_caps: Some(bindings::vfio_pci_ioctl_get_region_info),
        mmap: Some(bindings::vfio_pci_core_mmap),
        request: Some(bindings::vfio_pci_core_request),
        match_: Some(bindings::vfio_pci_core_match),
        match_token_uuid: Some(bindings::vfio_pci_core_match_token_uuid),
        dma_unmap: None,
        device_feature: Some(bindings::vfio_pci_core_ioctl_feature),
    };

    const MIGRATION_OPS: bindings::vfio_migration_ops = bindings::vfio_migration_ops {
        migration_set_state: Some(Self::migration_set_state),
        migration_get_state: Some(Self::migration_get_state),
        migration_get_data_size: Some(Self::migration_get_data_size),
    };

    const LOG_OPS: bindings::vfio_log_ops = bindings::vfio_log_ops {
        log_start: Some(Self::log_start),
        log_stop: Some(Self::log_stop),
        log_read_and_clear: Some(Self::log_read_and_clear),
    };

    const ERROR_HANDLERS: bindings::pci_error_handlers = bindings::pci_error_handlers {
        error_detected: Some(bindings::vfio_pci_core_aer_err_detected),
        reset_done: if T::HAS_RESET_DONE {
            Some(Self::reset_done)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    /// Whether the driver implements the whole migration or logging interface.
    const HAS_MIGRATION: bool =
        T::HAS_MIGRATION_SET_STATE && T::HAS_MIGRATION_GET_STATE && T::HAS_MIGRATION_GET_DATA_SIZE;
    const HAS_LOG: bool = T::HAS_LOG_START && T::HAS_LOG_STOP && T::HAS_LOG_READ_AND_CLEAR;

    /// # Safety
    ///
    /// `vdev` must be the `vfio_device` of a `CoreDevice<T>` whose allocation is being freed.
    unsafe extern "C" fn release(vdev: *mut bindings::vfio_device) {
        let this = vdev.cast::<CoreDevice<T>>();
        // SAFETY: `vdev` is at offset 0 of a `CoreDevice<T>` nobody else references any more.
        unsafe {
            if (*this).data_initialized {
                core::ptr::drop_in_place((*this).data.get());
            }
            bindings::vfio_pci_core_release_dev(vdev);
        }
    }

    /// # Safety
    ///
    /// Called by the VFIO core with the `vfio_device` of a registered `CoreDevice<T>`.
    unsafe extern "C" fn open_device(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: Per the safety requirements.
        let dev = unsafe { CoreDevice::<T>::from_vfio_device(vdev) };
        from_result(|| {
            // SAFETY: `dev.as_raw()` is a valid, registered core device.
            to_result(unsafe { bindings::vfio_pci_core_enable(dev.as_raw()) })?;
            if T::HAS_OPEN_DEVICE {
                // SAFETY: The device was enabled just above.
                let opened = unsafe { Opened::new(dev) };
                if let Err(e) = T::open_device(&opened) {
                    // SAFETY: Undoes the enable above.
                    unsafe { bindings::vfio_pci_core_disable(dev.as_raw()) };
                    return Err(e);
                }
            }
            // SAFETY: The device is enabled.
            unsafe { bindings::vfio_pci_core_finish_enable(dev.as_raw()) };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the VFIO core with the `vfio_device` of a registered, open `CoreDevice<T>`.
    unsafe extern "C" fn close_device(vdev: *mut bindings::vfio_device) {
        if T::HAS_CLOSE_DEVICE {
            // SAFETY: Per the safety requirements.
            let dev = unsafe { CoreDevice::<T>::from_vfio_device(vdev) };
            // SAFETY: The device stays open until `vfio_pci_core_close_device()` below.
            T::close_device(&unsafe { Opened::new(dev) });
        }
        // SAFETY: Per the safety requirements.
        unsafe { bindings::vfio_pci_core_close_device(vdev) };
        if T::HAS_DEVICE_DISABLED {
            // SAFETY: Per the safety requirements; the device is still registered.
            T::device_disabled(unsafe { CoreDevice::<T>::from_vfio_device(vdev) });
        }
    }

    /// # Safety
    ///
    /// Called by the PCI core with a device bound to this driver.
    unsafe extern "C" fn reset_done(pdev: *mut bindings::pci_dev) {
        // SAFETY: The driver data of a bound device is its `CoreDevice<T>` (see `probe`).
        let core = unsafe { bindings::dev_get_drvdata(addr_of_mut!((*pdev).dev)) };
        if core.is_null() {
            return;
        }
        // SAFETY: `core` is a registered `CoreDevice<T>` while the device is bound.
        let dev = unsafe { &*core.cast::<CoreDevice<T>>() };
        T::reset_done(dev);
    }

    /// # Safety
    ///
    /// Called by the VFIO core with the `vfio_device` of an open `CoreDevice<T>`.
    unsafe extern "C" fn migration_set_state(
        vdev: *mut bindings::vfio_device,
        new: bindings::vfio_device_mig_state,
    ) -> *mut bindings::file {
        // SAFETY: Per the safety requirements.
        let dev = unsafe { Opened::new(CoreDevice::<T>::from_vfio_device(vdev)) };
        let result = migration::from_raw(new).and_then(|new| T::migration_set_state(&dev, new));
        match result {
            // The reference goes to the caller, which installs it in a file descriptor.
            Ok(Some(file)) => ARef::into_raw(file).as_ptr().cast(),
            Ok(None) => core::ptr::null_mut(),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// Called by the VFIO core with the `vfio_device` of an open `CoreDevice<T>` and a valid
    /// `state` pointer.
    unsafe extern "C" fn migration_get_state(
        vdev: *mut bindings::vfio_device,
        state: *mut bindings::vfio_device_mig_state,
    ) -> c_int {
        // SAFETY: Per the safety requirements.
        let dev = unsafe { Opened::new(CoreDevice::<T>::from_vfio_device(vdev)) };
        from_result(|| {
            let current = T::migration_get_state(&dev)?;
            // SAFETY: `state` is valid for writes per the safety requirements.
            unsafe { *state = current.as_u32() };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the VFIO core with the `vfio_device` of an open `CoreDevice<T>` and a valid
    /// `len` pointer.
    unsafe extern "C" fn migration_get_data_size(
        vdev: *mut bindings::vfio_device,
        len: *mut c_ulong,
    ) -> c_int {
        // SAFETY: Per the safety requirements.
        let dev = unsafe { Opened::new(CoreDevice::<T>::from_vfio_device(vdev)) };
        from_result(|| {
            let size = T::migration_get_data_size(&dev)?;
            // SAFETY: `len` is valid for writes per the safety requirements.
            unsafe { *len = size as c_ulong };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the VFIO core with the `vfio_device` of an open `CoreDevice<T>`, a valid
    /// interval tree of `nnodes` ranges and a valid `page_size` pointer.
    unsafe extern "C" fn log_start(
        vdev: *mut bindings::vfio_device,
        ranges: *mut bindings::rb_root_cached,
        nnodes: u32,
        page_size: *mut u64,
    ) -> c_int {
        // SAFETY: Per the safety requirements.
        let dev = unsafe { Opened::new(CoreDevice::<T>::from_vfio_device(vdev)) };
        // SAFETY: The tree is valid and unchanged for the duration of this call.
        let ranges = unsafe { IovaRanges::from_raw(ranges, nnodes) };
        // SAFETY: `page_size` is valid for reads and writes per the safety requirements.
        let page_size = unsafe { &mut *page_size };
        from_result(|| T::log_start(&dev, &ranges, page_size).map(|()| 0))
    }

    /// # Safety
    ///
    /// Called by the VFIO core with the `vfio_device` of an open `CoreDevice<T>`.
    unsafe extern "C" fn log_stop(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: Per the safety requirements.
        let dev = unsafe { Opened::new(CoreDevice::<T>::from_vfio_device(vdev)) };
        from_result(|| T::log_stop(&dev).map(|()| 0))
    }

    /// # Safety
    ///
    /// Called by the VFIO core with the `vfio_device` of an open `CoreDevice<T>` and a valid
    /// bitmap lent for the duration of the call.
    unsafe extern "C" fn log_read_and_clear(
        vdev: *mut bindings::vfio_device,
        iova: c_ulong,
        length: c_ulong,
        dirty: *mut bindings::iova_bitmap,
    ) -> c_int {
        // SAFETY: Per the safety requirements.
        let dev = unsafe { Opened::new(CoreDevice::<T>::from_vfio_device(vdev)) };
        // SAFETY: The bitmap is lent to us exclusively for this call.
        let mut dirty = unsafe { IovaBitmap::from_raw(dirty) };
        from_result(|| {
            T::log_read_and_clear(&dev, iova as u64, length as u64, &mut dirty).map(|()| 0)
        })
    }
}

/// The PCI driver of a VFIO variant driver; use with [`crate::module_vfio_pci_driver`].
pub struct Adapter<T: Driver>(PhantomData<T>);

// SAFETY:
// - `bindings::pci_driver` is a C type declared as `repr(C)` and embeds a `struct device_driver`
//   at `DEVICE_DRIVER_OFFSET`.
// - The PCI driver data of a bound device is a `vfio_pci_core_device`, owned by the VFIO core,
//   not a Rust object: `DriverData` is `()` and the driver data is NULL again before the driver
//   core looks at it after unbind (see `remove_callback`).
unsafe impl<T: Driver> driver::DriverLayout for Adapter<T> {
    type DriverType = bindings::pci_driver;
    type DriverData<'bound> = ();
    const DEVICE_DRIVER_OFFSET: usize = offset_of!(bindings::pci_driver, driver);
}

// SAFETY: A call to `unregister` for a given instance of `DriverType` is guaranteed to be valid if
// a preceding call to `register` has been successful.
unsafe impl<T: Driver> driver::RegistrationOps for Adapter<T> {
    unsafe fn register(
        pdrv: &Opaque<Self::DriverType>,
        name: &'static CStr,
        module: &'static ThisModule,
    ) -> Result {
        // SAFETY: It is safe to set the fields of `struct pci_driver` on initialization.
        unsafe {
            let drv = pdrv.get();
            (*drv).name = name.as_char_ptr();
            (*drv).probe = Some(Self::probe_callback);
            (*drv).remove = Some(Self::remove_callback);
            (*drv).id_table = T::ID_TABLE.as_ptr();
            (*drv).err_handler = &VTable::<T>::ERROR_HANDLERS;
            (*drv).sriov_configure = Some(Self::sriov_configure_callback);
            // `vfio_pci_core` claims DMA ownership itself, per VFIO user.
            (*drv).driver_managed_dma = true;
        }
        // SAFETY: `pdrv` is guaranteed to be a valid `DriverType`.
        to_result(unsafe {
            bindings::__pci_register_driver(pdrv.get(), module.as_ptr(), name.as_char_ptr())
        })
    }

    unsafe fn unregister(pdrv: &Opaque<Self::DriverType>) {
        // SAFETY: `pdrv` is guaranteed to be a valid `DriverType`.
        unsafe { bindings::pci_unregister_driver(pdrv.get()) }
    }
}

impl<T: Driver> Adapter<T> {
    /// `_vfio_alloc_device()` allocates with `kvzalloc()`, which guarantees
    /// `ARCH_KMALLOC_MINALIGN` only: a driver type that needs more fails to build.
    const ALIGNED_BY_ALLOCATOR: () = assert!(
        core::mem::align_of::<CoreDevice<T>>() <= bindings::ARCH_KMALLOC_MINALIGN,
        "the driver data needs more alignment than _vfio_alloc_device() provides"
    );

    extern "C" fn probe_callback(
        pdev: *mut bindings::pci_dev,
        id: *const bindings::pci_device_id,
    ) -> c_int {
        // SAFETY: The PCI bus only ever calls the probe callback with a valid pointer to a
        // `struct pci_dev`, valid for the duration of the call.
        let core_pdev = unsafe { &*pdev.cast::<pci::Device<device::CoreInternal<'_>>>() };
        // SAFETY: `DeviceId` is a `#[repr(transparent)]` wrapper of `struct pci_device_id`.
        let id = unsafe { &*id.cast::<pci::DeviceId>() };
        // SAFETY: `id` comes from `T::ID_TABLE`, an `IdArray<_, T::IdInfo>`, or is a dynamic ID
        // with 0 as driver data.
        let info = unsafe { id.info_unchecked_opt::<T::IdInfo>() };
        from_result(|| {
            Self::probe(core_pdev, pdev, info)?;
            Ok(0)
        })
    }

    fn probe(
        core_pdev: &pci::Device<device::CoreInternal<'_>>,
        pdev: *mut bindings::pci_dev,
        info: Option<&T::IdInfo>,
    ) -> Result {
        if let Some(mask) = T::DMA_MASK {
            // SAFETY: The driver has no DMA allocation or mapping for the device yet: its probe
            // has not run.
            unsafe { core_pdev.dma_set_mask_and_coherent(mask)? };
        }
        let init = T::probe(core_pdev, info);
        let () = Self::ALIGNED_BY_ALLOCATOR;
        // SAFETY: `pdev` is valid; `DEVICE_OPS` is static. The allocation is at least as large
        // as a `vfio_pci_core_device` because that is the first field of `CoreDevice<T>`, and
        // aligned enough for it (`ALIGNED_BY_ALLOCATOR`).
        let vdev = from_err_ptr(unsafe {
            bindings::_vfio_alloc_device(
                core::mem::size_of::<CoreDevice<T>>(),
                addr_of_mut!((*pdev).dev),
                &VTable::<T>::DEVICE_OPS,
            )
        })?;
        let this = vdev.cast::<CoreDevice<T>>();
        // SAFETY: `this` is a fresh, zeroed allocation of a `CoreDevice<T>` that never moves
        // until it is freed; `data` is initialized in place and `data_initialized` records it
        // for `release`.
        let initialized = unsafe { pin_init::raw_try_init((*this).data.get(), init) };
        if let Err(e) = initialized {
            // SAFETY: Drops the only reference; `release` skips the uninitialized data.
            unsafe { bindings::put_device(addr_of_mut!((*vdev).device)) };
            return Err(e);
        }
        // SAFETY: As above; nothing else references `this` yet.
        unsafe { (*this).data_initialized = true };
        // SAFETY: `this` is fully initialized now.
        let dev = unsafe { &*this };

        let flags = dev.migration_flags();
        if VTable::<T>::HAS_MIGRATION && flags != Flags::NONE {
            // SAFETY: Set before registration, as the VFIO core requires.
            unsafe {
                (*vdev).mig_ops = &VTable::<T>::MIGRATION_OPS;
                (*vdev).migration_flags = flags.0;
            }
        }
        if VTable::<T>::HAS_LOG && dev.dirty_logging(core_pdev) {
            // SAFETY: Set before registration, as the VFIO core requires.
            unsafe { (*vdev).log_ops = &VTable::<T>::LOG_OPS };
        }

        // SAFETY: `vfio_pci_core` finds its device through the PCI driver data.
        unsafe { bindings::dev_set_drvdata(addr_of_mut!((*pdev).dev), this.cast()) };
        // SAFETY: The core device is fully initialized.
        let ret = to_result(unsafe { bindings::vfio_pci_core_register_device(dev.as_raw()) });
        if let Err(e) = ret {
            // SAFETY: Undoes the above; drops the only reference.
            unsafe {
                bindings::dev_set_drvdata(addr_of_mut!((*pdev).dev), core::ptr::null_mut());
                bindings::put_device(addr_of_mut!((*vdev).device));
            }
            return Err(e);
        }
        Ok(())
    }

    extern "C" fn remove_callback(pdev: *mut bindings::pci_dev) {
        // SAFETY: `pdev` is a valid device bound to this driver, whose driver data is the
        // `CoreDevice<T>` registered by `probe`.
        unsafe {
            let dev = addr_of_mut!((*pdev).dev);
            let core = bindings::dev_get_drvdata(dev).cast::<bindings::vfio_pci_core_device>();
            // Waits until every user has closed the device.
            bindings::vfio_pci_core_unregister_device(core);
            bindings::dev_set_drvdata(dev, core::ptr::null_mut());
            // The last reference: frees the device and drops the driver's data.
            bindings::put_device(addr_of_mut!((*core).vdev.device));
        }
    }

    extern "C" fn sriov_configure_callback(
        pdev: *mut bindings::pci_dev,
        nr_virtfn: c_int,
    ) -> c_int {
        // SAFETY: `pdev` is bound to this driver; its driver data is the core device.
        unsafe {
            let core = bindings::dev_get_drvdata(addr_of_mut!((*pdev).dev));
            bindings::vfio_pci_core_sriov_configure(core.cast(), nr_virtfn)
        }
    }
}

/// Declares a kernel module that exposes a single VFIO PCI variant driver.
///
/// ```ignore
/// kernel::module_vfio_pci_driver! {
///     type: MyVariantDriver,
///     name: "my_vfio_pci",
///     authors: ["Author name"],
///     description: "Description",
///     license: "GPL v2",
/// }
/// ```
#[macro_export]
macro_rules! module_vfio_pci_driver {
    ($($f:tt)*) => {
        $crate::module_driver!(<T>, $crate::vfio::pci::Adapter<T>, { $($f)* });
    };
}
