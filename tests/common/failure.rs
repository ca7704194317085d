//! A failed test's reason, repeated after the logs its fixtures print while unwinding.
//!
//! The panic message is printed first and the bridge's and broker's logs after it; CI shows
//! the tail of the output, so without this the reason is cut off and only logs remain.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    /// The first panic on this thread: fixtures drop on the thread that panicked.
    static FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per test binary) a panic hook that remembers the message, then prints it as
/// before.
pub fn remember() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            FAILURE.with(|f| {
                f.borrow_mut().get_or_insert_with(|| info.to_string());
            });
            default(info);
        }));
    });
}

/// Prints the remembered reason again (after a fixture's log).
pub fn repeat() {
    FAILURE.with(|f| {
        if let Some(reason) = f.borrow().as_deref() {
            eprintln!("---- the test failed: ----\n{reason}");
        }
    });
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
