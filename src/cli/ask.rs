//! Questions on the terminal for `setup`: a line with a default, a password without echo, a
//! yes or no.

use std::io::{BufRead, Write};

use super::Failure;
use crate::secret::Secret;

/// Questions on the terminal, or nothing but flags.
pub struct Asker {
    pub interactive: bool,
}

impl Asker {
    pub fn line(&self, question: &str, default: Option<&str>) -> Result<String, Failure> {
        match default {
            Some(d) => print!("{question} [{d}]: "),
            None => print!("{question}: "),
        }
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let n = std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .map_err(|e| Failure::Runtime(format!("reading the answer: {e}")))?;
        if n == 0 {
            return Err(Failure::Usage(
                "setup: input ended before every answer was given".into(),
            ));
        }
        let answer = answer.trim();
        Ok(match default {
            Some(d) if answer.is_empty() => d.to_string(),
            _ => answer.to_string(),
        })
    }

    /// A password, typed without echo; asked again while empty.
    pub fn secret(&self, question: &str) -> Result<Secret, Failure> {
        loop {
            let answer = {
                let _echo_off = EchoOff::new();
                let answer = self.line(question, None);
                println!();
                answer?
            };
            if !answer.is_empty() {
                return Ok(Secret::new(answer));
            }
            println!("(a password cannot be empty)");
        }
    }

    pub fn yes(&self, question: &str, default: bool) -> Result<bool, Failure> {
        let d = if default { "Y/n" } else { "y/N" };
        let a = self.line(question, Some(d))?;
        Ok(match a.to_ascii_lowercase().as_str() {
            "y" | "yes" => true,
            "n" | "no" => false,
            _ => default,
        })
    }
}

/// The terminal's echo off while a password is typed; back on when dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> EchoOff {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; failure (no terminal)
        // leaves everything as it was.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return EchoOff(None);
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return EchoOff(None);
            }
            EchoOff(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = self.0 {
            // SAFETY: restores the attributes read in `new`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}
