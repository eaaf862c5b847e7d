//! The server's metrics in the Prometheus text format: requests by route and status, a latency
//! histogram, token verifications by result, the served commit's time and its lag behind the
//! branch, refreshes and their failures, webhook deliveries by result. Labels take values from
//! small fixed sets (route templates, status codes, reason codes), never from request text.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub provider: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvironmentLabel {
    pub environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

fn latency() -> Histogram {
    // 50 µs to about 1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    pub verifications: Family<ResultLabel, Counter>,
    pub commit_time: Gauge,
    pub lag: Gauge,
    pub refreshes: Counter,
    pub refresh_failures: Counter,
    pub hooks: Family<HookLabels, Counter>,
    pub ready: Gauge,
    /// One series, labelled with why the last refresh failed, while it fails.
    pub failing: Family<ReasonLabel, Gauge>,
    /// 1 for each environment a reconciler replica holds a live lease on.
    pub lease_held: Family<EnvironmentLabel, Gauge>,
    /// 1 when the reconciler's store answered its last read (or there is none), 0 when not.
    pub store_up: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ledgit");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route",
            latency.clone(),
        );
        let verifications = Family::<ResultLabel, Counter>::default();
        registry.register(
            "token_verifications",
            "Deployment tokens verified, by result (valid or the reason's code)",
            verifications.clone(),
        );
        let commit_time = Gauge::default();
        registry.register(
            "served_commit_timestamp_seconds",
            "Committer time of the commit being served",
            commit_time.clone(),
        );
        let lag = Gauge::default();
        registry.register(
            "served_commit_lag_seconds",
            "How far the served commit is behind the tracked branch's tip (committer times)",
            lag.clone(),
        );
        let refreshes = Counter::default();
        registry.register(
            "refreshes",
            "Loads of the tracked branch",
            refreshes.clone(),
        );
        let refresh_failures = Counter::default();
        registry.register(
            "refresh_failures",
            "Loads of the tracked branch that failed (the last good state stays served)",
            refresh_failures.clone(),
        );
        let hooks = Family::<HookLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries, by provider and result",
            hooks.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when a state is loaded and the last refresh succeeded",
            ready.clone(),
        );
        let lease_held = Family::<EnvironmentLabel, Gauge>::default();
        registry.register(
            "lease_held",
            "1 when a reconciler replica holds a live lease on the environment (shared stores)",
            lease_held.clone(),
        );
        let store_up = Gauge::default();
        store_up.set(1);
        registry.register(
            "store_up",
            "1 when the reconciler's state store answered its last read (or there is none), 0 while it cannot be reached: sync states are unknown then",
            store_up.clone(),
        );
        let failing = Family::<ReasonLabel, Gauge>::default();
        registry.register(
            "refresh_failing",
            "1, labelled with the reason, while the last refresh failed",
            failing.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "1, labelled with the version of ledgit that serves",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        Metrics {
            registry,
            requests,
            latency,
            verifications,
            commit_time,
            lag,
            refreshes,
            refresh_failures,
            hooks,
            ready,
            failing,
            lease_held,
            store_up,
        }
    }
}

impl Metrics {
    /// Every metric in the OpenMetrics text format (`application/openmetrics-text`).
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Every metric in Prometheus' text format 0.0.4, what scrapers and `promtool check
    /// metrics` read when they do not ask for OpenMetrics.
    pub fn prometheus(&self) -> String {
        prometheus_text(&self.openmetrics())
    }

    /// Counts one verification.
    pub fn verified(&self, result: Result<(), &crate::token::Reason>) {
        let result = match result {
            Ok(()) => "valid",
            Err(reason) => reason.code(),
        };
        self.verifications
            .get_or_create(&ResultLabel { result })
            .inc();
    }
}

/// OpenMetrics text as Prometheus' text format 0.0.4: a counter family is named with its
/// `_total` suffix in `# HELP` and `# TYPE` (OpenMetrics names the family without it), and
/// there is no `# UNIT` line and no `# EOF`.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_text_names_counters_with_their_suffix_and_has_no_eof() {
        let m = Metrics::default();
        m.refreshes.inc();
        let text = m.prometheus();
        assert!(
            text.contains("# TYPE ledgit_refreshes_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP ledgit_refreshes_total Loads"),
            "{text}"
        );
        assert!(text.contains("\nledgit_refreshes_total 1\n"), "{text}");
        assert!(text.contains("# TYPE ledgit_ready gauge\n"), "{text}");
        assert!(text.contains("ledgit_build_info{version=\""), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        assert!(m.openmetrics().ends_with("# EOF\n"));
    }
}
