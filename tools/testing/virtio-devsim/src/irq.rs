// SPDX-License-Identifier: GPL-2.0
//! MSI-X delivery through the eventfds the client installs with
//! `VFIO_USER_DEVICE_SET_IRQS`.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_PCI_MSIX_IRQ_INDEX,
};

use crate::stats::Stats;

/// The MSI-X vectors of the device.
pub struct Msix {
    vectors: Mutex<Vec<Option<File>>>,
    stats: Arc<Stats>,
}

impl Msix {
    /// `count` vectors, none connected.
    pub fn new(count: usize, stats: Arc<Stats>) -> Self {
        Self {
            vectors: Mutex::new((0..count).map(|_| None).collect()),
            stats,
        }
    }

    /// Number of vectors.
    pub fn count(&self) -> usize {
        self.vectors.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Handles `VFIO_USER_DEVICE_SET_IRQS`.
    pub fn set_irqs(
        &self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        if index != VFIO_PCI_MSIX_IRQ_INDEX {
            // The error and request interrupts are accepted but never
            // raised: the model has no error reporting or unplug request.
            return Ok(());
        }
        if flags & VFIO_IRQ_SET_ACTION_TYPE_MASK != VFIO_IRQ_SET_ACTION_TRIGGER {
            // Masking MSI-X through SET_IRQS is not supported (nor needed).
            return Ok(());
        }
        let mut v = self
            .vectors
            .lock()
            .map_err(|_| io::Error::other("irq lock poisoned"))?;
        let start = start as usize;
        let count = count as usize;
        let data = flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
        if data == VFIO_IRQ_SET_DATA_NONE && count == 0 {
            // Disable every vector.
            v.iter_mut().for_each(|slot| *slot = None);
            return Ok(());
        }
        let end = start
            .checked_add(count)
            .filter(|&e| e <= v.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "vector out of range"))?;
        match data {
            VFIO_IRQ_SET_DATA_EVENTFD if fds.len() == count => {
                for (slot, fd) in v[start..end].iter_mut().zip(fds) {
                    *slot = Some(fd);
                }
            }
            VFIO_IRQ_SET_DATA_EVENTFD if fds.is_empty() => {
                // No descriptors: the vectors are torn down.
                v[start..end].iter_mut().for_each(|slot| *slot = None);
            }
            VFIO_IRQ_SET_DATA_NONE => {
                // DATA_NONE + TRIGGER fires the vectors (loopback test).
                drop(v);
                for vector in start..end {
                    self.signal(vector as u16);
                }
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "unsupported SET_IRQS data",
                ))
            }
        }
        Ok(())
    }

    /// Sends MSI-X message `vector`. Returns whether a vector was connected.
    pub fn signal(&self, vector: u16) -> bool {
        let Ok(v) = self.vectors.lock() else {
            return false;
        };
        match v.get(vector as usize) {
            Some(Some(fd)) => {
                let mut fd: &File = fd;
                // An eventfd counter overflow only loses a redundant signal.
                let _ = fd.write_all(&1u64.to_ne_bytes());
                Stats::add(&self.stats.interrupts_sent, 1);
                true
            }
            _ => false,
        }
    }

    /// Disconnects every vector.
    pub fn clear(&self) {
        if let Ok(mut v) = self.vectors.lock() {
            v.iter_mut().for_each(|slot| *slot = None);
        }
    }
}
