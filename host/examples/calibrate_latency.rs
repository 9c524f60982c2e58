//! Fits the latency model's per-core costs (`targets.yaml`, `latency`) to measurements.
//!
//! Input (stdin), one line per network, as `scripts/calibrate-latency` prints them:
//! `board|arch|CxHxW|synthetic or trained|instructions per inference|synops per inference`.
//! Fits `per_pixel_mac`, `per_synop` and `per_neuron` per board on the synthetic int8
//! networks, reports `activity` (synops per spike-layer MAC) of the trained ones, and
//! prints every network's prediction error.

use std::collections::BTreeMap;
use std::io::Read as _;

use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::latency::{fit, Costs, Sample, Work};

fn main() -> anyhow::Result<()> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let mut by_board: BTreeMap<String, Vec<(String, bool, Sample)>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.matches('|').count() == 5) {
        let f: Vec<&str> = line.split('|').collect();
        let arch: Arch = f[1].parse().map_err(anyhow::Error::msg)?;
        let input = InputShape::parse(f[2], 10).map_err(anyhow::Error::msg)?;
        let sample = Sample {
            work: Work::of(&arch, &input),
            instructions: f[4].parse()?,
            synops: f[5].parse()?,
        };
        let trained = f[3] == "trained";
        by_board.entry(f[0].to_string()).or_default().push((
            f[1].to_string(),
            trained && arch.weight_bits == 8,
            sample,
        ));
    }
    for (board, rows) in &by_board {
        let synthetic: Vec<Sample> = rows
            .iter()
            .filter(|(a, trained, _)| !trained && !a.contains("bits=4"))
            .map(|r| r.2)
            .collect();
        let Some([per_pixel_mac, per_synop, per_neuron]) = fit(&synthetic) else {
            println!("{board}: too few networks to fit");
            continue;
        };
        let activity: Vec<f64> = rows
            .iter()
            .filter(|r| r.1)
            .map(|r| r.2.synops / r.2.work.spike_macs as f64)
            .collect();
        let costs = Costs {
            per_synop,
            per_neuron,
            per_pixel_mac,
            activity: activity.iter().copied().fold(0.0, f64::max),
            measured_with: String::new(),
        };
        println!(
            "{board}: per_synop {per_synop:.3}, per_neuron {per_neuron:.2}, per_pixel_mac \
             {per_pixel_mac:.3}; trained activity {activity:.3?}"
        );
        for (arch, trained, s) in rows {
            let exact = costs.instructions(&s.work, Some(s.synops));
            println!(
                "  {arch}{}: measured {:.0}, predicted with its synops {exact:.0} ({:+.1}%)",
                if *trained { " (trained)" } else { "" },
                s.instructions,
                100.0 * (exact / s.instructions - 1.0)
            );
        }
    }
    Ok(())
}
