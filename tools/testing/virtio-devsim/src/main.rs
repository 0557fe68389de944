// SPDX-License-Identifier: GPL-2.0
//! `virtio-devsim` command line entry point.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::{env, io, mem, ptr, thread};

use virtio_devsim::config::{self, Command, USAGE};
use virtio_devsim::stats::Stats;
use virtio_devsim::{server, Config, Device};

/// Writes the statistics file, if one was requested.
fn dump(stats: &Stats, path: Option<&Path>) {
    if let Some(path) = path {
        if let Err(e) = stats.write_to(path) {
            eprintln!("virtio-devsim: writing {}: {e}", path.display());
        }
    }
}

/// The signals handled by the signal thread.
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set they are given,
    // which lives on this stack frame.
    unsafe {
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        set
    }
}

/// Blocks the handled signals in this thread and every thread it creates
/// later, so only the signal thread receives them (with `sigwait`).
fn block_signals() -> io::Result<()> {
    let set = signal_set();
    // SAFETY: `set` is a valid signal set; the old mask is not requested.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// SIGUSR1 writes the statistics; SIGTERM and SIGINT also remove the
/// sockets and exit 0.
fn spawn_signal_thread(
    stats: Arc<Stats>,
    stats_file: Option<PathBuf>,
    sockets: Vec<PathBuf>,
) -> io::Result<()> {
    thread::Builder::new()
        .name("devsim-signals".into())
        .spawn(move || loop {
            let set = signal_set();
            let mut sig = 0;
            // SAFETY: `set` and `sig` are valid for the duration of the call.
            if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
                continue;
            }
            dump(&stats, stats_file.as_deref());
            if sig != libc::SIGUSR1 {
                for socket in &sockets {
                    let _ = std::fs::remove_file(socket);
                }
                std::process::exit(0);
            }
        })
        .map(|_| ())
}

fn run(cfg: Config) -> io::Result<()> {
    block_signals()?;
    let socket = cfg.socket.clone();
    let stats_file = cfg.stats_file.clone();
    let owner_socket = cfg.owner_socket.clone();
    let mut device = Device::new(cfg.clone())?;
    // The owner, with --owner-socket: its own socket, connection and DMA
    // mappings, served on a thread of its own.
    let owner = match &owner_socket {
        Some(path) => Some((Device::new_owner(&cfg, &device)?, path.clone())),
        None => None,
    };
    let stats = device.shared().stats.clone();
    let sockets: Vec<PathBuf> = owner_socket
        .iter()
        .cloned()
        .chain([socket.clone()])
        .collect();

    {
        // --fault-disconnect-after-requests: the device disappears.
        let (stats, stats_file, sockets) = (stats.clone(), stats_file.clone(), sockets.clone());
        device.set_disconnect_hook(Box::new(move || {
            dump(&stats, stats_file.as_deref());
            for socket in &sockets {
                let _ = std::fs::remove_file(socket);
            }
            std::process::exit(0);
        }));
    }
    spawn_signal_thread(stats.clone(), stats_file.clone(), sockets)?;

    // The owner's socket first: once --socket appears, both accept.
    let owner_thread = match owner {
        Some((mut owner, path)) => {
            let listener = server::listen(&path, &owner)?;
            Some(
                thread::Builder::new()
                    .name("devsim-owner".into())
                    .spawn(move || {
                        let result = server::serve(&listener, &mut owner);
                        drop(listener);
                        result
                    })?,
            )
        }
        None => None,
    };
    let listener = server::listen(&socket, &device)?;
    let mut result = server::serve(&listener, &mut device);
    drop(listener);
    // The process exits once both clients have gone.
    if let Some(t) = owner_thread {
        let owner_result = t
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("owner thread panicked")));
        result = result.and(owner_result);
    }
    dump(&stats, stats_file.as_deref());
    result
}

fn main() -> ExitCode {
    match config::parse(env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Run(cfg)) => match run(*cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("virtio-devsim: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("virtio-devsim: {e}\nTry 'virtio-devsim --help'.");
            ExitCode::from(2)
        }
    }
}
