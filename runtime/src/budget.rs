//! The memory budget: the most bytes a model may ask for before anything is
//! allocated.
//!
//! The budget is `LOSSGRAPH_MEMORY_BUDGET` when set: a byte count with an
//! optional suffix `K`, `M`, `G` or `T` (powers of 1024; `KB`/`KiB` and
//! lower case are accepted too), such as `4G`, `512M` or `1000000`.
//! Otherwise it is [`DEFAULT_FRACTION`] of the machine's physical memory
//! (`MemTotal` of `/proc/meminfo`), or [`FALLBACK_BUDGET`] where that cannot
//! be read. A model's weights are checked against it as they are declared
//! (before their initialisers run), and a compiled program's variables
//! (weights and optimiser slots) plus its arena before the arena is
//! allocated; either refusal names what asked, its shape and its bytes.

use std::sync::OnceLock;

/// The environment variable that overrides the budget.
pub const BUDGET_ENV: &str = "LOSSGRAPH_MEMORY_BUDGET";

/// The default budget as a fraction of physical memory: `1 / DEFAULT_FRACTION`.
pub const DEFAULT_FRACTION: u64 = 2;

/// The budget when neither the variable nor `/proc/meminfo` gives one: 4 GiB.
pub const FALLBACK_BUDGET: u64 = 4 << 30;

/// Parses a byte count such as `4G`, `512M`, `64KiB` or `1000000`
/// (suffixes are powers of 1024). `None` on anything else or on overflow.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let unit = s[digits..].trim().to_ascii_lowercase();
    let shift = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line["MemTotal:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// The budget in bytes (see the module docs). Fails, with a message naming
/// the variable, when `LOSSGRAPH_MEMORY_BUDGET` is set but is not a byte
/// count. The variable is read at every call, `/proc/meminfo` once.
pub fn memory_budget() -> Result<u64, String> {
    if let Some(v) = std::env::var_os(BUDGET_ENV) {
        let text = v.to_string_lossy();
        return parse_size(&text).ok_or_else(|| {
            format!("{BUDGET_ENV}='{text}' is not a byte count (like 4G, 512M or 1000000)")
        });
    }
    static DEFAULT: OnceLock<u64> = OnceLock::new();
    Ok(*DEFAULT.get_or_init(|| {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total(&m))
            .map_or(FALLBACK_BUDGET, |b| b / DEFAULT_FRACTION)
    }))
}

/// Bytes as `12000000000 bytes (11.2 GiB)`, for error messages.
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = "";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit.is_empty() {
        format!("{bytes} bytes")
    } else {
        format!("{bytes} bytes ({v:.1} {unit})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1000000"), Some(1_000_000));
        assert_eq!(parse_size("4G"), Some(4 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("512M"), Some(512 * 1024 * 1024));
        assert_eq!(parse_size("64KiB"), Some(65_536));
        assert_eq!(parse_size("2 kb"), Some(2048));
        assert_eq!(parse_size("1t"), Some(1 << 40));
        for bad in [
            "",
            "G",
            "-1",
            "1.5G",
            "4X",
            "4iB",
            "99999999999999999999",
            "20000000T",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn meminfo_total_and_byte_text() {
        let m = "MemTotal:       16318412 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(m), Some(16_318_412 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB"), None);
        assert_eq!(fmt_bytes(1000), "1000 bytes");
        assert_eq!(fmt_bytes(3 << 30), "3221225472 bytes (3.0 GiB)");
    }
}
