//! Numbers for people: parameter and FLOP counts with SI suffixes.

/// `1234567` → `1.23M`.
pub fn human(n: u64) -> String {
    let n = n as f64;
    match n {
        _ if n >= 1e12 => format!("{:.2}T", n / 1e12),
        _ if n >= 1e9 => format!("{:.2}B", n / 1e9),
        _ if n >= 1e6 => format!("{:.2}M", n / 1e6),
        _ if n >= 1e3 => format!("{:.1}K", n / 1e3),
        _ => format!("{n}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn suffixes() {
        assert_eq!(super::human(999), "999");
        assert_eq!(super::human(510_656), "510.7K");
        assert_eq!(super::human(69_000_000_000), "69.00B");
    }
}
