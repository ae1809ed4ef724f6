//! Random numbers and key choosers for the workloads: a small fast PRNG (xoshiro256++), YCSB's
//! zipfian, scrambled-zipfian and skewed-latest generators, and uniform choice.
//!
//! The generators follow YCSB's `ZipfianGenerator`, `ScrambledZipfianGenerator` and
//! `SkewedLatestGenerator` (Gray et al., "Quickly generating billion-record synthetic
//! databases", SIGMOD 1994), so "YCSB A with zipfian keys" means the same skew here as there.
//! Nothing here is cryptographic.

/// xoshiro256++ seeded through splitmix64: fast, small, good enough for choosing keys.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut st = seed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Self { s }
    }

    /// A generator seeded from the clock and the process id (for crash-test timing).
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self::new(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.s;
        let result = s0.wrapping_add(*s3).rotate_left(23).wrapping_add(*s0);
        let t = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= t;
        *s3 = s3.rotate_left(45);
        result
    }

    /// A number in `0..n` (`0` when `n` is 0). Lemire's multiply-shift: the bias is below
    /// 2^-40 for the ranges used here, irrelevant for choosing keys.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `lo..=hi`.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// A float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            let n = chunk.len();
            chunk.copy_from_slice(&r[..n]);
        }
    }

    /// Shuffles `v` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// YCSB's zipfian constant.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// `sum_{i=from+1..=to} 1 / i^theta`, added to `initial`.
fn zeta(from: u64, to: u64, theta: f64, initial: f64) -> f64 {
    let mut sum = initial;
    for i in from..to {
        sum += 1.0 / ((i + 1) as f64).powf(theta);
    }
    sum
}

/// YCSB's `ZipfianGenerator`: item 0 most popular, popularity falling as `1/rank^theta`. The
/// item count may grow (as YCSB's does for the skewed-latest chooser): zeta is then extended
/// incrementally rather than recomputed.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    zeta2theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `0..items` with skew `theta` (YCSB's default is
    /// [`ZIPFIAN_CONSTANT`]). Computing zeta costs O(items) once.
    pub fn new(items: u64, theta: f64) -> Self {
        let zetan = zeta(0, items.max(1), theta, 0.0);
        Self::with_zeta(items.max(1), theta, zetan)
    }

    fn with_zeta(items: u64, theta: f64, zetan: f64) -> Self {
        let zeta2theta = zeta(0, 2, theta, 0.0);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2theta / zetan);
        Self {
            items,
            theta,
            zeta2theta,
            alpha,
            zetan,
            eta,
        }
    }

    /// Items the generator currently draws from.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Grows (never shrinks) the item count, extending zeta by the new terms.
    pub fn grow_to(&mut self, items: u64) {
        if items > self.items {
            let zetan = zeta(self.items, items, self.theta, self.zetan);
            *self = Self::with_zeta(items, self.theta, zetan);
        }
    }

    /// The next item in `0..items`.
    pub fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }

    /// `zeta(2, theta)`, exposed for tests.
    pub fn zeta2theta(&self) -> f64 {
        self.zeta2theta
    }
}

/// YCSB's 64-bit FNV-1a over the eight little-endian bytes of `v` (its `Utils.fnvhash64`).
pub fn fnv_hash64(mut v: u64) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for _ in 0..8 {
        h ^= v & 0xff;
        h = h.wrapping_mul(1_099_511_628_211);
        v >>= 8;
    }
    // YCSB takes Math.abs of the signed value.
    (h as i64).unsigned_abs()
}

/// YCSB's `ScrambledZipfianGenerator`: a zipfian over a fixed 10 billion items with YCSB's
/// precomputed zeta, hashed and reduced modulo the live item count, so the popular items are
/// spread over the key space instead of clustered at its start.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    inner: Zipfian,
}

/// YCSB's `ScrambledZipfianGenerator.ITEM_COUNT`.
const SCRAMBLED_ITEMS: u64 = 10_000_000_000;
/// YCSB's `ScrambledZipfianGenerator.ZETAN`: zeta(10^10, 0.99).
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

impl Default for ScrambledZipfian {
    fn default() -> Self {
        Self::new()
    }
}

impl ScrambledZipfian {
    /// The generator with YCSB's constants (theta 0.99).
    pub fn new() -> Self {
        Self {
            inner: Zipfian::with_zeta(SCRAMBLED_ITEMS, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN),
        }
    }

    /// The next item in `0..items`.
    pub fn next(&self, rng: &mut Rng, items: u64) -> u64 {
        fnv_hash64(self.inner.next(rng)) % items.max(1)
    }
}

/// How a workload picks the keys it reads and updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every present key equally likely.
    Uniform,
    /// YCSB's scrambled zipfian (and skewed-latest for workload D).
    Zipfian,
}

impl Distribution {
    /// A short label for tables and file names.
    pub fn label(self) -> &'static str {
        match self {
            Self::Uniform => "unif",
            Self::Zipfian => "zipf",
        }
    }
}

/// One thread's key chooser over a growing set of present items `0..count`.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Uniform over the present items.
    Uniform,
    /// YCSB scrambled zipfian over the present items.
    Zipfian(ScrambledZipfian),
    /// YCSB skewed-latest: the most recently inserted items are the most popular.
    Latest(Zipfian),
}

impl KeyChooser {
    /// The chooser for `dist`; `latest` selects skewed-latest for zipfian (YCSB workload D).
    pub fn new(dist: Distribution, latest: bool, items: u64) -> Self {
        match (dist, latest) {
            (Distribution::Uniform, _) => Self::Uniform,
            (Distribution::Zipfian, false) => Self::Zipfian(ScrambledZipfian::new()),
            (Distribution::Zipfian, true) => Self::Latest(Zipfian::new(items, ZIPFIAN_CONSTANT)),
        }
    }

    /// An item in `0..count`.
    pub fn next(&mut self, rng: &mut Rng, count: u64) -> u64 {
        let count = count.max(1);
        match self {
            Self::Uniform => rng.below(count),
            Self::Zipfian(z) => z.next(rng, count),
            Self::Latest(z) => {
                z.grow_to(count);
                (count - 1).saturating_sub(z.next(rng))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let v = rng.below(10);
            assert!(v < 10);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut rng = Rng::new(2);
        let mut v: Vec<u32> = (0..1000).collect();
        rng.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }

    #[test]
    fn zipfian_is_skewed_towards_item_zero() {
        let z = Zipfian::new(1000, ZIPFIAN_CONSTANT);
        let mut rng = Rng::new(3);
        let mut counts = vec![0u32; 1000];
        for _ in 0..100_000 {
            counts[z.next(&mut rng) as usize] += 1;
        }
        // With theta 0.99 over 1000 items, item 0 gets about 1/zeta(1000) = 13% of draws.
        assert!(counts[0] > 10_000, "item 0 drew {}", counts[0]);
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[500]);
    }

    #[test]
    fn growing_zeta_matches_computing_it_fresh() {
        let mut grown = Zipfian::new(100, ZIPFIAN_CONSTANT);
        grown.grow_to(5000);
        let fresh = Zipfian::new(5000, ZIPFIAN_CONSTANT);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert_eq!(grown.items(), 5000);
        assert!((grown.zeta2theta() - fresh.zeta2theta()).abs() < 1e-12);
    }

    #[test]
    fn scrambled_zipfian_spreads_hot_keys_but_keeps_skew() {
        let z = ScrambledZipfian::new();
        let mut rng = Rng::new(4);
        let mut counts = vec![0u32; 10_000];
        for _ in 0..200_000 {
            let v = z.next(&mut rng, 10_000);
            counts[v as usize] += 1;
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        // Uniform would give 20 per item; the hottest zipfian item gets thousands.
        assert!(max > 1000, "hottest item drew {max}");
        let hottest = counts.iter().position(|c| *c == max).unwrap_or(0);
        assert_ne!(
            hottest, 0,
            "scrambling should move the hottest item off item 0"
        );
    }

    #[test]
    fn latest_prefers_recent_items() {
        let mut c = KeyChooser::new(Distribution::Zipfian, true, 1000);
        let mut rng = Rng::new(5);
        let recent = (0..10_000)
            .filter(|_| c.next(&mut rng, 1000) >= 990)
            .count();
        assert!(
            recent > 3000,
            "only {recent} draws among the 10 newest items"
        );
        // Growing the count moves the hot spot with it.
        let v = c.next(&mut rng, 2000);
        assert!(v < 2000);
    }

    #[test]
    fn fnv_hash_spreads_neighbours() {
        let a = fnv_hash64(1);
        let b = fnv_hash64(2);
        assert_ne!(a, b);
        assert!(a <= i64::MAX as u64 + 1 && b <= i64::MAX as u64 + 1);
        assert_eq!(fnv_hash64(1), a, "deterministic");
    }
}
