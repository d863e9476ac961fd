//! The real-VM bench: a tiny QEMU guest (Debian's cloud kernel, a busybox initramfs made
//! by `tests/vm/build-image`) booted inside a pod's network namespace on the taps of its
//! VM NICs. The guest configures every NIC by DHCP, reports what it got on the serial
//! console, pings its primary gateway and powers off ([`boot`]), or stays up with its
//! DHCP clients running and reports each renewal ([`boot_and_stay`]); both return the
//! console. With [`Launch::ipv6`] it also configures every NIC for IPv6 (dhcpcd: the
//! router advertisement, then DHCPv6), and with [`Launch::ping`] it pings more addresses.
//!
//! What the guest prints, one line each (see the script):
//! `PLEXUS-NIC eth0 event=bound mac=… ip=10.1.0.5/24 router=10.1.0.1 mtu=1500 lease=3600
//! queues=1 routes=DEST/LEN,GW;…` (again with `event=renew` for each renewal), `PLEXUS-DHCP
//! deconfig|leasefail|nak eth0`, `PLEXUS-NIC-FAIL eth1`; with IPv6, as they happen,
//! `PLEXUS-RA eth0 router=fe80::1 flags=MO lifetime=1800 mtu=1500
//! prefixes=fd00:1::/64,L;… rdnss=fd00::53,… dnssl=a.example,…` (each router
//! advertisement, [`GuestRa`]), `PLEXUS-NIC6 eth0 event=bound6 ip=fd00:1::5/128
//! router=fe80::1 dns=fd00::53,… search=a.example,… mtu=1500 lease=3600` (again with
//! `event=renew6`, `rebind6` or `reboot6`; [`GuestNic6`]), `PLEXUS-DHCP6 expire6|stop6
//! eth0`, and `PLEXUS-NIC6-FAIL eth1`; then `PLEXUS-PING ok|fail GATEWAY` (or `none`),
//! `PLEXUS-PING ok|fail ADDR` for each address to ping, and `PLEXUS-READY`.
//!
//! [`TapPeer`] stands in for a VM's NIC where a DHCP client in a namespace is enough.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Netns;

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
/// ready; the guest then powers off. Panics, printing the console and QEMU's errors, if
/// QEMU exits first or `timeout` passes. QEMU is killed when the returned console is
/// dropped.
pub fn boot(netns: impl AsRef<Path>, taps: &[(&str, &str)], timeout: Duration) -> Console {
    boot_with(netns, taps, &Launch::default(), timeout)
}

/// Like [`boot`], but the guest stays up after it is ready, its DHCP clients running and
/// reporting every renewal, until the console is dropped.
pub fn boot_and_stay(netns: impl AsRef<Path>, taps: &[(&str, &str)], timeout: Duration) -> Console {
    let launch = Launch {
        stay: true,
        ..Launch::default()
    };
    boot_with(netns, taps, &launch, timeout)
}

/// How QEMU is run, beyond its NICs, and what the guest is told to do on its kernel
/// command line; the default is [`boot`]'s.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Stay up after `PLEXUS-READY` (see [`boot_and_stay`]).
    pub stay: bool,
    /// IPv6 too (`plexus.ipv6`): a dhcpcd per NIC, IPv6 only, takes the router
    /// advertisement and then an address by DHCPv6 (IA_NA), and keeps running; the
    /// guest's report waits up to 30 s more for every NIC's address and IPv6 default
    /// route (see [`Console::nics6`], [`Console::advertisements`]).
    pub ipv6: bool,
    /// Addresses, IPv4 or IPv6, the guest pings once configured, after its gateway, in
    /// this order (`plexus.ping=A,B,…`; see [`Console::pings`]).
    pub ping: Vec<String>,
    /// Queues per NIC. Above 1: `queues=N` on each tap, `mq=on` with 2N+2 MSI-X vectors
    /// (one per queue, one for configuration changes, one for the control queue) on each
    /// virtio NIC, and N vCPUs, since the guest's virtio_net uses no more queue pairs
    /// than it has CPUs.
    pub queues: u16,
    /// Run QEMU as this user id and group id, with no supplementary groups, as a VM
    /// runtime that drops its privileges does. `/dev/net/tun` may be root's alone here
    /// (udev makes it 0666, a bare devtmpfs 0600): QEMU then gets a 0666 node of its own
    /// in a private mount namespace, so that the tap's owner and group are all that
    /// decide (opening `/dev/net/tun` grants nothing by itself).
    pub user: Option<u32>,
}

/// Boots the guest as [`boot`] does, QEMU run as `launch` says.
pub fn boot_with(
    netns: impl AsRef<Path>,
    taps: &[(&str, &str)],
    launch: &Launch,
    timeout: Duration,
) -> Console {
    let mut command = qemu_command(netns.as_ref(), taps, launch);
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
    let (chunks, arrivals) = mpsc::channel();
    let mut console = Console {
        output: Output::default(),
        ready_after: Duration::ZERO,
        arrivals,
        qemu: Qemu(child),
    };
    collect(stdout, &console.output.stdout, Some(chunks));
    console.output.stderr_reader = Some(collect(stderr, &console.output.stderr, None));

    let deadline = started + timeout;
    loop {
        if console.output.stdout_text().contains(&format!("{READY}\n")) {
            console.ready_after = started.elapsed();
            return console;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match console.arrivals.recv_timeout(left) {
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

/// QEMU's error when it exits without booting (a tap it may not open, say): runs QEMU as
/// `launch` says and returns what it printed on stderr. Panics if it is still running
/// after `timeout`.
pub fn refused(
    netns: impl AsRef<Path>,
    taps: &[(&str, &str)],
    launch: &Launch,
    timeout: Duration,
) -> String {
    let mut qemu = qemu_command(netns.as_ref(), taps, launch)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {QEMU}: {err}"));
    let stderr = qemu.stderr.take().expect("QEMU's stderr is piped");
    let errors = Arc::new(Mutex::new(Vec::new()));
    let reader = collect(stderr, &errors, None);
    let mut qemu = Qemu(qemu);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match qemu.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            outcome => panic!("QEMU was expected to exit: {outcome:?}"),
        }
    };
    let _ = reader.join();
    let errors = String::from_utf8_lossy(&lock(&errors)).into_owned();
    assert!(!status.success(), "QEMU was expected to fail: {errors}");
    errors
}

/// The QEMU command line: inside the namespace at `netns`, one virtio NIC per
/// `(tap, mac)`, run as `launch` says.
fn qemu_command(netns: &Path, taps: &[(&str, &str)], launch: &Launch) -> Command {
    let image = image();
    let netns_path = netns.display();
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
    command.arg(&netns).arg("--");
    if let Some(id) = launch.user {
        let id = id.to_string();
        command.args([
            "unshare",
            "--mount",
            "--",
            "sh",
            "-c",
            "mount -t tmpfs -o mode=755,size=4k plexus-test-tun /dev/net && \
             mknod -m 666 /dev/net/tun c 10 200 && exec \"$@\"",
            "sh",
            "setpriv",
            &format!("--reuid={id}"),
            &format!("--regid={id}"),
            "--clear-groups",
        ]);
    }
    command
        .args([
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
        .arg("-append")
        .arg(kernel_command_line(launch));
    if launch.queues > 1 {
        command.args(["-smp", &launch.queues.to_string()]);
    }
    if taps.is_empty() {
        // Otherwise QEMU adds a NIC of its own (user networking).
        command.args(["-nic", "none"]);
    }
    for (index, (tap, mac)) in taps.iter().enumerate() {
        let (queues, multiqueue) = match launch.queues {
            0 | 1 => (String::new(), String::new()),
            n => (
                format!(",queues={n}"),
                format!(",mq=on,vectors={}", 2 * u32::from(n) + 2),
            ),
        };
        command
            .arg("-netdev")
            .arg(format!(
                "tap,id=n{index},ifname={tap},script=no,downscript=no{queues}"
            ))
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=n{index},mac={mac}{multiqueue}"
            ));
    }
    command
}

/// The guest's kernel command line: its console, and what `launch` tells /init.
fn kernel_command_line(launch: &Launch) -> String {
    let mut line = String::from("console=ttyS0 quiet panic=-1");
    if launch.stay {
        line.push_str(" plexus.stay");
    }
    if launch.ipv6 {
        line.push_str(" plexus.ipv6");
    }
    if !launch.ping.is_empty() {
        assert!(
            launch
                .ping
                .iter()
                .all(|address| !address.is_empty() && !address.contains([',', ' '])),
            "addresses to ping are one word each: {:?}",
            launch.ping
        );
        line.push_str(" plexus.ping=");
        line.push_str(&launch.ping.join(","));
    }
    line
}

/// What the guest said, and the QEMU it runs in (killed on drop).
pub struct Console {
    output: Output,
    /// From starting QEMU to the guest's `PLEXUS-READY`.
    pub ready_after: Duration,
    /// A message for every chunk the guest prints.
    arrivals: Receiver<()>,
    qemu: Qemu,
}

/// A place in the console (a count of lines), to look only at what the guest printed
/// after it.
#[derive(Debug, Clone, Copy)]
pub struct Mark(usize);

impl Console {
    /// The serial console so far (line ends normalised to `\n`).
    pub fn text(&self) -> String {
        self.output.stdout_text()
    }

    /// The console now: what was printed so far is before it.
    pub fn mark(&self) -> Mark {
        Mark(self.text().matches('\n').count())
    }

    /// The complete lines the guest printed after `mark`.
    pub fn lines_since(&self, mark: Mark) -> Vec<String> {
        let text = self.text();
        // A line still being written is not one yet.
        let Some(end) = text.rfind('\n') else {
            return Vec::new();
        };
        text[..end]
            .split('\n')
            .skip(mark.0)
            .map(str::to_owned)
            .collect()
    }

    /// Every lease event (the first lease, then each renewal) of every NIC, in order, as
    /// the guest reported it.
    pub fn nics(&self) -> Vec<GuestNic> {
        nic_lines(self.text().lines())
    }

    /// The lease events reported after `mark`.
    pub fn nics_since(&self, mark: Mark) -> Vec<GuestNic> {
        nic_lines(self.lines_since(mark).iter().map(String::as_str))
    }

    /// The times after `mark` that a DHCP client lost or was refused a lease
    /// (`deconfig eth0`, `leasefail eth1`, `nak eth0`).
    pub fn troubles_since(&self, mark: Mark) -> Vec<String> {
        self.lines_since(mark)
            .iter()
            .filter_map(|line| line.strip_prefix("PLEXUS-DHCP "))
            .map(str::to_owned)
            .collect()
    }

    /// Waits, as the guest prints, until `condition` holds; panics with `what` and the
    /// console after `timeout`, or if QEMU exits first.
    pub fn wait_until(&self, what: &str, timeout: Duration, condition: impl Fn(&Console) -> bool) {
        let deadline = Instant::now() + timeout;
        while !condition(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.arrivals.recv_timeout(left) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out after {timeout:?} waiting for {what}\n{self}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("QEMU exited while waiting for {what}\n{self}")
                }
            }
        }
    }

    /// The QEMU process (it runs as the user [`Launch::user`] says).
    pub fn qemu_pid(&self) -> u32 {
        self.qemu.0.id()
    }

    /// The guest NIC `ifname` as it first got its lease; panics, printing the console, if
    /// it got none.
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

    /// The guest's pings of [`Launch::ping`]'s addresses, in order: `(answered,
    /// address)`. (The first `PLEXUS-PING` line is the gateway's, [`Console::ping`].)
    pub fn pings(&self) -> Vec<(bool, String)> {
        ping_lines(self.text().lines())
    }

    /// Every DHCPv6 event (the first reply, then each renewal or rebinding) of every NIC,
    /// in order, as the guest reported it (with [`Launch::ipv6`]).
    pub fn nics6(&self) -> Vec<GuestNic6> {
        nic6_lines(self.text().lines())
    }

    /// The DHCPv6 events reported after `mark`.
    pub fn nics6_since(&self, mark: Mark) -> Vec<GuestNic6> {
        nic6_lines(self.lines_since(mark).iter().map(String::as_str))
    }

    /// The guest NIC `ifname` as it first got its DHCPv6 address; panics, printing the
    /// console, if it got none.
    pub fn nic6(&self, ifname: &str) -> GuestNic6 {
        self.nics6()
            .into_iter()
            .find(|nic| nic.ifname == ifname)
            .unwrap_or_else(|| panic!("the VM reported no DHCPv6 address on {ifname}\n{self}"))
    }

    /// The NICs the guest gave up waiting on for IPv6 (`PLEXUS-NIC6-FAIL`): no DHCPv6
    /// address.
    pub fn nic6_failures(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|line| line.strip_prefix("PLEXUS-NIC6-FAIL "))
            .map(|ifname| ifname.trim().to_owned())
            .collect()
    }

    /// The router advertisements the guest's NICs received, in order (dhcpcd reports
    /// one on each that changes or refreshes what it knows, each router on a line).
    pub fn advertisements(&self) -> Vec<GuestRa> {
        self.text()
            .lines()
            .filter_map(|line| line.strip_prefix("PLEXUS-RA "))
            .filter_map(GuestRa::parse)
            .collect()
    }

    /// The times after `mark` that dhcpcd lost or dropped an IPv6 address (`expire6
    /// eth0`, `stop6 eth0`).
    pub fn troubles6_since(&self, mark: Mark) -> Vec<String> {
        self.lines_since(mark)
            .iter()
            .filter_map(|line| line.strip_prefix("PLEXUS-DHCP6 "))
            .map(str::to_owned)
            .collect()
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

fn nic_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<GuestNic> {
    lines
        .filter_map(|line| line.strip_prefix("PLEXUS-NIC "))
        .filter_map(GuestNic::parse)
        .collect()
}

/// One `PLEXUS-NIC` line: what DHCP gave a guest NIC and what the guest made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic {
    pub ifname: String,
    /// `bound` (the first lease) or `renew`.
    pub event: String,
    pub mac: String,
    /// `ADDRESS/PREFIX`.
    pub address: String,
    pub router: Option<String>,
    /// The MTU of the guest's interface after configuration.
    pub mtu: Option<u32>,
    /// The lease time the server gave, in seconds.
    pub lease: Option<u32>,
    /// Option 121's routes, `(DEST/LEN, GATEWAY)`, `0.0.0.0` meaning on-link.
    pub routes: Vec<(String, String)>,
    /// The receive queues the guest's driver set up on the NIC.
    pub queues: Option<u32>,
}

/// A report line after its `PLEXUS-…` word: the interface name and the `key=value`
/// fields.
struct Fields<'a> {
    ifname: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Fields<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let ifname = words.next()?;
        let fields = words.filter_map(|word| word.split_once('=')).collect();
        Some(Fields { ifname, fields })
    }

    /// The value of `key`, if present and not empty.
    fn get(&self, key: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| *value)
            .filter(|value| !value.is_empty())
    }

    fn number(&self, key: &str) -> Option<u32> {
        self.get(key).and_then(|value| value.parse().ok())
    }

    /// The comma-separated list in `key` (empty if absent).
    fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .into_iter()
            .flat_map(|list| list.split(','))
            .map(str::to_owned)
            .collect()
    }
}

impl GuestNic {
    fn parse(line: &str) -> Option<Self> {
        let fields = Fields::parse(line)?;
        Some(GuestNic {
            ifname: fields.ifname.to_owned(),
            event: fields.get("event")?.to_owned(),
            mac: fields.get("mac")?.to_owned(),
            address: fields.get("ip")?.to_owned(),
            router: fields.get("router").map(str::to_owned),
            mtu: fields.number("mtu"),
            lease: fields.number("lease"),
            routes: fields
                .get("routes")
                .into_iter()
                .flat_map(|routes| routes.split(';'))
                .filter_map(|route| route.split_once(','))
                .map(|(dest, gw)| (dest.to_owned(), gw.to_owned()))
                .collect(),
            queues: fields.number("queues"),
        })
    }
}

/// The outcomes of the `PLEXUS-PING` lines after the first (the gateway's).
fn ping_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(bool, String)> {
    lines
        .filter_map(|line| line.strip_prefix("PLEXUS-PING "))
        .skip(1)
        .filter_map(|line| {
            let (outcome, address) = line.split_once(' ')?;
            Some((outcome == "ok", address.trim().to_owned()))
        })
        .collect()
}

fn nic6_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<GuestNic6> {
    lines
        .filter_map(|line| line.strip_prefix("PLEXUS-NIC6 "))
        .filter_map(GuestNic6::parse)
        .collect()
}

/// One `PLEXUS-NIC6` line: what DHCPv6 gave a guest NIC and what the guest made of it
/// with the router advertisement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic6 {
    pub ifname: String,
    /// `bound6` (the first reply), `renew6`, `rebind6` or `reboot6`.
    pub event: String,
    /// The IA_NA address, `ADDRESS/PREFIX` with the length the guest gave it (128: the
    /// prefix is on-link by the advertisement, not by the address).
    pub address: String,
    /// The gateway of the guest's IPv6 default route (the advertising router's
    /// link-local address), if it has one.
    pub router: Option<String>,
    /// DHCPv6 option 23, in order.
    pub dns: Vec<String>,
    /// DHCPv6 option 24, in order.
    pub search: Vec<String>,
    /// The IPv6 MTU of the guest's interface (the advertisement's MTU option, if any).
    pub mtu: Option<u32>,
    /// The address's valid lifetime, in seconds.
    pub lease: Option<u32>,
}

impl GuestNic6 {
    fn parse(line: &str) -> Option<Self> {
        let fields = Fields::parse(line)?;
        Some(GuestNic6 {
            ifname: fields.ifname.to_owned(),
            event: fields.get("event")?.to_owned(),
            address: fields.get("ip")?.to_owned(),
            router: fields.get("router").map(str::to_owned),
            dns: fields.list("dns"),
            search: fields.list("search"),
            mtu: fields.number("mtu"),
            lease: fields.number("lease"),
        })
    }
}

/// One `PLEXUS-RA` line: a router advertisement a guest NIC received, as dhcpcd parsed
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRa {
    pub ifname: String,
    /// Its source, the router's link-local address.
    pub router: String,
    /// Its flags as dhcpcd spells them: `M` (managed: addresses by DHCPv6), `O` (other
    /// configuration by DHCPv6), e.g. `MO`; empty for none.
    pub flags: String,
    /// The router lifetime, in seconds (0: not a default router).
    pub lifetime: Option<u32>,
    /// Its MTU option.
    pub mtu: Option<u32>,
    /// Its prefix information options, `(PREFIX/LEN, FLAGS)`, flags `L` (on-link) and
    /// `A` (autonomous address configuration) as dhcpcd spells them, e.g. `L`.
    pub prefixes: Vec<(String, String)>,
    /// Its RDNSS options' addresses, in order.
    pub rdnss: Vec<String>,
    /// Its DNSSL options' domains, in order.
    pub dnssl: Vec<String>,
}

impl GuestRa {
    fn parse(line: &str) -> Option<Self> {
        let fields = Fields::parse(line)?;
        Some(GuestRa {
            ifname: fields.ifname.to_owned(),
            router: fields.get("router")?.to_owned(),
            flags: fields.get("flags").unwrap_or_default().to_owned(),
            lifetime: fields.number("lifetime"),
            mtu: fields.number("mtu"),
            prefixes: fields
                .get("prefixes")
                .into_iter()
                .flat_map(|prefixes| prefixes.split(';'))
                .map(|prefix| {
                    let (prefix, flags) = prefix.split_once(',').unwrap_or((prefix, ""));
                    (prefix.to_owned(), flags.to_owned())
                })
                .collect(),
            rdnss: fields.list("rdnss"),
            dnssl: fields.list("dnssl"),
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

/// A VM's NIC without a VM: it opens the tap as QEMU does and joins it, frame for frame,
/// to the veth `ifname` (wearing the VM NIC's `mac`) in the namespace `client`, so that a
/// DHCP client run there talks through the tap exactly as the VM's would. The joining
/// ends, and the tap is let go, when this is dropped.
pub struct TapPeer {
    stop: Arc<AtomicBool>,
    forwarder: Option<JoinHandle<()>>,
}

impl TapPeer {
    /// Joins the tap `tap` in the namespace at `pod` to a new veth `ifname` in `client`.
    pub fn connect(pod: &Path, tap: &str, client: &Netns, ifname: &str, mac: &str) -> Self {
        let wire = format!("{ifname}w");
        client.ip(&[
            "link", "add", ifname, "address", mac, "type", "veth", "peer", "name", &wire,
        ]);
        for link in [ifname, wire.as_str()] {
            client.ip(&["link", "set", link, "up"]);
        }
        let (pod, client, tap) = (pod.to_owned(), client.path(), tap.to_owned());
        let stop = Arc::new(AtomicBool::new(false));
        let (opened, outcome) = mpsc::channel();
        let stopping = Arc::clone(&stop);
        // A thread of its own: it enters both namespaces and is never reused.
        let forwarder = thread::spawn(move || {
            let ends = (|| {
                enter(&pod)?;
                let tap = open_tap(&tap)?;
                enter(&client)?;
                Ok((tap, packet_socket(&wire)?))
            })();
            match ends {
                Ok((tap, wire)) => {
                    let _ = opened.send(Ok(()));
                    forward(&tap, &wire, &stopping);
                }
                Err(error) => {
                    let _ = opened.send(Err::<(), io::Error>(error));
                }
            }
        });
        let peer = TapPeer {
            stop,
            forwarder: Some(forwarder),
        };
        if let Err(error) = outcome.recv().expect("the forwarder reports") {
            panic!("cannot join the tap to the client namespace: {error}");
        }
        peer
    }
}

impl Drop for TapPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(forwarder) = self.forwarder.take() {
            let _ = forwarder.join();
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> io::Result<()> {
    let netns = File::open(path)?;
    // SAFETY: a plain setns(2) on a descriptor this function owns.
    cvt(unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) })
}

/// Opens the existing tap `name` (in this thread's namespace) as QEMU does.
fn open_tap(name: &str) -> io::Result<OwnedFd> {
    let path = CString::new("/dev/net/tun").expect("no NUL");
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is new and nothing else owns it.
    let tun = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: request is a valid ifreq that outlives the call.
    cvt(unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &request) })?;
    Ok(tun)
}

/// A packet socket bound to `ifname` (in this thread's namespace), every protocol.
fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let all = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(all),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is new and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated name that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = all;
    address.sll_ifindex = index as i32;
    // SAFETY: address is a valid sockaddr_ll of the length given.
    cvt(unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const address).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    })?;
    Ok(socket)
}

/// Copies frames the tap emits out of `wire`, and frames arriving on `wire` into the tap,
/// until `stop`.
fn forward(tap: &OwnedFd, wire: &OwnedFd, stop: &AtomicBool) {
    let mut frame = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [tap.as_raw_fd(), wire.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: fds is a valid array of pollfd of the length given.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, 100) } <= 0 {
            continue;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: frame is valid for its length.
            let read =
                unsafe { libc::read(tap.as_raw_fd(), frame.as_mut_ptr().cast(), frame.len()) };
            if read > 0 {
                // SAFETY: as above; a lost frame is what a network does.
                unsafe { libc::send(wire.as_raw_fd(), frame.as_ptr().cast(), read as usize, 0) };
            }
        }
        if fds[1].revents & libc::POLLIN != 0 {
            // SAFETY: sockaddr_ll is plain old data; all zeroes is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: frame and from are valid for the lengths given.
            let read = unsafe {
                libc::recvfrom(
                    wire.as_raw_fd(),
                    frame.as_mut_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw mut from).cast(),
                    &mut from_len,
                )
            };
            // The socket also sees what it sent itself.
            if read > 0 && from.sll_pkttype != libc::PACKET_OUTGOING {
                // SAFETY: as above.
                unsafe { libc::write(tap.as_raw_fd(), frame.as_ptr().cast(), read as usize) };
            }
        }
    }
}

fn cvt(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the guest printed with a router advertising and a DHCPv6 server answering on
    /// its eth0 (dnsmasq), nothing on its eth1, and three addresses to ping.
    const CONSOLE: &str = "\
PLEXUS-NIC eth0 event=bound mac=52:54:00:12:34:56 ip=10.1.0.18/24 router=10.1.0.1 mtu=1500 lease=3600 queues=1 routes=
PLEXUS-RA eth0 router=fe80::4c35:fdff:fe34:a6c flags=MO lifetime=30 mtu=1400 prefixes=fd00:1::/64,L rdnss=fd00::53,fd00::54 dnssl=a.example,b.example
PLEXUS-NIC6 eth0 event=bound6 ip=fd00:1::1b/128 router=fe80::4c35:fdff:fe34:a6c dns=fd00::53,fd00::54 search=a.example,b.example mtu=1400 lease=3600
PLEXUS-NIC-FAIL eth1
PLEXUS-NIC6-FAIL eth1
PLEXUS-PING ok 10.1.0.1
PLEXUS-PING ok fd00:1::1
PLEXUS-RA eth1 router=fe80::1 flags= lifetime=0 mtu= prefixes= rdnss= dnssl=
PLEXUS-PING fail fd00:1::99
PLEXUS-READY
";

    #[test]
    fn nic6_lines_are_parsed() {
        assert_eq!(
            nic6_lines(CONSOLE.lines()),
            [GuestNic6 {
                ifname: "eth0".into(),
                event: "bound6".into(),
                address: "fd00:1::1b/128".into(),
                router: Some("fe80::4c35:fdff:fe34:a6c".into()),
                dns: vec!["fd00::53".into(), "fd00::54".into()],
                search: vec!["a.example".into(), "b.example".into()],
                mtu: Some(1400),
                lease: Some(3600),
            }]
        );
        // Nothing given: empty values.
        let bare = GuestNic6::parse(
            "eth1 event=renew6 ip=fd00::2/128 router= dns= search= mtu=1500 lease=",
        );
        let bare = bare.expect("a line with an address");
        assert_eq!(
            (bare.router, bare.dns, bare.search, bare.lease),
            (None, vec![], vec![], None)
        );
    }

    #[test]
    fn advertisement_lines_are_parsed() {
        let advertisements: Vec<GuestRa> = CONSOLE
            .lines()
            .filter_map(|line| line.strip_prefix("PLEXUS-RA "))
            .filter_map(GuestRa::parse)
            .collect();
        assert_eq!(
            advertisements,
            [
                GuestRa {
                    ifname: "eth0".into(),
                    router: "fe80::4c35:fdff:fe34:a6c".into(),
                    flags: "MO".into(),
                    lifetime: Some(30),
                    mtu: Some(1400),
                    prefixes: vec![("fd00:1::/64".into(), "L".into())],
                    rdnss: vec!["fd00::53".into(), "fd00::54".into()],
                    dnssl: vec!["a.example".into(), "b.example".into()],
                },
                GuestRa {
                    ifname: "eth1".into(),
                    router: "fe80::1".into(),
                    flags: String::new(),
                    lifetime: Some(0),
                    mtu: None,
                    prefixes: vec![],
                    rdnss: vec![],
                    dnssl: vec![],
                },
            ]
        );
    }

    #[test]
    fn the_pings_after_the_gateways_are_the_listed_ones() {
        assert_eq!(
            ping_lines(CONSOLE.lines()),
            [
                (true, "fd00:1::1".to_owned()),
                (false, "fd00:1::99".to_owned())
            ]
        );
        assert_eq!(ping_lines("PLEXUS-PING none\nPLEXUS-READY".lines()), []);
    }

    #[test]
    fn the_kernel_command_line_says_what_the_launch_asks() {
        assert_eq!(
            kernel_command_line(&Launch::default()),
            "console=ttyS0 quiet panic=-1"
        );
        let launch = Launch {
            stay: true,
            ipv6: true,
            ping: vec!["10.1.0.1".into(), "fd00:1::1".into()],
            ..Launch::default()
        };
        assert_eq!(
            kernel_command_line(&launch),
            "console=ttyS0 quiet panic=-1 plexus.stay plexus.ipv6 plexus.ping=10.1.0.1,fd00:1::1"
        );
    }
}
