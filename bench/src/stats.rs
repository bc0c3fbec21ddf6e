//! Medians and spreads of per-round figures.

/// Median of `xs` (mean of the middle two for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Smallest and largest finite value; NaN when empty.
pub fn range(xs: &[f64]) -> (f64, f64) {
    xs.iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold((f64::NAN, f64::NAN), |(lo, hi), x| (lo.min(x), hi.max(x)))
}

/// Element-wise `a[i] / b[i]`: each round's figure over the same round's reference.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x / y).collect()
}

/// `0.97× [0.95–0.99]`, or `n/a`.
pub fn fmt_ratio(xs: &[f64]) -> String {
    let m = median(xs);
    if m.is_nan() {
        return "n/a".into();
    }
    let (lo, hi) = range(xs);
    format!("{m:.2}× [{lo:.2}–{hi:.2}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(range(&[2.0, f64::NAN, 5.0, 1.0]), (1.0, 5.0));
        assert_eq!(ratios(&[2.0, 3.0], &[1.0, 2.0]), vec![2.0, 1.5]);
        assert_eq!(fmt_ratio(&[1.0, 0.5, 2.0]), "1.00× [0.50–2.00]");
    }
}
