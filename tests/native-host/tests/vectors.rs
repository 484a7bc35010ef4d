//! Every case of `tests/vectors/*.json` through the typed entry points and
//! through the encoded twins; both must match `expect`, and the typed outcome
//! (as JSON) must equal the encoded one exactly.
//!
//! The cases are sharded over a few instances that run concurrently on
//! Tokio's blocking pool (component calls are synchronous).

use native_host::vectors::{load_vectors, run_case, vectors_dir, CaseReport, VectorCase};
use native_host::{load_component_or_panic, EdgeComponent};

const INSTANCES: usize = 3;

fn run_shard(component: EdgeComponent, cases: Vec<VectorCase>) -> Vec<(VectorCase, CaseReport)> {
    let mut host = component.instantiate().expect("instantiate component");
    cases
        .into_iter()
        .map(|c| {
            let r = run_case(&mut host, &c);
            (c, r)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_vector_typed_and_encoded() {
    let component = load_component_or_panic();
    let cases = load_vectors(&vectors_dir()).unwrap_or_else(|e| panic!("loading vectors: {e}"));
    assert!(
        !cases.is_empty(),
        "no vector cases found in {}",
        vectors_dir().display()
    );
    let total = cases.len();

    let mut shards: Vec<Vec<VectorCase>> = vec![Vec::new(); INSTANCES];
    for (i, c) in cases.into_iter().enumerate() {
        shards[i % INSTANCES].push(c);
    }
    let tasks: Vec<_> = shards
        .into_iter()
        .map(|shard| {
            let comp = component.clone();
            tokio::task::spawn_blocking(move || run_shard(comp, shard))
        })
        .collect();

    let mut results = Vec::with_capacity(total);
    for t in tasks {
        results.extend(t.await.expect("shard panicked"));
    }

    let mut failures = Vec::new();
    let mut encoded_only = Vec::new();
    let mut notes = Vec::new();
    let mut fuel_max = (0u64, 0u64);
    let (mut n_request, mut n_configure) = (0usize, 0usize);
    for (case, rep) in &results {
        if case.request.is_some() {
            n_request += 1;
        } else {
            n_configure += 1;
        }
        if let Some(why) = &rep.encoded_only {
            encoded_only.push(format!("[{}] {}: {why}", case.file, case.name));
        }
        if let Some((t, e)) = rep.fuel {
            fuel_max = (fuel_max.0.max(t), fuel_max.1.max(e));
        }
        notes.extend(rep.notes.iter().cloned());
        failures.extend(rep.failures.iter().cloned());
    }

    eprintln!(
        "vectors: {total} cases ({n_request} request, {n_configure} configure-only) over {INSTANCES} instances; \
         max fuel per evaluate: typed {}, encoded {}",
        fuel_max.0, fuel_max.1
    );
    for e in &encoded_only {
        eprintln!("  encoded-only (config not expressible as a typed record): {e}");
    }
    for n in &notes {
        eprintln!("  note: {n}");
    }
    if !failures.is_empty() {
        let mut msg = format!(
            "{} vector failure(s) out of {total} cases:\n",
            failures.len()
        );
        for f in &failures {
            msg.push_str(&format!("- {f}\n"));
        }
        panic!("{msg}");
    }
}

/// Case names are unique and every file parses (also checked by the loader);
/// kept separate so a broken vector file is reported even when the component
/// is missing.
#[test]
fn vector_files_load() {
    let cases = load_vectors(&vectors_dir()).unwrap_or_else(|e| panic!("loading vectors: {e}"));
    for c in &cases {
        if c.request.is_none() {
            let ok = c.expect == serde_json::json!({"ok": true})
                || c.expect.pointer("/error/kind") == Some(&serde_json::json!("invalid-config"));
            assert!(
                ok,
                "[{}] {}: a configure-only case must expect {{\"ok\": true}} or invalid-config, got {}",
                c.file, c.name, c.expect
            );
        }
    }
}
