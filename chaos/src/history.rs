//! The history of a chaos run, Jepsen-style: every operation is an `invoke`
//! followed by exactly one of `ok` (it happened), `fail` (it definitely did
//! not) or `info` (unknown: it timed out, and may or may not have happened).
//! Nemesis actions are recorded in the same history. Checkers are pure
//! functions of it.

use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An operation started.
    Invoke,
    /// It happened.
    Ok,
    /// It definitely did not happen.
    Fail,
    /// Unknown whether it happened.
    Info,
}

/// One history entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the history.
    pub index: u64,
    /// The client process (`nemesis` for faults).
    pub process: String,
    /// The node addressed.
    pub node: String,
    /// The operation (`cart_add`, `checkout`, `partition` …).
    pub f: String,
    /// `invoke`, `ok`, `fail` or `info`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Milliseconds since the run started.
    pub time_ms: f64,
    /// Arguments on invoke; results on completion.
    pub value: Value,
    /// For completions: the index of the invoke.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub invoke: Option<u64>,
}

/// An operation in flight.
#[derive(Debug)]
pub struct Pending {
    index: u64,
    process: String,
    node: String,
    f: String,
    started: f64,
}

impl Pending {
    /// When it was invoked (ms since start).
    pub fn started(&self) -> f64 {
        self.started
    }
}

/// A run's history, appended to by every client and the nemesis.
pub struct History {
    start: Instant,
    entries: Mutex<Vec<Entry>>,
}

impl History {
    /// An empty history starting now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1000.0
    }

    fn push(&self, mut e: Entry) -> u64 {
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.index = g.len() as u64;
        e.time_ms = self.now_ms();
        let i = e.index;
        g.push(e);
        i
    }

    /// Records an invocation.
    pub fn invoke(&self, process: &str, node: &str, f: &str, value: Value) -> Pending {
        let index = self.push(Entry {
            index: 0,
            process: process.into(),
            node: node.into(),
            f: f.into(),
            kind: Kind::Invoke,
            time_ms: 0.0,
            value,
            invoke: None,
        });
        Pending {
            index,
            process: process.into(),
            node: node.into(),
            f: f.into(),
            started: self.now_ms(),
        }
    }

    /// Records how an invocation ended.
    pub fn complete(&self, p: Pending, kind: Kind, value: Value) {
        self.push(Entry {
            index: 0,
            process: p.process,
            node: p.node,
            f: p.f,
            kind,
            time_ms: 0.0,
            value,
            invoke: Some(p.index),
        });
    }

    /// A copy of every entry so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

/// An invocation paired with its completion.
#[derive(Clone, Debug)]
pub struct Op {
    /// The invoke entry.
    pub invoke: Entry,
    /// The completion, if the run ended before it.
    pub done: Option<Entry>,
}

impl Op {
    /// The last segment of the invoked request's path: the product of a
    /// cart-line or product request.
    pub fn path_tail(&self) -> &str {
        self.invoke.value["path"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap_or_default()
    }

    /// Whether this request could have removed something (a remove, a
    /// set to zero, a checkout, a delete) — unless it is known to have failed.
    pub fn may_remove(&self) -> bool {
        if self.outcome() == Kind::Fail {
            return false;
        }
        match self.invoke.f.as_str() {
            "cart_remove" | "checkout" | "delete_product" => true,
            "cart_set" => self.invoke.value["body"]["quantity"].as_u64() == Some(0),
            _ => false,
        }
    }

    /// How it ended (`Info` when it never completed).
    pub fn outcome(&self) -> Kind {
        self.done.as_ref().map(|d| d.kind).unwrap_or(Kind::Info)
    }

    /// Latency in ms, when completed.
    pub fn latency_ms(&self) -> Option<f64> {
        self.done.as_ref().map(|d| d.time_ms - self.invoke.time_ms)
    }
}

/// Pairs invocations with their completions, in invocation order.
pub fn ops(entries: &[Entry]) -> Vec<Op> {
    let mut done: std::collections::HashMap<u64, Entry> = std::collections::HashMap::new();
    for e in entries {
        if let Some(i) = e.invoke {
            done.insert(i, e.clone());
        }
    }
    entries
        .iter()
        .filter(|e| e.kind == Kind::Invoke)
        .map(|e| Op {
            invoke: e.clone(),
            done: done.remove(&e.index),
        })
        .collect()
}
