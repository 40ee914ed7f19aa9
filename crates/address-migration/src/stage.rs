//! The `AddressRewrite` stages, one per direction, around the switching unit:
//! `FromVm` before it, on bursts received on VM ports (so what the vRouter
//! switches or encapsulates already carries the primary IP), and `ToVm` after
//! it, on packets it decided to send to a VM port (decapsulated already).
//!
//! Each reads its own reference to the newest table version, replaced only at
//! its quiescent point. Per burst with an empty table: one branch. Per packet:
//! no allocation, lock, syscall or log line; a report or an ARP request for the
//! report address gets its reply in an mbuf copied from the pool, like a flood copy.
use std::sync::Arc;

use crossbeam::utils::CachePadded;

use super::counters::RewriteCounters;
use super::report::{self, ReportEvent, ReportQueue};
use super::table::AddressMigrationTable;
use super::translate::{rewrite_frame, Direction, Rewritten};
use switchyard_pipeline::{Burst, PacketBuf, PortId, Side, Stage, Verdict};
use switchyard_unit_abi::{Reader, Versioned};
use switchyard_wire::ReportStatus;

pub struct AddressRewrite {
    direction: Direction,
    tables: Arc<Versioned<AddressMigrationTable>>,
    reader: Reader,
    current: Arc<AddressMigrationTable>,
    counters: Arc<CachePadded<RewriteCounters>>,
    reports: Arc<ReportQueue>,
}

impl AddressRewrite {
    pub fn new(
        direction: Direction,
        tables: &Arc<Versioned<AddressMigrationTable>>,
        counters: Arc<CachePadded<RewriteCounters>>,
        reports: Arc<ReportQueue>,
    ) -> Self {
        AddressRewrite {
            direction,
            reader: tables.reader(),
            current: tables.active(Side::Vm),
            tables: tables.clone(),
            counters,
            reports,
        }
    }

    /// VM -> network: reports and ARP for the report address are answered,
    /// sources rewritten.
    fn leaving_vm<P: PacketBuf>(&self, burst: &mut Burst<P>) {
        let table = &*self.current;
        let port = burst.in_port();
        let Some(vm_port) = table.vm_port(port).copied() else { return };
        let rewrites = table.port(port);
        for i in 0..burst.len() {
            let Some((packet, verdict)) = burst.get_mut(i) else { continue };
            let frame = packet.data();
            if report::is_for_report_address(frame) {
                match report::parse(frame) {
                    Err(reason) => *verdict = Verdict::Drop(reason),
                    Ok(Some(report)) => {
                        *verdict = Verdict::Absorbed;
                        let status = self.judge(table, port, &report);
                        let reply = packet.duplicate().and_then(|mut copy| {
                            let len = copy.len();
                            copy.trim(len);
                            report::write_reply(copy.append(report::reply_len(status))?, vm_port.mac, &report, status);
                            Some(copy)
                        });
                        match reply {
                            Some(reply) => burst.add_made(reply, Verdict::Forward(port)),
                            None => burst.add_unmade(),
                        }
                    }
                    Ok(None) => {}
                }
                continue;
            }
            if report::is_report_arp_request(frame) {
                *verdict = Verdict::Absorbed;
                self.counters.report_arp_replies.add(1);
                match packet.duplicate() {
                    Some(mut reply) => {
                        report::write_arp_reply(reply.data_mut(), vm_port.mac);
                        burst.add_made(reply, Verdict::Forward(port));
                    }
                    None => burst.add_unmade(),
                }
                continue;
            }
            let Some(rewrites) = rewrites else { continue };
            match rewrite_frame(packet.data_mut(), Direction::FromVm, &rewrites.from_vm) {
                Ok(Rewritten::Unchanged) => {}
                Ok(Rewritten::Address { icmp_error }) => {
                    self.counters.from_vm.add(1);
                    if icmp_error {
                        self.counters.icmp_errors.add(1);
                    }
                }
                Err(reason) => *verdict = Verdict::Drop(reason),
            }
        }
    }

    /// Judges a report, hands accepted ones (and refusals, for the log) to the
    /// control plane, and counts it. An accepted report the queue cannot take
    /// is answered `busy`.
    fn judge(&self, table: &AddressMigrationTable, port: PortId, report: &report::Report) -> ReportStatus {
        let mut status = table.judge_report(port, report.source_ip, report.primary, report.post);
        if status != ReportStatus::InEffect {
            let event = ReportEvent {
                port,
                source_mac: report.source_mac,
                source_ip: report.source_ip,
                request_id: report.request_id,
                primary: report.primary,
                post: report.post,
                status,
            };
            if !self.reports.push(event) && status == ReportStatus::Accepted {
                status = ReportStatus::Busy;
            }
        }
        self.counters.reports[status.index()].add(1);
        status
    }

    /// Network -> VM: destinations rewritten on every packet (received or
    /// made) the unit sends to a VM port with an active migration.
    fn entering_vm<P: PacketBuf>(&self, burst: &mut Burst<P>) {
        let table = &*self.current;
        let rewrite = |packet: &mut P, verdict: &mut Verdict| {
            let Verdict::Forward(out) = *verdict else { return };
            let Some(rewrites) = table.port(out) else { return };
            match rewrite_frame(packet.data_mut(), Direction::ToVm, &rewrites.to_vm) {
                Ok(Rewritten::Unchanged) => {}
                Ok(Rewritten::Address { icmp_error }) => {
                    self.counters.to_vm.add(1);
                    if icmp_error {
                        self.counters.icmp_errors.add(1);
                    }
                }
                Err(reason) => *verdict = Verdict::Drop(reason),
            }
        };
        for (packet, verdict) in burst.iter_mut() {
            rewrite(packet, verdict);
        }
        for (packet, verdict) in burst.made_mut() {
            rewrite(packet, verdict);
        }
    }
}

impl<P: PacketBuf> Stage<P> for AddressRewrite {
    fn name(&self) -> &'static str {
        match self.direction {
            Direction::FromVm => "address-rewrite-from-vm",
            Direction::ToVm => "address-rewrite-to-vm",
        }
    }

    #[inline]
    fn process(&mut self, burst: &mut Burst<P>) {
        if self.current.is_empty() {
            return;
        }
        match self.direction {
            Direction::FromVm => self.leaving_vm(burst),
            Direction::ToVm => self.entering_vm(burst),
        }
    }

    fn quiescent(&mut self, _now: u64) {
        if let Some(generation) = self.reader.moved(&self.tables) {
            self.current = self.tables.active(Side::Vm);
            self.reader.announce(generation);
        }
    }
}
