//! VM reports of address migrations (docs/address-migration.md): workers judge
//! each report on their table version and answer the VM at once; here the
//! control plane takes what they queued, judges the accepted ones again on the
//! committed configuration (it may have changed since), commits and applies
//! them like any change, and keeps the last `ADDRESS_REPORTS_KEPT` reports with what
//! became of them for `GET /v1/address-migrations/reports`.
use std::net::Ipv4Addr;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::core::Control;
use super::error::ApiError;
use crate::address_migration::AddressReport;
use crate::model::rules::{check_address_migration, judge_report};
use crate::model::{unix_us, AddressMigration, Change, AddressMigrationSource};
use crate::wire::{MacAddr, ReportStatus};

/// How many reports the log keeps.
pub const ADDRESS_REPORTS_KEPT: usize = 100;
/// Refused reports are logged at most this often (all are kept in the report log).
const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// What became of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressReportOutcome {
    /// Committed and applied: the switch rewrites by it now.
    Applied,
    /// The table already said so.
    InEffect,
    /// Refused by a worker (the VM's reply says so) or, when the configuration
    /// changed meanwhile, by the control plane; nothing changed.
    Refused,
}

/// One report in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressReportRecord {
    /// When the control plane took it (microseconds since the Unix epoch).
    pub unix_us: u64,
    pub port: String,
    pub source_mac: MacAddr,
    pub source_ip: Ipv4Addr,
    pub request_id: u32,
    pub primary_ip: Ipv4Addr,
    pub post_migration_ip: Ipv4Addr,
    /// The status the VM was answered with.
    pub status: String,
    pub outcome: AddressReportOutcome,
    /// Applied: the generation it made.
    pub generation: Option<u64>,
    /// Refused: why, naming the records involved.
    pub error: Option<String>,
}

impl Control {
    /// Takes the reports workers queued and applies the accepted ones. While an
    /// upgrade runs (changes paused) they wait in the workers' queue, as a VM
    /// repeats its report until the reply says it is in effect. Returns how many
    /// were taken.
    pub fn apply_address_reports(&self) -> usize {
        let paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if *paused {
            return 0;
        }
        let reports = self.runtime().address_reports();
        let mut last_warning = *self.report_warned.lock().unwrap_or_else(PoisonError::into_inner);
        for report in &reports {
            let record = self.apply_address_report(report);
            match record.outcome {
                AddressReportOutcome::Applied => log::info!(
                    "control: VM report on port {}: {} now lives at {} (generation {})",
                    record.port,
                    record.primary_ip,
                    record.post_migration_ip,
                    record.generation.unwrap_or(0)
                ),
                AddressReportOutcome::InEffect => {}
                // A VM repeating refused reports must not flood the log: one a second.
                AddressReportOutcome::Refused if last_warning.is_some_and(|at| at.elapsed() < WARNING_INTERVAL) => {}
                AddressReportOutcome::Refused => {
                    last_warning = Some(Instant::now());
                    log::warn!(
                        "control: VM report on port {} from {} ({} -> {}) refused: {}",
                        record.port,
                        record.source_mac,
                        record.primary_ip,
                        record.post_migration_ip,
                        record.error.as_deref().unwrap_or("")
                    )
                }
            }
            let mut log = self.address_reports.lock().unwrap_or_else(PoisonError::into_inner);
            if log.len() == ADDRESS_REPORTS_KEPT {
                log.pop_front();
            }
            log.push_back(record);
        }
        *self.report_warned.lock().unwrap_or_else(PoisonError::into_inner) = last_warning;
        drop(paused);
        reports.len()
    }

    /// The last reports, oldest first.
    pub fn address_report_log(&self) -> Vec<AddressReportRecord> {
        self.address_reports.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect()
    }

    fn apply_address_report(&self, report: &AddressReport) -> AddressReportRecord {
        let mut record = AddressReportRecord {
            unix_us: unix_us(std::time::SystemTime::now()),
            port: report.port.clone(),
            source_mac: report.source_mac,
            source_ip: report.source_ip,
            request_id: report.request_id,
            primary_ip: report.primary_ip,
            post_migration_ip: report.post_migration_ip,
            status: report.status.name().to_string(),
            outcome: AddressReportOutcome::Refused,
            generation: None,
            error: None,
        };
        if report.status != ReportStatus::Accepted {
            // The worker refused it; say why with the records as they are now.
            let (status, why) = judge_report(
                &self.snapshot(),
                &report.port,
                report.source_ip,
                report.primary_ip,
                report.post_migration_ip,
            );
            record.error = Some(if status == report.status { why } else { report.status.text().to_string() });
            return record;
        }
        let (primary, post) = (report.primary_ip, report.post_migration_ip);
        let mut in_effect = false;
        // Judged again on the committed configuration, under the writers' turn.
        let applied = self.change_with_status(None, |current| {
            let refused = |why: String| ApiError::conflict("post_migration_ip", why);
            let (status, why) = judge_report(current, &report.port, report.source_ip, primary, post);
            match status {
                ReportStatus::InEffect => {
                    in_effect = true;
                    return Ok((vec![], (), 200));
                }
                ReportStatus::Accepted => {}
                _ => return Err(refused(format!("{why} (the configuration changed after the switch accepted it)"))),
            }
            let Some(vni) = current.port_vni(&report.port) else {
                return Err(refused(format!("port {} left its network", report.port)));
            };
            let entry = AddressMigration {
                vni,
                primary_ip: primary,
                post_migration_ip: Some(post),
                port: report.port.clone(),
                source: AddressMigrationSource::VmReport,
            };
            check_address_migration(current, &entry).map_err(|p| refused(p.problem))?;
            Ok((vec![Change::PutAddressMigration(entry)], (), 200))
        });
        match applied {
            Ok(_) if in_effect => record.outcome = AddressReportOutcome::InEffect,
            Ok(applied) => {
                record.outcome = AddressReportOutcome::Applied;
                record.generation = Some(applied.generation);
            }
            Err(e) => record.error = Some(e.message().to_string()),
        }
        record
    }
}
