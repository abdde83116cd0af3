//! HDR histograms: the one latency type of the tool, and their stable text form
//! (V2 + deflate, base64) so that JSON reports from several machines can be merged.

use anyhow::Context;
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Microsecond latencies, 1 µs to 1 hour, 3 significant digits.
pub type Hist = hdrhistogram::Histogram<u64>;

/// A fresh histogram with the tool's bounds.
pub fn new_hist() -> Hist {
    // Static, valid bounds: this cannot fail.
    #[allow(clippy::expect_used)]
    Hist::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds")
}

/// Records `us` microseconds, clamped into range.
pub fn record(h: &mut Hist, us: u64) {
    h.saturating_record(us.max(1));
}

/// Serializes to base64 of the V2 + deflate encoding.
pub fn encode(h: &Hist) -> String {
    base64::engine::general_purpose::STANDARD.encode(encode_bytes(h))
}

/// The V2 + deflate encoding, as the `Stats` frame carries it (empty if it
/// cannot be written).
pub fn encode_bytes(h: &Hist) -> Vec<u8> {
    let mut buf = Vec::new();
    if V2DeflateSerializer::new().serialize(h, &mut buf).is_err() {
        return Vec::new();
    }
    buf
}

/// Parses what [`encode`] wrote (an empty string is an empty histogram).
pub fn decode(s: &str) -> anyhow::Result<Hist> {
    if s.is_empty() {
        return Ok(new_hist());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .context("histogram is not base64")?;
    decode_bytes(&bytes)
}

/// Parses a serialized histogram (V2 or V2 + deflate), as in the `Stats` frame.
pub fn decode_bytes(bytes: &[u8]) -> anyhow::Result<Hist> {
    if bytes.is_empty() {
        return Ok(new_hist());
    }
    let h: Hist = Deserializer::new()
        .deserialize(&mut std::io::Cursor::new(bytes))
        .map_err(|e| anyhow::anyhow!("cannot decode histogram: {e:?}"))?;
    let mut out = new_hist();
    out.add(&h).context("histogram out of range")?;
    Ok(out)
}

/// Percentiles in milliseconds, for humans and charts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
}

/// The summary of `h`.
pub fn summary(h: &Hist) -> Summary {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Summary {
        count: h.len(),
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p95_ms: ms(0.95),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1000.0,
        mean_ms: h.mean() / 1000.0,
    }
}

/// Where the median of what `h` sampled lies, with 95 % confidence: the
/// values at ranks n/2 ± 0.98·√n (distribution-free: the rank of the true
/// median among n samples is binomial), µs; None under 10 samples. A
/// median of 50 answers moves by tens of µs from run to run, and this says
/// by how much before two runs are compared.
pub fn median_interval(h: &Hist) -> Option<[u64; 2]> {
    let n = h.len();
    if n < 10 {
        return None;
    }
    let half = 0.98 / (n as f64).sqrt();
    Some([
        h.value_at_quantile((0.5 - half).max(0.0)),
        h.value_at_quantile((0.5 + half).min(1.0)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_interval_narrows_with_more_samples() {
        let mut h = new_hist();
        for v in 1..=9 {
            record(&mut h, v);
        }
        assert_eq!(median_interval(&h), None, "too few to say");
        let mut small = new_hist();
        let mut large = new_hist();
        for v in 1..=100 {
            record(&mut small, v);
        }
        for v in 1..=10_000 {
            record(&mut large, v / 100 + 1);
        }
        // 100 samples 1..=100: ranks 50 ± 9.8.
        assert_eq!(median_interval(&small), Some([41, 60]));
        // 10,000 samples over the same range: ranks 5000 ± 98.
        let [lo, hi] = median_interval(&large).expect("enough");
        assert!(lo >= 49 && hi <= 52, "{lo}..{hi}");
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut h = new_hist();
        for v in [1, 10, 100, 1000, 65_000, 2_000_000] {
            record(&mut h, v);
        }
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        assert_eq!(decode("").unwrap().len(), 0);
        assert!(decode("not base64!").is_err());
    }

    #[test]
    fn merge_equals_histogram_of_the_union() {
        let mut rng = fastrand::Rng::with_seed(7);
        let a: Vec<u64> = (0..5000).map(|_| rng.u64(1..200_000)).collect();
        let b: Vec<u64> = (0..7000).map(|_| rng.u64(50..5_000_000)).collect();
        let (mut ha, mut hb, mut hu) = (new_hist(), new_hist(), new_hist());
        a.iter().for_each(|&v| record(&mut ha, v));
        b.iter().for_each(|&v| record(&mut hb, v));
        a.iter().chain(&b).for_each(|&v| record(&mut hu, v));
        // Through the wire form, as `loadtest merge` does.
        let mut merged = decode(&encode(&ha)).unwrap();
        merged.add(decode(&encode(&hb)).unwrap()).unwrap();
        assert_eq!(merged, hu);
        assert_eq!(summary(&merged), summary(&hu));
    }
}
