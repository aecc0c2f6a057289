//! Capacity in the dashboard: forecasts and the limit a deployment is at
//! beside its gauge, its other limit closest to full, a model's headroom
//! and its queue. The synthetic gateway of the other tests, with the
//! figures `/admin/state` carries under load.

use ratatui::buffer::Buffer;
use ratatui::style::Style;
use switchboard::gateway::control::QueueView;
use switchboard::router::Dim;

use super::*;

/// gpt-4o under load: eastus (TPM and RPM) fills in 40 s, westeurope
/// (Anthropic-like: input and output limits, no TPM) is at its output
/// limit, sweden (a vLLM-like slot cap) fills in 8 s; the model has 5 %
/// headroom and twelve requests waiting.
fn capacity_state() -> StateView {
    let mut state = gateway_state();
    let gpt = &mut state.models[0];
    let [eastus, westeurope, sweden] = &mut gpt.deployments[..] else {
        unreachable!()
    };
    eastus.tpm_used = 22_000;
    eastus.rpm_limit = Some(60);
    eastus.rpm_used = 45;
    eastus.forecast_full_s = Some(40.2);

    westeurope.state = State::Healthy;
    westeurope.cooldown_remaining_s = 0.0;
    westeurope.cooldown_cause = None;
    westeurope.tpm_limit = None;
    westeurope.tpm_used = 141_000;
    westeurope.input_tpm_limit = Some(400_000);
    westeurope.input_tpm_used = 61_000;
    westeurope.output_tpm_limit = Some(80_000);
    westeurope.output_tpm_used = 80_000;
    westeurope.limited_by = Some(Dim::Output);
    westeurope.forecast_full_s = Some(0.0);

    sweden.state = State::Healthy;
    sweden.enabled = true;
    sweden.tpm_used = 1_200;
    sweden.max_in_flight = Some(8);
    sweden.in_flight = 3;
    sweden.forecast_full_s = Some(7.6);

    gpt.headroom = Some(0.05);
    gpt.queue = QueueView {
        length: 12,
        oldest_ms: Some(3_200),
    };
    state
}

fn capacity_app() -> App {
    let mut app = App::new(info(), capacity_state(), T0);
    app.ingest_events(&events(), 0);
    app.ingest_state(capacity_state(), T0 + 10_000);
    app
}

/// The column where `text` starts on line `y`.
fn find_on(buffer: &Buffer, y: u16, text: &str) -> Option<u16> {
    let width = buffer.area.width;
    (0..width).find(|&x| {
        let mut s = String::new();
        for xx in x..width {
            s.push_str(buffer[(xx, y)].symbol());
            if s.len() >= text.len() {
                break;
            }
        }
        s.starts_with(text)
    })
}

/// The style of the first cell of `text` on the line that shows `row`.
fn style_of(terminal: &Terminal<TestBackend>, row: &str, text: &str) -> Style {
    let buffer = terminal.backend().buffer();
    let y = (0..buffer.area.height)
        .find(|&y| find_on(buffer, y, row).is_some())
        .unwrap_or_else(|| panic!("no {row:?}"));
    let x = find_on(buffer, y, text).unwrap_or_else(|| panic!("no {text:?} by {row:?}"));
    buffer[(x, y)].style()
}

fn line_of<'a>(screen: &'a str, text: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no {text:?} in\n{screen}"))
}

fn snapshot(name: &str, screen: String) {
    insta::with_settings!({ snapshot_path => "../snapshots" }, {
        insta::assert_snapshot!(name, screen);
    });
}

#[test]
fn a_deployment_counting_down_says_when_it_will_be_full() {
    let app = capacity_app();
    for (w, h) in [(80, 24), (120, 35)] {
        let screen = render(&app, w, h);
        assert!(
            line_of(&screen, "] eastus").contains("full in 40s"),
            "{screen}"
        );
        assert!(line_of(&screen, "] sweden").contains("full in 8s"));
    }
    let colour = render_with(&app, 120, 35, &Theme { color: true });
    // Under a minute a warning, under ten seconds an error.
    assert_eq!(
        style_of(&colour, "] eastus", "full in 40s").fg,
        Some(Color::Yellow)
    );
    assert_eq!(
        style_of(&colour, "] sweden", "full in 8s").fg,
        Some(Color::Red)
    );
    // The other limit closest to full, coloured like a gauge (75 %).
    assert_eq!(
        style_of(&colour, "] eastus", "rpm 45/60").fg,
        Some(Color::Yellow)
    );
    assert!(line_of(&render(&app, 120, 35), "] sweden").contains("3/8 in flight"));

    // Coloured by the figure shown: 9.6 s reads `10s`, a warning still.
    let mut state = capacity_state();
    state.models[0].deployments[0].forecast_full_s = Some(9.6);
    let mut app = capacity_app();
    app.ingest_state(state, T0 + 10_000);
    let colour = render_with(&app, 120, 35, &Theme { color: true });
    assert_eq!(
        style_of(&colour, "] eastus", "full in 10s").fg,
        Some(Color::Yellow)
    );
}

#[test]
fn a_deployment_at_a_limit_names_it() {
    let app = capacity_app();
    let screen = render(&app, 120, 35);
    let row = line_of(&screen, "] westeurope");
    assert!(row.contains("out 80k/80k"), "{row}");
    assert!(row.contains("at output TPM"), "{row}");
    assert!(!row.contains("full now"), "the limit says more: {row}");
    // No TPM limit of its own: the gauge says so, as before.
    assert!(row.contains("141k · no limit"), "{row}");
    let colour = render_with(&app, 120, 35, &Theme { color: true });
    let at = style_of(&colour, "] westeurope", "at output TPM");
    assert_eq!(at.fg, Some(Color::Red));
    assert!(at.add_modifier.contains(Modifier::BOLD));

    // Without a limit named, a forecast of 0 reads `full now`.
    let mut state = capacity_state();
    state.models[0].deployments[1].limited_by = None;
    let mut app = capacity_app();
    app.ingest_state(state, T0 + 10_000);
    assert!(line_of(&render(&app, 120, 35), "] westeurope").contains("full now"));
}

#[test]
fn a_models_headroom_turns_yellow_then_red() {
    let mut app = capacity_app();
    let screen = render(&app, 120, 35);
    assert!(
        line_of(&screen, "▸ gpt-4o").contains("5% headroom"),
        "{screen}"
    );
    // No token limit: nothing, not 100 %.
    assert!(!line_of(&screen, "text-embedding-3-small ").contains("headroom"));
    for (headroom, text, colour) in [
        (0.05, "5% headroom", Color::Red),
        (0.099, "9% headroom", Color::Red),
        (0.1, "10% headroom", Color::Yellow),
        (0.304, "30% headroom", Color::Yellow),
        (0.35, "35% headroom", Color::Green),
    ] {
        let mut state = capacity_state();
        state.models[0].headroom = Some(headroom);
        app.ingest_state(state, T0 + 10_000);
        let terminal = render_with(&app, 120, 35, &Theme { color: true });
        assert_eq!(
            style_of(&terminal, "▸ gpt-4o", text).fg,
            Some(colour),
            "{headroom}"
        );
    }
    // A gateway without token limits shows none.
    assert!(!render(&super::app(), 120, 35).contains("headroom"));
}

#[test]
fn a_models_queue_shows_its_length_and_the_oldest_wait() {
    let app = capacity_app();
    let wide = render(&app, 120, 35);
    assert!(
        line_of(&wide, "▸ gpt-4o").contains("●●● 3/3 healthy  5% headroom  ⏳ 12 waiting · 3.2s"),
        "{wide}"
    );
    // Narrow, the queue and the headroom stay in view and the rest gives way.
    let narrow = render(&app, 80, 24);
    assert!(
        line_of(&narrow, "▸ gpt-4o").contains("⏳ 12 · 3.2s  5% headroom"),
        "{narrow}"
    );
    let colour = render_with(&app, 120, 35, &Theme { color: true });
    assert_eq!(style_of(&colour, "▸ gpt-4o", "⏳").fg, Some(Color::Yellow));
    // Nobody waiting: nothing.
    let mut state = capacity_state();
    state.models[0].queue = QueueView::default();
    let mut app = capacity_app();
    app.ingest_state(state, T0 + 10_000);
    let quiet = render(&app, 120, 35);
    assert!(!quiet.contains('⏳'), "{quiet}");
}

#[test]
fn the_capacity_columns_give_way_on_narrow_screens_forecast_last() {
    let app = capacity_app();
    let at = |w: u16, h: u16| render(&app, w, h);
    let full = at(120, 35);
    for heading in ["limit", "forecast", "req/m", "p95"] {
        assert!(line_of(&full, "TPM used").contains(heading), "{full}");
    }
    let medium = at(80, 24);
    let heading = line_of(&medium, "TPM used");
    assert!(
        heading.contains("forecast") && heading.contains("limit"),
        "{medium}"
    );
    // The smallest screen keeps the gauge and the forecast.
    let small = at(60, 20);
    assert!(line_of(&small, "] eastus").contains("22k/30k"), "{small}");
    assert!(
        line_of(&small, "] eastus").contains("full in 40s"),
        "{small}"
    );
    assert!(line_of(&small, "] westeurope").contains("at output TPM"));
}

#[test]
fn snapshot_capacity_80x24() {
    snapshot("capacity_80x24", render(&capacity_app(), 80, 24));
}

#[test]
fn snapshot_capacity_120x35() {
    snapshot("capacity_120x35", render(&capacity_app(), 120, 35));
}

#[test]
fn snapshot_capacity_deployments_60x20() {
    let mut app = capacity_app();
    press(&mut app, &[KeyCode::Tab]);
    snapshot("capacity_60x20", render(&app, 60, 20));
}
