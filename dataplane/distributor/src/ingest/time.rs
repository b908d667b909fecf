//! Time parameters of the legacy HTTP API (`from`, `until`).

const NANOS: i64 = 1_000_000_000;

/// Parses a time as Pyroscope does; returns Unix nanoseconds, or `None`
/// when the text is not a time.
pub fn parse_time(text: &str, now_nanos: i64) -> Option<i64> {
    let t: String = text.chars().filter(|c| !matches!(c, ' ' | '_' | ',')).collect();
    if t.is_empty() {
        return None;
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        if t.len() == 8
            && let Some(d) = yyyymmdd(&t)
        {
            return Some(d);
        }
        let n: i64 = t.parse().ok()?;
        return Some(match t.len() {
            13 => n.checked_mul(1_000_000)?,
            16 => n.checked_mul(1_000)?,
            19 => n,
            _ => n.checked_mul(NANOS)?,
        });
    }
    let (sign, rest) = match (t.find('-'), t.find('+')) {
        (Some(i), _) if t[..i].chars().all(|c| c.is_ascii_alphabetic()) => (-1, &t[i + 1..]),
        (_, Some(i)) if t[..i].chars().all(|c| c.is_ascii_alphabetic()) => (1, &t[i + 1..]),
        _ if t == "now" => return Some(now_nanos),
        _ => return None,
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: i64 = digits.parse().ok()?;
    let unit = &rest[digits.len()..];
    let secs = if unit.starts_with("mon") || unit.starts_with('M') {
        30 * 86_400
    } else if unit.starts_with("min") || unit.starts_with('m') {
        60
    } else if unit.starts_with('s') {
        1
    } else if unit.starts_with('h') {
        3_600
    } else if unit.starts_with('d') {
        86_400
    } else if unit.starts_with('w') {
        7 * 86_400
    } else if unit.starts_with('y') {
        365 * 86_400
    } else if unit.is_empty() {
        // `now-10`: seconds.
        1
    } else {
        return None;
    };
    now_nanos.checked_add(sign * n.checked_mul(secs)?.checked_mul(NANOS)?)
}

fn yyyymmdd(t: &str) -> Option<i64> {
    let (y, m, d): (i64, i64, i64) = (t[..4].parse().ok()?, t[4..6].parse().ok()?, t[6..8].parse().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    // Year 9999 is past i64 nanoseconds (2262): not a time.
    (era * 146_097 + doe - 719_468).checked_mul(86_400)?.checked_mul(NANOS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative_times() {
        let now = 1_700_000_000 * NANOS;
        assert_eq!(parse_time("1795566058", now), Some(1_795_566_058 * NANOS));
        assert_eq!(parse_time("1795566058123", now), Some(1_795_566_058_123_000_000));
        assert_eq!(parse_time("1795566058123456", now), Some(1_795_566_058_123_456_000));
        assert_eq!(parse_time("1795566058123456789", now), Some(1_795_566_058_123_456_789));
        assert_eq!(parse_time("20240102", now), Some(1_704_153_600 * NANOS));
        assert_eq!(parse_time("now", now), Some(now));
        assert_eq!(parse_time("now-1h", now), Some(now - 3600 * NANOS));
        assert_eq!(parse_time("now-10", now), Some(now - 10 * NANOS));
        assert_eq!(parse_time("now-10x", now), None);
        assert_eq!(parse_time("now-3m", now), Some(now - 180 * NANOS));
        assert_eq!(parse_time("now+2d", now), Some(now + 2 * 86_400 * NANOS));
        assert_eq!(parse_time("now-1mon", now), Some(now - 30 * 86_400 * NANOS));
        assert_eq!(parse_time("yesterday", now), None);
        assert_eq!(parse_time("", now), None);
        // Past the end of i64 nanoseconds: not a time.
        assert_eq!(parse_time("now+7500000000s", now), Some(now + 7_500_000_000 * NANOS));
        assert_eq!(parse_time("now+9000000000s", now), None);
        // Year 9999 is past i64 nanoseconds: read as seconds instead.
        assert_eq!(parse_time("99991231", now), Some(99_991_231 * NANOS));
    }
}
