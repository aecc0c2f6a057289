//! The terminal and the outside world.
//!
//! [`Tui`] puts the terminal in raw mode on the alternate screen and puts it
//! back when dropped, and a chained panic hook puts it back before a panic
//! message prints. [`spawn_terminal`] starts one task per source of events
//! of the terminal (keys and mouse, signals); the gateway's source starts
//! its own (snapshots, routing events, the connection). All send into one
//! channel and all are stopped by one `CancellationToken`.

use std::io::{self, Stdout, stdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::ThreadId;
use std::time::Duration;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    EventStream,
};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::action::Action;
use super::app::Link;
use crate::events::{Event, unix_ms};
use crate::gateway::StateView;

/// How often the gateway's state is sampled.
pub const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);
/// The shortest time between two frames after a key (at most 20 a second).
pub const FRAME: Duration = Duration::from_millis(50);
/// The shortest time between two frames for new data (at most 10 a second):
/// the eye does not follow traffic faster, and the gateway keeps the CPU.
pub const DATA_FRAME: Duration = Duration::from_millis(100);
/// The most routing events handed over in one message.
pub const BATCH: usize = 4096;

/// What the run loop receives.
pub enum Msg {
    Term(crossterm::event::Event),
    State {
        state: Box<StateView>,
        now_ms: u64,
        utc_offset_s: i32,
    },
    Events {
        events: Vec<Arc<Event>>,
        lagged: u64,
    },
    /// The connection to a remote gateway went up or down.
    Link(Link),
    Action(Action),
    /// SIGTERM or SIGINT from outside.
    Quit,
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static UI_THREAD: Mutex<Option<ThreadId>> = Mutex::new(None);
static BACKGROUND_PANIC: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

pub struct Tui {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Tui {
    /// Raw mode, the alternate screen, mouse and paste reporting.
    pub fn enter() -> io::Result<Tui> {
        install_panic_hook();
        *UI_THREAD.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::thread::current().id());
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = execute!(
            stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste,
            cursor::Hide
        )
        .and_then(|_| Terminal::new(CrosstermBackend::new(stdout())));
        match setup {
            Ok(mut terminal) => {
                terminal.clear()?;
                Ok(Tui { terminal })
            }
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back as it was; does nothing the second time.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            stdout(),
            DisableBracketedPaste,
            DisableMouseCapture,
            LeaveAlternateScreen,
            cursor::Show
        );
        let _ = disable_raw_mode();
    }
}

/// A panic on the UI thread restores the terminal, then prints as usual.
/// A panic in a background task (the gateway's, say) must not print over
/// the screen: it goes to the log, and the dashboard says so.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_ui = *UI_THREAD.lock().unwrap_or_else(|p| p.into_inner())
                == Some(std::thread::current().id());
            if ACTIVE.load(Ordering::SeqCst) && !on_ui {
                tracing::error!("panic in a background task: {info}");
                *BACKGROUND_PANIC.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(info.to_string());
                return;
            }
            restore();
            previous(info);
        }));
    });
}

/// The message of a background panic since the last call.
pub fn take_background_panic() -> Option<String> {
    BACKGROUND_PANIC
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
}

/// Starts the terminal's sources of events (keys, mouse, signals); they
/// stop when `stop` is cancelled or the receiver is gone. (The gateway's
/// come from its [`Source`](super::source::Source).)
/// Returns the terminal reader's task, to wait for before the terminal is
/// given back.
pub fn spawn_terminal(
    tx: &mpsc::Sender<Msg>,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let input = tokio::spawn(terminal_input(tx.clone(), stop.clone()));
    let (tx, stop) = (tx.clone(), stop.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = crate::shutdown::signal() => { let _ = tx.send(Msg::Quit).await; }
        }
    });
    input
}

/// Keys, mouse, paste and resizes. Never dropped: the task waits for room.
async fn terminal_input(tx: mpsc::Sender<Msg>, stop: CancellationToken) {
    let mut reader = EventStream::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            e = reader.next() => e,
        };
        match event {
            Some(Ok(e)) => {
                if tx.send(Msg::Term(e)).await.is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                tracing::error!("cannot read the terminal: {e}");
                let _ = tx.send(Msg::Quit).await;
                break;
            }
            None => break,
        }
    }
}

/// A state snapshot as the run loop takes it, stamped with this machine's clock.
pub fn state_msg(state: StateView) -> Msg {
    let now_ms = unix_ms();
    Msg::State {
        state: Box::new(state),
        now_ms,
        utc_offset_s: utc_offset_s(now_ms),
    }
}

/// Seconds east of UTC of the local time zone at `unix_ms`.
#[cfg(unix)]
pub fn utc_offset_s(unix_ms: u64) -> i32 {
    let t = (unix_ms / 1000) as libc::time_t;
    // SAFETY: `localtime_r` writes only into the `tm` we pass, which is
    // plain data; zeroed is a valid value for it. It reads the TZ setting,
    // which this program never changes.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            0
        } else {
            tm.tm_gmtoff as i32
        }
    }
}

#[cfg(not(unix))]
pub fn utc_offset_s(_unix_ms: u64) -> i32 {
    0
}
