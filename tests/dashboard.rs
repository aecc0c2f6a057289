//! The dashboard without a terminal: keys → actions → state, and every pane
//! rendered with ratatui's TestBackend into insta snapshots. The App is built
//! from a synthetic gateway state and synthetic routing events at a fixed
//! time, so the screens are the same on every run.

use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use switchboard::config::{Affinity, Provider};
use switchboard::dashboard::action::{FieldMessage, TestResult};
use switchboard::dashboard::app::Overlay;
use switchboard::dashboard::form::{Field, Status};
use switchboard::dashboard::keys::{self, Context};
use switchboard::dashboard::ui::{self, Mouse, Theme};
use switchboard::dashboard::{Action, App, Command, Info, Pane};
use switchboard::events::{
    Attempt, AttemptOutcome, ConfigEvent, DeploymentChange, DeploymentEvent, Event, RequestEvent,
    RequestOutcome,
};
use switchboard::gateway::stats::Stats;
use switchboard::gateway::{DeploymentView, ModelView, StateView};
use switchboard::router::{Cause, State};

/// 2025-11-28 10:20:00 UTC.
const T0: u64 = 1_764_325_200_000;

fn deployment(name: &str, tpm: (u64, Option<u64>), state: State) -> DeploymentView {
    DeploymentView {
        name: name.into(),
        provider: Provider::OpenAi,
        api_base: format!("https://{name}.example.com/v1"),
        model_id: "gpt-4o-2024-08-06".into(),
        api_key: Some("sk-…0001".into()),
        region: None,
        project: None,
        aws_access_key_id: None,
        credentials: None,
        enabled: state != State::Disabled,
        tpm_limit: tpm.1,
        tpm_used: tpm.0,
        rpm_limit: None,
        rpm_used: 0,
        input_tpm_limit: None,
        input_tpm_used: 0,
        output_tpm_limit: None,
        output_tpm_used: 0,
        max_in_flight: None,
        in_flight: 0,
        limited_by: None,
        forecast_full_s: None,
        forecasts: Vec::new(),
        priority: 1,
        pinned_sessions: 0,
        state,
        cooldown_remaining_s: if state == State::CoolingDown {
            12.3
        } else {
            0.0
        },
        cooldown_cause: (state == State::CoolingDown).then_some(Cause::RateLimited),
        consecutive_failures: 0,
        requests: 0,
        failures: 0,
        weight: 1,
        last_minute: Default::default(),
        cluster: None,
    }
}

/// The synthetic state with the last minute's figures of `extra` and the
/// synthetic traffic, as the gateway computes them, at `now`.
fn gateway_state_with(extra: &[Arc<Event>], now: u64) -> StateView {
    let mut state = bare_state();
    let mut stats = Stats::new(T0);
    for e in events().iter().chain(extra) {
        if let Event::Request(r) = &**e {
            stats.record(r);
        }
    }
    state.fill_last_minute(&stats, now);
    state
}

fn gateway_state() -> StateView {
    gateway_state_with(&[], T0 + 10_000)
}

fn bare_state() -> StateView {
    StateView {
        models: vec![
            ModelView {
                name: "gpt-4o".into(),
                last_minute: Default::default(),
                deployments: vec![
                    deployment("eastus", (12_400, Some(30_000)), State::Healthy),
                    deployment("westeurope", (18_900, Some(20_000)), State::CoolingDown),
                    deployment("sweden", (0, Some(10_000)), State::Disabled),
                ],
                spilling_to: None,
                fallbacks: Vec::new(),
                affinity: Affinity::Session,
                queue: Default::default(),
                headroom: None,
                headroom_by_tier: Vec::new(),
            },
            ModelView {
                name: "text-embedding-3-small".into(),
                last_minute: Default::default(),
                deployments: vec![
                    deployment("emb-a", (300, None), State::Healthy),
                    deployment("emb-b", (150, None), State::Healthy),
                ],
                spilling_to: None,
                fallbacks: Vec::new(),
                affinity: Affinity::Session,
                queue: Default::default(),
                headroom: None,
                headroom_by_tier: Vec::new(),
            },
        ],
        ..StateView::default()
    }
}

fn info() -> Info {
    Info {
        config_path: "/etc/switchboard/switchboard.toml".into(),
        address: "http://127.0.0.1:4000/v1".into(),
        log_path: Some("/var/log/switchboard/switchboard.2025-11-28.log".into()),
        demo: false,
        attached: None,
        warning: None,
    }
}

const OK: AttemptOutcome = AttemptOutcome::Ok { status: 200 };
const E429: AttemptOutcome = AttemptOutcome::Status { status: 429 };
const E500: AttemptOutcome = AttemptOutcome::Status { status: 500 };

fn request(id: u64, at: u64, model: &str, attempts: &[(&str, AttemptOutcome, f64)]) -> Arc<Event> {
    let ok = matches!(attempts.last(), Some((_, AttemptOutcome::Ok { .. }, _)));
    Arc::new(Event::Request(RequestEvent {
        id,
        at_ms: T0 + at,
        model: model.into(),
        endpoint: "chat.completions".into(),
        stream: id.is_multiple_of(2),
        attempts: attempts
            .iter()
            .map(|(d, o, l)| Attempt {
                model: None,
                deployment: (*d).into(),
                outcome: *o,
                latency_ms: *l,
            })
            .collect(),
        status: if ok { 200 } else { 502 },
        outcome: if ok {
            RequestOutcome::Ok
        } else {
            RequestOutcome::Failed
        },
        latency_ms: attempts.iter().map(|a| a.2).sum(),
        prompt_tokens: 120,
        completion_tokens: 60,
        tokens_estimated: false,
        instance: None,
    }))
}

fn events() -> Vec<Arc<Event>> {
    let mut evs = Vec::new();
    for i in 0..40u64 {
        let at = i * 250;
        let ev = match i % 5 {
            0 => request(
                i,
                at,
                "gpt-4o",
                &[("westeurope", E429, 3.0), ("eastus", OK, 412.0)],
            ),
            1 => request(i, at, "text-embedding-3-small", &[("emb-a", OK, 21.0)]),
            2 => request(
                i,
                at,
                "gpt-4o",
                &[("sweden", E500, 700.0), ("eastus", OK, 398.0)],
            ),
            3 => request(i, at, "gpt-4o", &[("eastus", OK, 250.0 + i as f64)]),
            _ => request(i, at, "text-embedding-3-small", &[("emb-b", OK, 40.0)]),
        };
        evs.push(ev);
    }
    evs.push(request(
        40,
        9_000,
        "gpt-4o",
        &[("eastus", E500, 5.0), ("westeurope", E429, 2.0)],
    ));
    // Published when they end, as the gateway does.
    evs.sort_by_key(|e| match &**e {
        Event::Request(r) => r.at_ms + r.latency_ms as u64,
        Event::Deployment(d) => d.at_ms,
        Event::Route(r) => r.at_ms,
        Event::Config(c) => c.at_ms,
        Event::Lagged(l) => l.at_ms,
    });
    evs.push(Arc::new(Event::Deployment(DeploymentEvent {
        at_ms: T0 + 9_500,
        model: "gpt-4o".into(),
        deployment: "westeurope".into(),
        change: DeploymentChange::CoolingDown {
            cause: Cause::RateLimited,
            seconds: 12.3,
        },
        instance: None,
    })));
    evs
}

/// An app with the synthetic state and traffic, 10 s after T0.
fn app() -> App {
    let mut app = App::new(info(), gateway_state(), T0);
    app.ingest_events(&events(), 0);
    app.ingest_state(gateway_state(), T0 + 10_000);
    app
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Presses keys as the run loop does: dispatch in the app's context, then update.
fn press(app: &mut App, codes: &[KeyCode]) {
    for code in codes {
        if let Some(action) = keys::dispatch(app.context(), &key(*code)) {
            app.update(action);
        }
    }
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, &[KeyCode::Char(c)]);
    }
}

fn form(app: &App) -> &switchboard::dashboard::form::Form {
    match &app.overlay {
        Some(Overlay::Form(f)) => f,
        other => panic!("no form open: {other:?}"),
    }
}

fn render_with(app: &App, width: u16, height: u16, theme: &Theme) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::draw(f, app, theme)).unwrap();
    terminal
}

/// The screen as text, one line per row, trailing blanks cut. A wide
/// character (`⏳`) covers two cells, as on a terminal: the cell it hides
/// is left out.
fn render(app: &App, width: u16, height: u16) -> String {
    let terminal = render_with(app, width, height, &Theme::plain());
    let buffer = terminal.backend().buffer();
    let wide = |x: u16, y: u16| ratatui::text::Span::raw(buffer[(x, y)].symbol()).width() > 1;
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width)
            .filter(|&x| x == 0 || !wide(x - 1, y))
            .map(|x| buffer[(x, y)].symbol())
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

// Keys, actions and state.

#[test]
fn starts_on_the_models_pane_with_the_first_model_selected() {
    let app = app();
    assert_eq!(app.context(), Context::Main(Pane::Models));
    assert_eq!(app.selected_model().unwrap().name, "gpt-4o");
    assert_eq!(app.selected_deployment().unwrap().name, "eastus");
}

#[test]
fn tab_cycles_the_panes_and_shift_tab_goes_back() {
    let mut app = app();
    let mut seen = Vec::new();
    for _ in 0..4 {
        press(&mut app, &[KeyCode::Tab]);
        seen.push(app.focus);
    }
    assert_eq!(
        seen,
        [
            Pane::Deployments,
            Pane::Traffic,
            Pane::Models,
            Pane::Deployments
        ]
    );
    press(&mut app, &[KeyCode::BackTab, KeyCode::BackTab]);
    assert_eq!(app.focus, Pane::Traffic);
}

#[test]
fn arrows_and_jk_move_in_the_focused_pane_and_the_deployments_follow_the_model() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char('j')]);
    assert_eq!(app.selected_model().unwrap().name, "text-embedding-3-small");
    assert_eq!(app.selected_deployment().unwrap().name, "emb-a");
    press(&mut app, &[KeyCode::Down]); // stays on the last model
    assert_eq!(app.model, 1);
    press(&mut app, &[KeyCode::Up]);
    assert_eq!(app.model, 0);
    press(&mut app, &[KeyCode::Enter]); // into its deployments
    assert_eq!(app.focus, Pane::Deployments);
    press(&mut app, &[KeyCode::Char('j'), KeyCode::Down]);
    assert_eq!(app.selected_deployment().unwrap().name, "sweden");
    press(&mut app, &[KeyCode::Char('k')]);
    assert_eq!(app.selected_deployment().unwrap().name, "westeurope");
}

#[test]
fn space_toggles_the_selected_deployment_only_in_the_deployments_pane() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char(' ')]);
    assert!(
        app.take_commands().is_empty(),
        "Space does nothing on Models"
    );

    press(&mut app, &[KeyCode::Tab, KeyCode::Char(' ')]);
    let commands = app.take_commands();
    assert!(
        matches!(&commands[..], [Command::SetEnabled { model, deployment, enabled: false }]
            if model == "gpt-4o" && deployment == "eastus"),
        "{commands:?}"
    );
    // Shown at once, before the gateway confirms.
    let eastus = app.selected_deployment().unwrap().clone();
    assert!(!app.enabled("gpt-4o", &eastus));
    assert!(render(&app, 80, 24).contains("[ ] eastus     saving…"));

    app.update(Action::Toggled {
        model: "gpt-4o".into(),
        deployment: "eastus".into(),
        enabled: false,
        error: None,
    });
    assert!(app.pending.is_empty());
    assert_eq!(
        app.notice().unwrap().text,
        "eastus disabled · saved to switchboard.toml"
    );

    // A disabled one is enabled.
    press(
        &mut app,
        &[KeyCode::Down, KeyCode::Down, KeyCode::Char(' ')],
    );
    assert!(matches!(
        &app.take_commands()[..],
        [Command::SetEnabled { deployment, enabled: true, .. }] if deployment == "sweden"
    ));
}

#[test]
fn a_failed_toggle_is_undone_and_says_why() {
    let mut app = app();
    press(&mut app, &[KeyCode::Tab, KeyCode::Char(' ')]);
    app.take_commands();
    app.update(Action::Toggled {
        model: "gpt-4o".into(),
        deployment: "eastus".into(),
        enabled: false,
        error: Some("could not save the change: permission denied".into()),
    });
    let eastus = app.selected_deployment().unwrap().clone();
    assert!(app.enabled("gpt-4o", &eastus));
    assert!(app.notice().unwrap().text.contains("permission denied"));
}

#[test]
fn t_tests_the_selected_deployment_and_shows_the_result() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char('t')]);
    assert!(
        app.take_commands().is_empty(),
        "t works on the Deployments pane"
    );
    press(&mut app, &[KeyCode::Tab, KeyCode::Down, KeyCode::Char('t')]);
    assert!(matches!(
        &app.take_commands()[..],
        [Command::TestExisting { model, deployment }] if model == "gpt-4o" && deployment == "westeurope"
    ));
    assert_eq!(app.notice().unwrap().text, "testing westeurope…");
    app.update(Action::Tested {
        model: "gpt-4o".into(),
        deployment: "westeurope".into(),
        result: TestResult {
            ok: false,
            status: Some(401),
            latency_ms: 31.0,
            model: None,
            message: "HTTP 401: Incorrect API key provided".into(),
        },
    });
    assert_eq!(
        app.notice().unwrap().text,
        "test westeurope: ✗ HTTP 401: Incorrect API key provided"
    );
    // Notices go after a while.
    app.tick(T0 + 25_000);
    assert!(app.notice().is_none());
}

#[test]
fn q_quits_but_esc_closes_the_form_and_the_help_first() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char('a')]);
    press(&mut app, &[KeyCode::Char('q')]); // typed into the name
    assert!(!app.should_quit());
    assert_eq!(form(&app).name.value(), "q");
    press(&mut app, &[KeyCode::Esc]);
    assert!(app.overlay.is_none());
    assert!(app.take_commands().is_empty(), "nothing saved");

    press(&mut app, &[KeyCode::Char('?')]);
    assert_eq!(app.context(), Context::Help);
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.context(), Context::Main(Pane::Models));

    press(&mut app, &[KeyCode::Char('q')]);
    assert!(app.should_quit());
}

#[test]
fn ctrl_c_quits_even_while_typing() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char('a')]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    app.update(keys::dispatch(app.context(), &ctrl_c).unwrap());
    assert!(app.should_quit());
}

#[test]
fn the_form_starts_with_the_defaults_of_the_contract() {
    let mut app = app();
    press(&mut app, &[KeyCode::Tab, KeyCode::Char('a')]);
    let f = form(&app);
    assert_eq!(f.model, "gpt-4o");
    assert_eq!(f.focus, Field::Name);
    assert_eq!(f.provider, Provider::OpenAi);
    assert!(f.enabled);
    assert_eq!(f.button_label(), "Test & continue");
    // The fields in the contract's order, Tab through them and back.
    let mut order = vec![f.focus];
    for _ in 0..8 {
        press(&mut app, &[KeyCode::Tab]);
        order.push(form(&app).focus);
    }
    assert_eq!(
        order,
        [
            Field::Name,
            Field::Provider,
            Field::ApiBase,
            Field::ApiKey,
            Field::ModelId,
            Field::TpmLimit,
            Field::Priority,
            Field::Enabled,
            Field::Button
        ]
    );
    press(&mut app, &[KeyCode::BackTab]);
    assert_eq!(form(&app).focus, Field::Enabled);
    // Space on a choice changes it; on a text field it is a space.
    press(&mut app, &[KeyCode::Char(' ')]);
    assert!(!form(&app).enabled);
}

#[test]
fn the_provider_choice_shows_the_fields_that_provider_needs() {
    let mut app = app();
    press(&mut app, &[KeyCode::Tab, KeyCode::Char('a'), KeyCode::Tab]);
    assert_eq!(form(&app).focus, Field::Provider);
    press(&mut app, &[KeyCode::Char(' ')]);
    assert_eq!(form(&app).provider, Provider::Azure);
    assert!(render(&app, 100, 30).contains("API version"));
    press(&mut app, &[KeyCode::Tab, KeyCode::Tab]);
    assert_eq!(form(&app).focus, Field::ApiVersion);
    type_text(&mut app, "2024-10-21");
    // Anthropic: no API version, and its endpoint is the default.
    press(
        &mut app,
        &[KeyCode::BackTab, KeyCode::BackTab, KeyCode::Char(' ')],
    );
    assert_eq!(form(&app).provider, Provider::Anthropic);
    let screen = render(&app, 100, 30);
    assert!(!screen.contains("API version"), "{screen}");
    assert!(
        screen.contains("https://api.anthropic.com (the default)"),
        "{screen}"
    );
    type_text_fields(&mut app);
    let spec = form(&app).spec().unwrap();
    assert_eq!(spec.provider, Provider::Anthropic);
    assert_eq!(
        spec.api_version, None,
        "an Azure field does not follow to Anthropic"
    );
    assert_eq!(spec.api_base, "");
}

/// Name and model ID for a spec that validates with the provider's defaults.
fn type_text_fields(app: &mut App) {
    press(app, &[KeyCode::BackTab]);
    type_text(app, "claude-direct");
    press(app, &[KeyCode::Tab]);
}

/// Fills the form: name, (provider kept), api base, key, model id, tpm; ends on the button.
fn fill(app: &mut App, name: &str, api_base: &str, key: &str, tpm: &str) {
    press(app, &[KeyCode::Char('a')]);
    type_text(app, name);
    press(app, &[KeyCode::Tab, KeyCode::Tab]);
    type_text(app, api_base);
    press(app, &[KeyCode::Tab]);
    type_text(app, key);
    press(app, &[KeyCode::Tab, KeyCode::Tab]); // model ID prefilled
    type_text(app, tpm);
    press(app, &[KeyCode::Tab, KeyCode::Tab, KeyCode::Tab]); // priority, enabled kept
    assert_eq!(form(app).focus, Field::Button);
}

fn passed() -> TestResult {
    TestResult {
        ok: true,
        status: Some(200),
        latency_ms: 312.4,
        model: Some("gpt-4o-2024-08-06".into()),
        message: "ok".into(),
    }
}

#[test]
fn the_form_tests_then_saves_and_an_edit_after_the_test_asks_for_a_new_one() {
    let mut app = app();
    fill(
        &mut app,
        "westus",
        "https://westus.example.com/v1",
        "env:WESTUS_KEY",
        "50000",
    );
    assert_eq!(form(&app).model_id.value(), "gpt-4o-2024-08-06");

    press(&mut app, &[KeyCode::Enter]);
    let commands = app.take_commands();
    let [
        Command::TestNew {
            model,
            spec,
            generation,
        },
    ] = &commands[..]
    else {
        panic!("{commands:?}");
    };
    assert_eq!(model, "gpt-4o");
    assert_eq!(spec.name, "westus");
    assert_eq!(spec.provider, Provider::OpenAi);
    assert_eq!(spec.api_base, "https://westus.example.com/v1");
    assert_eq!(spec.api_key.as_deref(), Some("env:WESTUS_KEY"));
    assert_eq!(spec.model_id, "gpt-4o-2024-08-06");
    assert_eq!(spec.tpm_limit, Some(50_000));
    assert_eq!(spec.enabled, Some(true));
    assert_eq!(form(&app).status, Status::Testing);
    press(&mut app, &[KeyCode::Enter]);
    assert!(app.take_commands().is_empty(), "one test at a time");

    let first = *generation;
    app.update(Action::FormTested {
        generation: first,
        result: Ok(passed()),
    });
    assert_eq!(form(&app).button_label(), "Save");

    // An edit after the pass: test again.
    press(
        &mut app,
        &[KeyCode::BackTab, KeyCode::BackTab, KeyCode::BackTab],
    );
    type_text(&mut app, "0");
    assert_eq!(form(&app).tpm_limit.value(), "500000");
    assert_eq!(
        form(&app).status,
        Status::Untested {
            changed_after_pass: true
        }
    );
    assert_eq!(form(&app).button_label(), "Test & continue");
    press(
        &mut app,
        &[KeyCode::Tab, KeyCode::Tab, KeyCode::Tab, KeyCode::Enter],
    );
    let commands = app.take_commands();
    let [
        Command::TestNew {
            generation, spec, ..
        },
    ] = &commands[..]
    else {
        panic!("{commands:?}");
    };
    assert_eq!(spec.tpm_limit, Some(500_000));
    // The late answer to the first test does not count.
    app.update(Action::FormTested {
        generation: first,
        result: Ok(passed()),
    });
    assert_eq!(form(&app).status, Status::Testing);
    let second = *generation;
    app.update(Action::FormTested {
        generation: second,
        result: Ok(passed()),
    });

    press(&mut app, &[KeyCode::Enter]);
    let commands = app.take_commands();
    assert!(
        matches!(&commands[..], [Command::AddDeployment { model, spec, .. }] if model == "gpt-4o" && spec.name == "westus"),
        "{commands:?}"
    );
    // Saved: the gateway has it (the fresh state comes first), the form closes on it.
    let mut state = gateway_state();
    state.models[0]
        .deployments
        .push(deployment("westus", (0, Some(500_000)), State::Healthy));
    app.ingest_state(state, T0 + 11_000);
    app.update(Action::Saved {
        generation: second,
        result: Ok("westus".into()),
    });
    assert!(app.overlay.is_none());
    assert_eq!(app.focus, Pane::Deployments);
    assert_eq!(app.selected_deployment().unwrap().name, "westus");
    assert!(
        app.notice()
            .unwrap()
            .text
            .starts_with("added westus to gpt-4o")
    );
}

#[test]
fn a_failed_test_keeps_the_test_button_and_shows_the_upstreams_error() {
    let mut app = app();
    fill(
        &mut app,
        "westus",
        "https://westus.example.com/v1",
        "sk-wrong",
        "",
    );
    press(&mut app, &[KeyCode::Enter]);
    let generation = form(&app).generation;
    app.take_commands();
    app.update(Action::FormTested {
        generation,
        result: Ok(TestResult {
            ok: false,
            status: Some(401),
            latency_ms: 40.0,
            model: None,
            message: "HTTP 401: Incorrect API key provided".into(),
        }),
    });
    assert_eq!(form(&app).button_label(), "Test & continue");
    assert!(render(&app, 80, 24).contains("✗ HTTP 401: Incorrect API key provided"));
    // A key that does not resolve is the key field's fault.
    press(&mut app, &[KeyCode::Enter]);
    app.take_commands();
    app.update(Action::FormTested {
        generation,
        result: Err(FieldMessage {
            field: Some("api_key".into()),
            message: "environment variable WESTUS_KEY is not set".into(),
        }),
    });
    assert_eq!(form(&app).focus, Field::ApiKey);
    assert_eq!(
        form(&app).error,
        Some((
            Field::ApiKey,
            "environment variable WESTUS_KEY is not set".into()
        ))
    );
}

#[test]
fn invalid_fields_get_an_inline_message_and_nothing_is_sent() {
    let cases: [(&str, &str, &str, Field, &str); 4] = [
        ("westus", "example.com/v1", "", Field::ApiBase, "http://"),
        (
            "westus",
            "https://x.example.com/v1",
            "0",
            Field::TpmLimit,
            "positive",
        ),
        (
            "westus",
            "https://x.example.com/v1",
            "lots",
            Field::TpmLimit,
            "positive",
        ),
        (
            "eastus",
            "https://x.example.com/v1",
            "",
            Field::Name,
            "already",
        ),
    ];
    for (name, base, tpm, field, message) in cases {
        let mut app = app();
        fill(&mut app, name, base, "", tpm);
        press(&mut app, &[KeyCode::Enter]);
        assert!(app.take_commands().is_empty(), "{name} {base} {tpm}");
        let (f, m) = form(&app).error.clone().expect("an inline error");
        assert_eq!(f, field);
        assert!(m.contains(message), "{m}");
        assert_eq!(
            form(&app).focus,
            field,
            "the cursor goes to the field at fault"
        );
    }
    // An empty form: the name first.
    let mut app = app();
    press(
        &mut app,
        &[KeyCode::Char('a'), KeyCode::BackTab, KeyCode::Enter],
    );
    assert_eq!(form(&app).error.as_ref().unwrap().0, Field::Name);
}

#[test]
fn a_refused_save_goes_back_to_the_field_at_fault() {
    let mut app = app();
    fill(&mut app, "westus", "https://westus.example.com/v1", "", "");
    press(&mut app, &[KeyCode::Enter]);
    let generation = form(&app).generation;
    app.update(Action::FormTested {
        generation,
        result: Ok(passed()),
    });
    press(&mut app, &[KeyCode::Enter]);
    app.take_commands();
    app.update(Action::Saved {
        generation,
        result: Err(FieldMessage {
            field: Some("name".into()),
            message: "model `gpt-4o` already has a deployment named `westus`".into(),
        }),
    });
    assert!(app.overlay.is_some(), "the form stays open");
    assert_eq!(form(&app).focus, Field::Name);
    assert_eq!(form(&app).button_label(), "Test & continue");
}

#[test]
fn slash_filters_the_traffic_by_model_deployment_or_status() {
    let mut app = app();
    let all = app.traffic.visible().len();
    press(&mut app, &[KeyCode::Char('/')]);
    assert_eq!(app.focus, Pane::Traffic);
    assert_eq!(app.context(), Context::Filter);
    type_text(&mut app, "emb-a");
    let shown = app.traffic.visible();
    assert_eq!(shown.len(), 8);
    press(&mut app, &[KeyCode::Enter]);
    assert_eq!(app.context(), Context::Main(Pane::Traffic));
    assert_eq!(app.traffic.filter, "emb-a");

    // Status, and several words: all must match.
    press(&mut app, &[KeyCode::Char('/')]);
    for _ in 0..5 {
        press(&mut app, &[KeyCode::Backspace]);
    }
    type_text(&mut app, "gpt 500");
    assert_eq!(
        app.traffic.visible().len(),
        9,
        "sweden ✗500 ×8 and one 500 of eastus"
    );
    type_text(&mut app, " zzz");
    assert!(app.traffic.visible().is_empty());
    assert!(render(&app, 80, 24).contains("filter: gpt 500 zzz"));
    press(&mut app, &[KeyCode::Esc]);
    assert_eq!(app.traffic.filter, "");
    assert_eq!(app.traffic.visible().len(), all);
}

#[test]
fn traffic_rows_name_their_door_and_the_filter_matches_it() {
    let mut app = app();
    let mut claude = request(500, 9_000, "gpt-4o", &[("eastus", OK, 300.0)]);
    if let Event::Request(r) = Arc::make_mut(&mut claude) {
        r.endpoint = "messages".into();
    }
    app.ingest_events(std::slice::from_ref(&claude), 0);
    let screen = render(&app, 120, 35);
    assert!(screen.contains("messages  eastus ✓"), "{screen}");
    assert!(screen.contains("chat      "), "{screen}");
    press(&mut app, &[KeyCode::Char('/')]);
    type_text(&mut app, "messages");
    assert_eq!(app.traffic.visible().len(), 1);
    press(&mut app, &[KeyCode::Esc]);
    press(&mut app, &[KeyCode::Char('/')]);
    type_text(&mut app, "chat");
    let shown = app.traffic.visible();
    assert!(!shown.is_empty());
    assert!(
        shown
            .iter()
            .all(|e| matches!(&***e, Event::Request(r) if r.door() == "chat"))
    );
    // Where room is short, four letters.
    press(&mut app, &[KeyCode::Esc]);
    assert!(render(&app, 80, 24).contains("msgs"));
    // The Responses door too.
    let mut codex = request(501, 9_500, "gpt-4o", &[("eastus", OK, 200.0)]);
    if let Event::Request(r) = Arc::make_mut(&mut codex) {
        r.endpoint = "responses".into();
    }
    app.ingest_events(std::slice::from_ref(&codex), 0);
    assert!(render(&app, 120, 35).contains("responses eastus ✓"));
    press(&mut app, &[KeyCode::Char('/')]);
    type_text(&mut app, "responses");
    assert_eq!(app.traffic.visible().len(), 1);
}

#[test]
fn p_pauses_the_traffic_view_and_counts_what_arrives_meanwhile() {
    let mut app = app();
    let before = app.traffic.visible().len();
    press(&mut app, &[KeyCode::Char('p')]);
    assert!(app.traffic.paused());
    let late = request(99, 10_000, "gpt-4o", &[("eastus", OK, 300.0)]);
    app.ingest_events(std::slice::from_ref(&late), 0);
    app.ingest_state(gateway_state_with(&[late], T0 + 10_500), T0 + 10_500);
    assert_eq!(app.traffic.visible().len(), before, "frozen");
    assert_eq!(app.traffic.missed, 1);
    assert_eq!(
        app.state.models[0].last_minute.requests, 26,
        "the figures keep counting"
    );
    assert!(render(&app, 80, 24).contains("paused · 1 new · p resumes"));
    press(&mut app, &[KeyCode::Char('p')]);
    assert_eq!(app.traffic.visible().len(), before + 1);
}

#[test]
fn moving_through_the_traffic_holds_it_still() {
    let mut app = app();
    press(&mut app, &[KeyCode::Tab, KeyCode::Tab, KeyCode::Down]);
    assert!(app.traffic.paused());
    press(&mut app, &[KeyCode::Down, KeyCode::Down]);
    assert_eq!(app.traffic.cursor, 2);
    press(&mut app, &[KeyCode::PageDown]);
    assert_eq!(app.traffic.cursor, 12);
    press(&mut app, &[KeyCode::Up]);
    assert_eq!(app.traffic.cursor, 11);
}

#[test]
fn the_footer_shows_the_keys_of_the_focused_pane_from_the_key_table() {
    let mut app = app();
    let footer = |app: &App| render(app, 100, 30).lines().last().unwrap().to_string();
    let models = footer(&app);
    assert!(
        models.contains("a add fallback") && models.contains("? help") && models.contains("q quit")
    );
    assert!(!models.contains("Space"));
    press(&mut app, &[KeyCode::Tab]);
    let deployments = footer(&app);
    assert!(deployments.contains("Space on/off") && deployments.contains("t test"));
    press(&mut app, &[KeyCode::Tab]);
    let traffic = footer(&app);
    assert!(traffic.contains("/ filter") && traffic.contains("p pause"));
    assert!(!traffic.contains("Space"));
    // Every footer entry is a binding that works in that context.
    for ctx in [
        Context::Main(Pane::Models),
        Context::Main(Pane::Deployments),
        Context::Main(Pane::Traffic),
    ] {
        for b in keys::footer(ctx) {
            let (k, action) = &b.keys[0];
            let event = KeyEvent::new(k.code, k.mods);
            assert_eq!(
                keys::dispatch(ctx, &event).as_ref(),
                Some(action),
                "{}",
                b.label
            );
        }
    }
}

#[test]
fn the_help_lists_every_binding_of_the_key_table() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char('?')]);
    let mut text = String::new();
    // Scroll through all of it on a small screen.
    for _ in 0..40 {
        text.push_str(&render(&app, 80, 24));
        press(&mut app, &[KeyCode::Down]);
    }
    for b in keys::BINDINGS {
        assert!(text.contains(b.label), "{} missing", b.label);
        assert!(text.contains(b.help), "{} missing", b.help);
    }
    assert!(text.contains("/var/log/switchboard/switchboard.2025-11-28.log"));
    press(&mut app, &[KeyCode::Char('q')]);
    assert!(
        app.overlay.is_none() && !app.should_quit(),
        "q closes the help"
    );
}

#[test]
fn a_click_selects_the_row_under_it() {
    let mut app = app();
    let area = Rect::new(0, 0, 80, 24);
    let screen = render(&app, 80, 24);
    let y = screen
        .lines()
        .position(|l| l.contains("text-embedding-3-small") && l.contains("healthy"))
        .unwrap() as u16;
    let action = ui::hit_test(area, &app, 10, y, Mouse::Click).unwrap();
    assert_eq!(
        action,
        Action::Select {
            pane: Pane::Models,
            index: 1
        }
    );
    app.update(action);
    assert_eq!(app.selected_model().unwrap().name, "text-embedding-3-small");
    // Borders and headings select nothing.
    assert_eq!(ui::hit_test(area, &app, 10, 2, Mouse::Click), None);
    let screen = render(&app, 80, 24);
    let y = screen
        .lines()
        .position(|l| l.contains("[x] emb-b"))
        .unwrap() as u16;
    app.update(ui::hit_test(area, &app, 10, y, Mouse::Click).unwrap());
    assert_eq!(app.focus, Pane::Deployments);
    assert_eq!(app.selected_deployment().unwrap().name, "emb-b");
}

#[test]
fn missed_events_are_counted_and_shown() {
    let mut app = app();
    app.ingest_events(&[], 1234);
    assert_eq!(app.lagged, 1234);
    assert!(render(&app, 100, 30).contains("⚠ 1234 events missed"));
}

#[test]
fn the_panes_show_what_the_events_and_the_state_say() {
    let app = app();
    let screen = render(&app, 120, 35);
    // Models: rates from the events, health from the state.
    let gpt = screen.lines().find(|l| l.contains("▸ gpt-4o")).unwrap();
    assert!(gpt.contains("●◐○ 1/3 healthy"), "{gpt}");
    // Deployments: the TPM gauge from the state, traffic from the events.
    let west = screen
        .lines()
        .find(|l| l.contains("westeurope cooling 13s"))
        .unwrap();
    assert!(west.contains("19k/20k"), "{west}");
    // Traffic: the chain of attempts with their outcomes.
    assert!(screen.contains("westeurope ✗429 → eastus ✓"));
    assert!(screen.contains("sweden ✗500 → eastus ✓"));
    assert!(screen.contains("⚑ westeurope cooling down 13s (rate limited)"));
}

// Colours.

#[test]
fn no_color_means_no_colour_at_all_and_colour_marks_the_gauges() {
    let app = app();
    let plain = render_with(&app, 120, 35, &Theme { color: false });
    for cell in plain.backend().buffer().content() {
        assert_eq!(cell.fg, Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, Color::Reset, "{cell:?}");
    }
    let colour = render_with(&app, 120, 35, &Theme { color: true });
    let buffer = colour.backend().buffer();
    assert!(
        buffer.content().iter().all(|c| c.bg == Color::Reset),
        "no background colours"
    );
    // westeurope's gauge is at 94 %: red; eastus's at 41 %: green.
    let text = render(&app, 120, 35);
    let row = |name: &str| {
        text.lines()
            .position(|l| l.contains(&format!("] {name}")))
            .unwrap() as u16
    };
    let bar_colour = |y: u16| {
        (0..120)
            .map(|x| &buffer[(x, y)])
            .find(|c| c.symbol() == "█")
            .map(|c| c.fg)
    };
    assert_eq!(bar_colour(row("westeurope")), Some(Color::Red));
    assert_eq!(bar_colour(row("eastus")), Some(Color::Green));
    // The selection of the focused pane is its name reversed, not the whole
    // row, so the gauges and states keep their look.
    let gpt = text.lines().position(|l| l.contains("▸ gpt-4o")).unwrap() as u16;
    let x = text
        .lines()
        .nth(gpt as usize)
        .unwrap()
        .chars()
        .position(|c| c == 'g')
        .unwrap() as u16;
    assert!(buffer[(x, gpt)].modifier.contains(Modifier::REVERSED));
    assert!(
        buffer
            .content()
            .iter()
            .filter(|c| c.symbol() == "█")
            .all(|c| !c.modifier.contains(Modifier::REVERSED))
    );
}

// Screens.

#[test]
fn snapshot_main_80x24() {
    insta::assert_snapshot!(render(&app(), 80, 24));
}

#[test]
fn snapshot_wide_120x35() {
    insta::assert_snapshot!(render(&app(), 120, 35));
}

#[test]
fn snapshot_deployments_focused_with_a_notice() {
    let mut app = app();
    press(&mut app, &[KeyCode::Tab, KeyCode::Char('t')]);
    app.update(Action::Tested {
        model: "gpt-4o".into(),
        deployment: "eastus".into(),
        result: passed(),
    });
    insta::assert_snapshot!(render(&app, 80, 24));
}

#[test]
fn snapshot_embeddings_without_limits() {
    let mut app = app();
    press(&mut app, &[KeyCode::Down]);
    insta::assert_snapshot!(render(&app, 80, 24));
}

#[test]
fn snapshot_traffic_paused_with_details() {
    let mut app = app();
    press(&mut app, &[KeyCode::BackTab, KeyCode::Down, KeyCode::Down]);
    let late = request(99, 10_000, "gpt-4o", &[("eastus", OK, 300.0)]);
    app.ingest_events(std::slice::from_ref(&late), 0);
    app.ingest_state(gateway_state_with(&[late], T0 + 10_000), T0 + 10_000);
    insta::assert_snapshot!(render(&app, 100, 30));
}

#[test]
fn snapshot_filter_being_typed() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char('/')]);
    type_text(&mut app, "429");
    insta::assert_snapshot!(render(&app, 80, 24));
}

#[test]
fn snapshot_help() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char('?')]);
    insta::assert_snapshot!(render(&app, 100, 50));
}

#[test]
fn snapshot_help_scrolled_on_80x24() {
    let mut app = app();
    app.viewport = Rect::new(0, 0, 80, 24);
    press(&mut app, &[KeyCode::Char('?')]);
    for _ in 0..100 {
        press(&mut app, &[KeyCode::Down]);
    }
    insta::assert_snapshot!(render(&app, 80, 24));
}

#[test]
fn snapshot_form_empty() {
    let mut app = app();
    press(&mut app, &[KeyCode::Char('a')]);
    insta::assert_snapshot!(render(&app, 80, 24));
}

#[test]
fn snapshot_form_with_an_inline_error_and_a_masked_key() {
    let mut app = app();
    fill(
        &mut app,
        "westus",
        "westus.example.com",
        "sk-live-secret-1234",
        "",
    );
    press(&mut app, &[KeyCode::Enter]);
    let screen = render(&app, 80, 24);
    assert!(!screen.contains("sk-live"), "the key is masked");
    insta::assert_snapshot!(screen);
}

#[test]
fn snapshot_form_after_a_passed_test() {
    let mut app = app();
    fill(
        &mut app,
        "westus",
        "https://westus.example.com/v1",
        "env:WESTUS_KEY",
        "50000",
    );
    press(&mut app, &[KeyCode::Enter]);
    let generation = form(&app).generation;
    app.update(Action::FormTested {
        generation,
        result: Ok(passed()),
    });
    insta::assert_snapshot!(render(&app, 80, 24));
}

#[test]
fn snapshot_too_small() {
    insta::assert_snapshot!(render(&app(), 50, 12));
}

#[test]
fn snapshot_minimum_size() {
    insta::assert_snapshot!(render(&app(), ui::MIN_WIDTH, ui::MIN_HEIGHT));
}

#[test]
fn a_rejected_config_edit_stays_on_screen_until_a_good_one_replaces_it() {
    let mut app = app();
    let rows = app.traffic.len();
    let config = |applied: bool, message: &str| {
        Arc::new(Event::Config(ConfigEvent {
            at_ms: T0,
            applied,
            message: message.into(),
        }))
    };
    let bad = "sb.toml:19: models[0].deployments[0].tpm_limit: must be greater than 0";
    app.ingest_events([&config(false, bad)], 0);
    let notice = app.notice().unwrap().text.clone();
    assert!(
        notice.starts_with("config not reloaded, previous one still runs: sb.toml:19:"),
        "{notice}"
    );
    // Long after a toggle's notice would have gone, the error is still shown.
    app.tick(T0 + 120_000);
    assert_eq!(app.notice().unwrap().text, notice);
    app.ingest_events([&config(true, "gpt-4o/eastus updated")], 0);
    assert_eq!(
        app.notice().unwrap().text,
        "config reloaded: gpt-4o/eastus updated"
    );
    assert_eq!(app.traffic.len(), rows + 2, "both are in the traffic view");
}

// Tiers, spills, pinned sessions and the Priority field (a file of its own:
// this one is long enough).
#[path = "dashboard/tiers.rs"]
mod tiers;

// Capacity: forecasts, other limits, headroom and queues.
#[path = "dashboard/capacity.rs"]
mod capacity;
