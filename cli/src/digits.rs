//! The embedded digits dataset (UCI "Optical Recognition of Handwritten
//! Digits", test part, CC BY 4.0; see `data/NOTICE.md`) and a seeded split.

use flate2::read::GzDecoder;
use lossgraph_ir::rng::SplitMix64;
use std::io::Read;

/// The gzipped CSV, embedded so the demo needs no download.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../data/digits.csv.gz");

/// Number of features per sample (an 8×8 image).
pub const FEATURES: usize = 64;
/// Number of classes (digits 0..9).
pub const CLASSES: usize = 10;

/// A labelled dataset. Invariant: `x.len() == y.len() * FEATURES`, every
/// feature in `[0, 1]`, every label in `0..CLASSES`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Row-major features, `len() × FEATURES`.
    pub x: Vec<f32>,
    /// Class labels.
    pub y: Vec<i32>,
}

impl Dataset {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut x = Vec::with_capacity(indices.len() * FEATURES);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend_from_slice(&self.x[i * FEATURES..(i + 1) * FEATURES]);
            y.push(self.y[i]);
        }
        Dataset { x, y }
    }

    /// Splits into (first, second) with `fraction` of the rows, rounded, in
    /// the first part, after a shuffle determined by `seed`.
    pub fn split(&self, fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let idx = SplitMix64::new(seed).permutation(self.len());
        let cut = ((self.len() as f64) * fraction).round() as usize;
        (self.select(&idx[..cut]), self.select(&idx[cut..]))
    }
}

/// Decodes the embedded CSV: 64 pixel counts (0..16) scaled by 1/16, then the label.
pub fn load() -> Result<Dataset, String> {
    let mut text = String::new();
    GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| format!("embedded digits data: {e}"))?;
    parse_csv(&text)
}

/// Parses rows of `FEATURES` integer pixel counts in `0..=16` plus a label in `0..CLASSES`.
pub fn parse_csv(text: &str) -> Result<Dataset, String> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != FEATURES + 1 {
            return Err(format!(
                "digits line {}: expected {} fields, got {}",
                line_no + 1,
                FEATURES + 1,
                fields.len()
            ));
        }
        for f in &fields[..FEATURES] {
            let v: u8 = f
                .trim()
                .parse()
                .ok()
                .filter(|&v| v <= 16)
                .ok_or_else(|| format!("digits line {}: bad pixel '{f}'", line_no + 1))?;
            x.push(v as f32 / 16.0);
        }
        let label: i32 = fields[FEATURES]
            .trim()
            .parse()
            .ok()
            .filter(|l| (0..CLASSES as i32).contains(l))
            .ok_or_else(|| format!("digits line {}: bad label", line_no + 1))?;
        y.push(label);
    }
    Ok(Dataset { x, y })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_data_has_1797_rows() {
        let d = load().unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.x.len(), 1797 * FEATURES);
        // First row of the file: "0,0,5,13,9,1,..." with label 0.
        assert_eq!(&d.x[..4], &[0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0]);
        assert_eq!(d.y[0], 0);
        assert!(d.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        // Every class is present.
        for c in 0..CLASSES as i32 {
            assert!(d.y.contains(&c));
        }
    }

    #[test]
    fn split_is_a_seeded_partition() {
        let d = Dataset {
            x: (0..10 * FEATURES).map(|i| (i / FEATURES) as f32).collect(),
            y: (0..10).collect(),
        };
        let (a, b) = d.split(0.8, 7);
        assert_eq!((a.len(), b.len()), (8, 2));
        let mut all: Vec<i32> = a.y.iter().chain(&b.y).copied().collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        // Rows stay intact: features of a row equal its label.
        for (i, &l) in a.y.iter().enumerate() {
            assert_eq!(a.x[i * FEATURES], l as f32);
        }
        assert_eq!(d.split(0.8, 7), (a.clone(), b));
        assert_ne!(d.split(0.8, 8).0, a);
    }

    #[test]
    fn bad_csv_is_reported() {
        assert!(parse_csv("1,2,3")
            .unwrap_err()
            .contains("expected 65 fields"));
        let mut row = vec!["17"; FEATURES];
        row.push("1");
        assert!(parse_csv(&row.join(",")).unwrap_err().contains("bad pixel"));
    }
}
