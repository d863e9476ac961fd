//! The DHCP servers of VM NICs as processes: `plexus dhcp serve` (a supervisor and the
//! worker that serves), how the plugin starts one detached and stops one, and
//! `plexus dhcp restore`, which starts again the servers a node lost.
//!
//! A supervisor holds its NIC's [`ServerLock`] for as long as it runs; a worker that dies
//! (killed, crashed) is started again from the state file, which holds the whole lease,
//! so the VM's renewals keep being answered for the pod's whole life. The worker dies
//! with its supervisor, so killing the supervisor stops the NIC's service entirely.

use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plexus_dhcp::{
    Claim, Presence, ServerConfig, ServerLock, Stop, remove_lock_file, serve, server_pid,
};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{info, warn};

use super::CliResult;

/// How often the supervisor looks at its worker and at the stop signal.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);
/// The pause before starting a worker again, so a worker that cannot start at all does
/// not spin.
const RESTART_DELAY: Duration = Duration::from_millis(200);
/// How long a new server gets to take its NIC's lock before starting it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a starter or stopper looks at the lock.
const LOCK_POLL: Duration = Duration::from_millis(2);
/// How long a server gets to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Serves the lease in `state`: the worker itself with `worker`, else its supervisor.
pub fn serve_state(state: &Path, worker: bool) -> CliResult {
    if worker {
        serve_worker(state)
    } else {
        supervise(state)
    }
}

/// Runs workers one after another until SIGTERM (passed on to the worker), or until the
/// NIC, its pod or its state file is gone. Exits at once if another process serves
/// `state` already: one NIC, one server.
fn supervise(state: &Path) -> CliResult {
    let _lock = match ServerLock::acquire(state).map_err(|err| err.to_string())? {
        Claim::Acquired(lock) => lock,
        Claim::HeldBy(pid) => {
            info!(state = %state.display(), pid, "already served by another process");
            return Ok(ExitCode::SUCCESS);
        }
    };
    if let Err(error) = ServerConfig::load(state) {
        forget_if_deleted(state);
        return Err(error.to_string());
    }
    let terminate = Arc::new(AtomicBool::new(false));
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&terminate))
            .map_err(|err| format!("cannot handle signal {signal}: {err}"))?;
    }
    loop {
        let mut child = start_worker(state)?;
        let status = loop {
            if terminate.load(Ordering::Relaxed) {
                stop_worker(&mut child);
                return Ok(ExitCode::SUCCESS);
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => thread::sleep(WATCH_INTERVAL),
                Err(err) => return Err(format!("cannot watch the DHCP worker: {err}")),
            }
        };
        if status.success() {
            info!(state = %state.display(), "DHCP worker finished: the NIC or its pod is gone");
            return Ok(ExitCode::SUCCESS);
        }
        // A worker that cannot serve because its NIC went away must not be restarted
        // forever.
        match ServerConfig::load(state).map(|config| config.presence()) {
            Ok(Presence::Present) => {
                warn!(state = %state.display(), %status, "DHCP worker died; starting it again")
            }
            Ok(gone) => {
                info!(state = %state.display(), ?gone, "DHCP worker died and its NIC is gone");
                return Ok(ExitCode::SUCCESS);
            }
            Err(error) => {
                info!(state = %state.display(), %error, "DHCP worker died and its state is gone");
                forget_if_deleted(state);
                return Ok(ExitCode::SUCCESS);
            }
        }
        let resume = Instant::now() + RESTART_DELAY;
        while Instant::now() < resume && !terminate.load(Ordering::Relaxed) {
            thread::sleep(WATCH_INTERVAL);
        }
    }
}

/// Removes the lock file of a state file that was deleted (DEL), while still holding the
/// lock, so no lock file outlives its state.
fn forget_if_deleted(state: &Path) {
    if !state.exists()
        && let Err(error) = remove_lock_file(state)
    {
        warn!(%error, "cannot remove a DHCP lock file");
    }
}

fn start_worker(state: &Path) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    let supervisor = Pid::this();
    let mut command = Command::new(exe);
    command
        .args(["dhcp", "serve", "--worker", "--state"])
        .arg(state);
    // SAFETY: prctl and getppid are async-signal-safe, as a pre_exec closure must be.
    unsafe {
        command.pre_exec(move || {
            // The worker must not outlive its supervisor (killed with -9, say): a server
            // started again later would otherwise answer beside an orphan.
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The supervisor may have died before the line above took effect.
            if nix::unistd::getppid() != supervisor {
                return Err(io::Error::other("the DHCP supervisor is gone"));
            }
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|err| format!("cannot start the DHCP worker: {err}"))
}

/// SIGTERM, then SIGKILL if the worker has not gone within a second.
fn stop_worker(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn serve_worker(state: &Path) -> CliResult {
    let config = ServerConfig::load(state).map_err(|err| err.to_string())?;
    let stop = Stop::new().map_err(|err| format!("cannot set up stopping: {err}"))?;
    for signal in [SIGTERM, SIGINT] {
        let wake = stop
            .signal_fd()
            .try_clone_to_owned()
            .map_err(|err| format!("cannot set up stopping: {err}"))?;
        signal_hook::low_level::pipe::register(signal, wake)
            .map_err(|err| format!("cannot handle signal {signal}: {err}"))?;
    }
    let stopped = serve(&config, &stop).map_err(|err| err.to_string())?;
    info!(state = %state.display(), ?stopped, "DHCP server stopped");
    Ok(ExitCode::SUCCESS)
}

/// What [`start_detached`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Started {
    /// The server started now is this process.
    Now(u32),
    /// Another process served the state file already.
    Already(u32),
}

/// Starts `plexus dhcp serve --state STATE` detached into a session of its own, so that
/// it outlives the caller, and returns once it serves (holds the NIC's lock). Its stderr
/// (its log) goes to `log`; it inherits no other descriptor (what plexus's caller left
/// open is close-on-exec from the start, see `fds`), so it holds none of the caller's
/// pipes or locks for the pod's life.
pub(crate) fn start_detached(state: &Path, log: Stdio) -> Result<Started, String> {
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    let mut command = Command::new(exe);
    command
        .args(["dhcp", "serve", "--state"])
        .arg(state)
        .env_remove("CNI_COMMAND")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe, as a pre_exec closure must be.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start the DHCP server: {err}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let holder = server_pid(state).map_err(|err| err.to_string())?;
        if holder == Some(child.id()) {
            return Ok(Started::Now(child.id()));
        }
        // Checked after the lock, so that a server that started and then ended by itself
        // is not taken for one that never started.
        if let Some(status) = child.try_wait().map_err(|err| err.to_string())? {
            return match server_pid(state).map_err(|err| err.to_string())? {
                Some(other) if status.success() => Ok(Started::Already(other)),
                _ => Err(format!(
                    "the DHCP server for {} exited at start ({status}); its log says why",
                    state.display()
                )),
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the DHCP server for {} did not start within {START_TIMEOUT:?}",
                state.display()
            ));
        }
        thread::sleep(LOCK_POLL);
    }
}

/// Stops whichever process serves `state` (and so its worker): SIGTERM, then SIGKILL
/// after a grace period. Nothing running is fine.
pub(crate) fn stop(state: &Path) -> Result<(), String> {
    let holder = || server_pid(state).map_err(|err| err.to_string());
    let Some(server) = holder()? else {
        return Ok(());
    };
    let pid = Pid::from_raw(i32::try_from(server).map_err(|err| err.to_string())?);
    for (signal, grace) in [(Signal::SIGTERM, STOP_GRACE), (Signal::SIGKILL, STOP_GRACE)] {
        // ESRCH: it is exiting already; the lock says when it is gone.
        let _ = kill(pid, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if holder()? != Some(server) {
                return Ok(());
            }
            thread::sleep(LOCK_POLL);
        }
    }
    Err(format!(
        "the DHCP server {pid} of {} does not stop",
        state.display()
    ))
}

/// Where a detached server's log goes: appended to `path`, or nowhere if it cannot be
/// opened (a server must not fail for want of a log).
pub(crate) fn log_to(path: &Path) -> Stdio {
    match File::options().create(true).append(true).open(path) {
        Ok(file) => Stdio::from(file),
        Err(error) => {
            warn!(log = %path.display(), %error, "cannot open the log for a DHCP server");
            Stdio::null()
        }
    }
}

/// `plexus dhcp restore`: starts a server for every state file under `state_dir/dhcp`
/// whose NIC is still there and that nobody serves, and reports each file on one line.
/// What a node runs after its processes were lost (a restart, an upgrade, a cgroup
/// killed); running it again starts nothing twice.
pub fn restore(state_dir: &Path, log_file: Option<&Path>) -> CliResult {
    let dir = state_dir.join("dhcp");
    let mut states: Vec<_> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(format!("{}: {error}", dir.display())),
    };
    states.sort();
    let (mut started, mut running, mut skipped, mut failed) = (0, 0, 0, 0);
    for state in &states {
        let file = state
            .file_name()
            .map(|name| name.to_string_lossy())
            .unwrap_or_default();
        let config = match ServerConfig::load(state) {
            Ok(config) => config,
            Err(error) => {
                println!("{file}: failed: {error}");
                failed += 1;
                continue;
            }
        };
        let nic = format!(
            "{file} ({} in {})",
            config.interface,
            config.netns.display()
        );
        let outcome = match server_pid(state) {
            Err(error) => Err(error.to_string()),
            Ok(Some(pid)) => Ok(Started::Already(pid)),
            Ok(None) => match config.presence() {
                Presence::Present => {
                    // Not this command's own stderr: a pipe a caller reads to its end
                    // would never end while the servers run.
                    let log = log_file.map_or_else(Stdio::null, log_to);
                    start_detached(state, log)
                }
                Presence::NetnsGone => {
                    println!("{nic}: skipped: the namespace is gone");
                    skipped += 1;
                    continue;
                }
                Presence::InterfaceGone => {
                    println!("{nic}: skipped: the interface is gone");
                    skipped += 1;
                    continue;
                }
            },
        };
        match outcome {
            Ok(Started::Now(pid)) => {
                println!("{nic}: started (pid {pid})");
                started += 1;
            }
            Ok(Started::Already(pid)) => {
                println!("{nic}: already served (pid {pid})");
                running += 1;
            }
            Err(error) => {
                println!("{nic}: failed: {error}");
                failed += 1;
            }
        }
    }
    println!("{started} started, {running} already served, {skipped} skipped, {failed} failed");
    if failed > 0 {
        return Err(format!(
            "{failed} DHCP server(s) could not be restored from {}",
            dir.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
