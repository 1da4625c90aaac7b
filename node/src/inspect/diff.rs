//! `concord inspect diff`: descends two nodes' digest trees only where they
//! differ (O(d · log n) tree nodes for d differing keys), then fetches the
//! differing buckets from both and lists each key whose values differ.

use std::collections::BTreeMap;

use crdt_core::KeyspaceId;
use crdt_core::digest::{DEPTH, FANOUT};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::NodeConfig;
use crate::http_client::Client;

/// A key whose values differ, with both.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyDiff {
    /// Keyspace.
    pub keyspace: String,
    /// The key.
    pub key: String,
    /// The value on node A (null: absent).
    #[schema(value_type = Object)]
    pub a: Option<serde_json::Value>,
    /// The value on node B (null: absent).
    #[schema(value_type = Object)]
    pub b: Option<serde_json::Value>,
}

/// A differing key range (one bucket of one keyspace).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RangeDiff {
    /// Keyspace.
    pub keyspace: String,
    /// Bucket.
    pub bucket: u16,
}

/// Where two nodes differ.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DiffReport {
    /// Node A.
    pub a: String,
    /// Node B.
    pub b: String,
    /// Digests of A and B.
    pub digests: (String, String),
    /// Differing ranges.
    pub ranges: Vec<RangeDiff>,
    /// Differing keys, with both values.
    pub keys: Vec<KeyDiff>,
    /// Tree nodes compared (the O(d · log n) work).
    pub compared: usize,
}

#[derive(Deserialize)]
struct Children {
    children: Vec<String>,
}

#[derive(Deserialize)]
struct Entries {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    key: String,
    value: serde_json::Value,
}

async fn children(
    c: &Client,
    ks: KeyspaceId,
    level: u8,
    index: u32,
) -> anyhow::Result<Vec<String>> {
    let a = c
        .get(&format!(
            "/api/v1/cluster/tree?keyspace={}&level={level}&index={index}",
            ks.as_str()
        ))
        .await?;
    anyhow::ensure!(a.status.is_success(), "{}: {}", c.addr(), a.text());
    Ok(a.json::<Children>()?.children)
}

async fn entries(
    c: &Client,
    ks: KeyspaceId,
    bucket: u16,
) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    let a = c
        .get(&format!(
            "/api/v1/cluster/bucket?keyspace={}&bucket={bucket}",
            ks.as_str()
        ))
        .await?;
    anyhow::ensure!(a.status.is_success(), "{}: {}", c.addr(), a.text());
    Ok(a.json::<Entries>()?
        .entries
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

async fn digest(c: &Client) -> anyhow::Result<String> {
    let a = c.get("/api/v1/cluster/status").await?;
    anyhow::ensure!(a.status.is_success(), "{}: {}", c.addr(), a.text());
    Ok(a.json::<serde_json::Value>()?["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Descends both nodes' digest trees where they differ and lists the
/// differing ranges, keys and values.
pub async fn diff(a: &NodeConfig, b: &NodeConfig, token: &str) -> anyhow::Result<DiffReport> {
    let (ca, cb) = (
        Client::new(a.http).with_token(token.to_string()),
        Client::new(b.http).with_token(token.to_string()),
    );
    let mut report = DiffReport {
        a: a.id.to_string(),
        b: b.id.to_string(),
        digests: (digest(&ca).await?, digest(&cb).await?),
        ranges: Vec::new(),
        keys: Vec::new(),
        compared: 0,
    };
    for ks in KeyspaceId::ALL {
        let mut frontier = vec![(0u8, 0u32)];
        while let Some((level, index)) = frontier.pop() {
            let (x, y) = tokio::try_join!(
                children(&ca, ks, level, index),
                children(&cb, ks, level, index)
            )?;
            report.compared += 1;
            for i in 0..FANOUT {
                if x.get(i) == y.get(i) {
                    continue;
                }
                let child = index * FANOUT as u32 + i as u32;
                if usize::from(level) + 1 == DEPTH {
                    report.ranges.push(RangeDiff {
                        keyspace: ks.as_str().into(),
                        bucket: child as u16,
                    });
                } else {
                    frontier.push((level + 1, child));
                }
            }
        }
    }
    report
        .ranges
        .sort_by(|p, q| (p.keyspace.as_str(), p.bucket).cmp(&(q.keyspace.as_str(), q.bucket)));
    for r in &report.ranges {
        let ks = KeyspaceId::ALL
            .into_iter()
            .find(|k| k.as_str() == r.keyspace)
            .unwrap_or(KeyspaceId::Products);
        let (x, y) = tokio::try_join!(entries(&ca, ks, r.bucket), entries(&cb, ks, r.bucket))?;
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (va, vb) = (x.get(k), y.get(k));
            if va != vb {
                report.keys.push(KeyDiff {
                    keyspace: r.keyspace.clone(),
                    key: k.clone(),
                    a: va.cloned(),
                    b: vb.cloned(),
                });
            }
        }
    }
    Ok(report)
}
