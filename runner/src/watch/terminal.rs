//! The terminal while the console owns it: raw mode, the alternate screen,
//! the cursor hidden. Given back on every way out: [`Screen`]'s drop (a
//! normal quit, an error), the panic hook (before the panic's message, so
//! it is readable), and the loop's signal handling (SIGTERM, SIGHUP) ends
//! the loop normally, so the drop runs.

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use std::io::Stdout;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the terminal is in the console's modes (so restoring twice,
/// from the hook and the drop, writes once).
static TAKEN: AtomicBool = AtomicBool::new(false);

pub struct Screen {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Take the terminal.
pub fn enter() -> std::io::Result<Screen> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
    terminal::enable_raw_mode()?;
    TAKEN.store(true, Ordering::SeqCst);
    let mut stdout = std::io::stdout();
    if let Err(e) = execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide) {
        restore();
        return Err(e);
    }
    match Terminal::new(CrosstermBackend::new(stdout)) {
        Ok(terminal) => Ok(Screen { terminal }),
        Err(e) => {
            restore();
            Err(e)
        }
    }
}

/// Give the terminal back as it was: cooked mode, the main screen, the
/// cursor shown. Errors are ignored: there is nothing better to do.
pub fn restore() {
    if TAKEN.swap(false, Ordering::SeqCst) {
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
        let _ = terminal::disable_raw_mode();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}
