//! Writes JFR recordings for tests: a metadata event built from class
//! descriptions, one checkpoint with constant pools, and events, in the
//! chunk layout the parser reads (compressed integers, 4-byte padded event
//! sizes as the JDK writes them). Only with the `testkit` feature.
#![allow(missing_docs, clippy::unwrap_used)]

/// A constant pool: (class id, [(key, value bytes)]).
pub type Pool = (i64, Vec<(i64, Vec<u8>)>);
pub type Pools = [Pool];

/// Class ids of [`std_classes`].
pub const LONG: i64 = 1;
pub const INT: i64 = 2;
pub const BOOLEAN: i64 = 3;
pub const STRING: i64 = 4;
pub const SYMBOL: i64 = 5;
pub const CLASS: i64 = 6;
pub const METHOD: i64 = 7;
pub const FRAME: i64 = 8;
pub const STACK_TRACE: i64 = 9;
pub const THREAD_STATE: i64 = 10;
pub const EXECUTION_SAMPLE: i64 = 100;
pub const ACTIVE_SETTING: i64 = 101;
pub const LIVE_OBJECT: i64 = 102;
pub const WALL_CLOCK: i64 = 103;
pub const MONITOR_ENTER: i64 = 104;
pub const MALLOC: i64 = 105;
/// Keys of the thread state pool of [`app_pools`].
pub const RUNNABLE: i64 = 1;
pub const SLEEPING: i64 = 2;

#[derive(Debug, Clone)]
pub struct Field {
    pub name: &'static str,
    pub ty: i64,
    pub cp: bool,
    pub array: bool,
}

pub fn f(name: &'static str, ty: i64) -> Field {
    Field { name, ty, cp: false, array: false }
}

pub fn cp(name: &'static str, ty: i64) -> Field {
    Field { name, ty, cp: true, array: false }
}

pub fn arr(name: &'static str, ty: i64) -> Field {
    Field { name, ty, cp: false, array: true }
}

#[derive(Debug, Clone)]
pub struct Class {
    pub id: i64,
    pub name: &'static str,
    pub fields: Vec<Field>,
}

pub fn class(id: i64, name: &'static str, fields: Vec<Field>) -> Class {
    Class { id, name, fields }
}

/// The JDK types stack traces are made of, plus a few event types.
pub fn std_classes() -> Vec<Class> {
    vec![
        class(LONG, "long", vec![]),
        class(INT, "int", vec![]),
        class(BOOLEAN, "boolean", vec![]),
        class(STRING, "java.lang.String", vec![]),
        class(SYMBOL, "jdk.types.Symbol", vec![f("string", STRING)]),
        class(CLASS, "java.lang.Class", vec![cp("name", SYMBOL), f("modifiers", INT)]),
        class(METHOD, "jdk.types.Method", vec![cp("type", CLASS), cp("name", SYMBOL), cp("descriptor", SYMBOL)]),
        class(FRAME, "jdk.types.StackFrame", vec![cp("method", METHOD), f("lineNumber", INT), f("bytecodeIndex", INT)]),
        class(STACK_TRACE, "jdk.types.StackTrace", vec![f("truncated", BOOLEAN), arr("frames", FRAME)]),
        class(THREAD_STATE, "jdk.types.ThreadState", vec![f("name", STRING)]),
        class(
            EXECUTION_SAMPLE,
            "jdk.ExecutionSample",
            vec![
                f("startTime", LONG),
                cp("stackTrace", STACK_TRACE),
                cp("state", THREAD_STATE),
                f("spanId", LONG),
                f("spanName", LONG),
                f("contextId", LONG),
            ],
        ),
        class(
            ACTIVE_SETTING,
            "jdk.ActiveSetting",
            vec![f("startTime", LONG), f("id", LONG), f("name", STRING), f("value", STRING)],
        ),
        class(
            LIVE_OBJECT,
            "profiler.LiveObject",
            vec![f("startTime", LONG), cp("stackTrace", STACK_TRACE), f("allocationSize", LONG)],
        ),
        class(
            WALL_CLOCK,
            "profiler.WallClockSample",
            vec![f("startTime", LONG), cp("stackTrace", STACK_TRACE), cp("state", THREAD_STATE), f("samples", INT)],
        ),
        class(
            MONITOR_ENTER,
            "jdk.JavaMonitorEnter",
            vec![f("startTime", LONG), f("duration", LONG), cp("stackTrace", STACK_TRACE)],
        ),
        class(
            MALLOC,
            "profiler.Malloc",
            vec![f("startTime", LONG), cp("stackTrace", STACK_TRACE), f("address", LONG), f("size", LONG)],
        ),
    ]
}

pub fn varint(out: &mut Vec<u8>, v: i64) {
    let mut v = v as u64;
    for _ in 0..8 {
        if v < 0x80 {
            out.push(v as u8);
            return;
        }
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(3);
    varint(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// Frames an event: 4-byte padded size (as the JDK writes it), type id, body.
pub fn event(ty: i64, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    varint(&mut b, ty);
    b.extend_from_slice(body);
    let size = b.len() + 4;
    let mut out = vec![
        (size & 0x7f) as u8 | 0x80,
        ((size >> 7) & 0x7f) as u8 | 0x80,
        ((size >> 14) & 0x7f) as u8 | 0x80,
        ((size >> 21) & 0x7f) as u8,
    ];
    out.extend(b);
    out
}

/// An element: name, attributes, children (already encoded).
#[derive(Debug)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

fn el(name: &str, attrs: &[(&str, String)], children: Vec<Element>) -> Element {
    Element { name: name.into(), attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), children }
}

pub fn metadata_tree(classes: &[Class]) -> Element {
    let classes = classes
        .iter()
        .map(|c| {
            let fields = c
                .fields
                .iter()
                .map(|f| {
                    let mut a = vec![("name", f.name.to_string()), ("class", f.ty.to_string())];
                    if f.cp {
                        a.push(("constantPool", "true".into()));
                    }
                    if f.array {
                        a.push(("dimension", "1".into()));
                    }
                    el("field", &a, vec![])
                })
                .collect();
            el("class", &[("name", c.name.to_string()), ("id", c.id.to_string())], fields)
        })
        .collect();
    el("root", &[], vec![el("metadata", &[], classes), el("region", &[("locale", "en_US".into())], vec![])])
}

/// The metadata event body (after the type id) for an element tree.
pub fn metadata_body(root: &Element) -> Vec<u8> {
    fn collect(e: &Element, out: &mut Vec<String>) {
        for s in std::iter::once(&e.name).chain(e.attrs.iter().flat_map(|(k, v)| [k, v])) {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        for c in &e.children {
            collect(c, out);
        }
    }
    fn write(e: &Element, strings: &[String], out: &mut Vec<u8>) {
        let idx = |s: &String| strings.iter().position(|x| x == s).unwrap() as i64;
        varint(out, idx(&e.name));
        varint(out, e.attrs.len() as i64);
        for (k, v) in &e.attrs {
            varint(out, idx(k));
            varint(out, idx(v));
        }
        varint(out, e.children.len() as i64);
        for c in &e.children {
            write(c, strings, out);
        }
    }
    let mut strings = Vec::new();
    collect(root, &mut strings);
    let mut b = Vec::new();
    varint(&mut b, 0); // start time
    varint(&mut b, 0); // duration
    varint(&mut b, 1); // metadata id
    varint(&mut b, strings.len() as i64);
    for s in &strings {
        string(&mut b, s);
    }
    write(root, &strings, &mut b);
    b
}

/// One checkpoint event body with the given pools: (class id, [(key, value bytes)]).
pub fn checkpoint_body(pools: &Pools) -> Vec<u8> {
    let mut b = Vec::new();
    varint(&mut b, 0); // start time
    varint(&mut b, 0); // duration
    varint(&mut b, 0); // delta
    b.push(0); // checkpoint kind
    varint(&mut b, pools.len() as i64);
    for (class, entries) in pools {
        varint(&mut b, *class);
        varint(&mut b, entries.len() as i64);
        for (k, v) in entries {
            varint(&mut b, *k);
            b.extend_from_slice(v);
        }
    }
    b
}

pub const START_NANOS: i64 = 1_700_000_000_000_000_000;

/// A whole chunk: header, metadata event, checkpoint event, events.
pub fn chunk_raw(metadata: &[u8], checkpoint: &[u8], events: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0u8; 68];
    out.extend(event(0, metadata));
    let cp_offset = out.len();
    out.extend(event(1, checkpoint));
    for e in events {
        out.extend_from_slice(e);
    }
    let size = out.len() as i64;
    let mut h = Vec::with_capacity(68);
    h.extend_from_slice(b"FLR\0");
    h.extend_from_slice(&2u16.to_be_bytes());
    h.extend_from_slice(&1u16.to_be_bytes());
    for v in [size, cp_offset as i64, 68, START_NANOS, 1_000_000_000, 0, 1_000_000_000] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h.extend_from_slice(&1i32.to_be_bytes());
    out[..68].copy_from_slice(&h);
    out
}

pub fn chunk(classes: &[Class], pools: &Pools, events: &[Vec<u8>]) -> Vec<u8> {
    chunk_raw(&metadata_body(&metadata_tree(classes)), &checkpoint_body(pools), events)
}

/// Sets the chunk size in a header (for truncated-chunk tests).
pub fn set_chunk_size(buf: &mut [u8], size: i64) {
    buf[8..16].copy_from_slice(&size.to_be_bytes());
}

pub fn sym(s: &str) -> Vec<u8> {
    let mut b = Vec::new();
    string(&mut b, s);
    b
}

pub fn ints(vals: &[i64]) -> Vec<u8> {
    let mut b = Vec::new();
    for &v in vals {
        varint(&mut b, v);
    }
    b
}

/// A stack trace value: not truncated, frames (method key, line), leaf first.
pub fn stack(frames: &[(i64, i64)]) -> Vec<u8> {
    let mut b = vec![0u8];
    varint(&mut b, frames.len() as i64);
    for &(m, line) in frames {
        varint(&mut b, m);
        varint(&mut b, line);
        varint(&mut b, 0);
    }
    b
}

/// A small program: `com/example/App.{main,work,sleep}`, two stacks
/// (1: work ← main, 2: sleep ← main), and pools for them.
pub fn app_pools() -> Vec<Pool> {
    vec![
        (
            SYMBOL,
            vec![(1, sym("com/example/App")), (2, sym("main")), (3, sym("work")), (4, sym("sleep")), (5, sym("()V"))],
        ),
        (CLASS, vec![(1, ints(&[1, 1]))]),
        (METHOD, vec![(1, ints(&[1, 2, 5])), (2, ints(&[1, 3, 5])), (3, ints(&[1, 4, 5]))]),
        (STACK_TRACE, vec![(1, stack(&[(2, 10), (1, 5)])), (2, stack(&[(3, 20), (1, 6)]))]),
        (THREAD_STATE, vec![(RUNNABLE, sym("STATE_RUNNABLE")), (SLEEPING, sym("STATE_SLEEPING"))]),
    ]
}

/// An execution sample of a running thread without span.
pub fn execution_sample(stack: i64, context: i64) -> Vec<u8> {
    execution_sample_in(stack, RUNNABLE, 0, 0, context)
}

pub fn execution_sample_in(stack: i64, state: i64, span_id: i64, span_name: i64, context: i64) -> Vec<u8> {
    event(EXECUTION_SAMPLE, &ints(&[1, stack, state, span_id, span_name, context]))
}

pub fn active_setting(id: i64, name: &str, value: &str) -> Vec<u8> {
    let mut b = ints(&[1, id]);
    string(&mut b, name);
    string(&mut b, value);
    event(ACTIVE_SETTING, &b)
}
