//! Tiers, spills and pinned sessions in the dashboard, and the form's
//! Priority field: a model whose config lists its deployments out of tier
//! order, so that the pane's rows and the config's order differ.

use super::*;

/// gpt-4o as an operator sets it up: PTU capacity first, two pay-as-you-go
/// accounts behind it, listed in the config in that (untidy) order.
fn tiered_state(spilling: bool, pins: bool) -> StateView {
    let mut state = bare_state();
    let tier = |name: &str, tpm: (u64, Option<u64>), priority: u32, pinned: u32| {
        let mut d = deployment(name, tpm, State::Healthy);
        d.priority = priority;
        d.pinned_sessions = if pins { pinned } else { 0 };
        d
    };
    let gpt = &mut state.models[0];
    gpt.deployments = vec![
        tier("paygo-a", (21_300, Some(90_000)), 2, 7),
        tier("ptu", (59_800, Some(60_000)), 1, 12),
        tier("paygo-b", (6_200, Some(30_000)), 2, 0),
    ];
    gpt.spilling_to = spilling.then_some(2);
    gpt.fallbacks = vec!["gpt-4o-mini".into()];
    let mut stats = Stats::new(T0);
    for e in tiered_events() {
        if let Event::Request(r) = &*e {
            stats.record(r);
        }
    }
    state.fill_last_minute(&stats, T0 + 10_000);
    state
}

/// PTU takes everything until its limit, then the traffic spills.
fn tiered_events() -> Vec<Arc<Event>> {
    let mut events = Vec::new();
    for i in 0..30u64 {
        let at = i * 300;
        let ev = match i {
            0..12 => request(i, at, "gpt-4o", &[("ptu", OK, 380.0 + i as f64)]),
            12 => request(
                i,
                at,
                "gpt-4o",
                &[("ptu", E429, 4.0), ("paygo-a", OK, 520.0)],
            ),
            _ if i.is_multiple_of(3) => {
                request(i, at, "text-embedding-3-small", &[("emb-a", OK, 22.0)])
            }
            _ if i.is_multiple_of(2) => request(i, at, "gpt-4o", &[("paygo-b", OK, 610.0)]),
            _ => request(i, at, "gpt-4o", &[("paygo-a", OK, 540.0)]),
        };
        events.push(ev);
    }
    events
}

fn tiered_app(spilling: bool, pins: bool) -> App {
    let mut app = App::new(info(), tiered_state(spilling, pins), T0);
    app.ingest_events(&tiered_events(), 0);
    app.ingest_state(tiered_state(spilling, pins), T0 + 10_000);
    app
}

/// The rows of the Deployments pane, top to bottom, by the selection.
fn rows(app: &mut App) -> Vec<String> {
    let n = app.selected_model().unwrap().deployments.len();
    let mut names = Vec::new();
    for row in 0..n {
        app.update(Action::Select {
            pane: Pane::Deployments,
            index: row,
        });
        names.push(app.selected_deployment().unwrap().name.clone());
    }
    names
}

/// Snapshots of this module go with the others, in tests/snapshots.
fn snapshot(name: &str, screen: String) {
    insta::with_settings!({ snapshot_path => "../snapshots" }, {
        insta::assert_snapshot!(name, screen);
    });
}

#[test]
fn a_tiered_model_is_listed_tier_by_tier_and_space_and_t_act_on_the_row_shown() {
    let mut app = tiered_app(true, false);
    assert_eq!(rows(&mut app), ["ptu", "paygo-a", "paygo-b"]);

    app.update(Action::Select {
        pane: Pane::Deployments,
        index: 0,
    });
    press(&mut app, &[KeyCode::Char(' ')]);
    assert!(
        matches!(&app.take_commands()[..], [Command::SetEnabled { model, deployment, enabled: false }]
            if model == "gpt-4o" && deployment == "ptu"),
        "the first row is ptu, the config's second"
    );
    assert!(render(&app, 80, 24).contains("[ ] ptu     saving…"));

    press(&mut app, &[KeyCode::Down, KeyCode::Char(' ')]);
    assert!(matches!(
        &app.take_commands()[..],
        [Command::SetEnabled { deployment, enabled: false, .. }] if deployment == "paygo-a"
    ));
    press(&mut app, &[KeyCode::Down, KeyCode::Char('t')]);
    assert!(matches!(
        &app.take_commands()[..],
        [Command::TestExisting { deployment, .. }] if deployment == "paygo-b"
    ));
}

#[test]
fn a_click_on_a_grouped_row_selects_the_deployment_it_shows() {
    let mut app = tiered_app(true, false);
    let area = Rect::new(0, 0, 80, 24);
    let screen = render(&app, 80, 24);
    for name in ["paygo-b", "ptu", "paygo-a"] {
        let y = screen
            .lines()
            .position(|l| l.contains(&format!("[x] {name} ")))
            .unwrap() as u16;
        app.update(ui::hit_test(area, &app, 12, y, Mouse::Click).unwrap());
        assert_eq!(app.selected_deployment().unwrap().name, name);
    }
}

#[test]
fn the_selection_stays_on_its_deployment_when_a_reload_regroups_the_pane() {
    let mut app = tiered_app(false, false);
    press(&mut app, &[KeyCode::Tab, KeyCode::Down, KeyCode::Down]);
    assert_eq!(app.selected_deployment().unwrap().name, "paygo-b");
    // paygo-b becomes the first tier: it moves to the top, and stays selected.
    let mut state = tiered_state(false, false);
    state.models[0].deployments[2].priority = 0;
    app.ingest_state(state, T0 + 11_000);
    assert_eq!(app.deployment, 0);
    press(&mut app, &[KeyCode::Char(' ')]);
    assert!(matches!(
        &app.take_commands()[..],
        [Command::SetEnabled { deployment, .. }] if deployment == "paygo-b"
    ));
}

#[test]
fn one_tier_has_no_tier_column_and_a_spill_is_marked_without_moving_the_columns() {
    let plain = render(&app(), 80, 24);
    assert!(!plain.contains("tier") && !plain.contains("T1"), "{plain}");

    let quiet = render(&tiered_app(false, false), 80, 24);
    let spilling = render(&tiered_app(true, false), 80, 24);
    assert!(!quiet.contains('⤵'), "{quiet}");
    assert!(spilling.contains("▸ gpt-4o ⤵T2"), "{spilling}");
    assert!(spilling.contains("Deployments · gpt-4o ⤵ spilling to T2"));
    let heading = |s: &str| {
        s.lines()
            .find(|l| l.contains("│  model"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        heading(&quiet),
        heading(&spilling),
        "the name keeps room for the mark"
    );
    // The tier is named on its first row only.
    let tier_of = |s: &str, name: &str| {
        let line = s
            .lines()
            .find(|l| l.contains(&format!(" {name} ")))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    assert_eq!(tier_of(&spilling, "ptu"), "T1");
    assert_eq!(tier_of(&spilling, "paygo-a"), "T2");
    assert_eq!(tier_of(&spilling, "paygo-b"), "[x]");
}

#[test]
fn pinned_sessions_show_with_session_affinity_and_live_pins_only() {
    let with_pins = render(&tiered_app(true, true), 80, 24);
    assert!(with_pins.contains("sess"), "{with_pins}");
    let no_pins = render(&tiered_app(true, false), 80, 24);
    assert!(!no_pins.contains("sess"), "{no_pins}");
    let mut off = tiered_state(true, true);
    off.models[0].affinity = Affinity::Off;
    let mut app = tiered_app(true, true);
    app.ingest_state(off, T0 + 10_000);
    let screen = render(&app, 80, 24);
    assert!(!screen.contains("sess"), "{screen}");
}

/// Opens the form on gpt-4o and fills it up to the priority, which gets `priority`.
fn fill_with_priority(app: &mut App, priority: &str) {
    fill(
        app,
        "paygo-c",
        "https://paygo-c.example.com/v1",
        "env:PAYGO_C_KEY",
        "",
    );
    press(app, &[KeyCode::BackTab, KeyCode::BackTab]);
    assert_eq!(form(app).focus, Field::Priority);
    type_text(app, priority);
    press(app, &[KeyCode::Tab, KeyCode::Tab]);
}

fn sent_priority(app: &mut App) -> Option<i64> {
    press(app, &[KeyCode::Enter]);
    match &app.take_commands()[..] {
        [Command::TestNew { spec, .. }] => spec.priority,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_priority_field_sends_the_tier_and_nothing_when_left_empty() {
    let mut app = tiered_app(false, false);
    fill_with_priority(&mut app, "");
    assert_eq!(sent_priority(&mut app), None, "the default is not written");
    assert!(
        render(&app, 80, 24)
            .contains("Priority  1 (the default; lower is tried first; gpt-4o uses 1, 2)")
    );

    let mut app = tiered_app(false, false);
    fill_with_priority(&mut app, "2");
    assert_eq!(sent_priority(&mut app), Some(2));

    // As the panes write it.
    let mut app = tiered_app(false, false);
    fill_with_priority(&mut app, "T3");
    assert_eq!(sent_priority(&mut app), Some(3));

    // On a model of one tier, the hint is the default alone.
    let mut app = super::app();
    fill_with_priority(&mut app, "");
    assert!(render(&app, 80, 24).contains("Priority  1 (the default tier; lower is tried first)"));
}

#[test]
fn a_priority_out_of_range_or_not_a_number_is_an_inline_error_and_nothing_is_sent() {
    for (typed, message) in [
        ("1001", "must be a whole number from 0 to 1000 (got 1001)"),
        ("-1", "must be a whole number from 0 to 1000 (got -1)"),
        ("1.5", "must be a whole number"),
        ("high", "must be a whole number"),
    ] {
        let mut app = tiered_app(false, false);
        fill_with_priority(&mut app, typed);
        press(&mut app, &[KeyCode::Enter]);
        assert!(app.take_commands().is_empty(), "{typed}");
        let f = form(&app);
        assert_eq!(f.focus, Field::Priority, "{typed}");
        let (field, text) = f.error.clone().unwrap();
        assert_eq!(field, Field::Priority);
        assert!(text.starts_with(message), "{typed}: {text}");
    }
}

#[test]
fn editing_the_priority_after_a_passed_test_asks_for_a_new_one() {
    let mut app = tiered_app(false, false);
    fill_with_priority(&mut app, "2");
    press(&mut app, &[KeyCode::Enter]);
    let generation = form(&app).generation;
    app.take_commands();
    app.update(Action::FormTested {
        generation,
        result: Ok(passed()),
    });
    assert_eq!(form(&app).button_label(), "Save");
    press(&mut app, &[KeyCode::BackTab, KeyCode::BackTab]);
    type_text(&mut app, "0");
    assert_eq!(form(&app).priority.value(), "20");
    assert_eq!(
        form(&app).status,
        Status::Untested {
            changed_after_pass: true
        }
    );
    assert_eq!(form(&app).button_label(), "Test & continue");
}

// Screens.

#[test]
fn snapshot_tiers_spilling_with_pins_80x24() {
    let mut app = tiered_app(true, true);
    press(&mut app, &[KeyCode::Tab]);
    snapshot("spilling_with_pins_80x24", render(&app, 80, 24));
}

#[test]
fn snapshot_tiers_spilling_with_pins_120x35() {
    let mut app = tiered_app(true, true);
    press(&mut app, &[KeyCode::Tab, KeyCode::Down]);
    snapshot("spilling_with_pins_120x35", render(&app, 120, 35));
}

#[test]
fn snapshot_pins_on_one_tier_80x24() {
    let mut state = gateway_state();
    for (d, pins) in state.models[0].deployments.iter_mut().zip([14, 3, 0]) {
        d.pinned_sessions = pins;
    }
    let mut app = super::app();
    app.ingest_state(state, T0 + 10_000);
    snapshot("pins_on_one_tier_80x24", render(&app, 80, 24));
}

#[test]
fn snapshot_form_priority_out_of_range_80x24() {
    let mut app = tiered_app(true, false);
    fill_with_priority(&mut app, "1001");
    press(&mut app, &[KeyCode::Enter]);
    snapshot("form_priority_out_of_range_80x24", render(&app, 80, 24));
}
