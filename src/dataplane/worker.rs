//! The per-lcore run loop: rx burst -> stages -> tx buffers / bulk free.
//!
//! Per packet there is no allocation, lock, syscall or log line: counters are
//! single-writer relaxed stores, drops are freed in bulk, tx is buffered per port.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::utils::CachePadded;

use super::counters::{GapMeter, WorkerCounters};
use crate::dpdk::{rdtsc, LcoreId, Mbuf, MbufBatch, RxQueue, TxBuffer, TxOutcome};
use crate::vm_migration::RELEASE_BURSTS_PER_LOOP;
use crate::pipeline::{Burst, DropReason, PortId, Stage, Verdict};

/// The stages a worker runs on every burst, in order.
pub type Pipeline = Vec<Box<dyn Stage<Mbuf> + Send>>;

/// How a worker backs off when its queues are empty.
#[derive(Debug, Clone, Copy)]
pub struct IdlePolicy {
    /// Empty polls in a row before sleeping.
    pub polls_before_sleep: u32,
    /// Sleep length; zero means busy-poll forever.
    pub sleep: Duration,
}

/// One worker: owns its rx queues, one tx queue on every port, its counters.
pub struct Worker {
    pub lcore: LcoreId,
    pub rx_queues: Vec<RxQueue>,
    /// Indexed by port id; `None` for ids that are not ours.
    pub tx: Vec<Option<TxBuffer>>,
    pub pipeline: Pipeline,
    pub counters: Arc<CachePadded<WorkerCounters>>,
    pub stop: Arc<AtomicBool>,
    /// Set by `Dataplane::open_rx`: until then the worker waits.
    pub rx_open: Arc<AtomicBool>,
    pub idle: IdlePolicy,
    /// Buffered tx is flushed at least this often (TSC cycles).
    pub drain_cycles: u64,
    /// Packets transmitted so far (for the output-gap meter).
    pub sent: u64,
}

impl Worker {
    /// Polls until `stop` is set, then stops rx, flushes every tx buffer and returns.
    pub fn run(mut self) {
        while !self.rx_open.load(Ordering::Acquire) && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(1));
        }
        log::info!("{}: polling {} rx queue(s)", self.lcore, self.rx_queues.len());
        let mut burst = Burst::new(PortId(0));
        let mut to_free = MbufBatch::default();
        let mut last_drain = rdtsc();
        let mut idle_polls = 0u32;
        let mut gaps = GapMeter::default();
        while !self.stop.load(Ordering::Relaxed) {
            let now = rdtsc();
            let sent_before = self.sent;
            for stage in &mut self.pipeline {
                stage.quiescent(now);
            }
            let released = self.release_held(&mut burst, &mut to_free);
            let mut received = 0;
            for i in 0..self.rx_queues.len() {
                let n = self.rx_queues[i].rx_burst(&mut burst);
                if n > 0 {
                    received += n;
                    self.process(&mut burst, &mut to_free);
                }
            }
            // An empty poll flushes at once: nothing more is coming to fill the bursts.
            if received == 0 || now.wrapping_sub(last_drain) >= self.drain_cycles {
                self.flush_tx();
                last_drain = now;
            }
            gaps.record(&self.counters.output_gap, now, self.sent != sent_before);
            // A worker handing back held packets is busy, not idle.
            if received > 0 || released {
                idle_polls = 0;
            } else {
                idle_polls = idle_polls.saturating_add(1);
                if !self.idle.sleep.is_zero() && idle_polls >= self.idle.polls_before_sleep {
                    std::thread::sleep(self.idle.sleep);
                }
            }
        }
        self.flush_tx();
        log::info!("{}: stopped", self.lcore);
    }

    /// Packets a stage held (a migrating VM's) that may go on now: each burst
    /// runs through the stages after the one that held it, a few bursts per
    /// loop so polling goes on meanwhile. Returns whether any went.
    fn release_held(&mut self, burst: &mut Burst<Mbuf>, to_free: &mut MbufBatch) -> bool {
        let mut released = false;
        for at in 0..self.pipeline.len() {
            let mut bursts = 0;
            while bursts < RELEASE_BURSTS_PER_LOOP && self.pipeline[at].release(burst) {
                self.run_stages(at + 1, burst, to_free);
                bursts += 1;
            }
            released |= bursts > 0;
        }
        released
    }

    fn process(&mut self, burst: &mut Burst<Mbuf>, to_free: &mut MbufBatch) {
        let counters = &**self.counters;
        let port = &counters.ports[burst.in_port().index()];
        let mut bytes = 0u64;
        for (mbuf, verdict) in burst.iter_mut() {
            bytes += u64::from(mbuf.pkt_len());
            if mbuf.is_multi_segment() {
                *verdict = Verdict::Drop(DropReason::MultiSegmentMbuf);
            }
        }
        port.rx_packets.add(burst.len() as u64);
        port.rx_bytes.add(bytes);
        self.run_stages(0, burst, to_free);
    }

    /// Runs the stages from `first` on, then sends, frees and counts every packet.
    fn run_stages(&mut self, first: usize, burst: &mut Burst<Mbuf>, to_free: &mut MbufBatch) {
        let counters = &**self.counters;
        let port = &counters.ports[burst.in_port().index()];
        for stage in &mut self.pipeline[first..] {
            stage.process(burst);
        }
        let made = burst.made_count();
        if made > 0 {
            counters.made.add(made);
            counters.drops.add(DropReason::CopyNotMade, u64::from(burst.unmade()));
        }

        let (tx, sent) = (&mut self.tx, &mut self.sent);
        let (in_port, mut relayed) = (burst.in_port(), 0);
        burst.drain(|mbuf, verdict| {
            let reason = match verdict {
                Verdict::Forward(out) => match tx.get_mut(out.index()).and_then(Option::as_mut) {
                    Some(buffer) => {
                        relayed += u64::from(out == in_port);
                        let outcome = buffer.push(mbuf);
                        *sent += outcome.sent;
                        account_tx(counters, out, outcome);
                        return;
                    }
                    None => DropReason::UnknownOutputPort,
                },
                Verdict::Drop(reason) => reason,
                Verdict::Pending => DropReason::NoVerdict,
                // No stage hands packets to the control plane today: such packets are counted, not lost.
                Verdict::ToControl => DropReason::NoControlPath,
                // Taken packets are not handed out by drain.
                Verdict::Consumed => return,
                Verdict::Absorbed => {
                    counters.absorbed.add(1);
                    to_free.push(mbuf);
                    return;
                }
            };
            counters.drops.add(reason, 1);
            port.rx_dropped.add(1);
            to_free.push(mbuf);
        });
        port.rx_relayed.add(relayed);
        to_free.free_all();
    }

    fn flush_tx(&mut self) {
        let counters = &**self.counters;
        for buffer in self.tx.iter_mut().flatten() {
            if !buffer.is_empty() {
                let outcome = buffer.flush();
                self.sent += outcome.sent;
                account_tx(counters, buffer.port(), outcome);
            }
        }
    }
}

fn account_tx(counters: &WorkerCounters, port: PortId, outcome: TxOutcome) {
    if outcome == TxOutcome::default() {
        return;
    }
    let port_counters = &counters.ports[port.index()];
    port_counters.tx_packets.add(outcome.sent);
    port_counters.tx_bytes.add(outcome.sent_bytes);
    if outcome.dropped > 0 {
        port_counters.tx_dropped.add(outcome.dropped);
        counters.drops.add(DropReason::TxRefused, outcome.dropped);
    }
}
