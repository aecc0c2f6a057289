//! A model's deployments as the dashboard lists them: grouped by tier when
//! the model has more than one (ascending priority, the config's order
//! inside a tier), else in the config's order, as they always were.
//!
//! The Deployments pane's rows and the selection (`App::deployment`) are in
//! this order; [`nth`] maps a row back to the deployment it shows, so that
//! `Space` and `t` act on the row the operator sees.

use crate::config::Affinity;
use crate::gateway::{DeploymentView, ModelView};

/// The indices into `model.deployments`, in the order the pane lists them.
pub fn order(model: &ModelView) -> Vec<usize> {
    let mut order: Vec<usize> = (0..model.deployments.len()).collect();
    // Stable: a single tier keeps the config's order.
    order.sort_by_key(|&i| model.deployments[i].priority);
    order
}

/// The deployment shown in `row` of the pane.
pub fn nth(model: &ModelView, row: usize) -> Option<&DeploymentView> {
    order(model)
        .get(row)
        .and_then(|&i| model.deployments.get(i))
}

/// The row of the pane that shows the deployment named `name`.
pub fn row_of(model: &ModelView, name: &str) -> Option<usize> {
    order(model)
        .iter()
        .position(|&i| model.deployments[i].name == name)
}

/// Whether the model's deployments are in more than one tier.
pub fn tiered(model: &ModelView) -> bool {
    let mut priorities = model.deployments.iter().map(|d| d.priority);
    let first = priorities.next();
    priorities.any(|p| Some(p) != first)
}

/// `T1`, `T2`: a tier, short.
pub fn label(priority: u32) -> String {
    format!("T{priority}")
}

/// `⤵T2` while the model's traffic spills to tier 2.
pub fn spill_mark(model: &ModelView) -> Option<String> {
    model.spilling_to.map(|t| format!("⤵{}", label(t)))
}

/// The width of [`spill_mark`] for any tier the model has: the room a
/// tiered model's name keeps for it, so columns stay put when a spill starts.
pub fn spill_mark_width(model: &ModelView) -> usize {
    let widest = model
        .deployments
        .iter()
        .map(|d| d.priority)
        .chain(model.spilling_to)
        .max()
        .unwrap_or(1);
    1 + label(widest).chars().count()
}

/// Whether the pane shows the pinned sessions: the model pins sessions and
/// some pins are alive.
pub fn shows_pins(model: &ModelView) -> bool {
    model.affinity == Affinity::Session && model.deployments.iter().any(|d| d.pinned_sessions > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(priorities: &[u32]) -> ModelView {
        let deployments = priorities
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let mut d: DeploymentView = serde_json::from_value(serde_json::json!({
                    "name": format!("d{i}"), "provider": "openai", "api_base": "http://x/v1",
                    "model_id": "m", "api_key": null, "enabled": true, "tpm_limit": null,
                    "tpm_used": 0, "state": "healthy", "cooldown_remaining_s": 0.0,
                    "cooldown_cause": null, "consecutive_failures": 0, "requests": 0,
                    "failures": 0, "weight": 1
                }))
                .unwrap();
                d.priority = p;
                d
            })
            .collect();
        ModelView {
            name: "m".into(),
            last_minute: Default::default(),
            deployments,
            spilling_to: None,
            fallbacks: Vec::new(),
            affinity: Affinity::Session,
            queue: Default::default(),
            headroom: None,
            headroom_by_tier: Vec::new(),
        }
    }

    #[test]
    fn one_tier_keeps_the_configs_order() {
        let m = model(&[1, 1, 1]);
        assert!(!tiered(&m));
        assert_eq!(order(&m), [0, 1, 2]);
    }

    #[test]
    fn tiers_come_in_ascending_order_and_keep_the_configs_order_inside() {
        let m = model(&[2, 1, 2, 0, 1]);
        assert!(tiered(&m));
        assert_eq!(order(&m), [3, 1, 4, 0, 2]);
        assert_eq!(nth(&m, 0).unwrap().name, "d3");
        assert_eq!(nth(&m, 4).unwrap().name, "d2");
        assert!(nth(&m, 5).is_none());
        assert_eq!(row_of(&m, "d0"), Some(3));
        assert_eq!(row_of(&m, "nope"), None);
    }

    #[test]
    fn the_spill_mark_names_the_tier_and_its_room_fits_every_tier() {
        let mut m = model(&[1, 10]);
        assert_eq!(spill_mark(&m), None);
        m.spilling_to = Some(10);
        assert_eq!(spill_mark(&m).as_deref(), Some("⤵T10"));
        assert_eq!(spill_mark_width(&m), 4);
    }

    #[test]
    fn pins_show_only_with_session_affinity_and_some_pins() {
        let mut m = model(&[1, 1]);
        assert!(!shows_pins(&m));
        m.deployments[1].pinned_sessions = 3;
        assert!(shows_pins(&m));
        m.affinity = Affinity::Off;
        assert!(!shows_pins(&m));
    }
}
