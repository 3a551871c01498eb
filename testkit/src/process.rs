//! What this process costs: resident memory and CPU time, for the measurement programs.

/// A `kB` field of `/proc/self/status` (e.g. `"VmRSS:"`, `"VmHWM:"`), in KiB; 0 if absent.
pub fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU seconds (user + system) this process has used, all threads together.
pub fn cpu_seconds() -> f64 {
    // Fields 14 and 15 of /proc/self/stat, in clock ticks; the command name (field 2) may hold
    // blanks, so count from the closing parenthesis.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    (ticks(11) + ticks(12)) as f64 / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_grow_while_this_process_computes() {
        // Busy until 0.2 CPU s are counted; on a loaded machine that takes longer than 0.2 s
        // of wall time, so only a deadline bounds it.
        let before = cpu_seconds();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while cpu_seconds() - before < 0.2 {
            assert!(
                start.elapsed().as_secs() < 30,
                "{} CPU s counted after 30 s of busy work",
                cpu_seconds() - before
            );
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        assert!(
            cpu_seconds() - before <= start.elapsed().as_secs_f64() + 0.05,
            "one thread cannot use more CPU time than wall time"
        );
        assert!(status_kib("VmRSS:") > 0);
    }
}
