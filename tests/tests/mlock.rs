//! Memory locking (issue 11): a server started from a config file locks its
//! memory (Vault's default); `disable_mlock = true` and `-dev` do not.

use std::path::Path;

use bulwark_e2e::{bulwark_bin, free_port, Proc};

/// `VmLck` of a process, in kB.
fn locked_kb(pid: u32) -> u64 {
    bulwark_e2e::proc_status(pid, "VmLck:").expect("VmLck line")
}

fn config(dir: &Path, name: &str, extra: &str) -> String {
    let path = dir.join(format!("{name}.hcl"));
    let text = format!(
        "{extra}storage \"sqlite\" {{\n  path = \"{db}\"\n}}\n\
         listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
         cluster {{\n  cert_dir = \"{certs}\"\n}}\n",
        db = dir.join(format!("{name}.db")).display(),
        port = free_port(),
        certs = dir.join("certs").display(),
    );
    std::fs::write(&path, text).expect("config");
    path.to_str().expect("utf-8").to_string()
}

#[test]
fn servers_lock_their_memory_unless_told_not_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = std::process::Command::new(bulwark_bin())
        .args(["certs", "-dir"])
        .arg(dir.path().join("certs"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("bulwark certs");
    assert!(status.success());

    let locked = config(dir.path(), "locked", "");
    let mut p = Proc::start_env(dir.path(), "locked", &["server", "-config", &locked], &[]);
    // Where this machine may not lock memory the server refuses to start
    // and says how to go on; here it may (root or CAP_IPC_LOCK).
    let kb = locked_kb(p.pid());
    assert!(kb > 0, "a config-file server did not lock its memory");
    p.kill();

    let unlocked = config(dir.path(), "unlocked", "disable_mlock = true\n");
    let mut p = Proc::start_env(
        dir.path(),
        "unlocked",
        &["server", "-config", &unlocked],
        &[],
    );
    assert_eq!(locked_kb(p.pid()), 0, "disable_mlock = true locked memory");
    p.kill();

    let addr = format!("-dev-listen-address=127.0.0.1:{}", free_port());
    let p = Proc::start_env(dir.path(), "dev", &["server", "-dev", &addr], &[]);
    assert_eq!(locked_kb(p.pid()), 0, "-dev locked memory");
}
