// Rule 8: hash maps and sets iterate in a random order; use `BTreeMap` / `BTreeSet`.
// The type is rejected wherever it is written: a let type, a constructor, a turbofish.
use std::collections::{HashMap, HashSet};

use durable_core::{OrchestrationContext, orchestrator};

#[orchestrator]
pub async fn tally(_ctx: OrchestrationContext, words: Vec<String>) -> Result<usize, String> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in &words {
        *counts.entry(word.clone()).or_default() += 1;
    }
    let unique = words.iter().collect::<HashSet<_>>();
    Ok(counts.len() + unique.len())
}

fn main() {}
