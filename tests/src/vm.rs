//! The real-VM bench: a tiny QEMU guest (Debian's cloud kernel, a busybox initramfs made
//! by `tests/vm/build-image`) booted inside a pod's network namespace on the taps of its
//! VM NICs. The guest configures every NIC by DHCP, reports what it got on the serial
//! console, pings its primary gateway and powers off; [`boot`] returns that console.
//!
//! What the guest prints, one line each (see the script):
//! `PLEXUS-NIC eth0 mac=… ip=10.1.0.5/24 router=10.1.0.1 mtu=1500 routes=DEST/LEN,GW;…`,
//! `PLEXUS-NIC-FAIL eth1`, `PLEXUS-PING ok|fail GATEWAY` (or `none`), `PLEXUS-READY`.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The QEMU binary the guest runs under.
pub const QEMU: &str = "qemu-system-x86_64";

/// The line the guest prints once it has reported everything.
const READY: &str = "PLEXUS-READY";

/// The guest's kernel and initramfs.
#[derive(Debug)]
pub struct Image {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The image, built (or found in the cache `target/vm-image`) once per test process.
/// Panics with the script's output if it cannot be built, and if QEMU is missing: a VM
/// test must fail, not skip, on a machine that cannot run it.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let qemu = Command::new(QEMU).arg("--version").output();
        assert!(
            qemu.is_ok_and(|output| output.status.success()),
            "{QEMU} is missing: apt-get install qemu-system-x86"
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/build-image");
        let cache = target_dir().join("vm-image");
        let output = Command::new("bash")
            .arg(&script)
            .arg(&cache)
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", script.display()));
        assert!(
            output.status.success(),
            "{} failed:\n{}{}",
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Image {
            kernel: cache.join("vmlinuz"),
            initrd: cache.join("initramfs.cpio.gz"),
        }
    })
}

/// Cargo's target directory, from this test's path (`target/<profile>/deps/<test>`), so
/// the image cache survives `cargo clean -p` and is shared by every test binary.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    exe.ancestors()
        .nth(3)
        .map(Path::to_owned)
        .expect("the test runs from a cargo target directory")
}

/// Boots the guest inside the network namespace at `netns` (a file such as
/// `/var/run/netns/NAME`), with one virtio NIC per `(tap, mac)` in that order (the guest
/// names them eth0, eth1, … in the same order), and reads its serial console until it is
/// ready. Panics, printing the console and QEMU's errors, if QEMU exits first or
/// `timeout` passes. QEMU is killed when the returned console is dropped.
pub fn boot(netns: impl AsRef<Path>, taps: &[(&str, &str)], timeout: Duration) -> Console {
    let image = image();
    let netns_path = netns.as_ref().display();
    let netns = format!("--net={netns_path}");
    for (tap, _) in taps {
        // QEMU would create a missing tap itself, and the VM would boot on a NIC that
        // leads nowhere: a wrong name or namespace must fail here instead.
        let found = Command::new("nsenter")
            .args([
                netns.as_str(),
                "--",
                "ip",
                "-d",
                "-o",
                "link",
                "show",
                "dev",
                tap,
            ])
            .output()
            .unwrap_or_else(|err| panic!("cannot run nsenter: {err}"));
        let details = String::from_utf8_lossy(&found.stdout);
        assert!(
            found.status.success() && details.contains("tun type tap"),
            "no tap {tap} in the namespace {netns_path}: {details}{}",
            String::from_utf8_lossy(&found.stderr)
        );
    }
    let mut command = Command::new("nsenter");
    command
        .arg(&netns)
        .args([
            "--",
            QEMU,
            "-accel",
            "tcg",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"]);
    if taps.is_empty() {
        // Otherwise QEMU adds a NIC of its own (user networking).
        command.args(["-nic", "none"]);
    }
    for (index, (tap, mac)) in taps.iter().enumerate() {
        command
            .arg("-netdev")
            .arg(format!(
                "tap,id=n{index},ifname={tap},script=no,downscript=no"
            ))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n{index},mac={mac}"));
    }
    // With -nographic the serial console is QEMU's stdio; stdin stays closed so that
    // nothing typed reaches the guest or the QEMU monitor.
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());

    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {command:?}: {err}"));
    let stdout = child.stdout.take().expect("QEMU's stdout is piped");
    let stderr = child.stderr.take().expect("QEMU's stderr is piped");
    let mut console = Console {
        output: Output::default(),
        ready_after: Duration::ZERO,
        qemu: Qemu(child),
    };
    let (chunks, arrivals) = mpsc::channel();
    collect(stdout, &console.output.stdout, Some(chunks));
    console.output.stderr_reader = Some(collect(stderr, &console.output.stderr, None));

    let deadline = started + timeout;
    loop {
        if console.output.stdout_text().contains(&format!("{READY}\n")) {
            console.ready_after = started.elapsed();
            return console;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match arrivals.recv_timeout(left) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                panic!("the VM did not get ready within {timeout:?}\n{console}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = console.qemu.0.wait();
                // QEMU's last words explain why it exited.
                if let Some(reader) = console.output.stderr_reader.take() {
                    let _ = reader.join();
                }
                panic!("QEMU exited ({status:?}) before the VM was ready\n{console}")
            }
        }
    }
}

/// What the guest said, and the QEMU it runs in (killed on drop).
pub struct Console {
    output: Output,
    /// From starting QEMU to the guest's `PLEXUS-READY`.
    pub ready_after: Duration,
    qemu: Qemu,
}

impl Console {
    /// The serial console so far (line ends normalised to `\n`).
    pub fn text(&self) -> String {
        self.output.stdout_text()
    }

    /// Every NIC that got a lease, as the guest reported it.
    pub fn nics(&self) -> Vec<GuestNic> {
        self.text()
            .lines()
            .filter_map(|line| line.strip_prefix("PLEXUS-NIC "))
            .filter_map(GuestNic::parse)
            .collect()
    }

    /// The guest NIC `ifname`; panics, printing the console, if it got no lease.
    pub fn nic(&self, ifname: &str) -> GuestNic {
        self.nics()
            .into_iter()
            .find(|nic| nic.ifname == ifname)
            .unwrap_or_else(|| panic!("the VM reported no lease on {ifname}\n{self}"))
    }

    /// The guest's ping of its primary gateway: `Some((true, gateway))` if it answered,
    /// `Some((false, gateway))` if not, `None` if no NIC got a router.
    pub fn ping(&self) -> Option<(bool, String)> {
        let text = self.text();
        let line = text.lines().find_map(|l| l.strip_prefix("PLEXUS-PING "))?;
        let mut words = line.split_whitespace();
        let outcome = words.next()?;
        let gateway = words.next()?.to_owned();
        Some((outcome == "ok", gateway))
    }
}

impl fmt::Display for Console {
    /// The console and QEMU's own messages, for failure reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--- VM console\n{}--- QEMU stderr\n{}---",
            self.text(),
            self.output.stderr_text()
        )
    }
}

/// One `PLEXUS-NIC` line: what DHCP gave a guest NIC and what the guest made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic {
    pub ifname: String,
    pub mac: String,
    /// `ADDRESS/PREFIX`.
    pub address: String,
    pub router: Option<String>,
    /// The MTU of the guest's interface after configuration.
    pub mtu: Option<u32>,
    /// Option 121's routes, `(DEST/LEN, GATEWAY)`, `0.0.0.0` meaning on-link.
    pub routes: Vec<(String, String)>,
}

impl GuestNic {
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let ifname = words.next()?.to_owned();
        let fields: Vec<(&str, &str)> = words.filter_map(|word| word.split_once('=')).collect();
        let field = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, value)| *value)
                .filter(|value| !value.is_empty())
        };
        Some(GuestNic {
            ifname,
            mac: field("mac")?.to_owned(),
            address: field("ip")?.to_owned(),
            router: field("router").map(str::to_owned),
            mtu: field("mtu").and_then(|mtu| mtu.parse().ok()),
            routes: field("routes")
                .into_iter()
                .flat_map(|routes| routes.split(';'))
                .filter_map(|route| route.split_once(','))
                .map(|(dest, gw)| (dest.to_owned(), gw.to_owned()))
                .collect(),
        })
    }
}

/// QEMU's stdout and stderr, collected by one thread each as they arrive.
#[derive(Default)]
struct Output {
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// Appends everything `source` yields to `into`, telling `arrivals` after each chunk;
/// the channel closes when QEMU closes the stream (it exited).
fn collect(
    mut source: impl Read + Send + 'static,
    into: &Arc<Mutex<Vec<u8>>>,
    arrivals: Option<mpsc::Sender<()>>,
) -> JoinHandle<()> {
    let into = Arc::clone(into);
    thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read @ 1..) = source.read(&mut buffer) {
            lock(&into).extend_from_slice(&buffer[..read]);
            if let Some(arrivals) = &arrivals {
                // The receiver is gone once boot returned; the text is still kept.
                let _ = arrivals.send(());
            }
        }
    })
}

impl Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stdout)).replace('\r', "")
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }
}

/// The buffer, also if a collecting thread panicked while holding it (its bytes are
/// still worth printing).
fn lock(buffer: &Mutex<Vec<u8>>) -> std::sync::MutexGuard<'_, Vec<u8>> {
    buffer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The QEMU process (`nsenter` execs it, so this is QEMU itself), killed and reaped on
/// drop, also when a test fails.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
