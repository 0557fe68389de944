// SPDX-License-Identifier: GPL-2.0
//! End-to-end check with a real QEMU: QEMU attaches
//! the device with `vfio-user-pci`, and SeaBIOS's virtio-blk driver boots a
//! boot sector from it that prints a marker on the serial port.
//!
//! `DEVSIM_QEMU` names the `qemu-system-x86_64` to run (a wrapper script is
//! fine) and `DEVSIM_QEMU_ARGS` adds arguments (for example `-L DIR` for the
//! firmware). Without `DEVSIM_QEMU`, `qemu-system-x86_64` is looked up in
//! `PATH`. Without a QEMU the test fails rather than pass without running:
//! `make check` runs it in the toolchain root, which has QEMU; elsewhere
//! `cargo test -- --skip seabios` leaves it out explicitly.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const MARKER: &str = "DEVSIM-BOOT-OK";

fn qemu() -> Option<PathBuf> {
    if let Some(q) = std::env::var_os("DEVSIM_QEMU") {
        return Some(PathBuf::from(q));
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join("qemu-system-x86_64"))
        .find(|p| p.is_file())
}

/// A boot sector that prints [`MARKER`] on COM1 and halts.
fn boot_sector() -> [u8; 512] {
    let mut code = vec![
        0x31, 0xc0, // xor ax, ax
        0x8e, 0xd8, // mov ds, ax
        0xbe, 0x00, 0x00, // mov si, msg (patched)
        0xac, // next: lodsb
        0x84, 0xc0, // test al, al
        0x74, 0x06, // jz halt
        0xba, 0xf8, 0x03, // mov dx, 0x3f8
        0xee, // out dx, al
        0xeb, 0xf5, // jmp next
        0xfa, // halt: cli
        0xf4, // hlt
        0xeb, 0xfc, // jmp halt
    ];
    let msg = 0x7c00 + code.len() as u16;
    code[5..7].copy_from_slice(&msg.to_le_bytes());
    code.extend_from_slice(MARKER.as_bytes());
    code.extend_from_slice(b"\r\n\0");
    let mut s = [0u8; 512];
    s[..code.len()].copy_from_slice(&code);
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

#[test]
fn seabios_boots_from_the_device() {
    let qemu = qemu().expect("no qemu-system-x86_64 (set DEVSIM_QEMU, or skip this test)");
    let mut srv = Server::spawn(&["--capacity-sectors", "2048"]);
    // The device opened (and sized) the backing file at start-up.
    let mut disk = std::fs::OpenOptions::new()
        .write(true)
        .open(srv.backing())
        .unwrap();
    disk.seek(SeekFrom::Start(0)).unwrap();
    disk.write_all(&boot_sector()).unwrap();
    disk.sync_all().unwrap();

    let serial = srv.dir.path().join("serial.log");
    let device = format!(
        r#"{{"driver":"vfio-user-pci","socket":{{"path":"{}","type":"unix"}},"rombar":0}}"#,
        srv.socket.display()
    );
    let extra = std::env::var("DEVSIM_QEMU_ARGS").unwrap_or_default();
    let mut vm = Command::new(qemu)
        .args(extra.split_whitespace())
        .args([
            "-M", "q35", "-accel", "tcg", "-m", "128M", "-display", "none", "-nic", "none",
        ])
        .args(["-object", "memory-backend-memfd,id=mem,size=128M,share=on"])
        .args(["-machine", "memory-backend=mem"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-device", &device])
        .stdin(Stdio::null())
        .spawn()
        .expect("start qemu");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut booted = false;
    while Instant::now() < deadline {
        let out = std::fs::read(&serial).unwrap_or_default();
        if String::from_utf8_lossy(&out).contains(MARKER) {
            booted = true;
            break;
        }
        if let Ok(Some(st)) = vm.try_wait() {
            panic!("qemu exited early: {st}");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = vm.kill();
    let _ = vm.wait();
    assert!(booted, "the boot sector was not read from the device");
    // QEMU went away: the device exits 0 and reports what it served.
    assert!(srv.wait(Duration::from_secs(10)).success());
    assert!(srv.stat("requests_served") >= 1);
    assert!(srv.stat("mmio_reads_config") > 0);
}
