//! Builders of pprof profiles for tests and benchmarks (feature `testkit`).

use std::collections::HashMap;

use phlox_proto::google::v1 as pb;
use prost::Message;

/// Builds a pprof `google.v1.Profile` from readable stacks.
#[derive(Debug, Default)]
pub struct ProfileBuilder {
    strings: Vec<String>,
    string_ids: HashMap<String, i64>,
    functions: HashMap<String, u64>,
    profile: pb::Profile,
}

impl ProfileBuilder {
    /// A profile with one sample type, e.g. `("cpu", "nanoseconds")`.
    pub fn new(sample_type: &str, unit: &str) -> Self {
        let mut b = Self::default();
        b.string("");
        b.add_sample_type(sample_type, unit);
        b
    }

    pub fn add_sample_type(&mut self, sample_type: &str, unit: &str) -> &mut Self {
        let vt = pb::ValueType { r#type: self.string(sample_type), unit: self.string(unit) };
        self.profile.sample_type.push(vt);
        self
    }

    pub fn period(&mut self, period_type: &str, unit: &str, period: i64) -> &mut Self {
        self.profile.period_type =
            Some(pb::ValueType { r#type: self.string(period_type), unit: self.string(unit) });
        self.profile.period = period;
        self
    }

    pub fn time_nanos(&mut self, t: i64) -> &mut Self {
        self.profile.time_nanos = t;
        self
    }

    pub fn duration_nanos(&mut self, d: i64) -> &mut Self {
        self.profile.duration_nanos = d;
        self
    }

    /// Adds a sample; `stack` is root first (as a flame graph reads), values
    /// one per sample type, labels as string sample labels.
    pub fn sample(&mut self, stack: &[&str], values: &[i64], labels: &[(&str, &str)]) -> &mut Self {
        let location_id = stack.iter().rev().map(|f| self.location(f)).collect();
        let label = labels
            .iter()
            .map(|(k, v)| pb::Label { key: self.string(k), str: self.string(v), ..Default::default() })
            .collect();
        self.profile.sample.push(pb::Sample { location_id, value: values.to_vec(), label });
        self
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_ids.get(s) {
            return i;
        }
        let i = self.strings.len() as i64;
        self.strings.push(s.to_owned());
        self.string_ids.insert(s.to_owned(), i);
        i
    }

    /// One function and one location per distinct frame name (ids equal).
    fn location(&mut self, name: &str) -> u64 {
        if let Some(&id) = self.functions.get(name) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let name_idx = self.string(name);
        let file = self.string(&format!("src/{}.rs", name.split("::").next().unwrap_or(name)));
        self.profile.function.push(pb::Function {
            id,
            name: name_idx,
            system_name: name_idx,
            filename: file,
            start_line: id as i64,
        });
        self.profile.location.push(pb::Location {
            id,
            mapping_id: 1,
            address: 0x1000 + id * 16,
            line: vec![pb::Line { function_id: id, line: id as i64 * 10 }],
            is_folded: false,
        });
        self.functions.insert(name.to_owned(), id);
        id
    }

    pub fn build(&self) -> pb::Profile {
        let mut p = self.profile.clone();
        let mut strings = self.strings.clone();
        let bin = strings.len() as i64;
        strings.push("/usr/bin/app".to_owned());
        p.mapping = vec![pb::Mapping {
            id: 1,
            memory_start: 0x1000,
            memory_limit: 0x100000,
            filename: bin,
            has_functions: true,
            ..Default::default()
        }];
        p.string_table = strings;
        p
    }

    pub fn encode(&self) -> Vec<u8> {
        self.build().encode_to_vec()
    }
}

/// Deterministic pseudo-random numbers (xorshift) so corpora are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A realistic CPU profile of one process: `samples` stacks of depth about
/// `depth`, drawn from a shared call graph of `functions` frames, so stacks
/// share prefixes and frames as real programs do.
pub fn realistic_cpu_profile(seed: u64, samples: usize, depth: usize, functions: usize) -> ProfileBuilder {
    let mut rng = Rng::new(seed);
    let names: Vec<String> = (0..functions)
        .map(|i| format!("github.com/acme/shop/pkg{}.(*Handler{}).Method{}", i % 37, i % 11, i))
        .collect();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).duration_nanos(10_000_000_000);
    let roots = ["runtime.main", "runtime.goexit", "net/http.(*conn).serve"];
    let mut stack: Vec<&str> = Vec::with_capacity(depth + 1);
    for _ in 0..samples {
        stack.clear();
        stack.push(roots[rng.below(roots.len() as u64) as usize]);
        // A walk through a call graph where each frame mostly calls a few
        // successors: deep, shared prefixes.
        let mut f = rng.below(8) as usize;
        let d = depth / 2 + rng.below(depth as u64 / 2 + 1) as usize;
        for _ in 0..d {
            stack.push(&names[f % functions]);
            f = (f * 3 + 1 + rng.below(3) as usize) % functions;
        }
        let v = 10_000_000 * (1 + rng.below(20) as i64);
        b.sample(&stack, &[v], &[]);
    }
    b
}
