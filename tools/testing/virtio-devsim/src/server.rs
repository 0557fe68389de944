// SPDX-License-Identifier: GPL-2.0
//! The vfio-user socket.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use vfio_user::Server;

use crate::device::Device;

/// A listening vfio-user server; dropping it removes the socket file.
pub struct Listener {
    server: Server,
    path: PathBuf,
}

/// Creates the listening socket at `path` for `device`. A stale socket left
/// at `path` by an earlier run is replaced; any other file is an error.
///
/// The socket is bound and put in the listening state under a temporary
/// name and then renamed, so `path` only appears once connections are
/// accepted: a VM runner can wait for the file and start QEMU right away.
pub fn listen(path: &Path, device: &Device) -> io::Result<Listener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let server = Server::from_owned_fd(
        OwnedFd::from(listener),
        true,
        device.irqs(),
        device.regions(),
    );
    Ok(Listener {
        server,
        path: path.to_path_buf(),
    })
}

/// Serves one client until it disconnects.
pub fn serve(listener: &Listener, device: &mut Device) -> io::Result<()> {
    listener.server.run(device).map_err(io::Error::other)
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
