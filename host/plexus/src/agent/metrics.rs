//! The agent's figures and their OpenMetrics text.
//!
//! Counters and histograms are aggregated from trace records as the agent reads them;
//! gauges are set from the stateDir just before each scrape. Prometheus parses a body
//! served as `application/openmetrics-text` strictly: counter families are declared
//! without `_total` and their samples carry it, a family's samples are contiguous, and
//! the body ends with `# EOF`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::trace::TraceRecord;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds: from a fast DEL (a few ms) to a
/// delegate near its timeout.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A sample's labels, in the order they are printed.
type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket of [`BUCKETS`], not cumulative; the `+Inf` bucket is `count`.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// Everything the agent exposes.
#[derive(Debug, Default)]
pub struct Metrics {
    invocations: BTreeMap<Labels, u64>,
    failures: BTreeMap<Labels, u64>,
    policy_invocations: BTreeMap<Labels, u64>,
    invocation_seconds: BTreeMap<Labels, Histogram>,
    own_seconds: BTreeMap<Labels, Histogram>,
    delegate_seconds: BTreeMap<Labels, Histogram>,
    network_seconds: BTreeMap<Labels, Histogram>,
    policy_seconds: BTreeMap<Labels, Histogram>,
    /// Trace lines that did not parse (a plugin of another version, a torn file).
    pub trace_unreadable: u64,
    pub gc_sweeps: u64,
    pub gc_freed: u64,
    pub gc_failures: u64,
    /// Gauges, as last read from the stateDir.
    pub ipam_in_use: BTreeMap<String, u64>,
    /// The addresses each `plexus-ipam` network can give out, by network name.
    pub ipam_pool: BTreeMap<String, u64>,
    pub dhcp_alive: u64,
    pub attachments: u64,
}

impl Metrics {
    /// Counts one invocation.
    pub fn record(&mut self, record: &TraceRecord) {
        let command = record.command.clone();
        let outcome = record
            .code
            .map_or_else(|| "ok".to_owned(), |code| code.to_string());
        let wall = record.wall_us as f64 / 1e6;
        let delegate = record.delegate_us as f64 / 1e6;
        let labels = |extra: &[(&'static str, &str)]| -> Labels {
            let mut labels = vec![("command", command.clone())];
            labels.extend(
                extra
                    .iter()
                    .map(|(name, value)| (*name, (*value).to_owned())),
            );
            labels
        };
        // An invocation that named no network (it failed first) is counted once, under
        // an empty network.
        let networks: Vec<&str> = if record.networks.is_empty() {
            vec![""]
        } else {
            record.networks.iter().map(String::as_str).collect()
        };
        for network in networks {
            *self
                .invocations
                .entry(labels(&[("network", network), ("outcome", &outcome)]))
                .or_default() += 1;
            if !network.is_empty() {
                self.network_seconds
                    .entry(labels(&[("network", network)]))
                    .or_default()
                    .observe(wall);
            }
        }
        if let Some(code) = record.code {
            let cause = record.cause.map_or("unknown", |cause| cause.as_str());
            *self
                .failures
                .entry(labels(&[("code", &code.to_string()), ("cause", cause)]))
                .or_default() += 1;
        }
        for policy in &record.policies {
            let policy_labels = labels(&[("policy", &policy.policy), ("digest", &policy.sha256)]);
            *self
                .policy_invocations
                .entry(policy_labels.clone())
                .or_default() += 1;
            self.policy_seconds
                .entry(policy_labels)
                .or_default()
                .observe(wall);
        }
        let by_command = labels(&[]);
        self.invocation_seconds
            .entry(by_command.clone())
            .or_default()
            .observe(wall);
        self.own_seconds
            .entry(by_command.clone())
            .or_default()
            .observe((wall - delegate).max(0.0));
        self.delegate_seconds
            .entry(by_command)
            .or_default()
            .observe(delegate);
    }

    /// The OpenMetrics text of everything, ending with `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        counter(
            &mut out,
            "plexus_invocations",
            "Plugin invocations by command, network and outcome (ok, or the CNI error code).",
            &self.invocations,
        );
        counter(
            &mut out,
            "plexus_failures",
            "Failed plugin invocations by command, CNI error code and cause.",
            &self.failures,
        );
        counter(
            &mut out,
            "plexus_policy_invocations",
            "Plugin invocations that ran a policy, by policy and its sha256.",
            &self.policy_invocations,
        );
        histogram(
            &mut out,
            "plexus_invocation_seconds",
            "Wall time of plugin invocations.",
            &self.invocation_seconds,
        );
        histogram(
            &mut out,
            "plexus_own_seconds",
            "Time of plugin invocations not spent waiting for delegates.",
            &self.own_seconds,
        );
        histogram(
            &mut out,
            "plexus_delegate_seconds",
            "Time of plugin invocations spent waiting for delegates.",
            &self.delegate_seconds,
        );
        histogram(
            &mut out,
            "plexus_network_invocation_seconds",
            "Wall time of plugin invocations, per network they touched.",
            &self.network_seconds,
        );
        histogram(
            &mut out,
            "plexus_policy_invocation_seconds",
            "Wall time of plugin invocations, per policy they ran.",
            &self.policy_seconds,
        );
        let pool: BTreeMap<Labels, u64> = self
            .ipam_pool
            .iter()
            .map(|(network, size)| (vec![("network", network.clone())], *size))
            .collect();
        family(
            &mut out,
            "plexus_ipam_pool_addresses",
            "gauge",
            "Addresses a plexus-ipam network's ranges can give out (less gateways and exclusions), per network.",
            "",
            &pool,
        );
        let in_use: BTreeMap<Labels, u64> = self
            .ipam_in_use
            .iter()
            .map(|(network, count)| (vec![("network", network.clone())], *count))
            .collect();
        family(
            &mut out,
            "plexus_ipam_addresses_in_use",
            "gauge",
            "Addresses held by pods in plexus-ipam's file store, per network.",
            "",
            &in_use,
        );
        single(
            &mut out,
            "plexus_vm_dhcp_servers_alive",
            "gauge",
            "DHCP servers of VM NICs that are running.",
            self.dhcp_alive,
        );
        single(
            &mut out,
            "plexus_attachments_recorded",
            "gauge",
            "Attachment records in the stateDir.",
            self.attachments,
        );
        single(
            &mut out,
            "plexus_gc_sweeps",
            "counter",
            "Garbage-collection sweeps the agent ran.",
            self.gc_sweeps,
        );
        single(
            &mut out,
            "plexus_gc_freed_attachments",
            "counter",
            "Attachments whose sandbox was gone and that the agent tore down.",
            self.gc_freed,
        );
        single(
            &mut out,
            "plexus_gc_failures",
            "counter",
            "Attachments the agent's GC could not tear down (retried next sweep).",
            self.gc_failures,
        );
        single(
            &mut out,
            "plexus_trace_unreadable_lines",
            "counter",
            "Trace lines the agent could not parse.",
            self.trace_unreadable,
        );
        out.push_str("# EOF\n");
        out
    }
}

fn counter(out: &mut String, name: &str, help: &str, samples: &BTreeMap<Labels, u64>) {
    family(out, name, "counter", help, "_total", samples);
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let suffix = if kind == "counter" { "_total" } else { "" };
    let samples = BTreeMap::from([(Labels::new(), value)]);
    family(out, name, kind, help, suffix, &samples);
}

fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    suffix: &str,
    samples: &BTreeMap<Labels, u64>,
) {
    header(out, name, kind, help);
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{suffix}{} {value}", label_text(labels, None));
    }
}

fn histogram(out: &mut String, name: &str, help: &str, samples: &BTreeMap<Labels, Histogram>) {
    header(out, name, "histogram", help);
    for (labels, histogram) in samples {
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(histogram.buckets) {
            cumulative += count;
            let le = format!("{bound:?}");
            let _ = writeln!(
                out,
                "{name}_bucket{} {cumulative}",
                label_text(labels, Some(&le))
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{} {}",
            label_text(labels, Some("+Inf")),
            histogram.count
        );
        let _ = writeln!(
            out,
            "{name}_count{} {}",
            label_text(labels, None),
            histogram.count
        );
        let _ = writeln!(
            out,
            "{name}_sum{} {:?}",
            label_text(labels, None),
            histogram.sum
        );
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "# HELP {name} {}", escape(help));
}

fn label_text(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Escapes a label value or help text as OpenMetrics asks: backslash, quote, newline.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Cause;
    use crate::trace::{PolicyUse, TRACE_VERSION};

    fn record(command: &str, code: Option<u32>, networks: &[&str], wall_us: u64) -> TraceRecord {
        TraceRecord {
            v: TRACE_VERSION,
            at_ms: 0,
            command: command.into(),
            code,
            cause: code.map(|_| Cause::PolicyRejected),
            wall_us,
            delegate_us: wall_us / 2,
            networks: networks.iter().map(|&n| n.to_owned()).collect(),
            policies: vec![PolicyUse {
                policy: "builtin:annotations".into(),
                sha256: "ab12".into(),
            }],
            truncated: false,
        }
    }

    #[test]
    fn renders_counts_histograms_and_eof() {
        let mut metrics = Metrics::default();
        metrics.record(&record("ADD", None, &["net-a", "net-b"], 20_000));
        metrics.record(&record("ADD", None, &["net-a"], 3_000));
        metrics.record(&record("ADD", Some(102), &[], 1_000));
        metrics.ipam_in_use.insert("net-a".into(), 2);
        metrics.ipam_pool.insert("net-a".into(), 253);
        let text = metrics.render();
        for line in [
            "# TYPE plexus_invocations counter",
            r#"plexus_invocations_total{command="ADD",network="net-a",outcome="ok"} 2"#,
            r#"plexus_invocations_total{command="ADD",network="net-b",outcome="ok"} 1"#,
            r#"plexus_invocations_total{command="ADD",network="",outcome="102"} 1"#,
            r#"plexus_failures_total{command="ADD",code="102",cause="policy-rejected"} 1"#,
            r#"plexus_policy_invocations_total{command="ADD",policy="builtin:annotations",digest="ab12"} 3"#,
            "# TYPE plexus_invocation_seconds histogram",
            r#"plexus_invocation_seconds_bucket{command="ADD",le="0.005"} 2"#,
            r#"plexus_invocation_seconds_bucket{command="ADD",le="0.025"} 3"#,
            r#"plexus_invocation_seconds_bucket{command="ADD",le="+Inf"} 3"#,
            r#"plexus_invocation_seconds_count{command="ADD"} 3"#,
            r#"plexus_invocation_seconds_sum{command="ADD"} 0.024"#,
            r#"plexus_delegate_seconds_sum{command="ADD"} 0.012"#,
            r#"plexus_ipam_addresses_in_use{network="net-a"} 2"#,
            r#"plexus_ipam_pool_addresses{network="net-a"} 253"#,
            "plexus_gc_sweeps_total 0",
            "plexus_attachments_recorded 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(text.ends_with("\n# EOF\n"), "{text}");
        // Every family's samples follow its TYPE line, with no other family between.
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap_or_default().to_owned();
                assert!(seen.insert(current.clone()), "{current} declared twice");
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&current), "{line} outside {current}");
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut metrics = Metrics::default();
        metrics.record(&record("DEL", None, &["we\"ird\\net\nx"], 10));
        let text = metrics.render();
        assert!(text.contains(r#"network="we\"ird\\net\nx""#), "{text}");
    }
}
