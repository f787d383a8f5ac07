//! The capacity model: peak = idle + n × per_import, fitted by least squares
//! over the concurrency levels measured, and the largest concurrency whose
//! predicted peak (its 90 % upper bound) fits the budget less the headroom.
//!
//! A poor fit (R² < 0.9) recommends nothing: a line that does not describe
//! the points must not be extrapolated to a deploy.

use serde::{Deserialize, Serialize};

/// Below this R² the fit is not trusted.
pub const MIN_R2: f64 = 0.9;
/// The importer accepts at most this MAX_CONCURRENT_IMPORTS.
pub const MAX_CONCURRENCY: u32 = settings::MAX_CONCURRENT_IMPORTS.max_integer() as u32;

/// A least-squares line through (concurrency, peak bytes) points.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// Intercept: memory with no import, bytes.
    pub idle: f64,
    /// Slope: memory per concurrent import, bytes.
    pub per_import: f64,
    /// 90 % confidence interval of the slope, bytes.
    pub per_import_ci90: (f64, f64),
    /// Coefficient of determination.
    pub r2: f64,
    /// Points fitted.
    pub points: usize,
    mean_x: f64,
    sxx: f64,
    residual_sd: f64,
    t90: f64,
}

impl Fit {
    /// Fits `points` (x = concurrency, y = peak bytes); `None` with fewer than 3 points or one x.
    pub fn new(points: &[(f64, f64)]) -> Option<Fit> {
        let n = points.len();
        if n < 3 {
            return None;
        }
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n as f64;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n as f64;
        let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        if sxx <= 0.0 {
            return None;
        }
        let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
        let slope = sxy / sxx;
        let intercept = mean_y - slope * mean_x;
        let sse: f64 = points
            .iter()
            .map(|p| (p.1 - intercept - slope * p.0).powi(2))
            .sum();
        let sst: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
        let residual_sd = (sse / (n - 2) as f64).sqrt();
        let t90 = crate::analysis::stats::t_quantile(0.95, (n - 2) as f64);
        let half = t90 * residual_sd / sxx.sqrt();
        Some(Fit {
            idle: intercept,
            per_import: slope,
            per_import_ci90: (slope - half, slope + half),
            r2: if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
            points: n,
            mean_x,
            sxx,
            residual_sd,
            t90,
        })
    }

    /// Predicted peak at concurrency `n`.
    pub fn predict(&self, n: f64) -> f64 {
        self.idle + self.per_import * n
    }

    /// 90 % upper bound of the predicted peak at `n` (mean-response confidence bound).
    pub fn upper(&self, n: f64) -> f64 {
        let k = self.points as f64;
        self.predict(n)
            + self.t90 * self.residual_sd * (1.0 / k + (n - self.mean_x).powi(2) / self.sxx).sqrt()
    }

    /// Whether the line describes the points well enough to extrapolate.
    pub fn trusted(&self) -> bool {
        self.r2 >= MIN_R2
    }

    /// The largest concurrency in 1..=[`MAX_CONCURRENCY`] whose upper bound fits `limit` bytes; `None` if not even 1 fits.
    pub fn largest_fitting(&self, limit: f64) -> Option<u32> {
        (1..=MAX_CONCURRENCY)
            .rev()
            .find(|&n| self.upper(f64::from(n)) <= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_line_is_recovered_with_a_tight_interval() {
        let pts: Vec<(f64, f64)> = (1..=4)
            .map(|n| (f64::from(n), 10.0 + 2.0 * f64::from(n)))
            .collect();
        let f = Fit::new(&pts).unwrap();
        assert!((f.idle - 10.0).abs() < 1e-9 && (f.per_import - 2.0).abs() < 1e-9);
        assert!((f.r2 - 1.0).abs() < 1e-9);
        assert!((f.per_import_ci90.1 - 2.0).abs() < 1e-9);
        // 10 + 2n <= 100 -> n = 45
        assert_eq!(f.largest_fitting(100.0), Some(45));
    }

    #[test]
    fn noise_widens_the_bound_and_lowers_r2() {
        let pts = [
            (1.0, 12.0),
            (2.0, 13.5),
            (3.0, 16.5),
            (4.0, 17.0),
            (1.0, 12.5),
            (2.0, 14.5),
            (3.0, 15.5),
            (4.0, 18.5),
        ];
        let f = Fit::new(&pts).unwrap();
        assert!(f.per_import_ci90.0 < f.per_import && f.per_import < f.per_import_ci90.1);
        assert!(f.upper(100.0) > f.predict(100.0));
        let flat = [(1.0, 20.0), (2.0, 19.0), (3.0, 21.0), (4.0, 20.0)];
        assert!(!Fit::new(&flat).unwrap().trusted());
        assert!(Fit::new(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_none());
    }
}
