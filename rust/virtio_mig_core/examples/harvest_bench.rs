// SPDX-License-Identifier: GPL-2.0
//! Harvests a 32 MiB device bitmap (1 TiB of IOVA at 4 KiB) into a user
//! bitmap, as the driver does, and compares the time with a plain 32 MiB
//! memcpy measured in the same run.
//!
//! The sink does the driver's work: `set_pages` ORs the word into the user
//! bitmap at its bit offset, `set_range` sets a run of bits.
//!
//! Run from the repository root with
//! `tools/testing/vm/in-root.sh tools/testing/vm/cargo.sh run --release --quiet --manifest-path rust/virtio_mig_core/Cargo.toml --example harvest_bench`
//! (or `cargo run --release --example harvest_bench` in this directory).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use virtio_mig_core::dirty_bitmap::{harvest, or_word_at, DirtySink, HarvestRange};

const BYTES: usize = 32 << 20;
const WORDS: usize = BYTES / 8;
const ROUNDS: u32 = 20;

/// The user's bitmap for one range: bit `i` is user page `first_page + i`.
struct UserBitmap {
    first_page: u64,
    page_shift: u32,
    map: Vec<u64>,
}

impl UserBitmap {
    fn new(r: &HarvestRange) -> Self {
        let pages = r.length >> r.page_shift;
        UserBitmap {
            first_page: r.iova >> r.page_shift,
            page_shift: r.page_shift,
            map: vec![0; pages.div_ceil(64) as usize],
        }
    }

    /// Sets bits `[a, b)`.
    fn set_bits(&mut self, a: u64, b: u64) {
        let (wa, wb) = ((a / 64) as usize, ((b - 1) / 64) as usize);
        let lo = u64::MAX << (a % 64);
        let hi = u64::MAX >> (63 - (b - 1) % 64);
        if wa == wb {
            self.map[wa] |= lo & hi;
        } else {
            self.map[wa] |= lo;
            self.map[wa + 1..wb].fill(u64::MAX);
            self.map[wb] |= hi;
        }
    }
}

impl DirtySink for UserBitmap {
    fn set_range(&mut self, iova: u64, len: u64) {
        let a = (iova >> self.page_shift) - self.first_page;
        let b = ((iova + len - 1) >> self.page_shift) + 1 - self.first_page;
        self.set_bits(a, b);
    }

    fn set_pages(&mut self, iova: u64, bits: u64) {
        let fits = or_word_at(
            &mut self.map,
            (iova >> self.page_shift) - self.first_page,
            bits,
        );
        debug_assert!(fits);
    }
}

struct Pattern {
    name: &'static str,
    /// Every how many words the pattern is stored (0: never).
    every: usize,
    word: u64,
    goal: f64,
}

const PATTERNS: [Pattern; 4] = [
    Pattern {
        name: "clean",
        every: 0,
        word: 0,
        goal: 1.0,
    },
    Pattern {
        name: "sparse (1 word in 512)",
        every: 512,
        word: 1 << 17,
        goal: 1.0,
    },
    Pattern {
        name: "dense (every bit)",
        every: 1,
        word: u64::MAX,
        goal: 2.0,
    },
    Pattern {
        name: "scattered (every other bit)",
        every: 1,
        word: 0x5555_5555_5555_5555,
        goal: 4.0,
    },
];

/// Dirties `words` with `p`.
fn dirty(words: &[AtomicU64], p: &Pattern) {
    for (i, w) in words.iter().enumerate() {
        let dirty = p.every != 0 && i % p.every == 0;
        w.store(if dirty { p.word.to_le() } else { 0 }, Ordering::Relaxed);
    }
}

/// Times `f`, keeping the best time in `best`.
fn time<T>(best: &mut Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = black_box(f());
    *best = (*best).min(t.elapsed());
    r
}

/// A granularity pair measured with every pattern.
struct Config {
    label: &'static str,
    range: HarvestRange,
    /// Whether the patterns' goals apply.
    goals: bool,
    sink: UserBitmap,
    best: [Duration; PATTERNS.len()],
    /// Sink calls and user pages reported by the last harvest.
    output: [(u64, u64); PATTERNS.len()],
}

impl Config {
    fn new(label: &'static str, page_shift: u32, gra_shift: u32, goals: bool) -> Self {
        let range = HarvestRange {
            iova: 0,
            length: (WORDS as u64 * 64) << gra_shift,
            page_shift,
            gra_shift,
        };
        Config {
            label,
            sink: UserBitmap::new(&range),
            range,
            goals,
            best: [Duration::MAX; PATTERNS.len()],
            output: [(0, 0); PATTERNS.len()],
        }
    }
}

fn main() {
    let src = vec![0xa5u8; BYTES];
    let mut dst = vec![0u8; BYTES];
    let words: Vec<AtomicU64> = (0..WORDS).map(|_| AtomicU64::new(0)).collect();
    let mut configs = [
        Config::new("gra_shift = page_shift = 12", 12, 12, true),
        Config::new(
            "for information: gra_shift 13, page_shift 12 (spread)",
            12,
            13,
            false,
        ),
        Config::new(
            "for information: gra_shift 12, page_shift 13 (reduce)",
            13,
            12,
            false,
        ),
    ];
    let mut memcpy = Duration::MAX;
    let mut swap = Duration::MAX;
    let mut swap_or = Duration::MAX;
    // Rounds outermost, so that every figure gets the quiet moments of a
    // shared machine alike.
    for _ in 0..ROUNDS {
        time(&mut memcpy, || dst.copy_from_slice(black_box(&src)));
        black_box(&dst);
        // Clearing every word atomically: the floor of the dense cases.
        dirty(&words, &PATTERNS[2]);
        time(&mut swap, || {
            for w in &words {
                black_box(w.swap(0, Ordering::AcqRel));
            }
        });
        // The same, each word ORed into a user word: the floor of a harvest
        // whose words all hold a clear bit (none may be cleared by a store).
        // Into the measured harvest's own user bitmap: where the pages of a
        // buffer land changes these times by up to half, so floor and harvest
        // must share theirs.
        dirty(&words, &PATTERNS[3]);
        let user = &mut configs[0].sink.map;
        user.fill(0);
        time(&mut swap_or, || {
            for (w, u) in words.iter().zip(user.iter_mut()) {
                *u |= w.swap(0, Ordering::AcqRel);
            }
        });
        black_box(&user);
        for c in &mut configs {
            for (i, p) in PATTERNS.iter().enumerate() {
                dirty(&words, p);
                c.sink.map.fill(0);
                let stats = time(&mut c.best[i], || harvest(&words, &c.range, &mut c.sink))
                    .expect("valid range");
                let pages = c.sink.map.iter().map(|w| u64::from(w.count_ones())).sum();
                c.output[i] = (stats.words_emitted + stats.runs, pages);
            }
        }
    }

    let ratio = |t: Duration| t.as_secs_f64() / memcpy.as_secs_f64();
    println!("memcpy 32 MiB: {memcpy:?} (best of {ROUNDS})");
    println!(
        "floor: one atomic swap per word {swap:>12?}  ratio {:5.2}",
        ratio(swap)
    );
    println!(
        "floor: the same, ORed into the user's bitmap {swap_or:>12?}  ratio {:5.2}",
        ratio(swap_or)
    );
    for c in &configs {
        println!("{}:", c.label);
        for (i, p) in PATTERNS.iter().enumerate() {
            let (t, (calls, pages)) = (c.best[i], c.output[i]);
            let r = ratio(t);
            let goal = if !c.goals {
                String::new()
            } else if r <= p.goal {
                format!("  goal <= {}  met", p.goal)
            } else {
                format!("  goal <= {}  not met", p.goal)
            };
            println!(
                "  {:28} harvest {t:>12?}  calls {calls:>8}  pages {pages:>9}  ratio {r:5.2}{goal}",
                p.name
            );
        }
    }
}
