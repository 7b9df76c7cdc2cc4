//! C's number conversions, kept exact because iipsrv's output and its reading of
//! settings and arguments depend on them: `atoi`/`atof` (lenient prefixes) and
//! `%.9g`/`%g` formatting. Shared by configuration, protocols and image metadata.

/// C `atoi`: leading blanks, optional sign, decimal digits; anything else ends the number.
pub fn atoi(s: &str) -> i64 {
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add((b - b'0') as i64);
    }
    if neg {
        -v
    } else {
        v
    }
}

/// C `atof`: the longest leading prefix that parses as a decimal float; none → 0.
pub fn atof(s: &str) -> f64 {
    let s = s.trim_start();
    let b = s.as_bytes();
    let mut end = 0;
    let mut seen_digit = false;
    let mut seen_dot = false;
    let mut seen_exp = false;
    let mut best = 0;
    while end < b.len() {
        let c = b[end];
        match c {
            b'+' | b'-' if end == 0 || matches!(b[end - 1], b'e' | b'E') => {}
            b'0'..=b'9' => {
                seen_digit = true;
                best = end + 1;
            }
            b'.' if !seen_dot && !seen_exp => seen_dot = true,
            b'e' | b'E' if seen_digit && !seen_exp => seen_exp = true,
            _ => break,
        }
        end += 1;
    }
    s[..best].parse().unwrap_or(0.0)
}

/// C `%.9g` for the values OBJ prints.
pub fn fmt_g9(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let s = format!("{:.*e}", 8, v);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-5..9).contains(&exp) {
        let mant = mant.trim_end_matches('0').trim_end_matches('.');
        return format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (8 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// C `%g` (6 significant digits).
pub fn fmt_g6(v: f64) -> String {
    let g9 = fmt_g9(v);
    if v == 0.0 || !v.is_finite() {
        return g9;
    }
    let exp = v.abs().log10().floor() as i32;
    let decimals = (5 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atoi_matches_c() {
        assert_eq!(atoi("  42abc"), 42);
        assert_eq!(atoi("-7"), -7);
        assert_eq!(atoi("+3"), 3);
        assert_eq!(atoi("abc"), 0);
        assert_eq!(atoi(""), 0);
        assert_eq!(atoi("true"), 0);
    }

    #[test]
    fn atof_matches_c() {
        assert_eq!(atof("0.5MB"), 0.5);
        assert_eq!(atof(" 1e2x"), 100.0);
        assert_eq!(atof("-2.5"), -2.5);
        assert_eq!(atof("x"), 0.0);
        assert_eq!(atof("3."), 3.0);
    }

    #[test]
    fn g9() {
        assert_eq!(fmt_g9(0.0), "0");
        assert_eq!(fmt_g9(255.0), "255");
        assert_eq!(fmt_g9(65535.0), "65535");
        assert_eq!(fmt_g9(1.0), "1");
        assert_eq!(fmt_g9(0.015), "0.015");
        assert_eq!(fmt_g9(0.1234567891), "0.123456789");
        assert_eq!(fmt_g9(4294967295.0), "4294967295");
        assert_eq!(fmt_g9(1e-7), "1e-07");
    }

    #[test]
    fn g6() {
        assert_eq!(fmt_g6(1.0 / 28.34), "0.0352858");
        assert_eq!(fmt_g6(0.5), "0.5");
    }
}
