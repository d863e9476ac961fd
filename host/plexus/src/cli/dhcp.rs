//! `plexus dhcp serve`: the DHCP server of one VM NIC, started detached by ADD and
//! stopped by DEL. It runs as a small supervisor and a worker that serves: a worker that
//! dies (killed, crashed) is started again from the state file, which holds the whole
//! lease, so the VM's renewals keep being answered for the pod's whole life.

use std::path::Path;
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use plexus_dhcp::{ServerConfig, Stop, serve};
use signal_hook::consts::{SIGINT, SIGTERM};
use tracing::{info, warn};

use super::CliResult;

/// How often the supervisor looks at its worker and at the stop signal.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);
/// The pause before starting a worker again, so a worker that cannot start at all does
/// not spin.
const RESTART_DELAY: Duration = Duration::from_millis(200);

/// Serves the lease in `state`: the worker itself with `worker`, else its supervisor.
pub fn serve_state(state: &Path, worker: bool) -> CliResult {
    if worker {
        serve_worker(state)
    } else {
        supervise(state)
    }
}

/// Runs workers one after another until SIGTERM (passed on to the worker) or until a
/// worker ends by itself because the NIC or its pod is gone.
fn supervise(state: &Path) -> CliResult {
    // Refuse a state file that cannot be served before detaching into the loop.
    ServerConfig::load(state).map_err(|err| err.to_string())?;
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
        warn!(state = %state.display(), %status, "DHCP worker died; starting it again");
        let resume = Instant::now() + RESTART_DELAY;
        while Instant::now() < resume && !terminate.load(Ordering::Relaxed) {
            thread::sleep(WATCH_INTERVAL);
        }
    }
}

fn start_worker(state: &Path) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    Command::new(exe)
        .args(["dhcp", "serve", "--worker", "--state"])
        .arg(state)
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
