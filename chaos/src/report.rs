//! The run's report: one JSON file (seed, schedule, history, verdicts, stats),
//! a short human summary, and an SVG timeline — faults as bands, operation
//! latency over time, and convergence after each heal — because people would
//! rather look than read. The web console's Chaos view opens the same JSON.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::checkers::convergence::Heal;
use crate::checkers::{Validity, Verdict};
use crate::history::{Entry, Kind, Op};
use crate::nemesis::Fault;

/// Everything a report is made of.
pub struct Inputs<'a> {
    /// The seed.
    pub seed: u64,
    /// Node ids.
    pub nodes: &'a [String],
    /// RFC 3339 start time.
    pub started_at: String,
    /// Length of the run, ms.
    pub duration_ms: f64,
    /// The schedule.
    pub faults: &'a [Fault],
    /// When each fault actually started and ended (ms), by schedule index.
    pub fault_times: &'a [(f64, f64)],
    /// The history.
    pub history: &'a [Entry],
    /// Paired operations.
    pub ops: &'a [Op],
    /// Heals during the run.
    pub heals: &'a [Heal],
    /// Named verdicts.
    pub verdicts: &'a [(&'static str, Verdict)],
    /// The stats.
    pub stats: Value,
}

/// The overall verdict: invalid if any checker is, unknown if any is and none is invalid.
pub fn overall(verdicts: &[(&str, Verdict)]) -> Validity {
    verdicts
        .iter()
        .fold(Validity::VALID, |v, (_, x)| v.and(x.valid))
}

/// The report as JSON (the schema the console's Chaos view reads).
pub fn json(i: &Inputs<'_>) -> Value {
    let faults: Vec<Value> = i
        .faults
        .iter()
        .zip(i.fault_times)
        .map(|(f, (s, e))| json!({"startMs": s, "endMs": e, "kind": f.kind, "detail": f.detail}))
        .collect();
    let ops: Vec<Value> = i
        .ops
        .iter()
        .map(|o| {
            json!({"startMs": o.invoke.time_ms, "endMs": o.done.as_ref().map(|d| d.time_ms), "node": o.invoke.node,
                "f": o.invoke.f, "type": o.outcome(), "latencyMs": o.latency_ms()})
        })
        .collect();
    let convergence: Vec<Value> = i
        .heals
        .iter()
        .map(|h| json!({"healMs": h.heal_ms, "convergedMs": h.converged_ms, "tookMs": h.converged_ms.map(|c| c - h.heal_ms), "fault": h.fault}))
        .collect();
    let verdicts: serde_json::Map<String, Value> = i
        .verdicts
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                json!({"valid": v.valid, "summary": v.summary, "details": v.details}),
            )
        })
        .collect();
    json!({
        "version": 1,
        "seed": i.seed,
        "nodes": i.nodes,
        "startedAt": i.started_at,
        "durationMs": i.duration_ms,
        "faults": faults,
        "ops": ops,
        "convergence": convergence,
        "verdicts": verdicts,
        "valid": overall(i.verdicts),
        "stats": i.stats,
        "schedule": i.faults,
        "history": i.history,
    })
}

/// A few lines for a human.
pub fn summary(i: &Inputs<'_>) -> String {
    let mut s = String::new();
    let v = overall(i.verdicts);
    let _ = writeln!(
        s,
        "concord-chaos seed {} · {} nodes · {:.0} s · {} faults · {} operations",
        i.seed,
        i.nodes.len(),
        i.duration_ms / 1000.0,
        i.faults.len(),
        i.ops.len()
    );
    for (name, x) in i.verdicts {
        let mark = match x.valid {
            Validity::Known(true) => "ok     ",
            Validity::Known(false) => "INVALID",
            Validity::Unknown(_) => "unknown",
        };
        let _ = writeln!(s, "  {mark}  {name:<12} {}", x.summary);
    }
    let lat = &i.stats["latencyMs"];
    let _ = writeln!(
        s,
        "  latency p50 {:.1} ms, p99 {:.1} ms; {:.1} messages and {:.0} bytes on the cluster link per write",
        lat["p50"].as_f64().unwrap_or(0.0),
        lat["p99"].as_f64().unwrap_or(0.0),
        i.stats["messagesPerWrite"].as_f64().unwrap_or(0.0),
        i.stats["bytesPerWrite"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        s,
        "verdict: {}",
        match v {
            Validity::Known(true) => "VALID",
            Validity::Known(false) => "INVALID",
            Validity::Unknown(_) => "UNKNOWN",
        }
    );
    s
}

fn colour(kind: &str) -> &'static str {
    match kind {
        "partition" => "#e4572e",
        "loss" => "#f3a712",
        "duplicate" => "#a8c686",
        "delay" => "#669bbc",
        "kill" => "#8e2c48",
        "pause" => "#7d5ba6",
        "skew" => "#2a9d8f",
        _ => "#888888",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG timeline.
pub fn svg(i: &Inputs<'_>) -> String {
    let (w, h) = (1200.0, 420.0);
    let (left, right, band_top, band_h, plot_top, plot_h) = (60.0, 20.0, 30.0, 60.0, 110.0, 260.0);
    let span = i.duration_ms.max(1.0);
    let x = |t: f64| left + (t / span) * (w - left - right);
    let max_lat = i
        .ops
        .iter()
        .filter_map(|o| o.latency_ms())
        .fold(1.0f64, f64::max);
    let ly = |l: f64| {
        plot_top + plot_h
            - ((l.max(0.1)).log10() + 1.0) / ((max_lat.max(1.0)).log10() + 1.0) * plot_h
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"##
    );
    let _ = write!(s, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
    let _ = write!(
        s,
        r##"<text x="{left}" y="18" font-size="13">concord-chaos · seed {} · {} nodes · verdict {}</text>"##,
        i.seed,
        i.nodes.len(),
        match overall(i.verdicts) {
            Validity::Known(true) => "valid",
            Validity::Known(false) => "INVALID",
            _ => "unknown",
        }
    );
    // Faults as bands.
    for (f, (st, en)) in i.faults.iter().zip(i.fault_times) {
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{band_top}" width="{:.1}" height="{band_h}" fill="{}" opacity="0.55"><title>{} ({:.1}–{:.1} s)</title></rect>"##,
            x(*st),
            (x(*en) - x(*st)).max(1.0),
            colour(&kind),
            esc(&f.detail),
            st / 1000.0,
            en / 1000.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="4" y="{}">faults</text>"##,
        band_top + band_h / 2.0
    );
    // Latency scatter.
    let _ = write!(
        s,
        r##"<text x="4" y="{}">latency</text><text x="4" y="{}">(log ms)</text>"##,
        plot_top + 12.0,
        plot_top + 26.0
    );
    for t in [1.0, 10.0, 100.0, 1000.0, 10000.0] {
        if t <= max_lat * 1.5 {
            let y = ly(t);
            let _ = write!(
                s,
                r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eeeeee"/><text x="{}" y="{:.1}" fill="#999">{t}</text>"##,
                w - right,
                left - 30.0,
                y + 4.0
            );
        }
    }
    for o in i.ops {
        let Some(l) = o.latency_ms() else { continue };
        let c = match o.outcome() {
            Kind::Ok => "#2b7a0b",
            Kind::Fail => "#c77d00",
            _ => "#c0152f",
        };
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{c}" opacity="0.6"/>"##,
            x(o.invoke.time_ms),
            ly(l)
        );
    }
    // Convergence after each heal.
    let cy = plot_top + plot_h + 25.0;
    let _ = write!(s, r##"<text x="4" y="{cy}">converge</text>"##);
    for hl in i.heals {
        match hl.converged_ms {
            Some(c) => {
                let _ = write!(
                    s,
                    r##"<line x1="{:.1}" x2="{:.1}" y1="{cy}" y2="{cy}" stroke="#1d3557" stroke-width="4"><title>{:.0} ms after {}</title></line>"##,
                    x(hl.heal_ms),
                    x(c).max(x(hl.heal_ms) + 2.0),
                    c - hl.heal_ms,
                    esc(&hl.fault)
                );
            }
            None => {
                let _ = write!(
                    s,
                    r##"<circle cx="{:.1}" cy="{cy}" r="4" fill="#c0152f"><title>did not converge after {}</title></circle>"##,
                    x(hl.heal_ms),
                    esc(&hl.fault)
                );
            }
        }
    }
    // Time axis.
    let axis = h - 12.0;
    let step = if span > 300_000.0 {
        60_000.0
    } else if span > 60_000.0 {
        10_000.0
    } else {
        5_000.0
    };
    let mut t = 0.0;
    while t <= span {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{axis}" fill="#666">{:.0}s</text>"##,
            x(t) - 6.0,
            t / 1000.0
        );
        t += step;
    }
    s.push_str("</svg>");
    s
}
