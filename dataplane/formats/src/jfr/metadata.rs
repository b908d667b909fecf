//! The metadata event (event type 0) of a chunk: the class (type)
//! descriptions every other event and constant pool is encoded with.
//!
//! Layout after the event header (`size`, type id 0): `startTime long`,
//! `duration long`, `metadataId long`, `stringCount int`, the strings, then
//! one element tree. An element is `name int` (string index),
//! `attributeCount int`, `attributeCount × (key int, value int)` (string
//! indices), `childCount int`, children. The tree is
//! `root → metadata → class → field|annotation|setting` (plus `region`).
//! A `class` has attributes `name`, `id` (decimal), `superType`,
//! `simpleType`; a `field` has `name`, `class` (type id), `constantPool`
//! (`"true"`: the value is a pool key) and `dimension` (`"1"`: an array).

use rustc_hash::FxHashMap;

use super::JfrError;
use super::reader::Reader;

/// Deepest element nesting accepted (real files use 4).
const MAX_ELEMENT_DEPTH: usize = 16;

/// How a value of a class is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `boolean`, `byte`: one raw byte.
    Byte,
    /// `short`, `char`, `int`, `long`: varint (or 2/4/8 raw bytes).
    Short,
    Char,
    Int,
    Long,
    Float,
    Double,
    /// `java.lang.String`: a string value.
    String,
    /// Anything else: its fields in order.
    Struct,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// Index into [`Types::strings`].
    pub(crate) name: u32,
    /// Index into [`Types::classes`].
    pub(crate) ty: u32,
    /// The value is a long key into the pool of `ty`.
    pub(crate) cp: bool,
    /// The value is `count int` followed by `count` values.
    pub(crate) array: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Class {
    pub(crate) id: i64,
    pub(crate) name: u32,
    pub(crate) kind: Kind,
    pub(crate) fields: Vec<Field>,
    /// Indices of the fields that take at least one byte (the others are
    /// structs made only of empty structs, skipped in O(1)).
    pub(crate) sized: Vec<u32>,
    /// A value of this class takes zero bytes.
    pub(crate) empty: bool,
}

/// The classes of one chunk.
#[derive(Debug, Default)]
pub(crate) struct Types {
    text: String,
    spans: Vec<(u32, u32)>,
    pub(crate) classes: Vec<Class>,
    by_id: FxHashMap<i64, u32>,
}

impl Types {
    /// A metadata string by index ("" when out of range).
    pub(crate) fn str(&self, idx: u32) -> &str {
        match self.spans.get(idx as usize) {
            Some(&(s, l)) => self.text.get(s as usize..(s as usize + l as usize)).unwrap_or(""),
            None => "",
        }
    }

    pub(crate) fn class_index(&self, id: i64) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    pub(crate) fn class(&self, idx: u32) -> &Class {
        // Indices come from `class_index` or from fields, all validated at build time.
        &self.classes[idx as usize]
    }

    pub(crate) fn field_name(&self, f: &Field) -> &str {
        self.str(f.name)
    }

    /// Index of the first field of `class` called `name`.
    pub(crate) fn field_index(&self, class: u32, name: &str) -> Option<usize> {
        self.class(class).fields.iter().position(|f| self.str(f.name) == name)
    }

    /// The class called `name`.
    pub(crate) fn find_class(&self, name: &str) -> Option<u32> {
        self.classes.iter().position(|c| self.str(c.name) == name).map(|i| i as u32)
    }

    /// Parses the metadata event body; `r` is positioned after the type id.
    pub(crate) fn parse(r: &mut Reader<'_>) -> Result<Types, JfrError> {
        let _start = r.long()?;
        let _duration = r.long()?;
        let _metadata_id = r.long()?;
        let n = r.count()?;
        let mut t = Types::default();
        t.spans.reserve(n);
        for _ in 0..n {
            let s = r.string()?;
            let start = t.text.len();
            s.push_to(&mut t.text);
            let len = t.text.len() - start;
            let start = u32::try_from(start).map_err(|_| r.malformed("metadata too large"))?;
            t.spans.push((start, len as u32));
        }
        let mut descs = Vec::new();
        t.element(r, 0, false, &mut descs)?;
        t.build(descs, r)?;
        Ok(t)
    }

    fn string_index(&self, r: &mut Reader<'_>) -> Result<u32, JfrError> {
        let i = r.int()?;
        match u32::try_from(i) {
            Ok(i) if (i as usize) < self.spans.len() => Ok(i),
            _ => Err(r.malformed("metadata string index out of range")),
        }
    }

    fn element(
        &self,
        r: &mut Reader<'_>,
        depth: usize,
        in_class: bool,
        out: &mut Vec<ClassDesc>,
    ) -> Result<(), JfrError> {
        if depth > MAX_ELEMENT_DEPTH {
            return Err(r.malformed("metadata elements nested too deep"));
        }
        let name = self.string_index(r)?;
        let is_class = self.str(name) == "class";
        let is_field = in_class && self.str(name) == "field";
        let attrs = r.count()?;
        let mut desc = ClassDesc::default();
        let mut field = FieldDesc::default();
        for _ in 0..attrs {
            let key = self.string_index(r)?;
            let value = self.string_index(r)?;
            let (k, v) = (self.str(key), self.str(value));
            if is_class {
                match k {
                    "name" => desc.name = Some(value),
                    "id" => desc.id = v.parse().ok(),
                    _ => {}
                }
            } else if is_field {
                match k {
                    "name" => field.name = Some(value),
                    "class" => field.ty = v.parse().ok(),
                    "constantPool" => field.cp = v == "true",
                    "dimension" => field.array = v != "0",
                    _ => {}
                }
            }
        }
        if is_class {
            let (Some(name), Some(id)) = (desc.name, desc.id) else {
                return Err(r.malformed("metadata class without name or id"));
            };
            out.push(ClassDesc { name: Some(name), id: Some(id), fields: Vec::new() });
        } else if is_field {
            let (Some(_), Some(_)) = (field.name, field.ty) else {
                return Err(r.malformed("metadata field without name or class"));
            };
            if let Some(c) = out.last_mut() {
                c.fields.push(field);
            }
        }
        let children = r.count()?;
        for _ in 0..children {
            self.element(r, depth + 1, is_class, out)?;
        }
        Ok(())
    }

    fn build(&mut self, descs: Vec<ClassDesc>, r: &Reader<'_>) -> Result<(), JfrError> {
        let bad = |what| JfrError::Malformed { what, offset: r.pos() };
        self.by_id.reserve(descs.len());
        for (i, d) in descs.iter().enumerate() {
            let id = d.id.unwrap_or_default();
            if self.by_id.insert(id, i as u32).is_some() {
                return Err(bad("duplicate class id in metadata"));
            }
        }
        self.classes.reserve(descs.len());
        for d in descs {
            let name = d.name.unwrap_or_default();
            let kind = match self.str(name) {
                "boolean" | "byte" => Kind::Byte,
                "short" => Kind::Short,
                "char" => Kind::Char,
                "int" => Kind::Int,
                "long" => Kind::Long,
                "float" => Kind::Float,
                "double" => Kind::Double,
                "java.lang.String" => Kind::String,
                _ => Kind::Struct,
            };
            let mut fields = Vec::with_capacity(d.fields.len());
            for f in d.fields {
                let ty = f.ty.and_then(|id| self.by_id.get(&id).copied()).ok_or(bad("field of an unknown class"))?;
                fields.push(Field { name: f.name.unwrap_or_default(), ty, cp: f.cp, array: f.array });
            }
            let empty = kind == Kind::Struct;
            self.classes.push(Class { id: d.id.unwrap_or_default(), name, kind, fields, sized: Vec::new(), empty });
        }
        self.compute_sizes();
        Ok(())
    }

    /// Marks which classes take bytes: primitives and strings do, and a
    /// struct does if any field is a pool key, an array, or of such a class.
    /// Linear time (reverse edges + work list), cycles included.
    fn compute_sizes(&mut self) {
        let n = self.classes.len();
        // Reverse edges of "inline, non-array field of type": CSR layout.
        let mut deg = vec![0u32; n + 1];
        for c in &self.classes {
            for f in &c.fields {
                if !f.cp && !f.array {
                    deg[f.ty as usize + 1] += 1;
                }
            }
        }
        for i in 0..n {
            deg[i + 1] += deg[i];
        }
        let mut fill = deg.clone();
        let mut users = vec![0u32; deg[n] as usize];
        for (ci, c) in self.classes.iter().enumerate() {
            for f in &c.fields {
                if !f.cp && !f.array {
                    let slot = &mut fill[f.ty as usize];
                    users[*slot as usize] = ci as u32;
                    *slot += 1;
                }
            }
        }
        let mut work: Vec<u32> = Vec::new();
        for (ci, c) in self.classes.iter_mut().enumerate() {
            if c.empty && c.fields.iter().any(|f| f.cp || f.array) {
                c.empty = false;
            }
            if !c.empty {
                work.push(ci as u32);
            }
        }
        while let Some(ci) = work.pop() {
            let (s, e) = (deg[ci as usize] as usize, deg[ci as usize + 1] as usize);
            for &u in &users[s..e] {
                let c = &mut self.classes[u as usize];
                if c.empty {
                    c.empty = false;
                    work.push(u);
                }
            }
        }
        let empty: Vec<bool> = self.classes.iter().map(|c| c.empty).collect();
        for c in &mut self.classes {
            c.sized = (0..c.fields.len() as u32)
                .filter(|&i| {
                    let f = &c.fields[i as usize];
                    f.cp || f.array || !empty[f.ty as usize]
                })
                .collect();
        }
    }
}

#[derive(Debug, Default)]
struct ClassDesc {
    name: Option<u32>,
    id: Option<i64>,
    fields: Vec<FieldDesc>,
}

#[derive(Debug, Default, Clone, Copy)]
struct FieldDesc {
    name: Option<u32>,
    ty: Option<i64>,
    cp: bool,
    array: bool,
}
