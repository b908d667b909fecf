//! The `name` parameter of `/ingest`: `app.name{key=value,key2=value2}`.

/// Parsed `name`: the application name and the brace labels, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName {
    pub app: String,
    pub labels: Vec<(String, String)>,
}

/// Parses `name`; errors say what is wrong (400 `invalid_argument`).
pub fn parse_name(name: &str) -> Result<AppName, String> {
    let (app, rest) = match name.find('{') {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    let app = app.trim();
    if app.is_empty() {
        return Err("name: the application name is empty".into());
    }
    if let Some(c) = app.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))) {
        return Err(format!("name: the application name {app:?} contains the character {c:?}"));
    }
    let mut labels = Vec::new();
    if let Some(rest) = rest {
        let body =
            rest.trim_end().strip_suffix('}').ok_or_else(|| format!("name: labels of {name:?} lack a closing '}}'"))?;
        for pair in body.split(',') {
            if pair.trim().is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').ok_or_else(|| format!("name: label {pair:?} is not key=value"))?;
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                return Err(format!("name: invalid label name {k:?}"));
            }
            if k == "__name__" {
                return Err("name: the label __name__ is reserved".into());
            }
            if v.contains('}') {
                return Err(format!("name: invalid value of label {k:?}"));
            }
            labels.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok(AppName { app: app.to_owned(), labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_labels() {
        let n = parse_name("my.app.cpu{env=staging, region = us-west-1}").unwrap();
        assert_eq!(n.app, "my.app.cpu");
        assert_eq!(n.labels, vec![("env".into(), "staging".into()), ("region".into(), "us-west-1".into())]);
        assert_eq!(parse_name("app").unwrap().labels, vec![]);
        let n = parse_name("demo.node{otel.scope.name=com.grafana.pyroscope/nodejs,region=eu-west}").unwrap();
        assert_eq!(n.labels[0], ("otel.scope.name".into(), "com.grafana.pyroscope/nodejs".into()));
    }

    #[test]
    fn bad_names_are_explained() {
        assert!(parse_name("").unwrap_err().contains("empty"));
        assert!(parse_name("{a=b}").unwrap_err().contains("empty"));
        assert!(parse_name("app{a=b").unwrap_err().contains("closing"));
        assert!(parse_name("app{ab}").unwrap_err().contains("key=value"));
        assert!(parse_name("app{a-b=c}").unwrap_err().contains("invalid label name"));
        assert!(parse_name("app{__name__=x}").unwrap_err().contains("reserved"));
        assert!(parse_name("a pp").unwrap_err().contains("character"));
    }
}
