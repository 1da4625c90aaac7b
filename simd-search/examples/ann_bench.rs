//! `ann_bench`: simd-search as an external engine of the ANN anchor harness
//! (`../shared/ann-bench`), so our index is measured in the same run, on the
//! same data, as hnswlib, faiss and usearch.
//!
//! Protocol (see the harness README): the harness appends
//! `--data DIR --M 16 --efc 200 --k 10 --ef 16,32,64,128,256`; we read
//! `DIR/base.fvecs` and `DIR/query.fvecs` (TEXMEX), build on one thread,
//! and for each ef run a warm-up then three timed passes over all queries
//! (best time counts, like `example_external.py`), write the ids to
//! `ids_ef{ef}.ivecs` and print one JSON line on stdout. Logs go to stderr.
//!
//! Build it with `cargo build --release -p simd-search --example ann_bench`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use simd_search::{Hit, Hnsw, HnswParams, Metric, SearchOptions, SearchScratch};

/// The command-line arguments of the protocol.
struct Args {
    /// Dataset directory.
    data: PathBuf,
    /// Links per node.
    m: usize,
    /// Construction beam width.
    efc: usize,
    /// Results per query.
    k: usize,
    /// Beam widths to sweep.
    efs: Vec<usize>,
}

/// Parses `--name value` pairs by hand (the protocol is fixed and small).
fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut data, mut m, mut efc, mut k, mut efs) =
        (None, 16, 200, 10, vec![16, 32, 64, 128, 256]);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--data" => data = Some(PathBuf::from(value)),
            "--M" => m = num(&value)?,
            "--efc" => efc = num(&value)?,
            "--k" => k = num(&value)?,
            "--ef" => efs = value.split(',').map(num).collect::<Result<_, _>>()?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let data = data.ok_or("--data DIR is required")?;
    Ok(Args {
        data,
        m,
        efc,
        k,
        efs,
    })
}

/// Reads a TEXMEX `.fvecs` file: per row an `i32` dimension then the floats.
fn read_fvecs(path: &Path) -> Result<(usize, Vec<f32>), String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let head: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{}: empty", path.display()))?;
    let d = usize::try_from(i32::from_le_bytes(head)).map_err(|e| e.to_string())?;
    let rec = 4 * (d + 1);
    if d == 0 || bytes.len() % rec != 0 {
        return Err(format!(
            "{}: not an fvecs file of dimension {d}",
            path.display()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len() / rec * d);
    for row in bytes.chunks_exact(rec) {
        if row[..4] != head {
            return Err(format!("{}: rows of mixed dimension", path.display()));
        }
        out.extend(
            row[4..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok((d, out))
}

/// Writes `.ivecs`: per query `k` then `k` ids (−1 pads short results).
fn write_ivecs(path: &Path, k: usize, ids: &[Vec<Hit>]) -> Result<(), String> {
    let mut out = Vec::with_capacity(ids.len() * 4 * (k + 1));
    for hits in ids {
        out.extend_from_slice(&(k as i32).to_le_bytes());
        for i in 0..k {
            let id = hits.get(i).map_or(-1, |h| h.label as i32);
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

/// Runs the protocol; any failure is one line on stderr and exit code 1,
/// which the harness reports.
fn main() {
    if let Err(e) = run() {
        eprintln!("ann_bench: {e}");
        std::process::exit(1);
    }
}

/// Load, build, sweep.
fn run() -> Result<(), String> {
    let a = parse_args()?;
    let (d, base) = read_fvecs(&a.data.join("base.fvecs"))?;
    let (dq, queries) = read_fvecs(&a.data.join("query.fvecs"))?;
    if dq != d {
        return Err(format!("query dimension {dq} != base dimension {d}"));
    }
    let (n, nq) = (base.len() / d, queries.len() / d);
    let params = HnswParams {
        m: a.m,
        ef_construction: a.efc,
        ..HnswParams::default()
    };
    let mut ix = Hnsw::new(d, Metric::L2, params).map_err(|e| e.to_string())?;
    eprintln!(
        "ann_bench: n={n} nq={nq} d={d} M={} efc={} kernel={}",
        a.m,
        a.efc,
        ix.kernel().name()
    );

    // Build: single-threaded inserts, row i under label i (the ground
    // truth's ids), all in one category.
    let t0 = Instant::now();
    for (i, v) in base.chunks_exact(d).enumerate() {
        ix.insert(i as u64, v, 0).map_err(|e| e.to_string())?;
    }
    let build_s = t0.elapsed().as_secs_f64();
    // Index size as the harness measures the others: the saved form, MiB.
    let index_mb = ix.to_bytes().len() as f64 / (1 << 20) as f64;
    eprintln!("ann_bench: built in {build_s:.2} s, {index_mb:.1} MiB serialised");

    let out_dir = std::env::temp_dir().join(format!("simd_search_ann_{}", std::process::id()));
    fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    // One scratch and preallocated result vectors: the timed loop makes
    // no allocation, as a node's search task would not either.
    let mut scratch = SearchScratch::new();
    let mut results: Vec<Vec<Hit>> = vec![Vec::with_capacity(a.k); nq];
    for &ef in &a.efs {
        let opts = SearchOptions::new(a.k).ef(ef.max(a.k));
        let mut pass = |queries: &[f32], results: &mut [Vec<Hit>]| -> Result<f64, String> {
            let t = Instant::now();
            for (q, out) in queries.chunks_exact(d).zip(results.iter_mut()) {
                ix.search_into(&mut scratch, q, &opts, out)
                    .map_err(|e| e.to_string())?;
            }
            Ok(t.elapsed().as_secs_f64())
        };
        pass(&queries[..d * nq.min(50)], &mut results)?; // warm-up
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            best = best.min(pass(&queries, &mut results)?);
        }
        // The last timed pass's ids are what the harness scores.
        let ids_path = out_dir.join(format!("ids_ef{ef}.ivecs"));
        write_ivecs(&ids_path, a.k, &results)?;
        let qps = nq as f64 / best;
        println!(
            "{{\"engine\": \"simd-search\", \"ef\": {ef}, \"qps\": {qps:.1}, \"build_s\": {build_s:.3}, \"index_mb\": {index_mb:.3}, \"ids_path\": \"{}\"}}",
            ids_path.display()
        );
        eprintln!("ann_bench: ef={ef} qps={qps:.0}");
    }
    Ok(())
}
