// SPDX-License-Identifier: GPL-2.0
//! DMA map storm: what QEMU sends under a vIOMMU (one `VFIO_USER_DMA_MAP`
//! per 4 KiB page, the pages of one memfd at increasing offsets, then one
//! unmap per page), timed reply by reply over a real vfio-user socket.
//!
//! ```text
//! cargo run --release --example dma_map_bench [-- --maps N --baseline M]
//! ```
//!
//! Runs M maps and unmaps (default 1,024), then N (default 262,144), each
//! against a fresh device served on a thread of this process, and prints
//! the total time, the worst and the median reply of each, and the ratio
//! of the worst replies: a per-map cost that grows with the number of
//! mappings shows as a ratio far above 1. QEMU aborts when one reply takes
//! more than 5 s.
//!
//! On a busy machine the worst of many replies is mostly one the scheduler
//! delayed, so a second line gives percentiles, and compares the median of
//! the replies sent while the most mappings existed (the last M maps, the
//! first M unmaps) with the baseline median.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::thread;
use std::time::{Duration, Instant};

use vfio_user::Client;
use virtio_devsim::{server, Config, Device};

const PAGE: u64 = 4096;
/// Where the pages are mapped (above any guest RAM at IOVA 0).
const IOVA_BASE: u64 = 1 << 32;

/// Reply times of one phase (maps or unmaps).
struct Phase {
    /// In the order sent.
    replies: Vec<Duration>,
    /// Sorted.
    sorted: Vec<Duration>,
    total: Duration,
}

impl Phase {
    fn new(replies: Vec<Duration>, total: Duration) -> Self {
        let mut sorted = replies.clone();
        sorted.sort_unstable();
        Self {
            replies,
            sorted,
            total,
        }
    }

    fn worst(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }

    /// The reply time that a fraction `q` of the replies do not exceed.
    fn quantile(&self, q: f64) -> Duration {
        let i = ((self.sorted.len() as f64 - 1.0) * q).round() as usize;
        self.sorted.get(i).copied().unwrap_or_default()
    }

    fn median(&self) -> Duration {
        self.quantile(0.5)
    }

    /// Median of the replies sent while the most mappings existed: the
    /// last `n` maps, or the first `n` unmaps.
    fn median_when_fullest(&self, n: usize, maps: bool) -> Duration {
        let n = n.min(self.replies.len());
        let range = if maps {
            self.replies.len() - n..self.replies.len()
        } else {
            0..n
        };
        Phase::new(self.replies[range].to_vec(), Duration::ZERO).median()
    }

    fn over(&self, bound: Duration) -> usize {
        self.sorted.len() - self.sorted.partition_point(|&d| d <= bound)
    }
}

fn memfd(size: u64) -> io::Result<File> {
    // SAFETY: the name is a valid C string; the result is checked before use.
    let fd = unsafe { libc::memfd_create(c"dma-map-bench".as_ptr(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size)?;
    Ok(file)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// `count` page maps, then `count` page unmaps, against a fresh device.
fn storm(count: u64) -> io::Result<(Phase, Phase)> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("devsim.sock");
    let cfg = Config {
        socket: socket.clone(),
        backing: dir.path().join("disk.img"),
        capacity_sectors: Some(8),
        ..Config::default()
    };
    let mut device = Device::new(cfg)?;
    let listener = server::listen(&socket, &device)?;
    let serving = thread::spawn(move || server::serve(&listener, &mut device));

    let mut client = Client::new(&socket).map_err(|e| io::Error::other(e.to_string()))?;
    let ram = memfd(count * PAGE)?;
    let mut phase = |op: &mut dyn FnMut(&mut Client, u64) -> Result<(), vfio_user::Error>| {
        let mut replies = Vec::with_capacity(count as usize);
        let (result, total) = timed(|| {
            for page in 0..count {
                let (r, t) = timed(|| op(&mut client, page));
                r?;
                replies.push(t);
            }
            Ok::<(), vfio_user::Error>(())
        });
        result.map_err(|e| io::Error::other(e.to_string()))?;
        Ok::<Phase, io::Error>(Phase::new(replies, total))
    };
    let maps = phase(&mut |c, page| {
        c.dma_map(page * PAGE, IOVA_BASE + page * PAGE, PAGE, ram.as_raw_fd())
    })?;
    let unmaps = phase(&mut |c, page| c.dma_unmap(IOVA_BASE + page * PAGE, PAGE))?;

    drop(client);
    serving
        .join()
        .map_err(|_| io::Error::other("server thread panicked"))??;
    Ok((maps, unmaps))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The summary line (`label: N nouns, worst reply ..., median ..., total
/// ...; baseline M nouns worst ...; ratio ...`), then a line of figures
/// less sensitive to the odd reply delayed by the scheduler.
fn report(label: &str, noun: &str, big: &Phase, base: &Phase) {
    let ratio = big.worst().as_secs_f64() / base.worst().as_secs_f64().max(1e-9);
    println!(
        "{label}: {} {noun}, worst reply {:.3} ms, median {:.1} us, total {:.2} s; \
         baseline {} {noun} worst {:.3} ms; ratio {ratio:.1}",
        big.replies.len(),
        ms(big.worst()),
        us(big.median()),
        big.total.as_secs_f64(),
        base.replies.len(),
        ms(base.worst()),
    );
    let n = base.replies.len();
    let fullest = big.median_when_fullest(n, noun == "maps");
    println!(
        "  {label}: p99 {:.1} us, p99.9 {:.1} us, {} replies over 1 ms; \
         median of {n} {noun} with the most mappings {:.1} us, baseline median {:.1} us; \
         ratio {:.2}",
        us(big.quantile(0.99)),
        us(big.quantile(0.999)),
        big.over(Duration::from_millis(1)),
        us(fullest),
        us(base.median()),
        fullest.as_secs_f64() / base.median().as_secs_f64().max(1e-9),
    );
}

fn parse_args() -> Result<(u64, u64), String> {
    let (mut maps, mut baseline) = (262_144u64, 1_024u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--maps" => &mut maps,
            "--baseline" => &mut baseline,
            _ => return Err(format!("unknown argument {arg:?}")),
        };
        *slot = args
            .next()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{arg} needs a positive number"))?;
    }
    Ok((maps, baseline))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (count, base_count) = parse_args()?;
    let (base_maps, base_unmaps) = storm(base_count)?;
    let (maps, unmaps) = storm(count)?;
    report("dma_map", "maps", &maps, &base_maps);
    report("dma_unmap", "unmaps", &unmaps, &base_unmaps);
    Ok(())
}
