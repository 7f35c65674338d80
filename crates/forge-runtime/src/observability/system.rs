//! System metrics of the machine and process a node runs on, read with `sysinfo`.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::Metrics;

/// Reads CPU and memory each time it samples. CPU figures are averages since the previous
/// sample, so the first sample reads 0.
#[derive(Debug)]
pub(crate) struct SystemSampler {
    system: System,
    pid: Option<Pid>,
}

impl SystemSampler {
    pub(crate) fn new() -> Self {
        Self { system: System::new(), pid: sysinfo::get_current_pid().ok() }
    }

    /// Sets the `forge_system_*` and `forge_process_*` gauges.
    pub(crate) fn sample(&mut self, metrics: &Metrics) {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        metrics.gauge(
            "forge_system_cpu_percent",
            "CPU in use on the node's machine, all cores, percent.",
            &[],
            f64::from(self.system.global_cpu_usage()),
        );
        metrics.gauge(
            "forge_system_memory_used_bytes",
            "Memory in use on the node's machine.",
            &[],
            self.system.used_memory() as f64,
        );
        metrics.gauge(
            "forge_system_memory_total_bytes",
            "Memory of the node's machine.",
            &[],
            self.system.total_memory() as f64,
        );
        if let Some(pid) = self.pid {
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_cpu().with_memory(),
            );
            if let Some(process) = self.system.process(pid) {
                metrics.gauge(
                    "forge_process_cpu_percent",
                    "CPU used by the node's process, percent of one core.",
                    &[],
                    f64::from(process.cpu_usage()),
                );
                metrics.gauge(
                    "forge_process_memory_bytes",
                    "Resident memory of the node's process.",
                    &[],
                    process.memory() as f64,
                );
            }
        }
    }
}
