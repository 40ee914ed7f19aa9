//! A page of the Prometheus text exposition format (0.0.4): the telemetry writes the switch's families
//! on it, and each feature its own.
use std::fmt::Write;

/// Families and their samples, in the order written.
#[derive(Default)]
pub struct MetricsPage(String);

impl MetricsPage {
    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the family last started.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(self.0, "{{{}}}", labels.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    pub fn into_text(self) -> String {
        self.0
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_text_format() {
        let mut page = MetricsPage::default();
        page.family("x_total", "counter", "Things.");
        page.sample("x_total", &[("port", "a\"b"), ("role", "vm")], 3);
        page.sample("x_total", &[], 4);
        assert_eq!(page.0, "# HELP x_total Things.\n# TYPE x_total counter\nx_total{port=\"a\\\"b\",role=\"vm\"} 3\nx_total 4\n");
    }
}
