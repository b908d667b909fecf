//! Label selectors in Prometheus syntax: `{a="b", c!="d", e=~"f.*", g!~"h"}`,
//! optionally after a metric name (`process_cpu:cpu:nanoseconds:cpu:nanoseconds{...}`),
//! with quoted UTF-8 label names (`{"service.name"="x"}`).

use std::fmt;

use crate::Labels;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

/// One `name op "value"` condition. A missing label matches as `""`.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

/// Most matchers one selector (or one query's selectors together) may have.
pub const MAX_MATCHERS: usize = 128;
/// Compiled size bound of one regular expression (and of its lazy DFA
/// cache), so that a hostile pattern costs at most a few MiB.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, SelectorError> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| SelectorError(format!("invalid regular expression {value:?}: {e}")))?,
            ),
            _ => None,
        };
        Ok(Self { name: name.to_owned(), op, value: value.to_owned(), re })
    }

    pub fn equal(name: &str, value: &str) -> Self {
        Self { name: name.to_owned(), op: MatchOp::Equal, value: value.to_owned(), re: None }
    }

    /// Whether a label value (None = absent) satisfies the matcher.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// A parse error, naming the problem and its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid label selector: {0}")]
pub struct SelectorError(pub String);

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    /// The name before `{`, if any (a profile type id in render queries).
    pub metric: Option<String>,
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// All matchers hold for `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels.get(&m.name)))
    }
}

struct P<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> P<'a> {
    fn err<T>(&self, what: &str) -> Result<T, SelectorError> {
        // A hostile selector can be megabytes long: quote 100 bytes of it.
        const QUOTED: usize = 100;
        if self.s.len() <= QUOTED {
            return Err(SelectorError(format!("{what} at position {} of {:?}", self.i, self.s)));
        }
        let mut end = QUOTED;
        while !self.s.is_char_boundary(end) {
            end -= 1;
        }
        Err(SelectorError(format!("{what} at position {} of {:?}… ({} bytes)", self.i, &self.s[..end], self.s.len())))
    }
    fn ws(&mut self) {
        while self.s[self.i..].starts_with(|c: char| c.is_whitespace()) {
            self.i += self.s[self.i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    fn eat(&mut self, t: &str) -> bool {
        self.ws();
        if self.s[self.i..].starts_with(t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Option<&'a str> {
        self.ws();
        let rest = &self.s[self.i..];
        let len = rest
            .char_indices()
            .take_while(|(k, c)| {
                c.is_ascii_alphabetic() || *c == '_' || (*k > 0 && (c.is_ascii_digit() || *c == '.' || *c == ':'))
            })
            .map(|(k, c)| k + c.len_utf8())
            .last()?;
        self.i += len;
        Some(&rest[..len])
    }
    fn quoted(&mut self) -> Result<String, SelectorError> {
        self.ws();
        let Some(q) = self.s[self.i..].chars().next().filter(|c| matches!(c, '"' | '\'' | '`')) else {
            return self.err("expected a quoted string");
        };
        self.i += 1;
        let mut out = String::new();
        let mut chars = self.s[self.i..].char_indices();
        while let Some((k, c)) = chars.next() {
            if c == q {
                self.i += k + 1;
                return Ok(out);
            }
            if c == '\\' && q != '`' {
                match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, e)) => out.push(e),
                    None => break,
                }
            } else {
                out.push(c);
            }
        }
        self.err("unterminated string")
    }
}

/// Parses `name{matchers}`, `{matchers}` or a bare `name`.
pub fn parse_selector(s: &str) -> Result<Selector, SelectorError> {
    let mut p = P { s, i: 0 };
    let mut sel = Selector::default();
    p.ws();
    if p.i == s.len() {
        return Ok(sel);
    }
    if let Some(name) = p.ident() {
        sel.metric = Some(name.to_owned());
    }
    if !p.eat("{") {
        p.ws();
        if p.i == s.len() && sel.metric.is_some() {
            return Ok(sel);
        }
        return p.err("expected '{'");
    }
    if !p.eat("}") {
        loop {
            p.ws();
            let name = if p.s[p.i..].starts_with(['"', '\'', '`']) {
                p.quoted()?
            } else {
                match p.ident() {
                    Some(n) => n.to_owned(),
                    None => return p.err("expected a label name"),
                }
            };
            let op = if p.eat("=~") {
                MatchOp::Regex
            } else if p.eat("!~") {
                MatchOp::NotRegex
            } else if p.eat("!=") {
                MatchOp::NotEqual
            } else if p.eat("=") {
                MatchOp::Equal
            } else {
                return p.err("expected one of = != =~ !~");
            };
            let value = p.quoted()?;
            if sel.matchers.len() == MAX_MATCHERS {
                return p.err(&format!("more than {MAX_MATCHERS} matchers"));
            }
            sel.matchers.push(Matcher::new(&name, op, &value)?);
            if p.eat(",") {
                if p.eat("}") {
                    break;
                }
                continue;
            }
            if p.eat("}") {
                break;
            }
            return p.err("expected ',' or '}'");
        }
    }
    p.ws();
    if p.i != s.len() {
        return p.err("unexpected text after '}'");
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        let s = parse_selector(r#"{service_name="shop", env!="dev", pod=~"web-.*", "service.name"!~"x|y",}"#).unwrap();
        assert_eq!(s.metric, None);
        assert_eq!(s.matchers.len(), 4);
        assert_eq!(s.matchers[3].name, "service.name");
        let l = Labels::from_pairs([("service_name", "shop"), ("pod", "web-1"), ("service.name", "z")]);
        assert!(s.matches(&l));
        let l = Labels::from_pairs([("service_name", "shop"), ("pod", "db-1")]);
        assert!(!s.matches(&l));
        let r = parse_selector(r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="a\"b"}"#).unwrap();
        assert_eq!(r.metric.as_deref(), Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds"));
        assert_eq!(r.matchers[0].value, "a\"b");
        assert_eq!(parse_selector("{}").unwrap().matchers.len(), 0);
        assert_eq!(parse_selector("").unwrap(), Selector::default());
        assert_eq!(parse_selector("memory:a:b:c:d").unwrap().metric.as_deref(), Some("memory:a:b:c:d"));
    }

    #[test]
    fn a_missing_label_is_the_empty_string() {
        let s = parse_selector(r#"{env!="prod", team=""}"#).unwrap();
        assert!(s.matches(&Labels::default()));
    }

    #[test]
    fn malformed_selectors_are_explained() {
        for bad in
            [r#"{a="b""#, r#"{a=b}"#, r#"{a~"b"}"#, r#"{="b"}"#, r#"{a="b"} x"#, r#"{a=~"("}"#, "{a=\"b\" c=\"d\"}"]
                .into_iter()
                .map(str::to_owned)
                .chain([format!("{{{}}}", vec!["a=\"b\""; MAX_MATCHERS + 1].join(","))])
        {
            let bad = bad.as_str();
            let e = parse_selector(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid label selector"), "{bad}: {e}");
        }
    }
}
