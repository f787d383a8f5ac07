//! When each import is requested: all at once, at a steady gap, as a Poisson
//! process, or at listed offsets. Offsets are in provider seconds (the
//! scenario's time); the session divides them by the time scale.

use serde::{Deserialize, Serialize};

use crate::upstream::games::Rng;

/// How users arrive (`workload.arrivals` in a scenario, read with
/// `serde_yaml::with::singleton_map`: a variant is a name or a one-key map).
///
/// ```yaml
/// arrivals: at_once                 # every import at the start (the default)
/// arrivals: {every_secs: 5}         # one every 5 s
/// arrivals: {poisson_per_min: 2}    # a Poisson process, 2 a minute on average (the scenario's seed)
/// arrivals: {at_secs: [0, 0, 0, 5]} # one import per offset
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Arrivals {
    /// Every import at the start.
    #[default]
    AtOnce,
    /// One import every this many seconds, the first at 0.
    EverySecs(f64),
    /// Exponential gaps of mean 60 / rate seconds, the first at 0.
    PoissonPerMin(f64),
    /// One import per offset, in seconds from the start.
    AtSecs(Vec<f64>),
}

/// Longest a schedule may span, provider seconds (a day): a typo's guard, not a model limit.
pub const MAX_SPAN_SECS: f64 = 86_400.0;

impl Arrivals {
    /// What is wrong with the schedule, in words; `None` when it can be used.
    pub fn problem(&self) -> Option<String> {
        let finite_in = |v: f64, lo: f64| v.is_finite() && v >= lo && v <= MAX_SPAN_SECS;
        match self {
            Arrivals::AtOnce => None,
            Arrivals::EverySecs(s) if !finite_in(*s, 0.0) => {
                Some(format!("every_secs: {s} is not in 0..={MAX_SPAN_SECS}"))
            }
            Arrivals::PoissonPerMin(r) if !(r.is_finite() && *r > 0.0 && *r <= 60_000.0) => {
                Some(format!("poisson_per_min: {r} is not in (0, 60000]"))
            }
            Arrivals::AtSecs(v) if v.is_empty() => Some("at_secs: at least one offset is needed".into()),
            Arrivals::AtSecs(v) => v
                .iter()
                .find(|s| !finite_in(**s, 0.0))
                .map(|s| format!("at_secs: {s} is not in 0..={MAX_SPAN_SECS}")),
            _ => None,
        }
    }

    /// Imports the schedule itself fixes (`at_secs`: one per offset), if any.
    pub fn count(&self) -> Option<u32> {
        match self {
            Arrivals::AtSecs(v) => u32::try_from(v.len()).ok(),
            _ => None,
        }
    }

    /// The offset of each of `n` imports, provider seconds from the start, in import order.
    /// `at_secs` gives its own offsets (a longer list is cut, a shorter one is an error that
    /// [`Arrivals::problem`] and the scenario's check prevent; missing ones are 0 here).
    pub fn offsets(&self, n: usize, seed: u64) -> Vec<f64> {
        match self {
            Arrivals::AtOnce => vec![0.0; n],
            Arrivals::EverySecs(s) => (0..n).map(|i| i as f64 * s).collect(),
            Arrivals::PoissonPerMin(rate) => {
                let mean_gap = 60.0 / rate;
                let mut rng = Rng::new(seed ^ 0xA441_7A15);
                let mut t = 0.0;
                (0..n)
                    .map(|i| {
                        if i > 0 {
                            // Inverse transform of the exponential: u in (0, 1].
                            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                            t += -(1.0 - u).ln() * mean_gap;
                        }
                        t
                    })
                    .collect()
            }
            Arrivals::AtSecs(v) => (0..n).map(|i| v.get(i).copied().unwrap_or(0.0)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_form_from_yaml() {
        #[derive(Deserialize)]
        struct W {
            #[serde(with = "serde_yaml::with::singleton_map")]
            a: Arrivals,
        }
        let read = |s: &str| {
            serde_yaml::from_str::<W>(&format!("a: {s}"))
                .map(|w| w.a)
                .unwrap()
        };
        assert_eq!(read("at_once"), Arrivals::AtOnce);
        assert_eq!(read("{every_secs: 5}"), Arrivals::EverySecs(5.0));
        assert_eq!(read("{poisson_per_min: 2}"), Arrivals::PoissonPerMin(2.0));
        assert_eq!(
            read("{at_secs: [0, 0, 5]}"),
            Arrivals::AtSecs(vec![0.0, 0.0, 5.0])
        );
        let bad = serde_yaml::from_str::<W>("a: {every: 5}")
            .err()
            .unwrap()
            .to_string();
        assert!(bad.contains("unknown variant `every`"), "{bad}");
    }

    #[test]
    fn offsets_follow_the_schedule() {
        assert_eq!(Arrivals::AtOnce.offsets(3, 1), vec![0.0; 3]);
        assert_eq!(Arrivals::EverySecs(2.5).offsets(3, 1), vec![0.0, 2.5, 5.0]);
        assert_eq!(
            Arrivals::AtSecs(vec![0.0, 0.0, 0.0, 75.0]).offsets(4, 1),
            vec![0.0, 0.0, 0.0, 75.0]
        );
    }

    #[test]
    fn poisson_gaps_are_reproducible_and_average_the_rate() {
        let p = Arrivals::PoissonPerMin(6.0);
        let a = p.offsets(2001, 42);
        assert_eq!(a, p.offsets(2001, 42), "same seed, same schedule");
        assert_ne!(a, p.offsets(2001, 43));
        assert_eq!(a[0], 0.0);
        assert!(a.windows(2).all(|w| w[1] >= w[0]));
        // 2000 gaps of mean 10 s: the mean's standard error is 10/sqrt(2000) = 0.22 s.
        let mean = a[2000] / 2000.0;
        assert!((mean - 10.0).abs() < 1.0, "mean gap {mean}");
    }

    #[test]
    fn bad_schedules_are_named() {
        assert!(
            Arrivals::EverySecs(-1.0)
                .problem()
                .unwrap()
                .contains("every_secs")
        );
        assert!(
            Arrivals::PoissonPerMin(0.0)
                .problem()
                .unwrap()
                .contains("poisson_per_min")
        );
        assert!(Arrivals::AtSecs(vec![]).problem().is_some());
        assert!(Arrivals::AtSecs(vec![0.0, f64::NAN]).problem().is_some());
        assert!(Arrivals::AtSecs(vec![0.0, 3.0]).problem().is_none());
    }
}
