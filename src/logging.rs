//! Logs: to stderr through a non-blocking writer for `serve`, so a slow
//! terminal or pipe never stalls a request; to a daily file for the
//! dashboard, which owns the terminal. `RUST_LOG` filters (default info).

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Keep the guard alive while logging: dropping it flushes.
pub fn to_stderr() -> Option<WorkerGuard> {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a terminal that wants it (https://no-color.org).
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .with_target(false)
        .try_init()
        .ok()
        .map(|_| guard)
}

/// Where the dashboard writes its log: `$SWITCHBOARD_LOG_DIR`, else
/// `$XDG_STATE_HOME/switchboard`, else `~/.local/state/switchboard`, else a
/// `switchboard` folder in the temporary directory.
pub fn log_dir() -> std::path::PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("SWITCHBOARD_LOG_DIR") {
        return dir.into();
    }
    if let Some(state) = var("XDG_STATE_HOME") {
        return std::path::PathBuf::from(state).join("switchboard");
    }
    if let Some(home) = var("HOME") {
        return std::path::PathBuf::from(home).join(".local/state/switchboard");
    }
    std::env::temp_dir().join("switchboard")
}

/// Logs to a file that rolls over daily (seven kept), through a non-blocking
/// writer: while the dashboard owns the terminal nothing may print to it.
/// Returns the guard (dropping it flushes) and today's file.
pub fn to_file() -> anyhow::Result<(Option<WorkerGuard>, std::path::PathBuf)> {
    use tracing_appender::rolling::{RollingFileAppender, Rotation};
    let mut dir = log_dir();
    // The appender lists the folder to prune old files and, when the folder
    // is missing, prints that to stderr, which is the dashboard's screen.
    let build = |dir: &std::path::Path| {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        RollingFileAppender::builder()
            .rotation(Rotation::DAILY)
            .filename_prefix("switchboard")
            .filename_suffix("log")
            .max_log_files(7)
            .build(dir)
            .map_err(|e| e.to_string())
    };
    let appender = match build(&dir) {
        Ok(a) => a,
        Err(first) => {
            // An unwritable home should not keep the dashboard from starting.
            dir = std::env::temp_dir().join("switchboard");
            build(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write logs to {} ({first}) nor {}: {e}; set SWITCHBOARD_LOG_DIR",
                    log_dir().display(),
                    dir.display()
                )
            })?
        }
    };
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .with_target(false)
        .try_init()
        .is_ok();
    let file = dir.join(format!(
        "switchboard.{}.log",
        utc_date(crate::events::unix_ms())
    ));
    Ok((installed.then_some(guard), file))
}

/// `YYYY-MM-DD` of a Unix time in milliseconds, in UTC (the appender's own
/// file names use the UTC date).
fn utc_date(unix_ms: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = (unix_ms / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_date(0), "1970-01-01");
        assert_eq!(super::utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(super::utc_date(1_764_325_200_123), "2025-11-28");
    }
}
