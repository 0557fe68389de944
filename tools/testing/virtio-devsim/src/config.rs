// SPDX-License-Identifier: GPL-2.0
//! Command line and device configuration.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::layout::MAX_GRA_POWER;

/// Ways to make the memory tracker capability malformed (`--fault-bad-cap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadCap {
    /// The capability names BAR 7, which does not exist.
    Bar,
    /// The capability points past the end of its BAR.
    Offset,
    /// The capability claims `cap_len` 8, shorter than `struct virtio_pci_cap`.
    CapLen,
}

impl FromStr for BadCap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bar" => Ok(BadCap::Bar),
            "offset" => Ok(BadCap::Offset),
            "caplen" => Ok(BadCap::CapLen),
            _ => Err(format!(
                "--fault-bad-cap: expected bar|offset|caplen, got {s:?}"
            )),
        }
    }
}

/// Fault injection switches, used by reliability tests of the driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// A queue asked to stop never reports `queue_status` 0.
    pub never_stop: bool,
    /// A stopping queue reports 0 only this many milliseconds after the stop request.
    pub slow_stop_ms: u64,
    /// The tracker also sets bits past `bitmap_length` (violates the spec).
    pub bits_past_length: bool,
    /// The memory tracker capability is malformed.
    pub bad_cap: Option<BadCap>,
    /// The device disconnects after completing this many requests.
    pub disconnect_after_requests: Option<u64>,
    /// The function has no reset the kernel can use: no power management
    /// capability and no FLR in the PCI Express capability.
    pub no_reset: bool,
    /// Admin commands with this opcode are never completed.
    pub admin_hang: Option<u16>,
    /// Admin commands with this opcode complete with status
    /// [`crate::admin::FAULT_STATUS`] (not defined by the specification).
    pub admin_status: Option<u16>,
    /// Every READ result that returns records also returns one record one
    /// page past the end of the window.
    pub stray_records: bool,
    /// After this many READ commands the owner behaves as reset.
    pub owner_reset_after_reads: Option<u64>,
}

/// Everything that shapes the device and the server process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Unix socket the vfio-user server listens on.
    pub socket: PathBuf,
    /// File backing the block device.
    pub backing: PathBuf,
    /// Capacity in 512-byte sectors; `None` uses the size of an existing file.
    pub capacity_sectors: Option<u64>,
    /// Number of request queues.
    pub queues: u16,
    /// Maximum size of each queue.
    pub queue_size: u16,
    /// Serial number returned by `VIRTIO_BLK_T_GET_ID`.
    pub serial: String,
    /// Where statistics are written on exit and on SIGUSR1.
    pub stats_file: Option<PathBuf>,
    /// How long every request is held in flight.
    pub request_delay_ms: u64,
    /// The device raises `gra_power` to at least this value.
    pub min_gra_power: u8,
    /// The tracker sets whole bitmap bytes instead of single bits.
    pub byte_granular_dirty: bool,
    /// Expose a PASID extended capability (4 KiB configuration space).
    pub pasid: bool,
    /// Leave out the memory dirty pages tracker capability.
    pub no_tracker: bool,
    /// Socket of the owner function (admin virtqueue). With it, the function
    /// at [`Config::socket`] is the owner's member and records its writes.
    pub owner_socket: Option<PathBuf>,
    /// Member id of the function at [`Config::socket`] in the owner's SLOT group.
    pub member_id: u64,
    /// Distinct page records the member stores.
    pub record_capacity: u32,
    /// Supported record page sizes: bit `n` is `4096 << n`.
    pub record_page_sizes: u32,
    /// Largest number of ranges of one WRITE_RECORDS_START.
    pub record_ranges: u32,
    /// Fault injection switches.
    pub faults: Faults,
}

/// The part a function plays in the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only function (no `--owner-socket`).
    Single,
    /// The function at `--socket` when there is an owner: its device writes
    /// are recorded for the owner.
    Member,
    /// The owner function at `--owner-socket`, with the admin virtqueue.
    Owner,
}

impl Role {
    /// The role of the function at `--socket` for `cfg`.
    pub fn of(cfg: &Config) -> Role {
        if cfg.owner_socket.is_some() {
            Role::Member
        } else {
            Role::Single
        }
    }
}

/// Capacity used when the backing file does not exist and none is given (16 MiB).
pub const DEFAULT_CAPACITY_SECTORS: u64 = 32768;
/// Largest number of queues supported (MSI-X table must fit in half a page).
pub const MAX_QUEUES: u16 = 64;
/// Largest member id: a function number of a multi-function slot.
pub const MAX_MEMBER_ID: u64 = 7;
/// Largest `--record-ranges`.
pub const MAX_RECORD_RANGES: u32 = 65536;

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: PathBuf::new(),
            backing: PathBuf::new(),
            capacity_sectors: None,
            queues: 1,
            queue_size: 256,
            serial: "devsim0".to_string(),
            stats_file: None,
            request_delay_ms: 0,
            min_gra_power: 0,
            byte_granular_dirty: false,
            pasid: false,
            no_tracker: false,
            owner_socket: None,
            member_id: 1,
            record_capacity: 65536,
            record_page_sizes: 0x201,
            record_ranges: 32,
            faults: Faults::default(),
        }
    }
}

/// The usage text printed by `--help`.
pub const USAGE: &str = "\
virtio-devsim: a vfio-user virtio-blk device with the virtio-pci memory
dirty pages tracker (cfg_type 10) and device state (cfg_type 11) capabilities.

USAGE:
    virtio-devsim --socket PATH --backing FILE [OPTIONS]

Attach it to QEMU (guest RAM must be a shared memfd):
    -object memory-backend-memfd,id=mem,size=1G,share=on -machine memory-backend=mem
    -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"PATH\",\"type\":\"unix\"},\"rombar\":0}'

The socket appears once the server accepts connections. One client is served;
the program exits 0 when it disconnects, or on SIGTERM/SIGINT (removing the
socket). SIGUSR1 writes the statistics file.

OPTIONS:
    --socket PATH                  vfio-user socket to create (required)
    --backing FILE                 backing file, created if missing (required)
    --capacity-sectors N           capacity in 512-byte sectors (default: size of
                                   FILE, or 32768 when FILE is created); a smaller
                                   existing FILE is extended
    --queues N                     number of request queues, 1..=64 (default 1)
    --queue-size N                 maximum queue size, power of two (default 256)
    --serial STR                   serial for VIRTIO_BLK_T_GET_ID (default devsim0)
    --stats-file PATH              write key=value counters on exit and SIGUSR1
    --request-delay-ms N           hold every request N ms in flight (default 0)
    --min-gra-power N              raise the tracker's gra_power to at least N
    --byte-granular-dirty          tracker sets whole bitmap bytes
    --pasid                        expose a PASID extended capability at 0x100
                                   (4 KiB config space)
    --no-tracker                   no memory dirty pages tracker capability (a
                                   driver must use admin write recording)
    -h, --help                     print this text

OWNER FUNCTION (admin write recording):
    --owner-socket PATH            also serve an owner function at PATH: a
                                   virtio-blk function (1 inert request queue,
                                   capacity 0) with an admin virtqueue at index 1
                                   (VIRTIO_F_ADMIN_VQ) that records the device
                                   writes of the function at --socket, its member
                                   (SLOT group 0x2). Both get a 4 KiB config space
                                   with an ACS capability and the multi-function
                                   header bit: attach the owner at function 0 of a
                                   slot, the member at another function of it.
                                   Each socket has its own client and DMA
                                   mappings; PATH appears before --socket's, and
                                   the program exits when both clients are gone
    --member-id N                  the member's id in the SLOT group (1..=7,
                                   default 1)
    --record-capacity N            page records the member stores (default 65536)
    --record-page-sizes BITMAP     record page sizes, bit n = 4096 << n
                                   (default 0x201: 4 KiB and 2 MiB)
    --record-ranges N              ranges per WRITE_RECORDS_START, 1..=65536
                                   (default 32)

FAULT INJECTION:
    --fault-never-stop             a stopping queue never reads queue_status 0
    --fault-slow-stop-ms N         a stopping queue reads 0 only N ms after the
                                   stop request (and after in-flight requests)
    --fault-bits-past-length       tracker also sets bits past bitmap_length
    --fault-bad-cap=bar|offset|caplen
                                   malformed memory tracker capability: BAR 7,
                                   offset past the end of BAR4, or cap_len 8
    --fault-disconnect-after-requests N
                                   drop the connection (the process exits 0)
                                   after completing N requests
    --fault-no-reset               no PCI power management capability and no FLR:
                                   the kernel finds no way to reset the function
    --fault-admin-hang OPCODE      owner: admin commands with OPCODE never complete
    --fault-admin-status OPCODE    owner: admin commands with OPCODE complete with
                                   status 0x7fff (undefined) and no effect
    --fault-stray-records          each READ result holding records also holds one
                                   record one page past the window end
    --fault-owner-reset-after-reads N
                                   after the N-th READ command completed, the owner
                                   resets itself: device_status reads 0, the admin
                                   queue is disabled, recording stops, records go

Numbers may be given in hexadecimal with a 0x prefix.
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the server.
    Run(Box<Config>),
    /// Print the usage text.
    Help,
}

/// A command line error.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn number<T: TryFrom<u64>>(name: &str, value: &str) -> Result<T, UsageError> {
    let invalid = || UsageError(format!("{name}: invalid number {value:?}"));
    let v = match value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    }
    .map_err(|_| invalid())?;
    T::try_from(v).map_err(|_| invalid())
}

/// Parses the command line (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let mut cfg = Config::default();
    let mut socket = None;
    let mut backing = None;
    let mut args = args.into_iter();

    while let Some(arg) = args.next() {
        // Accept both "--name value" and "--name=value".
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, UsageError> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => args
                    .next()
                    .ok_or_else(|| UsageError(format!("{name}: missing value"))),
            }
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--socket" => socket = Some(PathBuf::from(value()?)),
            "--backing" => backing = Some(PathBuf::from(value()?)),
            "--capacity-sectors" => cfg.capacity_sectors = Some(number(&name, &value()?)?),
            "--queues" => cfg.queues = number(&name, &value()?)?,
            "--queue-size" => cfg.queue_size = number(&name, &value()?)?,
            "--serial" => cfg.serial = value()?,
            "--stats-file" => cfg.stats_file = Some(PathBuf::from(value()?)),
            "--request-delay-ms" => cfg.request_delay_ms = number(&name, &value()?)?,
            "--min-gra-power" => cfg.min_gra_power = number(&name, &value()?)?,
            "--byte-granular-dirty" => cfg.byte_granular_dirty = true,
            "--pasid" => cfg.pasid = true,
            "--no-tracker" => cfg.no_tracker = true,
            "--owner-socket" => cfg.owner_socket = Some(PathBuf::from(value()?)),
            "--member-id" => cfg.member_id = number(&name, &value()?)?,
            "--record-capacity" => cfg.record_capacity = number(&name, &value()?)?,
            "--record-page-sizes" => cfg.record_page_sizes = number(&name, &value()?)?,
            "--record-ranges" => cfg.record_ranges = number(&name, &value()?)?,
            "--fault-never-stop" => cfg.faults.never_stop = true,
            "--fault-slow-stop-ms" => cfg.faults.slow_stop_ms = number(&name, &value()?)?,
            "--fault-bits-past-length" => cfg.faults.bits_past_length = true,
            "--fault-bad-cap" => cfg.faults.bad_cap = Some(value()?.parse().map_err(UsageError)?),
            "--fault-disconnect-after-requests" => {
                cfg.faults.disconnect_after_requests = Some(number(&name, &value()?)?)
            }
            "--fault-no-reset" => cfg.faults.no_reset = true,
            "--fault-admin-hang" => cfg.faults.admin_hang = Some(number(&name, &value()?)?),
            "--fault-admin-status" => cfg.faults.admin_status = Some(number(&name, &value()?)?),
            "--fault-stray-records" => cfg.faults.stray_records = true,
            "--fault-owner-reset-after-reads" => {
                cfg.faults.owner_reset_after_reads = Some(number(&name, &value()?)?)
            }
            _ => return Err(UsageError(format!("unknown argument {arg:?}"))),
        }
    }

    cfg.socket = socket.ok_or_else(|| UsageError("--socket is required".into()))?;
    cfg.backing = backing.ok_or_else(|| UsageError("--backing is required".into()))?;
    cfg.validate()?;
    Ok(Command::Run(Box::new(cfg)))
}

impl Config {
    /// Checks the limits of the numeric options.
    pub fn validate(&self) -> Result<(), UsageError> {
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return Err(UsageError(format!("--queues must be 1..={MAX_QUEUES}")));
        }
        if !self.queue_size.is_power_of_two() {
            return Err(UsageError("--queue-size must be a power of two".into()));
        }
        if self.min_gra_power > MAX_GRA_POWER {
            return Err(UsageError(format!(
                "--min-gra-power must be <= {MAX_GRA_POWER}"
            )));
        }
        if self.serial.len() > 20 {
            return Err(UsageError("--serial must be at most 20 bytes".into()));
        }
        if self.member_id == 0 || self.member_id > MAX_MEMBER_ID {
            return Err(UsageError(format!(
                "--member-id must be 1..={MAX_MEMBER_ID}"
            )));
        }
        if self.record_page_sizes == 0 {
            return Err(UsageError("--record-page-sizes must not be 0".into()));
        }
        if self.record_ranges == 0 || self.record_ranges > MAX_RECORD_RANGES {
            return Err(UsageError(format!(
                "--record-ranges must be 1..={MAX_RECORD_RANGES}"
            )));
        }
        if self.faults.owner_reset_after_reads == Some(0) {
            return Err(UsageError(
                "--fault-owner-reset-after-reads must be at least 1".into(),
            ));
        }
        if self.owner_socket.is_some() && self.owner_socket.as_ref() == Some(&self.socket) {
            return Err(UsageError(
                "--owner-socket must differ from --socket".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_every_option() {
        let cmd = parse(args(
            "--socket /s --backing /b --capacity-sectors 8 --queues 2 --queue-size 64 \
             --serial abc --stats-file /st --request-delay-ms 5 --min-gra-power 2 \
             --byte-granular-dirty --pasid --fault-never-stop --fault-slow-stop-ms 9 \
             --fault-bits-past-length --fault-bad-cap=offset \
             --fault-disconnect-after-requests 3 --fault-no-reset --no-tracker \
             --owner-socket /o --member-id 3 --record-capacity 0x10 \
             --record-page-sizes 0x3 --record-ranges 4 --fault-admin-hang 0x16 \
             --fault-admin-status=20 --fault-stray-records \
             --fault-owner-reset-after-reads 5",
        ))
        .unwrap();
        let Command::Run(cfg) = cmd else {
            panic!("expected run")
        };
        assert_eq!(cfg.socket, PathBuf::from("/s"));
        assert_eq!(cfg.capacity_sectors, Some(8));
        assert_eq!(cfg.queues, 2);
        assert_eq!(cfg.queue_size, 64);
        assert_eq!(cfg.min_gra_power, 2);
        assert!(cfg.byte_granular_dirty && cfg.pasid && cfg.no_tracker);
        assert_eq!(cfg.owner_socket, Some(PathBuf::from("/o")));
        assert_eq!(
            (
                cfg.member_id,
                cfg.record_capacity,
                cfg.record_page_sizes,
                cfg.record_ranges
            ),
            (3, 16, 3, 4)
        );
        assert_eq!(
            cfg.faults,
            Faults {
                never_stop: true,
                slow_stop_ms: 9,
                bits_past_length: true,
                bad_cap: Some(BadCap::Offset),
                disconnect_after_requests: Some(3),
                no_reset: true,
                admin_hang: Some(0x16),
                admin_status: Some(20),
                stray_records: true,
                owner_reset_after_reads: Some(5),
            }
        );
        let Ok(Command::Run(cfg)) = parse(args("--socket /s --backing /b")) else {
            panic!("expected run")
        };
        assert_eq!(cfg.owner_socket, None);
        assert_eq!(
            (
                cfg.member_id,
                cfg.record_capacity,
                cfg.record_page_sizes,
                cfg.record_ranges
            ),
            (1, 65536, 0x201, 32)
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(args("--backing /b")).is_err());
        assert!(parse(args("--socket /s --backing /b --queues 0")).is_err());
        assert!(parse(args("--socket /s --backing /b --queue-size 100")).is_err());
        assert!(parse(args("--socket /s --backing /b --bogus")).is_err());
        assert!(parse(args("--socket /s --backing /b --fault-bad-cap=x")).is_err());
        for bad in [
            "--member-id 0",
            "--member-id 8",
            "--record-page-sizes 0",
            "--record-ranges 0",
            "--record-ranges 65537",
            "--record-capacity 0x1_0000_0000",
            "--fault-admin-hang 65536",
            "--owner-socket /s",
            "--fault-owner-reset-after-reads 0",
            "--queues 0x",
        ] {
            assert!(
                parse(args(&format!("--socket /s --backing /b {bad}"))).is_err(),
                "{bad}"
            );
        }
        assert_eq!(parse(args("--help")), Ok(Command::Help));
    }
}
