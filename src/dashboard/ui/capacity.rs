//! The capacity figures beside the gauges: a deployment's forecast (or the
//! limit it is at) and its other limit closest to full, a model's headroom
//! and its queue. Each says nothing when there is nothing to say, so a
//! gateway without these limits looks as it did before them.

use ratatui::style::Style;
use ratatui::text::{Line, Span};

use super::{Theme, millis, tokens};
use crate::gateway::control::QueueView;
use crate::gateway::{DeploymentView, ModelView};
use crate::router::Dim;

/// Under this many seconds a forecast is a warning, and under
/// [`FORECAST_BAD_S`] an error: a minute is time to act, ten seconds is not.
const FORECAST_WARN_S: f64 = 60.0;
const FORECAST_BAD_S: f64 = 10.0;

/// `full in 40s`, `full in 2m`, `full now`: the longest (`full in 59s`)
/// fixes the column, so that the column does not move as the figure ticks.
const FORECAST_WIDTH: usize = 11;

/// `full in 8s`, `full in 2m`, `full now`. Whole seconds under a minute
/// (what an operator counts down), whole minutes or hours above.
pub fn forecast_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0 => "full now".into(),
        1..60 => format!("full in {s}s"),
        60..3600 => format!("full in {}m", (s as f64 / 60.0).round() as u64),
        _ => format!("full in {}h", (s as f64 / 3600.0).round() as u64),
    }
}

/// The limit a deployment is at, in a few words. Shorter than
/// [`Dim::at_limit`]: it stands in a column beside the gauge.
pub fn at_limit(dim: Dim) -> &'static str {
    match dim {
        Dim::Tokens => "at TPM",
        Dim::Requests => "at RPM",
        Dim::Slice => "at RPM slice",
        Dim::Input => "at input TPM",
        Dim::Output => "at output TPM",
        Dim::InFlight => "max in flight",
    }
}

/// The forecast cell: the limit the deployment is at when it is at one
/// (that says more than `full now`), else when it will be full, coloured
/// by how soon; nothing when no limit is near at this rate.
pub fn forecast(d: &DeploymentView, theme: &Theme) -> Line<'static> {
    if let Some(dim) = d.limited_by {
        return Line::styled(at_limit(dim), theme.bad().patch(theme.bold()));
    }
    match d.forecast_full_s {
        None => Line::default(),
        Some(s) => {
            // By the figure shown, so that `full in 10s` is never red.
            let s = s.max(0.0).round();
            let style = if s < FORECAST_BAD_S {
                theme.bad()
            } else if s < FORECAST_WARN_S {
                theme.warn()
            } else {
                Style::new()
            };
            Line::styled(forecast_text(s), style)
        }
    }
}

/// The width of the forecast column, 0 when it has no place: no row
/// forecasts nor is at a limit, and no row has a limit beyond TPM (for
/// those the column stays, so that the pane does not shift as load comes
/// and goes). Wide enough for every limit a row could be at.
pub fn forecast_width(deployments: &[DeploymentView]) -> u16 {
    let needed = deployments
        .iter()
        .any(|d| d.forecast_full_s.is_some() || d.limited_by.is_some() || !others(d).is_empty());
    if !needed {
        return 0;
    }
    deployments
        .iter()
        .flat_map(|d| {
            let mut dims = d.limited_by.into_iter().collect::<Vec<_>>();
            if d.tpm_limit.is_some() {
                dims.push(Dim::Tokens);
            }
            dims.extend(others(d).into_iter().map(|o| o.dim));
            dims
        })
        .map(|dim| at_limit(dim).chars().count())
        .chain([FORECAST_WIDTH])
        .max()
        .unwrap_or(FORECAST_WIDTH) as u16
}

/// One limit beyond TPM: what is used of it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Other {
    pub dim: Dim,
    pub used: u64,
    pub limit: u64,
}

impl Other {
    pub fn fraction(&self) -> f64 {
        self.used as f64 / self.limit.max(1) as f64
    }

    /// `rpm 45/60`, `in 12k/80k`, `out 70k/80k`, `8/8 in flight`.
    pub fn text(&self) -> String {
        Self::format(self.dim, self.used, self.limit)
    }

    fn format(dim: Dim, used: u64, limit: u64) -> String {
        let of = || format!("{}/{}", tokens(used), tokens(limit));
        match dim {
            Dim::Requests | Dim::Slice => format!("rpm {}", of()),
            Dim::Input => format!("in {}", of()),
            Dim::Output => format!("out {}", of()),
            Dim::InFlight => format!("{used}/{limit} in flight"),
            Dim::Tokens => format!("tpm {}", of()),
        }
    }
}

/// A deployment's limits beyond TPM, in the order of the config's fields.
pub fn others(d: &DeploymentView) -> Vec<Other> {
    [
        (Dim::Requests, d.rpm_used, d.rpm_limit),
        (Dim::Input, d.input_tpm_used, d.input_tpm_limit),
        (Dim::Output, d.output_tpm_used, d.output_tpm_limit),
        (Dim::InFlight, d.in_flight, d.max_in_flight),
    ]
    .into_iter()
    .filter_map(|(dim, used, limit)| limit.map(|limit| Other { dim, used, limit }))
    .collect()
}

/// The limit beyond TPM closest to full (the first of equals), if any.
pub fn closest(d: &DeploymentView) -> Option<Other> {
    others(d)
        .into_iter()
        .reduce(|a, b| if b.fraction() > a.fraction() { b } else { a })
}

/// The other-limit cell: the one closest to full, coloured like a gauge.
pub fn other_limit(d: &DeploymentView, theme: &Theme) -> Line<'static> {
    match closest(d) {
        None => Line::default(),
        Some(o) => Line::styled(o.text(), theme.level(o.fraction())),
    }
}

/// The width of the other-limit column, 0 when no row has such a limit:
/// the widest any row's limits read when full (so that it stays put as the
/// figures move), or what one reads now if wider (a window may run a
/// request past its limit).
pub fn other_limit_width(deployments: &[DeploymentView]) -> u16 {
    deployments
        .iter()
        .flat_map(others)
        .flat_map(|o| [o.text(), Other::format(o.dim, o.limit, o.limit)])
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0) as u16
}

/// `35% headroom`: the share of the model's token capacity left at the
/// current rate; green above 30 %, yellow from 10 % to 30 %, red under. Nothing when
/// no deployment has a token limit.
pub fn headroom(m: &ModelView, theme: &Theme) -> Option<Span<'static>> {
    m.headroom.map(|h| {
        // Rounded down, and coloured by the figure shown, so that `10%` is
        // never red nor `30%` green.
        let percent = (h.clamp(0.0, 1.0) * 100.0).floor();
        Span::styled(
            format!("{percent:.0}% headroom"),
            theme.headroom(percent / 100.0),
        )
    })
}

/// `⏳ 12 waiting · 3.2s`, or in `short` form `⏳ 12 · 3.2s`: the
/// requests waiting for room and how long the first has waited. Empty when
/// nobody waits.
pub fn queue(q: &QueueView, short: bool, theme: &Theme) -> Vec<Span<'static>> {
    if q.length == 0 {
        return Vec::new();
    }
    let style = theme.warn();
    let mut spans = vec![Span::styled(
        if short {
            format!("⏳ {}", q.length)
        } else {
            format!("⏳ {} waiting", q.length)
        },
        style.patch(theme.bold()),
    )];
    if let Some(ms) = q.oldest_ms {
        spans.push(Span::styled(format!(" · {}", millis(ms as f64)), style));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecasts_count_seconds_then_minutes() {
        assert_eq!(forecast_text(0.0), "full now");
        assert_eq!(forecast_text(0.4), "full now");
        assert_eq!(forecast_text(7.6), "full in 8s");
        assert_eq!(forecast_text(40.0), "full in 40s");
        assert_eq!(forecast_text(59.4), "full in 59s");
        assert_eq!(forecast_text(59.6), "full in 1m");
        assert_eq!(forecast_text(130.0), "full in 2m");
        assert_eq!(forecast_text(7200.0), "full in 2h");
        assert_eq!(forecast_text(-1.0), "full now");
    }

    #[test]
    fn other_limits_read_compactly() {
        let o = |dim, used, limit| Other { dim, used, limit }.text();
        assert_eq!(o(Dim::Requests, 45, 60), "rpm 45/60");
        assert_eq!(o(Dim::Output, 70_000, 80_000), "out 70k/80k");
        assert_eq!(o(Dim::Input, 1_200, 80_000), "in 1.2k/80k");
        assert_eq!(o(Dim::InFlight, 8, 8), "8/8 in flight");
    }
}
