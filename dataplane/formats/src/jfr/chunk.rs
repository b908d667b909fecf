//! One chunk of a recording: header, metadata, constant pools, events.
//!
//! Header (68 bytes, big-endian): magic `FLR\0`, major u16, minor u16,
//! then i64s `chunkSize` (header included), `constantPoolOffset`,
//! `metadataOffset` (both from the chunk start), `startNanos`,
//! `durationNanos`, `startTicks`, `ticksPerSecond`, and i32 `features`
//! (bit 0: ints are compressed varints). The body is a sequence of
//! events, each `size int` (the whole event, size field included),
//! `typeId long`, then the fields of the type's class. Type 0 is the
//! metadata event, type 1 a checkpoint (constant pools):
//! `startTime long, duration long, delta long, kind byte, poolCount int`,
//! then per pool `classId long, count int, count × (key long, value)`.
//!
//! Parsing is two passes over the chunk: pass 1 indexes the constant pool
//! entries needed to resolve stack traces (key → offset, decoded lazily),
//! pass 2 decodes only the events of supported types, skipping others by
//! their size.

use rustc_hash::FxHashMap;

use super::JfrError;
use super::builder::{Builder, EventKind};
use super::metadata::{Field, Kind, Types};
use super::reader::{JStr, Reader};

const HEADER_SIZE: usize = 68;
pub(crate) const MAGIC: &[u8; 4] = b"FLR\0";
const EVENT_METADATA: i64 = 0;
const EVENT_CHECKPOINT: i64 = 1;
/// Deepest inline struct nesting accepted in a value.
const MAX_VALUE_DEPTH: usize = 32;
/// Deepest pool indirection followed to get a name (Class → Symbol → String).
const MAX_NAME_DEPTH: usize = 4;
/// Classes whose constant pools are indexed: the ones frame names are resolved through.
const POOLED: [&str; 7] = [
    "jdk.types.StackTrace",
    "jdk.types.ThreadState",
    "jdk.types.StackFrame",
    "jdk.types.Method",
    "java.lang.Class",
    "jdk.types.Symbol",
    "java.lang.String",
];

/// A decoded field value.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    /// An integer, or a constant pool key.
    Int(i64),
    Str(JStr<'a>),
    /// Not a scalar (array, float, inline struct): skipped.
    Other,
}

/// Parses the chunk starting at `start`; returns where the next one starts.
pub(crate) fn parse_chunk(buf: &[u8], start: usize, b: &mut Builder) -> Result<usize, JfrError> {
    let mut r = Reader::new(buf, start, buf.len(), false);
    if r.remaining() < MAGIC.len() || r.bytes(4)? != MAGIC {
        return Err(JfrError::NotJfr { offset: start });
    }
    let major = r.be_u16()?;
    let minor = r.be_u16()?;
    if major != 2 {
        return Err(JfrError::UnsupportedVersion { major, minor });
    }
    let chunk_size = r.be_i64()?;
    let _constant_pool_offset = r.be_i64()?;
    let metadata_offset = r.be_i64()?;
    let start_nanos = r.be_i64()?;
    let duration_nanos = r.be_i64()?;
    let _start_ticks = r.be_i64()?;
    let ticks_per_second = r.be_i64()?;
    let features = r.be_i32()?;
    let size = usize::try_from(chunk_size)
        .ok()
        .filter(|&s| s >= HEADER_SIZE && u32::try_from(s).is_ok())
        .ok_or(JfrError::Malformed { what: "bad chunk size", offset: start + 8 })?;
    if size > buf.len() - start {
        return Err(JfrError::Truncated { offset: buf.len() });
    }
    let end = start + size;
    let meta = usize::try_from(metadata_offset)
        .ok()
        .filter(|&m| (HEADER_SIZE..size).contains(&m))
        .ok_or(JfrError::Malformed { what: "bad metadata offset", offset: start + 24 })?;
    let compressed = features & 1 != 0;

    let (mut mr, ty, _) = event_at(buf, start + meta, end, compressed)?;
    if ty != EVENT_METADATA {
        return Err(JfrError::Malformed {
            what: "metadata offset does not point at the metadata event",
            offset: start + meta,
        });
    }
    let types = Types::parse(&mut mr)?;
    let mut chunk = Chunk::new(buf, start, end, compressed, types);
    b.chunk_time(start_nanos, duration_nanos);

    // Pass 1: constant pools.
    let mut pos = start + HEADER_SIZE;
    while pos < end {
        let (mut er, ty, next) = event_at(buf, pos, end, compressed)?;
        if ty == EVENT_CHECKPOINT {
            chunk.checkpoint(&mut er)?;
        }
        pos = next;
    }
    for p in chunk.pools.values_mut() {
        // Stable: for a key defined twice, the later definition sorts last and wins.
        p.sort_by_key(|e| e.0);
    }

    // Pass 2: events.
    let plans = chunk.plans();
    let mut st = EventState { ticks_per_second, ..EventState::default() };
    let mut pos = start + HEADER_SIZE;
    while pos < end {
        let (mut er, ty, next) = event_at(buf, pos, end, compressed)?;
        if let Some(plan) = plans.get(&ty) {
            chunk.event(&mut er, plan, b, &mut st)?;
        }
        pos = next;
    }
    Ok(end)
}

/// Reads an event header at `pos`: a reader over the rest of the event
/// (after the type id), the type id, and where the next event starts.
fn event_at(buf: &[u8], pos: usize, end: usize, compressed: bool) -> Result<(Reader<'_>, i64, usize), JfrError> {
    let mut r = Reader::new(buf, pos, end, compressed);
    let size = r.int()?;
    let header = r.pos() - pos;
    let size = usize::try_from(size)
        .ok()
        .filter(|&s| s > header)
        .ok_or(JfrError::Malformed { what: "bad event size", offset: pos })?;
    if size > end - pos {
        return Err(JfrError::Truncated { offset: end });
    }
    let mut body = Reader::new(buf, r.pos(), pos + size, compressed);
    let ty = body.long()?;
    Ok((body, ty, pos + size))
}

/// Which captured slot an event field fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cap {
    Skip,
    Stack,
    Context,
    Duration,
    TlabSize,
    AllocationSize,
    Weight,
    Samples,
    Size,
    State,
    SpanId,
    SpanName,
    SettingName,
    SettingValue,
}

/// Number of [`Cap`] slots.
const CAPS: usize = Cap::SettingValue as usize + 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlanKind {
    Event(EventKind),
    Setting,
}

/// How to decode one event type: its sized fields, each skipped or captured.
#[derive(Debug)]
struct Plan {
    kind: PlanKind,
    class: u32,
    steps: Vec<(u32, Cap)>,
}

/// Per-chunk caches and scratch buffers of pass 2.
#[derive(Debug, Default)]
struct EventState {
    ticks_per_second: i64,
    /// Stack trace pool key → interned stack (None: unresolvable or empty).
    stacks: FxHashMap<i64, Option<u32>>,
    /// Method pool key → function index (None: a frame Pyroscope leaves out).
    methods: FxHashMap<i64, Option<u32>>,
    /// Thread state pool key → is the thread on CPU (a known state, not sleeping).
    on_cpu: FxHashMap<i64, bool>,
    frames: Vec<u32>,
    name: String,
    part: String,
}

/// Field indices along StackTrace → StackFrame → Method.
#[derive(Debug, Default)]
struct Layout {
    stack_trace: Option<u32>,
    frames: Option<usize>,
    frame: Option<u32>,
    frame_method: Option<usize>,
    frame_line: Option<usize>,
    method: Option<u32>,
    method_type: Option<usize>,
    method_name: Option<usize>,
}

#[derive(Debug)]
struct Chunk<'a> {
    buf: &'a [u8],
    base: usize,
    end: usize,
    compressed: bool,
    types: Types,
    /// Class index → sorted (key, offset from chunk start).
    pools: FxHashMap<u32, Vec<(i64, u32)>>,
    string_class: Option<u32>,
    layout: Layout,
}

impl<'a> Chunk<'a> {
    fn new(buf: &'a [u8], base: usize, end: usize, compressed: bool, types: Types) -> Self {
        let mut pools = FxHashMap::default();
        for name in POOLED {
            if let Some(c) = types.find_class(name) {
                pools.insert(c, Vec::new());
            }
        }
        let string_class = types.find_class("java.lang.String");
        let mut l = Layout { stack_trace: types.find_class("jdk.types.StackTrace"), ..Layout::default() };
        if let Some(st) = l.stack_trace {
            l.frames = types.field_index(st, "frames");
            l.frame = l.frames.map(|i| types.class(st).fields[i].ty);
        }
        if let Some(fr) = l.frame {
            l.frame_method = types.field_index(fr, "method");
            l.frame_line = types.field_index(fr, "lineNumber");
            l.method = l.frame_method.map(|i| types.class(fr).fields[i].ty);
        }
        if let Some(m) = l.method {
            l.method_type = types.field_index(m, "type");
            l.method_name = types.field_index(m, "name");
        }
        Chunk { buf, base, end, compressed, types, pools, string_class, layout: l }
    }

    fn reader_at(&self, pos: usize) -> Reader<'a> {
        Reader::new(self.buf, pos, self.end, self.compressed)
    }

    /// Absolute offset of the value of pool entry `key` of `class`.
    fn pool(&self, class: u32, key: i64) -> Option<usize> {
        let p = self.pools.get(&class)?;
        let i = p.partition_point(|e| e.0 <= key);
        let &(k, off) = p.get(i.checked_sub(1)?)?;
        (k == key).then_some(self.base + off as usize)
    }

    /// Indexes the pools of a checkpoint event.
    fn checkpoint(&mut self, r: &mut Reader<'a>) -> Result<(), JfrError> {
        let _start = r.long()?;
        let _duration = r.long()?;
        let _delta = r.long()?;
        let _kind = r.u8()?;
        let pools = r.count()?;
        for _ in 0..pools {
            let class_id = r.long()?;
            let class = self.types.class_index(class_id).ok_or(r.malformed("constant pool of an unknown class"))?;
            let n = r.count()?;
            for _ in 0..n {
                let key = r.long()?;
                let off = (r.pos() - self.base) as u32;
                skip_value(&self.types, r, class, 0)?;
                if let Some(p) = self.pools.get_mut(&class) {
                    p.push((key, off));
                }
            }
        }
        Ok(())
    }

    /// Decoding plans for the supported event types of this chunk, by type id.
    fn plans(&self) -> FxHashMap<i64, Plan> {
        let mut plans = FxHashMap::default();
        for (ci, c) in self.types.classes.iter().enumerate() {
            let name = self.types.str(c.name);
            let kind = match EventKind::of_event(name) {
                Some(k) => PlanKind::Event(k),
                None if name == "jdk.ActiveSetting" => PlanKind::Setting,
                None => continue,
            };
            let steps = c
                .sized
                .iter()
                .map(|&fi| {
                    let f = &c.fields[fi as usize];
                    let cap = match (kind, self.types.field_name(f)) {
                        (PlanKind::Event(_), "stackTrace") => Cap::Stack,
                        (PlanKind::Event(_), "contextId") => Cap::Context,
                        (PlanKind::Event(_), "duration") => Cap::Duration,
                        (PlanKind::Event(_), "tlabSize") => Cap::TlabSize,
                        (PlanKind::Event(_), "allocationSize") => Cap::AllocationSize,
                        (PlanKind::Event(_), "weight") => Cap::Weight,
                        (PlanKind::Event(_), "samples") => Cap::Samples,
                        (PlanKind::Event(_), "size") => Cap::Size,
                        (PlanKind::Event(_), "state") => Cap::State,
                        (PlanKind::Event(_), "spanId") => Cap::SpanId,
                        (PlanKind::Event(_), "spanName") => Cap::SpanName,
                        (PlanKind::Setting, "name") => Cap::SettingName,
                        (PlanKind::Setting, "value") => Cap::SettingValue,
                        _ => Cap::Skip,
                    };
                    (fi, cap)
                })
                .collect();
            plans.insert(c.id, Plan { kind, class: ci as u32, steps });
        }
        plans
    }

    fn event(&self, r: &mut Reader<'a>, plan: &Plan, b: &mut Builder, st: &mut EventState) -> Result<(), JfrError> {
        let class = self.types.class(plan.class);
        let mut ints = [None::<i64>; CAPS];
        let mut strs = [None::<JStr<'a>>; 2];
        let mut state_ty = None;
        for &(fi, cap) in &plan.steps {
            let f = &class.fields[fi as usize];
            if cap == Cap::Skip {
                skip_field(&self.types, r, f, 0)?;
                continue;
            }
            match read_field(&self.types, r, f)? {
                Val::Int(v) => ints[cap as usize] = Some(v),
                Val::Str(s) if cap == Cap::SettingName => strs[0] = Some(s),
                Val::Str(s) if cap == Cap::SettingValue => strs[1] = Some(s),
                Val::Str(_) | Val::Other => {}
            }
            if cap == Cap::State {
                state_ty = Some(f.ty);
            }
        }
        let kind = match plan.kind {
            PlanKind::Setting => return self.setting(strs, b, st),
            PlanKind::Event(k) => k,
        };
        let Some(key) = ints[Cap::Stack as usize] else { return Ok(()) };
        let stack = match st.stacks.get(&key) {
            Some(&s) => s,
            None => {
                let s = self.resolve_stack(key, b, st)?;
                st.stacks.insert(key, s);
                s
            }
        };
        let Some(stack) = stack else { return Ok(()) };
        let get = |c: Cap| ints[c as usize].unwrap_or(0);
        let labels = b.labels(get(Cap::Context), get(Cap::SpanId), get(Cap::SpanName));
        match kind {
            EventKind::Cpu => {
                // Pyroscope counts a sample as CPU only when its thread state
                // is known and not sleeping; in async-profiler's wall mode
                // every sample is also wall time.
                if let Some(state) = ints[Cap::State as usize]
                    && self.is_on_cpu(state_ty, state, st)?
                {
                    b.add(EventKind::Cpu, stack, labels, [1, 0])?;
                }
                if b.event_setting.as_deref() == Some("wall") {
                    b.add(EventKind::Wall, stack, labels, [1, 0])?;
                }
                Ok(())
            }
            EventKind::Wall => {
                // async-profiler's wall-clock sample: `samples` intervals of
                // wall time, and one of CPU when the thread was running.
                if let Some(n @ 1..) = ints[Cap::Samples as usize].or(Some(1)) {
                    b.add(kind, stack, labels, [n, 0])?;
                }
                if let Some(state) = ints[Cap::State as usize]
                    && self.is_on_cpu(state_ty, state, st)?
                {
                    b.add(EventKind::Cpu, stack, labels, [1, 0])?;
                }
                Ok(())
            }
            EventKind::LiveObject => b.add(kind, stack, labels, [1, 0]),
            EventKind::TlabIn => {
                b.add(kind, stack, labels, [1, ints[Cap::TlabSize as usize].unwrap_or(get(Cap::AllocationSize))])
            }
            EventKind::TlabOut => b.add(kind, stack, labels, [1, get(Cap::AllocationSize)]),
            EventKind::Lock | EventKind::Park => {
                b.add(kind, stack, labels, [1, ticks_to_nanos(get(Cap::Duration), st.ticks_per_second)])
            }
            EventKind::AllocSample => b.add(kind, stack, labels, [1, get(Cap::Weight)]),
            EventKind::Malloc => b.add(kind, stack, labels, [1, get(Cap::Size)]),
        }
    }

    /// Whether thread state pool entry `key` (field type `ty`) exists and is
    /// not `STATE_SLEEPING`.
    fn is_on_cpu(&self, ty: Option<u32>, key: i64, st: &mut EventState) -> Result<bool, JfrError> {
        if let Some(&s) = st.on_cpu.get(&key) {
            return Ok(s);
        }
        let on_cpu = match ty {
            Some(t) if self.pool(t, key).is_some() => {
                st.name.clear();
                self.text(ty, Val::Int(key), &mut st.name, 0)?;
                st.name != "STATE_SLEEPING"
            }
            _ => false,
        };
        st.on_cpu.insert(key, on_cpu);
        Ok(on_cpu)
    }

    /// A `jdk.ActiveSetting` event: async-profiler's `event` setting (its
    /// profiling mode) decides whether execution samples are wall time too.
    fn setting(&self, strs: [Option<JStr<'a>>; 2], b: &mut Builder, st: &mut EventState) -> Result<(), JfrError> {
        let [Some(name), Some(value)] = strs else { return Ok(()) };
        st.name.clear();
        self.text(self.string_class, Val::Str(name), &mut st.name, 0)?;
        if st.name != "event" {
            return Ok(());
        }
        st.name.clear();
        self.text(self.string_class, Val::Str(value), &mut st.name, 0)?;
        b.charge_name(st.name.len())?;
        b.event_setting = Some(st.name.clone());
        Ok(())
    }

    /// Interns the stack of stack trace pool entry `key`.
    fn resolve_stack(&self, key: i64, b: &mut Builder, st: &mut EventState) -> Result<Option<u32>, JfrError> {
        let l = &self.layout;
        let (Some(class), Some(frames), Some(frame)) = (l.stack_trace, l.frames, l.frame) else { return Ok(None) };
        let Some(off) = self.pool(class, key) else { return Ok(None) };
        let c = self.types.class(class);
        let mut r = self.reader_at(off);
        st.frames.clear();
        for &fi in &c.sized {
            let f = &c.fields[fi as usize];
            if fi as usize != frames {
                skip_field(&self.types, &mut r, f, 0)?;
                continue;
            }
            if !f.array {
                break;
            }
            let n = r.count()?;
            for _ in 0..n {
                let (method, line) = if f.cp {
                    let k = r.long()?;
                    match self.pool(frame, k) {
                        Some(o) => self.frame(&mut self.reader_at(o), frame)?,
                        None => (None, 0),
                    }
                } else {
                    self.frame(&mut r, frame)?
                };
                let func = match method {
                    Some(m) => match st.methods.get(&m) {
                        Some(&f) => f,
                        None => {
                            let f = self.function(m, b, st)?;
                            st.methods.insert(m, f);
                            f
                        }
                    },
                    None => None,
                };
                if let Some(func) = func {
                    // Line numbers are unsigned 32-bit, as Pyroscope reads them (-1 is 4294967295).
                    st.frames.push(b.location(func, i64::from(line as u32)));
                }
            }
            break;
        }
        if st.frames.is_empty() {
            return Ok(None);
        }
        Ok(Some(b.stack(&st.frames)))
    }

    /// Reads one inline stack frame: (method key, line number).
    fn frame(&self, r: &mut Reader<'a>, frame: u32) -> Result<(Option<i64>, i64), JfrError> {
        let c = self.types.class(frame);
        let (mut method, mut line) = (None, 0);
        for &fi in &c.sized {
            let f = &c.fields[fi as usize];
            let fi = Some(fi as usize);
            if fi == self.layout.frame_method {
                if let Val::Int(v) = read_field(&self.types, r, f)? {
                    method = Some(v);
                }
            } else if fi == self.layout.frame_line {
                if let Val::Int(v) = read_field(&self.types, r, f)? {
                    line = v;
                }
            } else {
                skip_field(&self.types, r, f, 0)?;
            }
        }
        Ok((method, line))
    }

    /// The function of method pool entry `key`: `<class>.<method>` with the
    /// class's internal name (`java/lang/Thread.run`; `.no_Java_frame` for
    /// a class without a name), each part through Pyroscope's symbol rewrites
    /// ([`super::symbols`]). None, and the frame is left out as Pyroscope
    /// does, when the method or its class is not in the constant pools.
    fn function(&self, key: i64, b: &mut Builder, st: &mut EventState) -> Result<Option<u32>, JfrError> {
        let l = &self.layout;
        let (Some(m), Some(ti), Some(ni)) = (l.method, l.method_type, l.method_name) else { return Ok(None) };
        let Some(off) = self.pool(m, key) else { return Ok(None) };
        let fields = &self.types.class(m).fields;
        let class_ty = fields[ti].ty;
        let class = self.struct_field(m, off, ti)?;
        if let Val::Int(k) = class
            && self.pool(class_ty, k).is_none()
        {
            return Ok(None);
        }
        st.part.clear();
        self.text(Some(class_ty), class, &mut st.part, 0)?;
        st.name.clear();
        st.name.push_str(&super::symbols::rewrite(&st.part));
        st.name.push('.');
        st.part.clear();
        let v = self.struct_field(m, off, ni)?;
        self.text(Some(fields[ni].ty), v, &mut st.part, 0)?;
        st.name.push_str(&super::symbols::rewrite(&st.part));
        b.charge_name(st.name.len() + st.part.len())?;
        Ok(Some(b.function(&st.name)))
    }

    /// Field `target` of the struct of `class` at `off`.
    fn struct_field(&self, class: u32, off: usize, target: usize) -> Result<Val<'a>, JfrError> {
        let c = self.types.class(class);
        let mut r = self.reader_at(off);
        for &fi in &c.sized {
            let f = &c.fields[fi as usize];
            if fi as usize == target {
                return read_field(&self.types, &mut r, f);
            }
            skip_field(&self.types, &mut r, f, 0)?;
        }
        Ok(Val::Other)
    }

    /// Appends the text a value denotes: a string, a string pool key, or a
    /// pool key of a struct whose `string` or `name` field denotes text
    /// (Symbol, Class). Unresolvable references append nothing.
    fn text(&self, ty: Option<u32>, v: Val<'a>, out: &mut String, depth: usize) -> Result<(), JfrError> {
        if depth > MAX_NAME_DEPTH {
            return Ok(());
        }
        match v {
            Val::Str(JStr::Pool(k)) => {
                if let Some(off) = self.string_class.and_then(|sc| self.pool(sc, k)) {
                    match self.reader_at(off).string()? {
                        JStr::Pool(_) => {}
                        s => s.push_to(out),
                    }
                }
            }
            Val::Str(s) => s.push_to(out),
            Val::Int(key) => {
                let Some(ty) = ty else { return Ok(()) };
                let Some(off) = self.pool(ty, key) else { return Ok(()) };
                let c = self.types.class(ty);
                if c.kind == Kind::String {
                    return self.text(Some(ty), Val::Str(self.reader_at(off).string()?), out, depth + 1);
                }
                let Some(fi) = self.types.field_index(ty, "string").or_else(|| self.types.field_index(ty, "name"))
                else {
                    return Ok(());
                };
                let v = self.struct_field(ty, off, fi)?;
                self.text(Some(c.fields[fi].ty), v, out, depth + 1)?;
            }
            Val::Other => {}
        }
        Ok(())
    }
}

/// Reads a scalar field (a pool key, integer or string); skips anything else.
fn read_field<'a>(types: &Types, r: &mut Reader<'a>, f: &Field) -> Result<Val<'a>, JfrError> {
    if f.array {
        skip_field(types, r, f, 0)?;
        return Ok(Val::Other);
    }
    if f.cp {
        return r.long().map(Val::Int);
    }
    Ok(match types.class(f.ty).kind {
        Kind::Byte => Val::Int(i64::from(r.u8()?)),
        Kind::Short => Val::Int(i64::from(r.short()?)),
        Kind::Char => Val::Int(i64::from(r.char_code()?)),
        Kind::Int => Val::Int(i64::from(r.int()?)),
        Kind::Long => Val::Int(r.long()?),
        Kind::String => Val::Str(r.string()?),
        Kind::Float | Kind::Double | Kind::Struct => {
            skip_value(types, r, f.ty, 0)?;
            Val::Other
        }
    })
}

fn skip_field(types: &Types, r: &mut Reader<'_>, f: &Field, depth: usize) -> Result<(), JfrError> {
    if !f.array {
        return skip_one(types, r, f, depth);
    }
    let n = r.count()?;
    if !f.cp && types.class(f.ty).empty {
        return Ok(());
    }
    for _ in 0..n {
        skip_one(types, r, f, depth)?;
    }
    Ok(())
}

fn skip_one(types: &Types, r: &mut Reader<'_>, f: &Field, depth: usize) -> Result<(), JfrError> {
    if f.cp { r.long().map(drop) } else { skip_value(types, r, f.ty, depth) }
}

/// Skips a value of `class`. Every sized field takes at least one byte, so
/// the work is at most `MAX_VALUE_DEPTH` steps per input byte.
fn skip_value(types: &Types, r: &mut Reader<'_>, class: u32, depth: usize) -> Result<(), JfrError> {
    let c = types.class(class);
    match c.kind {
        Kind::Byte => r.u8().map(drop),
        Kind::Short => r.short().map(drop),
        Kind::Char => r.char_code().map(drop),
        Kind::Int => r.int().map(drop),
        Kind::Long => r.long().map(drop),
        Kind::Float => r.bytes(4).map(drop),
        Kind::Double => r.bytes(8).map(drop),
        Kind::String => r.string().map(drop),
        Kind::Struct => {
            if c.empty {
                return Ok(());
            }
            if depth >= MAX_VALUE_DEPTH {
                return Err(r.malformed("values nested too deep"));
            }
            for &fi in &c.sized {
                skip_field(types, r, &c.fields[fi as usize], depth + 1)?;
            }
            Ok(())
        }
    }
}

fn ticks_to_nanos(ticks: i64, ticks_per_second: i64) -> i64 {
    if ticks_per_second <= 0 || ticks_per_second == 1_000_000_000 {
        return ticks;
    }
    let ns = i128::from(ticks) * 1_000_000_000 / i128::from(ticks_per_second);
    ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(ticks_to_nanos(5, 1_000_000_000), 5);
        assert_eq!(ticks_to_nanos(3, 1_000), 3_000_000);
        assert_eq!(ticks_to_nanos(i64::MAX, 1), i64::MAX);
        assert_eq!(ticks_to_nanos(7, 0), 7);
    }
}
