//! Numbers as Python formats them: the progress line, checkpoint paths and
//! CSV rows of the Keras callbacks print what Keras prints.

/// Python's `{:.Ne}`: `1.2340e-04`.
pub(super) fn python_exp(v: f64, precision: usize) -> String {
    if !v.is_finite() {
        return python_repr(v);
    }
    let s = format!("{v:.precision$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let e: i32 = e.parse().unwrap_or(0);
            format!(
                "{m}e{}{:02}",
                if e < 0 { '-' } else { '+' },
                e.unsigned_abs()
            )
        }
        None => s,
    }
}

/// Python's `repr(float)`: the shortest round-tripping digits, positional
/// for exponents in [-4, 16), else `1e-05`, `1.5e+16`; `nan`, `inf`.
pub(super) fn python_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = v.to_string();
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        format!(
            "{mantissa}e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_reprs() {
        assert_eq!(python_repr(0.1), "0.1");
        assert_eq!(python_repr(2.0), "2.0");
        assert_eq!(python_repr(1e-5), "1e-05");
        assert_eq!(python_repr(0.0001), "0.0001");
        assert_eq!(python_repr(1.5e16), "1.5e+16");
        assert_eq!(python_repr(-3.25), "-3.25");
        assert_eq!(python_exp(12345.678, 2), "1.23e+04");
    }
}
