//! Fits the latency model's per-core costs (`targets.yaml`, `latency`) to measurements.
//!
//! Input (stdin), one line per network, as `scripts/calibrate-latency` prints them:
//! `board|arch|CxHxW|synthetic or trained|instructions per inference|synops per inference`.
//! Fits the costs of every term of the model (`latency::TERM_NAMES`) per board on all its
//! int8 networks, the trained ones counted [`TRAINED_WEIGHT`] times (their spikes are
//! spread over the layers as training leaves them, which random weights do not
//! reproduce), takes `activity` (synops per spike-layer MAC) as the mean of the trained
//! ones, and prints every network's prediction error: with its measured synops, when the
//! fit leaves that network out (cross-validation), and for trained networks from the
//! architecture alone (the search's estimate).

use std::collections::BTreeMap;
use std::io::Read as _;

use spikenas_host::arch::{Arch, InputShape};
use spikenas_host::latency::{fit, Costs, Sample, Work, TERM_NAMES};

/// How many times a trained network counts in the fit.
const TRAINED_WEIGHT: usize = 3;

/// The fit's samples: every row but `skip`, trained ones [`TRAINED_WEIGHT`] times.
fn weighted(rows: &[Row], skip: Option<usize>) -> Vec<Sample> {
    rows.iter()
        .enumerate()
        .filter(|&(i, _)| Some(i) != skip)
        .flat_map(|(_, r)| {
            std::iter::repeat_n(r.sample, if r.trained { TRAINED_WEIGHT } else { 1 })
        })
        .collect()
}

struct Row {
    arch: String,
    trained: bool,
    sample: Sample,
}

fn main() -> anyhow::Result<()> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let mut by_board: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.matches('|').count() == 5) {
        let f: Vec<&str> = line.split('|').collect();
        let arch: Arch = f[1].parse().map_err(anyhow::Error::msg)?;
        let input = InputShape::parse(f[2], 10).map_err(anyhow::Error::msg)?;
        if arch.weight_bits != 8 {
            continue; // the model covers int8 weights (the search's int4 is dominated)
        }
        by_board.entry(f[0].to_string()).or_default().push(Row {
            arch: f[1].to_string(),
            trained: f[3] == "trained",
            sample: Sample {
                work: Work::of(&arch, &input),
                instructions: f[4].parse()?,
                synops: f[5].parse()?,
            },
        });
    }
    for (board, rows) in &by_board {
        let Some(terms) = fit(&weighted(rows, None)) else {
            println!(
                "{board}: too few networks to fit {} costs",
                TERM_NAMES.len()
            );
            continue;
        };
        let activity: Vec<f64> = rows
            .iter()
            .filter(|r| r.trained)
            .map(|r| r.sample.synops / r.sample.work.spike_macs as f64)
            .collect();
        let mean = activity.iter().sum::<f64>() / activity.len().max(1) as f64;
        let costs = Costs::from_terms(terms, mean, String::new());
        let named: Vec<String> = TERM_NAMES
            .iter()
            .zip(terms)
            .map(|(n, c)| format!("{n} {c:.3}"))
            .collect();
        println!(
            "{board}: {}; trained activity {activity:.3?}",
            named.join(", ")
        );
        println!("  targets.yaml (the targets of {board}'s instruction set):");
        println!("    latency:");
        for (n, c) in TERM_NAMES.iter().zip(terms) {
            println!("      {n}: {c:.3}");
        }
        println!("      activity: {:.3}", costs.activity);
        let pct = |p: f64, m: f64| 100.0 * (p / m - 1.0);
        for (i, r) in rows.iter().enumerate() {
            let s = &r.sample;
            let exact = costs.instructions(&s.work, Some(s.synops));
            let mut line = format!(
                "  {}{}: measured {:.0}, predicted with its synops {exact:.0} ({:+.1}%)",
                r.arch,
                if r.trained { " (trained)" } else { "" },
                s.instructions,
                pct(exact, s.instructions)
            );
            if let Some(t) = fit(&weighted(rows, Some(i))) {
                let loo = Costs::from_terms(t, costs.activity, String::new());
                let p = loo.instructions(&s.work, Some(s.synops));
                line += &format!(", left out of the fit {:+.1}%", pct(p, s.instructions));
            }
            if r.trained {
                let before = costs.instructions(&s.work, None);
                line += &format!(
                    ", from the architecture {before:.0} ({:+.1}%)",
                    pct(before, s.instructions)
                );
            }
            println!("{line}");
        }
    }
    Ok(())
}
