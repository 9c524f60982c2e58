//! Search reports: `report.json` (everything, machine-readable), `report.md` (what a
//! person reads, with the Pareto view of the candidates evaluated: accuracy estimate,
//! memory per region, latency) and `candidates.svg` (the ranking signal against memory,
//! with the budget line and the chosen architecture).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::memory::Estimate;
use crate::search::SearchOutcome;
use crate::train::TrainReport;

/// Everything a search run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchReport {
    /// Board name.
    pub board: String,
    /// Dataset (`--dataset` form).
    pub dataset: String,
    /// Input shape `CxHxW` and classes.
    pub input: String,
    /// Seed.
    pub seed: u64,
    /// The search.
    pub search: SearchOutcome,
    /// Memory per layer and region of the chosen architecture (rendered table).
    pub memory_table: String,
    /// Per-region use of the chosen architecture: (region, used, capacity).
    pub regions: Vec<(String, u64, u64)>,
    /// Training of the chosen architecture.
    pub training: Option<TrainReport>,
    /// Quantization of the winner.
    pub quantization: Option<crate::jobs::search::QuantSummary>,
    /// Extra sections appended by later stages (quantization, firmware), as markdown.
    pub sections: Vec<(String, String)>,
    /// The board's clock (for latency estimates; 0 where it has none).
    #[serde(default)]
    pub clock_hz: u64,
}

/// Indices of the candidates no other candidate beats on every axis at once: higher
/// accuracy estimate, less memory (tightest region), fewer MACs.
pub fn pareto_front(points: &[(f64, f64, u64)]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            let (a, m, c) = points[i];
            !points
                .iter()
                .any(|&(a2, m2, c2)| a2 >= a && m2 <= m && c2 <= c && (a2 > a || m2 < m || c2 < c))
        })
        .collect()
}

/// Estimated milliseconds of one inference (all timesteps) at `clock_hz`, one
/// instruction per cycle: the search's latency model's prediction (`instructions`), or
/// for a report written before the model, one instruction per MAC of every timestep.
pub fn latency_ms(
    instructions: Option<f64>,
    macs: u64,
    timesteps: usize,
    clock_hz: u64,
) -> Option<f64> {
    let instructions = instructions.unwrap_or(
        macs as f64 * timesteps as f64 * crate::latency::UNCALIBRATED_INSTRUCTIONS_PER_MAC,
    );
    (clock_hz > 0).then(|| instructions * 1000.0 / clock_hz as f64)
}

/// The Pareto view: every candidate the search evaluated, what it would cost and what
/// it is expected to give, the chosen one and the Pareto-optimal ones marked.
fn pareto_table(s: &SearchOutcome, clock_hz: u64) -> String {
    let rows: Vec<&crate::search::CandidateRecord> = s
        .candidates
        .iter()
        .filter(|c| c.score.is_some_and(f64::is_finite))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let points: Vec<(f64, f64, u64)> = rows
        .iter()
        .map(|c| (c.score.unwrap_or(f64::NAN), c.fit.worst_ratio, c.macs))
        .collect();
    let front = pareto_front(&points);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| points[b].0.total_cmp(&points[a].0));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Candidates evaluated (Pareto view)\n\n{}: higher is better. Memory is per region (used / budget); latency is the latency model's predicted instructions per inference (the target's calibrated costs, targets.yaml `latency`) at the board's clock. **chosen** marks the pick, * a Pareto-optimal candidate (no other is more accurate, smaller and faster at once).\n",
        s.signal
    );
    let _ = writeln!(
        md,
        "| | architecture | {} | memory per region | MACs/step | latency | est. training |\n|---|---|---:|---|---:|---:|---:|",
        s.signal
    );
    let best = s.best.to_string();
    for i in order {
        let c = rows[i];
        let mark = match (c.arch == best, front.contains(&i)) {
            (true, true) => "**chosen** *",
            (true, false) => "**chosen**",
            (false, true) => "*",
            (false, false) => "",
        };
        let regions = c
            .fit
            .regions
            .iter()
            .map(|(n, u, cap)| {
                format!(
                    "{n} {:.1}/{:.0} KB",
                    *u as f64 / 1024.0,
                    *cap as f64 / 1024.0
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let t = c
            .arch
            .parse::<crate::arch::Arch>()
            .map_or(1, |a| a.timesteps);
        let lat = latency_ms(c.instructions, c.macs, t, clock_hz)
            .map_or("-".into(), |v| format!("{v:.1} ms"));
        let train = c.train_seconds.map_or("-".into(), |v| format!("{v:.0} s"));
        let score = match c.proxy.last() {
            Some(p) if p.stopped => {
                format!("{:.3} (stopped after {} images)", points[i].0, p.images)
            }
            _ => format!("{:.3}", points[i].0),
        };
        let _ = writeln!(
            md,
            "| {mark} | `{}` | {score} | {regions} | {} | {lat} | {train} |",
            c.arch, c.macs
        );
    }
    md.push('\n');
    md
}

impl SearchReport {
    /// Per-region use taken from an estimate.
    pub fn regions_of(estimate: &Estimate) -> Vec<(String, u64, u64)> {
        estimate
            .regions
            .iter()
            .map(|r| (r.name.clone(), r.used, r.capacity))
            .collect()
    }

    /// The markdown report.
    pub fn markdown(&self) -> String {
        let s = &self.search;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# spikenas search: {} on {}\n",
            self.dataset, self.board
        );
        let _ = writeln!(
            md,
            "Chosen architecture (copy into `--arch`):\n\n```\n{}\n```\n",
            s.best
        );
        let _ = writeln!(md, "| | |\n|---|---|");
        let _ = writeln!(md, "| strategy | {:?} |", s.strategy);
        let _ = writeln!(md, "| input | {} |", self.input);
        let _ = writeln!(md, "| {} | {:.3} |", s.signal, s.best_score);
        if let Some(t) = &self.training {
            let _ = writeln!(
                md,
                "| test accuracy (float) | {:.2}% |",
                100.0 * t.test_accuracy
            );
            let _ = writeln!(
                md,
                "| training | {} epochs, {:.1} s |",
                t.epochs.len(),
                t.train_seconds
            );
        }
        let _ = writeln!(
            md,
            "| search time | {:.1} s ({}) |",
            s.seconds, s.stopped_by
        );
        let _ = writeln!(md, "| canonical cells | {} |", s.canonical_cells);
        let _ = writeln!(
            md,
            "| search space | {} (cell, macro) candidates |",
            s.space_size
        );
        let _ = writeln!(md, "| candidates generated | {} |", s.generated);
        let _ = writeln!(md, "| pruned by memory | {} |", s.pruned_by_memory);
        let _ = writeln!(md, "| pruned by latency budget | {} |", s.pruned_by_compute);
        let _ = writeln!(md, "| pruned by training time | {} |", s.pruned_by_training);
        let _ = writeln!(md, "| feasible | {} |", s.feasible);
        if let Some(m) = &s.cost_model {
            let _ = writeln!(
                md,
                "| training cost on this machine | {:.2} us/image + {:.3} ns per MAC-equivalent |",
                m.fixed_s * 1e6,
                m.per_unit_s * 1e9
            );
        }
        let _ = writeln!(
            md,
            "| evaluations | {} (cache hits {}) |",
            s.scored, s.cache_hits
        );
        let _ = writeln!(md, "| seed | {} |\n", self.seed);
        let _ = writeln!(
            md,
            "## Memory per region\n\n| region | used | budget | use |\n|---|---:|---:|---:|"
        );
        for (name, used, cap) in &self.regions {
            let pct = if *cap > 0 {
                100.0 * *used as f64 / *cap as f64
            } else {
                0.0
            };
            let _ = writeln!(md, "| {name} | {used} B | {cap} B | {pct:.1}% |");
        }
        let _ = writeln!(
            md,
            "\n## Memory per layer\n\n```\n{}```\n",
            self.memory_table
        );
        md.push_str(&pareto_table(s, self.clock_hz));
        for (title, body) in &self.sections {
            let _ = writeln!(md, "## {title}\n\n{body}\n");
        }
        let _ = writeln!(md, "![candidates](candidates.svg)");
        md
    }

    /// The scatter plot of scored candidates.
    pub fn svg(&self) -> String {
        candidates_svg(&self.search, &format!("{} on {}", self.dataset, self.board))
    }
}

/// Score against memory (fraction of the tightest region's budget) for every scored
/// candidate; the budget line at 100% and the chosen candidate highlighted.
pub fn candidates_svg(outcome: &SearchOutcome, title: &str) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 70.0, 20.0, 40.0, 50.0);
    let pts: Vec<(f64, f64, bool)> = outcome
        .candidates
        .iter()
        .filter_map(|c| {
            c.score
                .filter(|s| s.is_finite())
                .map(|s| (c.fit.worst_ratio, s, c.arch == outcome.best.to_string()))
        })
        .collect();
    let xmax = pts.iter().map(|p| p.0).fold(1.1f64, f64::max) * 1.05;
    let (ymin, ymax) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let (ymin, ymax) = if pts.is_empty() {
        (0.0, 1.0)
    } else if ymax > ymin {
        (ymin, ymax)
    } else {
        (ymin - 1.0, ymax + 1.0)
    };
    let pad = (ymax - ymin) * 0.05;
    let (ymin, ymax) = (ymin - pad, ymax + pad);
    let x = |v: f64| left + (w - left - right) * v / xmax;
    let y = |v: f64| h - bottom - (h - top - bottom) * (v - ymin) / (ymax - ymin);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{} : {:?}, {} scored</text>"#,
        w / 2.0,
        xml_escape(title),
        outcome.strategy,
        pts.len()
    );
    // Axes.
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - right,
        h - bottom
    );
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        h - bottom
    );
    for i in 0..=5 {
        let v = xmax * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}%</text>"#,
            x(v),
            h - bottom + 16.0,
            100.0 * v
        );
        let u = ymin + (ymax - ymin) * i as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{:.1}</text>"#,
            left - 6.0,
            y(u) + 4.0,
            u
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">memory use of the tightest region (% of budget)</text>"#,
        (left + w - right) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        (top + h - bottom) / 2.0,
        (top + h - bottom) / 2.0,
        xml_escape(&outcome.signal)
    );
    // Budget line.
    let _ = writeln!(
        s,
        r#"<line x1="{:.1}" y1="{top}" x2="{:.1}" y2="{}" stroke="red" stroke-dasharray="6 4"/><text x="{:.1}" y="{}" fill="red">budget</text>"#,
        x(1.0),
        x(1.0),
        h - bottom,
        x(1.0) + 4.0,
        top + 12.0
    );
    for (px, py, chosen) in pts
        .iter()
        .filter(|p| !p.2)
        .chain(pts.iter().filter(|p| p.2))
    {
        if *chosen {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="7" fill="none" stroke="green" stroke-width="3"/><text x="{:.1}" y="{:.1}" fill="green">chosen</text>"#,
                x(*px),
                y(*py),
                x(*px) + 9.0,
                y(*py) - 8.0
            );
        } else {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="steelblue" fill-opacity="0.6"/>"#,
                x(*px),
                y(*py)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_keeps_the_non_dominated() {
        let pts = [
            (0.9, 0.5, 100), // best accuracy
            (0.8, 0.2, 100), // smaller
            (0.8, 0.5, 100), // dominated by the first (and the second)
            (0.7, 0.9, 10),  // fastest
            (0.6, 0.9, 20),  // dominated by the fourth
        ];
        assert_eq!(pareto_front(&pts), vec![0, 1, 3]);
    }

    #[test]
    fn latency_at_the_clock() {
        assert_eq!(latency_ms(Some(5e6), 1_000_000, 2, 0), None);
        let ms = latency_ms(Some(5e6), 1_000_000, 2, 100_000_000).unwrap();
        assert!(
            (ms - 50.0).abs() < 1e-9,
            "the model's prediction wins: {ms}"
        );
        // A report from before the latency model: one instruction per MAC and step.
        let ms = latency_ms(None, 1_000_000, 2, 100_000_000).unwrap();
        assert!((ms - 20.0).abs() < 1e-9, "{ms}");
    }
}
