//! Memory locking: a server process locks all its pages, present and
//! future, so that unseal keys, data keys, tokens and secrets are never
//! written to swap (Vault's default). `disable_mlock = true` turns it off
//! (and `-dev` never locks), for machines where the process may not lock
//! memory, or with encrypted swap.

use nix::sys::mman::{mlockall, MlockAllFlags};

/// Locks every current and future page of this process.
pub fn lock_all() -> Result<(), String> {
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).map_err(|e| {
        format!(
            "Failed to lock memory: {e}\n\n\
             This usually means that the mlock syscall is not available or not\n\
             permitted. Bulwark uses mlock to keep keys and secrets from being\n\
             swapped to disk. It needs the IPC_LOCK capability (root, or\n\
             `setcap cap_ipc_lock=+ep` on the binary, or `cap_add: [IPC_LOCK]` in\n\
             compose) or a large enough RLIMIT_MEMLOCK. To run without it, set\n\
             `disable_mlock = true` in the configuration file; only do so where\n\
             swap is encrypted or disabled."
        )
    })
}

/// The bytes of this process locked in memory (`VmLck`), where the kernel
/// tells.
#[cfg(test)]
fn locked_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmLck:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Locks in a child process of its own (locking the test runner's
    /// memory would pin every test thread's pages), where this machine
    /// allows it; otherwise checks the error names the way out.
    #[test]
    fn locks_or_explains() {
        if std::env::var_os("BULWARK_MLOCK_CHILD").is_some() {
            match lock_all() {
                Ok(()) => {
                    let locked = locked_bytes().unwrap_or(0);
                    assert!(locked > 0, "VmLck is 0 after mlockall");
                    println!("locked {locked}");
                }
                Err(e) => {
                    assert!(e.contains("disable_mlock"), "{e}");
                    println!("refused");
                }
            }
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "mlock::tests::locks_or_explains", "--nocapture"])
            .env("BULWARK_MLOCK_CHILD", "1")
            .output()
            .expect("child test");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            text.contains("locked ") || text.contains("refused"),
            "{text}"
        );
    }
}
