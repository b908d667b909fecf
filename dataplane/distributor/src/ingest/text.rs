//! Stack formats of `/ingest`: folded (`a;b;c 12`), lines (`a;b;c`), and
//! the legacy binary tree and trie. All bounded by a byte budget; a parse
//! error names the line or offset.

use phlox_pprof::StackProfileBuilder;

/// `frame;frame;leaf count` per line: the line trimmed, then split at its
/// last space. Frames are kept as written, spaces included (`a;  3` has the
/// leaf frame `" "`, as perf's stackcollapse writes it), as Pyroscope does.
pub(crate) fn folded(body: &[u8], b: &mut StackProfileBuilder, scale: i64) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("folded profile is not UTF-8: {e}"))?;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (stack, count) = line.rsplit_once(' ').ok_or_else(|| format!("line {}: expected 'stack count'", n + 1))?;
        let count: i64 =
            count.trim().parse().map_err(|_| format!("line {}: count {count:?} is not an integer", n + 1))?;
        if count < 0 {
            return Err(format!(
                "line {}: count {count} is negative (folded counts are sample counts, 0 or more)",
                n + 1
            ));
        }
        if count == 0 {
            continue;
        }
        b.add(stack.split(';'), &[count.saturating_mul(scale)]).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One stack per line, each counting 1.
pub(crate) fn lines(body: &[u8], b: &mut StackProfileBuilder, scale: i64) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("lines profile is not UTF-8: {e}"))?;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        b.add(line.split(';'), &[scale]).map_err(|e| e.to_string())?;
    }
    Ok(())
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn uvarint(&mut self) -> Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| format!("truncated at byte {}", self.pos))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(out);
            }
        }
        Err(format!("varint too long at byte {}", self.pos))
    }

    fn bytes(&mut self, max: usize) -> Result<&'a [u8], String> {
        let len = self.uvarint()?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max)
            .ok_or_else(|| format!("name longer than {max} bytes at byte {}", self.pos))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// The legacy tree format: pre-order `uvarint(len) name uvarint(self) uvarint(children)`,
/// first record a nameless root.
pub(crate) fn tree(
    body: &[u8],
    b: &mut StackProfileBuilder,
    scale: i64,
    max_children: u64,
    max_name: usize,
) -> Result<(), String> {
    if body.len() < 2 {
        return Ok(());
    }
    let mut c = Cursor { buf: body, pos: 0 };
    // Explicit stack of (name, remaining children) — no recursion.
    let mut path: Vec<&str> = Vec::new();
    let mut remaining: Vec<u64> = Vec::new();
    let mut first = true;
    loop {
        let name =
            std::str::from_utf8(c.bytes(max_name)?).map_err(|_| format!("name is not UTF-8 at byte {}", c.pos))?;
        let value = c.uvarint()?;
        let children = c.uvarint()?;
        if children > max_children {
            return Err(format!("node has {children} children, more than {max_children}"));
        }
        if first {
            first = false;
        } else {
            path.push(name);
            if value > 0 {
                let v = i64::try_from(value).map_err(|_| "value overflows".to_owned())?;
                b.add(path.iter().copied(), &[v.saturating_mul(scale)]).map_err(|e| e.to_string())?;
            }
        }
        remaining.push(children);
        // Pop finished nodes.
        while let Some(&0) = remaining.last() {
            remaining.pop();
            if remaining.is_empty() {
                return Ok(());
            }
            path.pop();
            if let Some(r) = remaining.last_mut() {
                *r -= 1;
            }
        }
        if c.pos >= body.len() {
            return Err("truncated tree: children missing".into());
        }
    }
}

/// The legacy trie format: pre-order `uvarint(len) fragment uvarint(value) uvarint(children)`;
/// a node's key (a folded stack) is the concatenation of fragments from the root.
pub(crate) fn trie(
    body: &[u8],
    b: &mut StackProfileBuilder,
    scale: i64,
    max_children: u64,
    max_key: usize,
) -> Result<(), String> {
    if body.is_empty() {
        return Ok(());
    }
    let mut c = Cursor { buf: body, pos: 0 };
    let mut key: Vec<u8> = Vec::new();
    // (key length before this node, remaining children)
    let mut stack: Vec<(usize, u64)> = Vec::new();
    loop {
        let before = key.len();
        let frag = c.bytes(max_key)?;
        if before + frag.len() > max_key {
            return Err(format!("trie key longer than {max_key} bytes"));
        }
        key.extend_from_slice(frag);
        let value = c.uvarint()?;
        let children = c.uvarint()?;
        if children > max_children {
            return Err(format!("node has {children} children, more than {max_children}"));
        }
        if value > 0 && !key.is_empty() {
            let k = std::str::from_utf8(&key).map_err(|_| "trie key is not UTF-8".to_owned())?;
            let v = i64::try_from(value).map_err(|_| "value overflows".to_owned())?;
            b.add(k.split(';'), &[v.saturating_mul(scale)]).map_err(|e| e.to_string())?;
        }
        stack.push((before, children));
        while let Some(&(len, 0)) = stack.last() {
            stack.pop();
            key.truncate(len);
            match stack.last_mut() {
                Some(parent) => parent.1 -= 1,
                None => return Ok(()),
            }
        }
        if c.pos >= body.len() {
            return Err("truncated trie: children missing".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> StackProfileBuilder {
        StackProfileBuilder::new(&[("samples", "count")], None, 1 << 20)
    }

    fn folded_of(b: StackProfileBuilder) -> Vec<(String, i64)> {
        let p = b.finish();
        let mut out: Vec<(String, i64)> = (0..p.sample_count())
            .map(|i| {
                let names: Vec<&str> = p
                    .sample_location_ids(i)
                    .iter()
                    .rev()
                    .map(|&l| {
                        p.strings.str(
                            p.function(p.location(l).map(|l| p.lines[l.lines.start as usize].function_id).unwrap_or(0))
                                .map(|f| f.name)
                                .unwrap_or(0),
                        )
                    })
                    .collect();
                (names.join(";"), p.sample_value(i, 0))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn folded_and_lines() {
        let mut b = builder();
        folded(b"main;a;b 3\nmain;c 2\n\nmain;a;b 0\n", &mut b, 1).unwrap();
        assert_eq!(folded_of(b), vec![("main;a;b".into(), 3), ("main;c".into(), 2)]);
        // perf's stackcollapse writes a frame of one space: `main;  4` is the
        // stack main → " " (the line's leading/trailing whitespace is not a frame).
        let mut b = builder();
        folded(b"  main;  4\r\nmain; x 1\n", &mut b, 1).unwrap();
        assert_eq!(folded_of(b), vec![("main; ".into(), 4), ("main; x".into(), 1)]);
        let mut b = builder();
        assert!(folded(b"main;a x\n", &mut b, 1).unwrap_err().contains("line 1"));
        let mut b = builder();
        lines(b"main;a\nmain;a\n", &mut b, 10).unwrap();
        assert_eq!(folded_of(b), vec![("main;a".into(), 10), ("main;a".into(), 10)]);
    }

    #[test]
    fn tree_matches_the_spec_example() {
        // root → b(self 4); root → a(self 1) → c(self 5)
        let body = [0x00, 0x00, 0x02, 0x01, b'b', 0x04, 0x00, 0x01, b'a', 0x01, 0x01, 0x01, b'c', 0x05, 0x00];
        let mut b = builder();
        tree(&body, &mut b, 1, 100, 100).unwrap();
        assert_eq!(folded_of(b), vec![("a".into(), 1), ("a;c".into(), 5), ("b".into(), 4)]);
        for cut in 2..body.len() {
            let mut b = builder();
            assert!(tree(&body[..cut], &mut b, 1, 100, 100).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn trie_keys_concatenate_fragments() {
        // "" → "a;" (0) → "b" (3) ; "a;" → "c" (2)
        let body = [0x00, 0x00, 0x01, 0x02, b'a', b';', 0x00, 0x02, 0x01, b'b', 0x03, 0x00, 0x01, b'c', 0x02, 0x00];
        let mut b = builder();
        trie(&body, &mut b, 1, 100, 100).unwrap();
        assert_eq!(folded_of(b), vec![("a;b".into(), 3), ("a;c".into(), 2)]);
        let mut b = builder();
        assert!(trie(&body[..9], &mut b, 1, 100, 100).is_err());
    }
}
