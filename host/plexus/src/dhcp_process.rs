//! The DHCP servers of VM NICs as processes, the one owner of their lifecycle: serving
//! (`plexus dhcp serve`: a supervisor and the worker that serves), starting one detached
//! and stopping it (the plugin's ADD, CHECK and DEL), forgetting its files, and starting
//! again the servers a node lost (`plexus dhcp restore`).
//!
//! A supervisor holds its NIC's [`ServerLock`] for as long as it runs; a worker that dies
//! (killed, crashed) is started again from the state file, which holds the whole lease,
//! so the VM's renewals keep being answered for the pod's whole life. The worker dies
//! with its supervisor, so killing the supervisor stops the NIC's service entirely.

use std::fs::{self, File};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use plexus_dhcp::{
    Claim, DhcpError, Presence, ServerConfig, ServerLock, Stop, remove_lock_file, server_pid,
};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{info, warn};

use crate::state::StateLayout;

#[derive(Debug, thiserror::Error)]
pub enum DhcpProcessError {
    /// The state file or the lock beside it.
    #[error(transparent)]
    Dhcp(#[from] DhcpError),
    #[error("cannot find the plexus executable to run: {0}")]
    Executable(#[source] io::Error),
    #[error("cannot start the DHCP {role}: {source}")]
    Spawn {
        role: Role,
        #[source]
        source: io::Error,
    },
    #[error("cannot watch the DHCP {role}: {source}")]
    Watch {
        role: Role,
        #[source]
        source: io::Error,
    },
    #[error("the DHCP server for {} exited at start ({status}); its log says why", state.display())]
    ExitedAtStart { state: PathBuf, status: ExitStatus },
    #[error("the DHCP server for {} did not start within {timeout:?}", state.display())]
    StartTimedOut { state: PathBuf, timeout: Duration },
    #[error("the DHCP server {pid} of {} does not stop", state.display())]
    DoesNotStop { pid: u32, state: PathBuf },
    #[error("cannot handle signal {signal}: {source}")]
    Signal {
        signal: i32,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up stopping: {0}")]
    StopSetup(#[source] io::Error),
    #[error("{}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Which of a NIC's two processes an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The process the plugin starts, which holds the NIC's lock.
    Server,
    /// What the server runs to answer the VM, started again whenever it dies.
    Worker,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Server => "server",
            Role::Worker => "worker",
        })
    }
}

/// The pause before starting a worker again, so a worker that cannot start at all does
/// not spin.
const RESTART_DELAY: Duration = Duration::from_millis(200);
/// How long a new server gets to take its NIC's lock before starting it counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a starter or stopper looks at the lock.
const LOCK_POLL: Duration = Duration::from_millis(2);
/// How long a server gets to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a worker gets to stop on SIGTERM before its supervisor kills it.
const WORKER_STOP_GRACE: Duration = Duration::from_secs(1);

/// Serves the lease in `state`: the worker itself with `worker`, else its supervisor.
pub fn serve(state: &Path, worker: bool) -> Result<(), DhcpProcessError> {
    if worker {
        serve_worker(state)
    } else {
        supervise(state)
    }
}

/// What a supervisor waits for: it sleeps until one of these happens, so that it answers
/// SIGTERM (a DEL waiting on it) at once.
enum Event {
    /// SIGTERM or SIGINT: stop the worker, then end.
    Terminate,
    /// The worker ended, or can no longer be watched; it is not reaped yet, so its
    /// process id stays its own until the supervisor waits for it.
    WorkerExited,
}

/// Runs workers one after another until SIGTERM (passed on to the worker), or until the
/// NIC, its pod or its state file is gone. Exits at once if another process serves
/// `state` already: one NIC, one server.
fn supervise(state: &Path) -> Result<(), DhcpProcessError> {
    let _lock = match ServerLock::acquire(state)? {
        Claim::Acquired(lock) => lock,
        Claim::HeldBy(pid) => {
            info!(state = %state.display(), pid, "already served by another process");
            return Ok(());
        }
    };
    if let Err(error) = ServerConfig::load(state) {
        forget_if_deleted(state);
        return Err(error.into());
    }
    let (events, next_event) = mpsc::channel();
    forward_termination(events.clone())?;
    loop {
        let mut worker = start_worker(state)?;
        watch_worker(&worker, events.clone())?;
        let status = match next_event.recv() {
            Ok(Event::WorkerExited) => worker.wait().map_err(|source| DhcpProcessError::Watch {
                role: Role::Worker,
                source,
            })?,
            // The channel cannot close: this function holds a sender.
            Ok(Event::Terminate) | Err(_) => {
                stop_worker(&mut worker, &next_event);
                return Ok(());
            }
        };
        if status.success() {
            info!(state = %state.display(), "DHCP worker finished: the NIC or its pod is gone");
            return Ok(());
        }
        // A worker that cannot serve because its NIC went away must not be restarted
        // forever.
        match ServerConfig::load(state).map(|config| config.presence()) {
            Ok(Presence::Present) => {
                warn!(state = %state.display(), %status, "DHCP worker died; starting it again")
            }
            Ok(gone) => {
                info!(state = %state.display(), ?gone, "DHCP worker died and its NIC is gone");
                return Ok(());
            }
            Err(error) => {
                info!(state = %state.display(), %error, "DHCP worker died and its state is gone");
                forget_if_deleted(state);
                return Ok(());
            }
        }
        match next_event.recv_timeout(RESTART_DELAY) {
            Ok(Event::Terminate) => return Ok(()),
            Ok(Event::WorkerExited) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// Sends [`Event::Terminate`] for every SIGTERM and SIGINT, from a thread of its own.
fn forward_termination(events: Sender<Event>) -> Result<(), DhcpProcessError> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT]).map_err(|source| DhcpProcessError::Signal {
            signal: SIGTERM,
            source,
        })?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if events.send(Event::Terminate).is_err() {
                    return;
                }
            }
        })
        .map(drop)
        .map_err(|source| DhcpProcessError::Watch {
            role: Role::Server,
            source,
        })
}

/// Sends [`Event::WorkerExited`] once `worker` ended, from a thread of its own that
/// waits for it without reaping it (the supervisor does, with [`Child::wait`]).
fn watch_worker(worker: &Child, events: Sender<Event>) -> Result<(), DhcpProcessError> {
    // The pid_t the kernel gave, which std keeps as a u32.
    let pid = Pid::from_raw(worker.id() as i32);
    thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            let _ = waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT);
            let _ = events.send(Event::WorkerExited);
        })
        .map(drop)
        .map_err(|source| DhcpProcessError::Watch {
            role: Role::Worker,
            source,
        })
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

// `pre_exec`, to set the parent-death signal in the child.
#[allow(unsafe_code)]
fn start_worker(state: &Path) -> Result<Child, DhcpProcessError> {
    let supervisor = Pid::this();
    let mut command = plexus_command()?;
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
    command.spawn().map_err(|source| DhcpProcessError::Spawn {
        role: Role::Worker,
        source,
    })
}

/// SIGTERM, then SIGKILL if the worker has not ended within [`WORKER_STOP_GRACE`].
fn stop_worker(worker: &mut Child, events: &Receiver<Event>) {
    // Not reaped until the `wait` below, so the id is still the worker's.
    if let Ok(pid) = i32::try_from(worker.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + WORKER_STOP_GRACE;
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::WorkerExited) => break,
            // A second SIGTERM changes nothing.
            Ok(Event::Terminate) => {}
            Err(_) => {
                let _ = worker.kill();
                break;
            }
        }
    }
    let _ = worker.wait();
}

fn serve_worker(state: &Path) -> Result<(), DhcpProcessError> {
    let config = ServerConfig::load(state)?;
    let stop = Stop::new().map_err(DhcpProcessError::StopSetup)?;
    for signal in [SIGTERM, SIGINT] {
        let wake = stop
            .signal_fd()
            .try_clone_to_owned()
            .map_err(DhcpProcessError::StopSetup)?;
        signal_hook::low_level::pipe::register(signal, wake)
            .map_err(|source| DhcpProcessError::Signal { signal, source })?;
    }
    let stopped = plexus_dhcp::serve(&config, &stop)?;
    info!(state = %state.display(), ?stopped, "DHCP server stopped");
    Ok(())
}

/// This very binary, to run one of its DHCP commands.
fn plexus_command() -> Result<Command, DhcpProcessError> {
    let exe = std::env::current_exe().map_err(DhcpProcessError::Executable)?;
    Ok(Command::new(exe))
}

/// What [`start_detached`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// The server started now is this process.
    Now(u32),
    /// Another process served the state file already.
    Already(u32),
}

/// Starts `plexus dhcp serve --state STATE` detached into a session of its own, so that
/// it outlives the caller, and returns once it serves (holds the NIC's lock). Its stderr
/// (its log) is appended to `log_file`, or goes nowhere; it inherits no other descriptor
/// (what plexus's caller left open is close-on-exec from the start, see `fds`), so it
/// holds none of the caller's pipes or locks for the pod's life.
// `pre_exec`, to start a new session in the child.
#[allow(unsafe_code)]
pub fn start_detached(state: &Path, log_file: Option<&Path>) -> Result<Started, DhcpProcessError> {
    let mut command = plexus_command()?;
    command
        .args(["dhcp", "serve", "--state"])
        .arg(state)
        .env_remove("CNI_COMMAND")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file.map_or_else(Stdio::null, log_to));
    // SAFETY: setsid is async-signal-safe, as a pre_exec closure must be.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(io::Error::from));
    }
    let mut child = command.spawn().map_err(|source| DhcpProcessError::Spawn {
        role: Role::Server,
        source,
    })?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if server_pid(state)? == Some(child.id()) {
            return Ok(Started::Now(child.id()));
        }
        // Checked after the lock, so that a server that started and then ended by itself
        // is not taken for one that never started.
        let exited = child.try_wait().map_err(|source| DhcpProcessError::Watch {
            role: Role::Server,
            source,
        })?;
        if let Some(status) = exited {
            return match server_pid(state)? {
                Some(other) if status.success() => Ok(Started::Already(other)),
                _ => Err(DhcpProcessError::ExitedAtStart {
                    state: state.to_owned(),
                    status,
                }),
            };
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(DhcpProcessError::StartTimedOut {
                state: state.to_owned(),
                timeout: START_TIMEOUT,
            });
        }
        thread::sleep(LOCK_POLL);
    }
}

/// Stops whichever process serves `state` (and so its worker): SIGTERM, then SIGKILL
/// after a grace period. Nothing running is fine.
pub fn stop(state: &Path) -> Result<(), DhcpProcessError> {
    let Some(server) = server_pid(state)? else {
        return Ok(());
    };
    let does_not_stop = || DhcpProcessError::DoesNotStop {
        pid: server,
        state: state.to_owned(),
    };
    // A process id the kernel gave out fits; one that does not cannot be signalled.
    let pid = Pid::from_raw(i32::try_from(server).map_err(|_| does_not_stop())?);
    for (signal, grace) in [(Signal::SIGTERM, STOP_GRACE), (Signal::SIGKILL, STOP_GRACE)] {
        // ESRCH: it is exiting already; the lock says when it is gone.
        let _ = kill(pid, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if server_pid(state)? != Some(server) {
                return Ok(());
            }
            thread::sleep(LOCK_POLL);
        }
    }
    Err(does_not_stop())
}

/// Removes a stopped server's state file, then its lock file.
pub fn forget(state: &Path) -> Result<(), DhcpProcessError> {
    if let Err(error) = fs::remove_file(state)
        && error.kind() != io::ErrorKind::NotFound
    {
        warn!(state = %state.display(), %error, "cannot remove a DHCP state file");
    }
    remove_lock_file(state)?;
    Ok(())
}

/// Where a detached server's log goes: appended to `path`, or nowhere if it cannot be
/// opened (a server must not fail for want of a log).
fn log_to(path: &Path) -> Stdio {
    match File::options().create(true).append(true).open(path) {
        Ok(file) => Stdio::from(file),
        Err(error) => {
            warn!(log = %path.display(), %error, "cannot open the log for a DHCP server");
            Stdio::null()
        }
    }
}

/// What [`restore`] did for one state file.
#[derive(Debug)]
pub enum Restored {
    /// A server was started: this process.
    Started(u32),
    /// A server was running already: this process.
    AlreadyServed(u32),
    /// Not started: the NIC's pod namespace is gone.
    NetnsGone,
    /// Not started: the NIC's tap is gone from its pod.
    InterfaceGone,
    /// The state file could not be read, or the server could not be started.
    Failed(DhcpProcessError),
}

/// Starts a server for every state file under the layout's DHCP directory whose NIC is
/// still there and that nobody serves, and tells `report` about each file (with its
/// server's configuration when it could be read), in name order. What a node runs after
/// its processes were lost (a restart, an upgrade, a cgroup killed); running it again
/// starts nothing twice. Servers started log to `log_file`, or nowhere: never to the
/// caller's stderr, which a caller reading it to its end would never see end.
pub fn restore(
    layout: &StateLayout,
    log_file: Option<&Path>,
    mut report: impl FnMut(&Path, Option<&ServerConfig>, Restored),
) -> Result<(), DhcpProcessError> {
    let dir = layout.dhcp_dir();
    let mut states: Vec<_> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(DhcpProcessError::ReadDir { dir, source }),
    };
    states.sort();
    for state in &states {
        let config = match ServerConfig::load(state) {
            Ok(config) => config,
            Err(error) => {
                report(state, None, Restored::Failed(error.into()));
                continue;
            }
        };
        let outcome = match server_pid(state) {
            Err(error) => Restored::Failed(error.into()),
            Ok(Some(pid)) => Restored::AlreadyServed(pid),
            Ok(None) => match config.presence() {
                Presence::Present => match start_detached(state, log_file) {
                    Ok(Started::Now(pid)) => Restored::Started(pid),
                    Ok(Started::Already(pid)) => Restored::AlreadyServed(pid),
                    Err(error) => Restored::Failed(error),
                },
                Presence::NetnsGone => Restored::NetnsGone,
                Presence::InterfaceGone => Restored::InterfaceGone,
            },
        };
        report(state, Some(&config), outcome);
    }
    Ok(())
}
