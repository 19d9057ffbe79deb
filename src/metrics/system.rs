//! TorchServe's system metrics, read at start-up and then every `metric_time_interval` seconds on
//! a thread of their own (unless `disable_system_metrics`): CPU, memory and disk, with its names
//! and units, as its `metric_collector.py` reads them with psutil. (GPU metrics need NVML, which
//! tserve does not link; they are not reported.)

use std::sync::Arc;
use std::time::Duration;

use sysinfo::{Disks, MemoryRefreshKind, RefreshKind, System};

use super::Metrics;

/// Starts the collector thread. The first reading is taken at once, as TorchServe schedules its
/// collector with no initial delay; the next ones every `interval`.
pub fn start(metrics: Arc<Metrics>, interval: Duration) {
    let spawned = std::thread::Builder::new().name("system-metrics".into()).spawn(move || {
        let mut system = System::new_with_specifics(RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()));
        system.refresh_cpu_usage();
        let mut disks = Disks::new_with_refreshed_list();
        // CPU usage is measured between two refreshes: the first reading waits the shortest
        // span that gives a meaningful figure, the later ones span the whole interval.
        let mut wait = sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;
        loop {
            std::thread::sleep(wait);
            wait = interval;
            system.refresh_cpu_usage();
            system.refresh_memory();
            disks.refresh(true);
            for (name, value) in readings(&system, &disks) {
                metrics.host_gauge(name, value);
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("cannot start the system metrics collector: {e}");
    }
}

const MB: f64 = 1024.0 * 1024.0;
const GB: f64 = MB * 1024.0;

/// One reading of each metric, rounded as TorchServe's collector rounds them.
fn readings(system: &System, disks: &Disks) -> Vec<(&'static str, f64)> {
    let round = |value: f64, places: i32| {
        let scale = 10f64.powi(places);
        (value * scale).round() / scale
    };
    let total = system.total_memory() as f64;
    let available = system.available_memory() as f64;
    let used = total - available;
    let mut readings = vec![
        ("CPUUtilization", round(f64::from(system.global_cpu_usage()), 1)),
        ("MemoryUsed", round(used / MB, 1)),
        ("MemoryAvailable", round(available / MB, 1)),
        ("MemoryUtilization", round(if total > 0.0 { used / total * 100.0 } else { 0.0 }, 1)),
    ];
    let root = disks
        .list()
        .iter()
        .filter(|disk| std::path::Path::new("/").starts_with(disk.mount_point()))
        .max_by_key(|disk| disk.mount_point().as_os_str().len());
    if let Some(disk) = root {
        let (total, free) = (disk.total_space() as f64, disk.available_space() as f64);
        let used = total - free;
        readings.push(("DiskUsage", round(used / GB, 1)));
        readings.push(("DiskAvailable", round(free / GB, 1)));
        readings.push(("DiskUtilization", round(if total > 0.0 { used / total * 100.0 } else { 0.0 }, 1)));
    }
    readings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_cover_cpu_memory_and_disk() {
        let mut system = System::new_all();
        system.refresh_all();
        let disks = Disks::new_with_refreshed_list();
        let readings = readings(&system, &disks);
        let names: Vec<&str> = readings.iter().map(|(n, _)| *n).collect();
        assert_eq!(&names[..4], ["CPUUtilization", "MemoryUsed", "MemoryAvailable", "MemoryUtilization"]);
        let memory = readings.iter().find(|(n, _)| *n == "MemoryUtilization").unwrap().1;
        assert!((0.0..=100.0).contains(&memory), "{memory}");
        assert!(readings.iter().find(|(n, _)| *n == "MemoryAvailable").unwrap().1 > 0.0);
    }
}
