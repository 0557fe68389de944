// SPDX-License-Identifier: GPL-2.0
//! The vfio-user socket.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use vfio_user::Server;

use crate::device::Device;

/// Creates the listening socket at `path` for `device`. A stale socket left
/// at `path` by an earlier run is replaced; any other file is an error.
///
/// Clients may connect as soon as this returns, so it is called last, once
/// the device is ready.
pub fn listen(path: &Path, device: &Device) -> io::Result<Server> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    Server::new(path, true, device.irqs(), device.regions()).map_err(io::Error::other)
}

/// Serves one client until it disconnects.
pub fn serve(server: &Server, device: &mut Device) -> io::Result<()> {
    server.run(device).map_err(io::Error::other)
}
