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
        self.profile.period_type = Some(pb::ValueType { r#type: self.string(period_type), unit: self.string(unit) });
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
        // Addresses and lines belong to the code, not to the profile: the
        // same frame has the same ones in every profile, as in a real binary.
        let code = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let name_idx = self.string(name);
        let file = self.string(&format!("src/{}.rs", name.split("::").next().unwrap_or(name)));
        self.profile.function.push(pb::Function {
            id,
            name: name_idx,
            system_name: name_idx,
            filename: file,
            start_line: (code % 5000) as i64,
        });
        self.profile.location.push(pb::Location {
            id,
            mapping_id: 1,
            address: 0x40_0000 + (code % 0x10_0000) * 16,
            line: vec![pb::Line { function_id: id, line: (code % 5000) as i64 + 7 }],
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

/// A synthetic program: a call graph shared by every process that runs it,
/// as the pods of one service run the same binary. Its `stacks` distinct
/// call paths (root first) branch from common prefixes, several `depth`
/// frames deep, over `functions` distinct functions.
#[derive(Debug, Clone)]
pub struct Program {
    names: Vec<String>,
    stacks: Vec<Vec<u32>>,
}

impl Program {
    pub fn new(seed: u64, functions: usize, stacks: usize, depth: usize) -> Self {
        let mut rng = Rng::new(seed);
        let functions = functions.max(4);
        let names: Vec<String> = (0..functions)
            .map(|i| format!("github.com/acme/shop/pkg{}.(*Handler{}).Method{}", i % 37, i % 11, i))
            .collect();
        let roots = [0u32, 1, 2];
        let mut out: Vec<Vec<u32>> = Vec::with_capacity(stacks);
        for n in 0..stacks.max(1) {
            // Branch off an earlier path at a random depth (shared prefix),
            // then continue with fresh frames: a tree, as real call graphs.
            let mut s: Vec<u32> = match n {
                0 => vec![roots[0]],
                _ => {
                    let parent = &out[rng.below(n as u64) as usize];
                    let keep = 1 + rng.below(parent.len() as u64) as usize;
                    parent[..keep].to_vec()
                }
            };
            let target = depth / 2 + rng.below(depth as u64 / 2 + 1) as usize;
            while s.len() < target.max(2) {
                s.push(3 + rng.below(functions as u64 - 3) as u32);
            }
            out.push(s);
        }
        Self { names, stacks: out }
    }

    /// One CPU profile of `ticks` 10 ms samples drawn from the program's
    /// paths with a skew towards hot paths, aggregated per distinct stack as
    /// Go's and most SDKs' pprof encoders do.
    pub fn cpu_profile(&self, seed: u64, ticks: usize) -> ProfileBuilder {
        let mut rng = Rng::new(seed);
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.period("cpu", "nanoseconds", 10_000_000).duration_nanos(10_000_000_000);
        let n = self.stacks.len() as f64;
        let mut counts: std::collections::BTreeMap<usize, i64> = std::collections::BTreeMap::new();
        for _ in 0..ticks {
            let u = (rng.below(1 << 20) as f64) / f64::from(1u32 << 20);
            *counts.entry(((n * u * u * u) as usize).min(self.stacks.len() - 1)).or_default() += 1;
        }
        let mut names: Vec<&str> = Vec::new();
        for (s, count) in counts {
            names.clear();
            names.extend(self.stacks[s].iter().map(|&f| self.names[f as usize].as_str()));
            b.sample(&names, &[count * 10_000_000], &[]);
        }
        b
    }
}

/// A profile of a typical Go service: one [`Program`] (1000 functions,
/// 2000 call paths about 32 frames deep) sampled `samples` times.
pub fn realistic_cpu_profile(program_seed: u64, sample_seed: u64, samples: usize) -> ProfileBuilder {
    Program::new(program_seed, 1000, 2000, 32).cpu_profile(sample_seed, samples)
}
