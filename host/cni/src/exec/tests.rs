use super::*;
use crate::testutil::{FakePlugins, REAL_PLUGINS, capture};

fn request(path: &[PathBuf]) -> PluginRequest<'_> {
    PluginRequest {
        command: Command::Add,
        container_id: Some("c1"),
        netns: Some("/run/netns/pod"),
        ifname: Some("eth0"),
        args: &[],
        runner: Runner::new(path),
    }
}

#[test]
fn plugin_type_rules() {
    for ok in ["bridge", "host-local", "a.b", "x..y"] {
        assert_eq!(validate_plugin_type(ok), Ok(()), "{ok}");
    }
    for (bad, why) in [
        ("", "empty"),
        (".", "not a file name"),
        ("..", "not a file name"),
        ("../bin/sh", "contains '/'"),
        ("/usr/bin/true", "contains '/'"),
        ("a\0b", "contains '\\0'"),
    ] {
        let err = validate_plugin_type(bad).unwrap_err();
        assert!(err.contains(why), "{bad:?}: {err}");
    }
}

#[test]
fn finds_the_first_match_in_path_order() {
    let fakes = FakePlugins::new();
    let shadow = fakes.plugin("bridge", "exit 0");
    assert_eq!(find_plugin("bridge", &fakes.path()).unwrap(), shadow);
    let real = [PathBuf::from(REAL_PLUGINS), fakes.bin()];
    assert_eq!(
        find_plugin("bridge", &real).unwrap(),
        PathBuf::from(REAL_PLUGINS).join("bridge")
    );
}

#[test]
fn skips_directories_and_reports_the_search() {
    let fakes = FakePlugins::new();
    std::fs::create_dir(fakes.bin().join("calico")).unwrap();
    let err = find_plugin("calico", &fakes.path()).unwrap_err();
    assert_eq!(err.plugin, "calico");
    assert_eq!(
        err.to_string(),
        format!(
            "plugin \"calico\": not found in CNI path {}:{REAL_PLUGINS}",
            fakes.bin().display()
        )
    );
    assert_eq!(err.code(), None);
    assert_eq!(CniError::from(&err).code, code::TRY_AGAIN_LATER);

    let err = find_plugin("bridge", &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin \"bridge\": not found in CNI path (the CNI path is empty)"
    );
}

#[test]
fn refuses_paths_as_types() {
    let err = find_plugin("../../bin/sh", &[PathBuf::from(REAL_PLUGINS)]).unwrap_err();
    assert!(matches!(err.kind, DelegateErrorKind::InvalidRequest { .. }));
    assert_eq!(CniError::from(&err).code, code::INVALID_CONFIG);
}

#[test]
fn environment_drops_stale_cni_variables() {
    let parent = [
        ("PATH", "/usr/bin"),
        ("CNI_NETNS", "/run/netns/stale"),
        ("CNI_ARGS", "STALE=1"),
        ("CNI_FOO", "x"),
        ("HOME", "/root"),
    ]
    .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    let path = [PathBuf::from("/a"), PathBuf::from("/b")];
    let args = [("K8S_POD_NAME".to_owned(), "web".to_owned())];
    let req = PluginRequest {
        command: Command::Del,
        container_id: Some("c1"),
        netns: None,
        ifname: Some("eth0"),
        args: &args,
        runner: Runner::new(&path),
    };
    let mut env: Vec<(String, String)> = plugin_env(parent, &req)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
        .collect();
    env.sort();
    let expected: Vec<(String, String)> = [
        ("CNI_ARGS", "K8S_POD_NAME=web"),
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/a:/b"),
        ("HOME", "/root"),
        ("PATH", "/usr/bin"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    assert_eq!(env, expected);
}

#[test]
fn global_requests_set_only_command_and_path() {
    let path = [PathBuf::from("/a")];
    let env = plugin_env([], &PluginRequest::global(Command::Gc, Runner::new(&path))).unwrap();
    let keys: Vec<_> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
    assert_eq!(keys, ["CNI_COMMAND", "CNI_PATH"]);
}

#[test]
fn unrepresentable_cni_path_is_an_invalid_request() {
    let fakes = FakePlugins::new();
    fakes.plugin("ok", "exit 0");
    let path = [fakes.bin(), PathBuf::from("/has:colon")];
    let err = exec_plugin("ok", &request(&path), b"{}").unwrap_err();
    assert!(
        matches!(&err.kind, DelegateErrorKind::InvalidRequest { reason } if reason.contains("CNI_PATH")),
        "{err}"
    );
}

#[test]
fn passes_stdin_and_environment_and_returns_stdout() {
    let fakes = FakePlugins::new();
    fakes.plugin("echo", "cat \"$OUT/echo.$CNI_COMMAND.json\"");
    let path = fakes.path();
    let out = exec_plugin("echo", &request(&path), b"{\"hello\":1}").unwrap();
    assert_eq!(out, b"{\"hello\":1}");
    let env = fakes.saved("echo", "ADD", "env").unwrap();
    assert_eq!(
        env,
        format!(
            "CNI_COMMAND=ADD\nCNI_CONTAINERID=c1\nCNI_IFNAME=eth0\nCNI_NETNS=/run/netns/pod\nCNI_PATH={}:{REAL_PLUGINS}\n",
            fakes.bin().display()
        )
    );
}

#[test]
fn plugin_errors_keep_their_code_and_message() {
    let fakes = FakePlugins::new();
    fakes.plugin(
        "bridge",
        r#"echo '{"code": 11, "msg": "failed to allocate for range 0: no IP addresses available in range set", "details": "10.0.0.2-10.0.0.2"}'; exit 1"#,
    );
    let path = fakes.path();
    let err = exec_plugin("bridge", &request(&path), b"{}").unwrap_err();
    assert_eq!(err.code(), Some(11));
    assert_eq!(
        err.to_string(),
        "plugin \"bridge\": failed to allocate for range 0: no IP addresses available in range set: 10.0.0.2-10.0.0.2 (code 11)"
    );
    let cni = CniError::from(&err);
    assert_eq!(
        cni,
        CniError::new(
            11,
            "plugin \"bridge\": failed to allocate for range 0: no IP addresses available in range set"
        )
        .with_details("10.0.0.2-10.0.0.2")
    );
}

#[test]
fn unparsable_failures_include_stdout_and_stderr_tail() {
    let fakes = FakePlugins::new();
    fakes.plugin(
        "broken",
        "i=0; while [ $i -lt 15 ]; do echo \"log line $i\" >&2; i=$((i+1)); done\necho 'panic: nil map'\nexit 2",
    );
    let path = fakes.path();
    let err = exec_plugin("broken", &request(&path), b"{}").unwrap_err();
    let DelegateErrorKind::Failed {
        status,
        stdout,
        stderr_tail,
    } = &err.kind
    else {
        panic!("{err:?}");
    };
    assert_eq!(status.code(), Some(2));
    assert_eq!(stdout, "panic: nil map");
    let expected_tail: Vec<String> = (5..15).map(|i| format!("log line {i}")).collect();
    assert_eq!(stderr_tail, &expected_tail.join("\n"));
    let msg = err.to_string();
    assert!(
        msg.starts_with("plugin \"broken\": failed (exit status: 2) without a CNI error on stdout; stdout: panic: nil map; stderr: log line 5\n"),
        "{msg}"
    );
    assert_eq!(err.code(), None);
    assert_eq!(CniError::from(&err).code, code::INTERNAL);
}

#[test]
fn silent_failures_and_signals_are_reported() {
    let fakes = FakePlugins::new();
    fakes.plugin("silent", "exit 3");
    fakes.plugin("killed", "kill -9 $$");
    let path = fakes.path();
    let err = exec_plugin("silent", &request(&path), b"{}").unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin \"silent\": failed (exit status: 3) without a CNI error on stdout"
    );
    let err = exec_plugin("killed", &request(&path), b"{}").unwrap_err();
    assert!(err.to_string().contains("signal: 9"), "{err}");
}

#[test]
fn long_stdout_is_cut_in_the_error() {
    let fakes = FakePlugins::new();
    fakes.plugin("chatty", "head -c 5000 /dev/zero | tr '\\0' 'x'; exit 1");
    let path = fakes.path();
    let err = exec_plugin("chatty", &request(&path), b"{}").unwrap_err();
    let DelegateErrorKind::Failed { stdout, .. } = &err.kind else {
        panic!("{err:?}");
    };
    assert_eq!(stdout.len(), STDOUT_EXCERPT_BYTES + 3);
    assert!(stdout.ends_with("x..."));
}

#[test]
fn large_stdio_does_not_deadlock() {
    let fakes = FakePlugins::new();
    // 4 MiB each way, far beyond a pipe buffer: the plugin writes stderr
    // and stdout before reading stdin, which only concurrent servicing survives.
    fakes.plugin(
        "flood",
        "head -c 4194304 /dev/zero | tr '\\0' 'e' >&2\nhead -c 4194304 /dev/zero | tr '\\0' 'o'",
    );
    let path = fakes.path();
    let input = vec![b' '; 4 << 20];
    let out = exec_plugin("flood", &request(&path), &input).unwrap();
    assert_eq!(out.len(), 4 << 20);
    let saved = std::fs::metadata(fakes.out().join("flood.ADD.json")).unwrap();
    assert_eq!(saved.len(), 4 << 20);
}

#[test]
fn a_plugin_may_ignore_its_stdin() {
    let fakes = FakePlugins::new();
    let path = fakes.bin().join("deaf");
    std::fs::write(&path, "#!/bin/sh\necho ok\n").unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dirs = fakes.path();
    let input = vec![b' '; 4 << 20];
    assert_eq!(
        exec_plugin("deaf", &request(&dirs), &input).unwrap(),
        b"ok\n"
    );
}

#[test]
fn unexecutable_binaries_fail_to_spawn() {
    let fakes = FakePlugins::new();
    std::fs::write(fakes.bin().join("noexec"), "#!/bin/sh\n").unwrap();
    let path = fakes.path();
    let err = exec_plugin("noexec", &request(&path), b"{}").unwrap_err();
    let DelegateErrorKind::Spawn { path: bin, error } = &err.kind else {
        panic!("{err:?}");
    };
    assert_eq!(bin, &fakes.bin().join("noexec"));
    assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(CniError::from(&err).code, code::IO_FAILURE);
    assert!(
        err.to_string()
            .starts_with("plugin \"noexec\": cannot execute ")
    );
}

#[test]
fn stderr_goes_to_tracing_not_stdout() {
    let fakes = FakePlugins::new();
    fakes.plugin(
        "noisy",
        "echo 'first line' >&2\necho >&2\necho 'second line' >&2\necho '{}'",
    );
    let path = fakes.path();
    let (out, events) = capture(|| exec_plugin("noisy", &request(&path), b"{}"));
    assert_eq!(out.unwrap(), b"{}\n");
    let delegate: Vec<&String> = events
        .iter()
        .filter(|(target, _)| target == "delegate")
        .map(|(_, fields)| fields)
        .collect();
    assert_eq!(delegate.len(), 2, "{events:?}");
    assert!(
        delegate[0].contains("message=first line"),
        "{}",
        delegate[0]
    );
    assert!(delegate[0].contains("plugin=noisy"), "{}", delegate[0]);
    assert!(delegate[1].contains("message=second line"));
}

/// Whether `pid` is a running process (a zombie has finished running).
fn is_running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// Polls `condition` for up to `limit`.
fn eventually(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

#[test]
fn a_hung_plugin_and_everything_it_started_are_killed_at_the_timeout() {
    let fakes = FakePlugins::new();
    // The plugin starts a helper of its own, as a plugin running its IPAM does, and
    // both hang.
    fakes.plugin(
        "hung",
        "sleep 600 &\necho $! > \"$OUT/helper.pid\"\necho $$ > \"$OUT/plugin.pid\"\nsleep 600",
    );
    let path = fakes.path();
    let mut req = request(&path);
    req.runner = Runner::new(&path).with_timeout(Duration::from_secs(3));
    let started = Instant::now();
    let err = exec_plugin("hung", &req, b"{}").unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err.kind, DelegateErrorKind::TimedOut { after } if after == Duration::from_secs(3)),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin \"hung\": timed out after 3 s without finishing; it was killed with everything it started"
    );
    assert_eq!(CniError::from(&err).code, code::TRY_AGAIN_LATER);
    // Generous: the machine may be busy, but nothing near the helpers' 600 s.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    for started in ["plugin.pid", "helper.pid"] {
        let pid = std::fs::read_to_string(fakes.out().join(started)).unwrap();
        let pid = pid.trim();
        assert!(
            eventually(Duration::from_secs(10), || !is_running(pid)),
            "{started} ({pid}) still runs"
        );
    }
}

#[test]
fn a_plugin_that_prints_without_end_is_cut_off() {
    let fakes = FakePlugins::new();
    fakes.plugin("endless", "yes '{}'");
    let path = fakes.path();
    let err = exec_plugin("endless", &request(&path), b"{}").unwrap_err();
    assert!(
        matches!(err.kind, DelegateErrorKind::OutputTooLarge { limit } if limit == MAX_OUTPUT_BYTES),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "plugin \"endless\": printed more than 16 MiB on stdout; it was killed"
    );
    assert_eq!(CniError::from(&err).code, code::DECODE);
}

#[test]
fn output_up_to_the_bound_is_accepted() {
    let fakes = FakePlugins::new();
    fakes.plugin(
        "big",
        &format!("head -c {MAX_OUTPUT_BYTES} /dev/zero | tr '\\0' 'o'"),
    );
    let path = fakes.path();
    let out = exec_plugin("big", &request(&path), b"{}").unwrap();
    assert_eq!(out.len(), MAX_OUTPUT_BYTES);
}

#[test]
fn a_very_long_stderr_line_is_logged_cut() {
    let fakes = FakePlugins::new();
    // One 8 MiB line with no newline, then a failure.
    fakes.plugin(
        "longline",
        "head -c 8388608 /dev/zero | tr '\\0' 'x' >&2\nexit 1",
    );
    let path = fakes.path();
    let err = exec_plugin("longline", &request(&path), b"{}").unwrap_err();
    let DelegateErrorKind::Failed { stderr_tail, .. } = &err.kind else {
        panic!("{err:?}");
    };
    assert_eq!(stderr_tail.len(), MAX_STDERR_LINE_BYTES);
}
