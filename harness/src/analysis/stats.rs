//! Statistics over repeats: Welch's t-test on the repeats of two runs, and
//! the spread of a cell's peaks. The Student t distribution comes from
//! `statrs` (a maintained statistics crate) rather than our own incomplete
//! beta function.

use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::session::results::{CellRun, median};

/// Mean and unbiased variance.
pub fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var)
}

/// Two-sided p-value of Student's t with `df` degrees of freedom; NaN when `df` is not positive.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        // The survival function keeps small p-values exact where 1 - cdf would round to 0.
        Ok(dist) => (2.0 * dist.sf(t.abs())).min(1.0),
        Err(_) => f64::NAN,
    }
}

/// The `p` quantile of Student's t with `df` degrees of freedom (statrs' inverse CDF): 0.95 gives
/// the one-sided 95 % (two-sided 90 %) bound's factor. Infinite when `df` is not positive.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    match StudentsT::new(0.0, 1.0, df) {
        Ok(dist) => dist.inverse_cdf(p),
        Err(_) => f64::INFINITY,
    }
}

/// Welch's view of two samples: the means, the squared standard error of the difference of the
/// means, and the Welch–Satterthwaite degrees of freedom (NaN when neither side spreads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchTerms {
    /// Mean of `a`.
    pub mean_a: f64,
    /// Mean of `b`.
    pub mean_b: f64,
    /// va / na + vb / nb.
    pub se2: f64,
    /// Degrees of freedom.
    pub df: f64,
}

/// [`WelchTerms`] of `a` and `b`; `None` with fewer than two values a side.
pub fn welch_terms(a: &[f64], b: &[f64]) -> Option<WelchTerms> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ((mean_a, va), (mean_b, vb)) = (mean_var(a), mean_var(b));
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let se2 = va / na + vb / nb;
    let df = se2 * se2 / ((va / na).powi(2) / (na - 1.0) + (vb / nb).powi(2) / (nb - 1.0));
    Some(WelchTerms {
        mean_a,
        mean_b,
        se2,
        df,
    })
}

/// The outcome of Welch's t-test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// The t statistic of `b`'s mean minus `a`'s, in standard errors.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Welch's t-test of `a` against `b`; `None` with fewer than two values a side.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    let w = welch_terms(a, b)?;
    if w.se2 <= 0.0 {
        // No spread on either side: the difference is exact, or there is none.
        let p = if (w.mean_a - w.mean_b).abs() > 0.0 {
            0.0
        } else {
            1.0
        };
        return Some(Welch {
            t: 0.0,
            df: (a.len() + b.len()) as f64 - 2.0,
            p,
        });
    }
    let t = (w.mean_b - w.mean_a) / w.se2.sqrt();
    Some(Welch {
        t,
        df: w.df,
        p: t_two_sided_p(t, w.df),
    })
}

/// (max - min) / median of the peaks, in percent.
pub fn spread_pct(runs: &[&CellRun]) -> f64 {
    let peaks: Vec<u64> = runs
        .iter()
        .filter(|r| r.error.is_none())
        .map(|r| r.peak)
        .collect();
    let (Some(&lo), Some(&hi)) = (peaks.iter().min(), peaks.iter().max()) else {
        return 0.0;
    };
    let mid = median(peaks.iter().copied());
    if mid == 0 {
        0.0
    } else {
        (hi - lo) as f64 * 100.0 / mid as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_the_printed_tables() {
        // One-sided 95 %: 6.314 at 1 df, 1.697 at 30 (any table of Student's t).
        assert!((t_quantile(0.95, 1.0) - 6.314).abs() < 1e-3);
        assert!((t_quantile(0.95, 30.0) - 1.697).abs() < 1e-3);
        assert!(t_quantile(0.95, 0.0).is_infinite());
    }

    #[test]
    fn t_distribution_matches_tables() {
        // t = 2.776 with 4 df is the 95 % two-sided critical value.
        assert!((t_two_sided_p(2.776, 4.0) - 0.05).abs() < 1e-3);
        assert!((t_two_sided_p(0.0, 10.0) - 1.0).abs() < 1e-9);
        assert!((t_two_sided_p(1.812, 10.0) - 0.10).abs() < 1e-3);
    }

    /// Wikipedia, "Welch's t-test", example 1 (two samples of 15): t = -2.46, df = 25.0,
    /// two-sided p = 0.021.
    #[test]
    fn welch_matches_a_published_example() {
        let a1 = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4,
        ];
        let a2 = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4,
        ];
        let Welch { t, df, p } = welch(&a2, &a1).unwrap();
        assert!((t + 2.46).abs() < 0.01, "t = {t}");
        assert!((df - 25.0).abs() < 0.1, "df = {df}");
        assert!((p - 0.021).abs() < 0.001, "p = {p}");
    }

    #[test]
    fn welch_sees_a_real_difference_and_not_noise() {
        let p = welch(&[20.0, 20.5, 19.8], &[31.0, 32.4, 31.8]).unwrap().p;
        assert!(p < 0.001, "{p}");
        let p = welch(&[20.0, 20.5, 19.8], &[20.2, 19.9, 20.4]).unwrap().p;
        assert!(p > 0.3, "{p}");
        assert!(welch(&[1.0], &[2.0, 3.0]).is_none());
    }
}
