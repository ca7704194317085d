//! Whether this machine's clock may be trusted: asks the kernel (`ntp_adjtime`), which knows
//! whether NTP (systemd-timesyncd, chrony, ntpd) has synchronized it. A Pi without a real-time
//! clock boots with a wrong time until then, and that time must never be pushed to a door.

/// `Ok(true)` when the kernel reports a synchronized clock.
pub fn kernel_clock_synchronized() -> Result<bool, String> {
    // SAFETY: `ntp_adjtime` with `modes = 0` only reads the kernel's state into the struct we own.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    let state = unsafe { libc::ntp_adjtime(&mut tx) };
    if state < 0 {
        return Err(format!(
            "ntp_adjtime failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(synchronized(state, tx.status))
}

/// The kernel's verdict from `ntp_adjtime`'s clock state and status bits: synchronized unless
/// the state is `TIME_ERROR` or the `STA_UNSYNC` bit is set.
fn synchronized(state: libc::c_int, status: libc::c_int) -> bool {
    state != libc::TIME_ERROR && status & libc::STA_UNSYNC == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_in_the_ok_state_without_the_unsync_bit_is_synchronized() {
        assert!(synchronized(libc::TIME_OK, 0));
        assert!(synchronized(libc::TIME_OK, libc::STA_PLL));
        // A leap second announced or in progress is still a synchronized clock.
        assert!(synchronized(libc::TIME_INS, libc::STA_PLL | libc::STA_INS));
    }

    #[test]
    fn the_unsync_bit_means_not_synchronized_whatever_the_state() {
        assert!(!synchronized(libc::TIME_OK, libc::STA_UNSYNC));
        assert!(!synchronized(
            libc::TIME_OK,
            libc::STA_PLL | libc::STA_UNSYNC
        ));
    }

    #[test]
    fn the_error_state_means_not_synchronized_even_without_the_unsync_bit() {
        assert!(!synchronized(libc::TIME_ERROR, 0));
    }

    #[test]
    fn the_kernel_call_itself_succeeds_on_linux() {
        // Which answer depends on this machine's NTP; that the syscall works must not.
        let answer = kernel_clock_synchronized();
        assert!(answer.is_ok(), "{answer:?}");
    }
}
