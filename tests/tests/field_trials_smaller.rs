//! Smaller things field trials found (issue 10, point 8), each as a user meets it: a VM
//! pod's DHCP servers holding on to what the caller of ADD had open (its pipe, its lock),
//! a `;` inside a `K8S_ANNOT` annotation, and colour codes in logs that no terminal
//! shows.

use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use plexus_plumbing::testing::poll_until;
use plexus_tests::{Bench, pod_args, result_addresses, run_plugin};
use serde_json::json;

/// Long enough for a loaded machine; what is waited for comes in well under a second.
const TIMEOUT: Duration = Duration::from_secs(20);

/// `flock(2)` on `file`: `Ok` once held, the error (EWOULDBLOCK with `LOCK_NB`) if not.
fn flock(file: &File, operation: i32) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor the File owns.
    match unsafe { libc::flock(file.as_raw_fd(), operation) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// A pipe, both ends close-on-exec in this process (other tests' children must not get
/// them): (read, write).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    let made = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(made, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Whether the pipe's read end reaches its end (every write end closed) within `timeout`.
fn pipe_ends(read: OwnedFd, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: read.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one pollfd, valid for the call.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    let mut rest = Vec::new();
    ready > 0 && File::from(read).read_to_end(&mut rest).is_ok() && rest.is_empty()
}

/// Whether `pid` is a DHCP worker (as opposed to its supervisor).
fn is_worker(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("\0--worker\0"))
}

/// Each open descriptor of `pid` with what it refers to (`/proc/PID/fd/N`'s target).
fn descriptors(pid: u32) -> Vec<(RawFd, String)> {
    let mut found: Vec<(RawFd, String)> = fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            Some((fd, target.display().to_string()))
        })
        .collect();
    found.sort();
    found
}

/// The caller a runtime script is: it holds a lock on `lock` and hands plexus a pipe
/// (`write`) it reads to the end afterwards, both inherited without close-on-exec as a
/// shell's `exec 9>lock; flock 9` and `$(...)` leave them.
#[test]
fn a_vm_pods_dhcp_servers_keep_nothing_the_caller_of_add_had_open() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({"vm": {"mode": "annotation"}}));
    let args = pod_args(
        "vms",
        "vm-0",
        &json!({"cni": "calico,flannel", "plexus.io/vm": "true"}),
    );
    let netns = bench.pod.path().display().to_string();
    let vars = [
        ("CNI_CONTAINERID", "vm1"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", args.as_str()),
    ];
    let lock_path = bench.dir.path().join("runtime.lock");
    let lock = File::create(&lock_path).unwrap();
    flock(&lock, libc::LOCK_EX).unwrap();
    let (read, write) = pipe();
    let inherited = [lock.as_raw_fd(), write.as_raw_fd()];
    let callers_pipe = fs::read_link(format!("/proc/self/fd/{}", read.as_raw_fd())).unwrap();

    let mut add = bench.plugin_command("ADD", &vars);
    // SAFETY: fcntl is async-signal-safe, as a pre_exec closure must be.
    unsafe {
        add.pre_exec(move || {
            for fd in inherited {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let result = run_plugin(add, &config).ok();
    assert_eq!(result_addresses(&result).len(), 2, "{result}");
    // Workers too: a supervisor starts its NIC's worker after ADD returned.
    let workers_started = poll_until(TIMEOUT, || {
        let processes = bench.dhcp_processes();
        processes.len() == 4 && processes.iter().filter(|&&pid| is_worker(pid)).count() == 2
    });
    let servers = bench.dhcp_processes();

    // The caller is done with both: it closes its own copies.
    drop((write, lock));
    let ended = pipe_ends(read, TIMEOUT);
    // Its DEL takes the same lock; without LOCK_NB a held lock would wait forever.
    let del_lock = File::options().write(true).open(&lock_path).unwrap();
    let locked = flock(&del_lock, libc::LOCK_EX | libc::LOCK_NB);
    let held: Vec<(u32, Vec<(RawFd, String)>)> =
        servers.iter().map(|&pid| (pid, descriptors(pid))).collect();
    // Torn down before anything is asserted, so a failure leaves no server behind.
    bench.invoke("DEL", "vm1", "eth0", &args, &config).ok();
    bench.assert_clean();
    bench.assert_no_vm_leftovers();

    assert!(
        workers_started,
        "a supervisor and a worker per NIC: {servers:?}"
    );
    assert!(
        ended,
        "the caller's pipe never ended: {held:#?} hold it after ADD returned"
    );
    assert!(
        locked.is_ok(),
        "the caller's DEL cannot take its own lock ({locked:?}): {held:#?}"
    );
    let log = bench.log_file().display().to_string();
    let dhcp_state = bench.state_dir().join("dhcp").display().to_string();
    // As /proc shows it: /var/run is a link to /run.
    let pod_netns = fs::canonicalize(bench.pod.path())
        .unwrap()
        .display()
        .to_string();
    for (pid, fds) in &held {
        for (fd, target) in fds {
            let legitimate = match fd {
                0 | 1 => target == "/dev/null",
                2 => *target == log,
                // Their own: a supervisor its NIC's lock; a worker its packet socket,
                // its stop pipe (both ends, and the signal handlers' copies) and, while
                // it opens the socket in there, the pod's namespace.
                _ => {
                    (target.starts_with(&dhcp_state) && target.ends_with(".lock"))
                        || *target == pod_netns
                        || target.starts_with("socket:")
                        || (target.starts_with("pipe:") && Path::new(target) != callers_pipe)
                }
            };
            assert!(
                legitimate,
                "DHCP process {pid} holds {fd} -> {target}: {fds:?}"
            );
        }
    }
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("DHCP"),
        "the servers log there: {log_text}"
    );
    assert!(
        !log_text.contains("\x1b["),
        "colour codes in a log file: {log_text}"
    );
}

/// An annotation's value is any text, `;` included, though `CNI_ARGS` separates its pairs
/// with `;`: `K8S_ANNOT`'s JSON object is read whole.
#[test]
fn an_annotation_with_a_semicolon_reaches_the_selection() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let config = bench.config("1.1.0", json!({}));
    let args = pod_args(
        "default",
        "web",
        &json!({"cni": "flannel", "example.com/note": "a;b", "k8s.v1.cni.cncf.io/networks": "[]"}),
    );

    let result = bench.invoke("ADD", "c1", "eth0", &args, &config).ok();
    let addresses = result_addresses(&result);
    assert_eq!(addresses.len(), 1, "flannel only, as annotated: {result}");
    assert!(addresses[0].starts_with("10.12.0."), "{addresses:?}");

    bench.invoke("DEL", "c1", "eth0", &args, &config).ok();
    bench.assert_clean();
}

/// A runtime (kubelet, containerd, podman) keeps a plugin's stderr as text: colour codes
/// are for a terminal only.
#[test]
fn logs_on_stderr_carry_no_colour_codes_unless_it_is_a_terminal() {
    let bench = Bench::new();
    bench.write_two_networks("1.0.0");
    let mut config = bench.config("1.1.0", json!({}));
    config.as_object_mut().unwrap().remove("logFile");

    let answer = run_plugin(bench.plugin_command("STATUS", &[]), &config);

    assert!(answer.success, "{answer:?}");
    assert!(
        answer.stderr.contains("invoked"),
        "logLevel debug logs the invocation on stderr: {:?}",
        answer.stderr
    );
    assert!(
        !answer.stderr.contains("\x1b["),
        "colour codes on a piped stderr: {:?}",
        answer.stderr
    );
}
