//! `--format` for the listing and inspecting verbs, as the docker CLI reads it: a Go
//! template (`{{.Names}}\t{{.Status}}`, `{{json .}}`), `table TEMPLATE` (a header row,
//! columns aligned), or `json` (one JSON object per line). Templates run through the
//! `gtmpl` crate (Go's text/template in Rust) with Docker's extra functions: json,
//! join, lower, upper, split, truncate, title, pad.

use std::collections::HashMap;

use anyhow::Context as _;
use gtmpl::{Context, Func, FuncError, Template, Value};

/// serde_json -> the template's values (objects become maps, so `.Key` works).
fn to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::Nil,
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect())
        }
    }
}

/// The template's values -> serde_json, for `{{json .}}`.
fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into()
            } else if let Some(u) = n.as_u64() {
                u.into()
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Object(m) | Value::Map(m) => {
            let sorted: std::collections::BTreeMap<_, _> =
                m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
    }
}

fn one_string(name: &str, args: &[Value]) -> Result<String, FuncError> {
    match args.first() {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(FuncError::AtLeastXArgs(name.into(), 1)),
    }
}

fn json_fn(args: &[Value]) -> Result<Value, FuncError> {
    let value = args
        .first()
        .ok_or(FuncError::AtLeastXArgs("json".into(), 1))?;
    Ok(Value::String(to_json(value).to_string()))
}

fn join_fn(args: &[Value]) -> Result<Value, FuncError> {
    let (Some(Value::Array(items)), Some(Value::String(sep))) = (args.first(), args.get(1)) else {
        return Err(FuncError::ExactlyXArgs("join".into(), 2));
    };
    let parts: Vec<String> = items.iter().map(|v| v.to_string()).collect();
    Ok(Value::String(parts.join(sep)))
}

fn lower_fn(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(one_string("lower", args)?.to_lowercase()))
}

fn upper_fn(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(one_string("upper", args)?.to_uppercase()))
}

fn title_fn(args: &[Value]) -> Result<Value, FuncError> {
    let s = one_string("title", args)?;
    let mut chars = s.chars();
    Ok(Value::String(match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => s,
    }))
}

fn split_fn(args: &[Value]) -> Result<Value, FuncError> {
    let (Some(Value::String(s)), Some(Value::String(sep))) = (args.first(), args.get(1)) else {
        return Err(FuncError::ExactlyXArgs("split".into(), 2));
    };
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.to_string()))
            .collect(),
    ))
}

fn truncate_fn(args: &[Value]) -> Result<Value, FuncError> {
    let s = one_string("truncate", args)?;
    let n = match args.get(1) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        _ => return Err(FuncError::ExactlyXArgs("truncate".into(), 2)),
    };
    Ok(Value::String(s.chars().take(n).collect()))
}

fn pad_fn(args: &[Value]) -> Result<Value, FuncError> {
    let s = one_string("pad", args)?;
    let n = |i: usize| match args.get(i) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(n(1)),
        " ".repeat(n(2))
    )))
}

/// A parsed `--format` value.
pub struct Format {
    template: Template,
    table: bool,
    json: bool,
}

impl Format {
    pub fn parse(format: &str) -> anyhow::Result<Format> {
        let trimmed = format.trim();
        if trimmed == "json" {
            return Ok(Format {
                template: Template::default(),
                table: false,
                json: true,
            });
        }
        let (table, text) = match trimmed.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, format),
        };
        // What users type in single quotes, as the docker CLI reads it.
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        let mut template = Template::default();
        let funcs: [(&str, Func); 8] = [
            ("json", json_fn),
            ("join", join_fn),
            ("lower", lower_fn),
            ("upper", upper_fn),
            ("title", title_fn),
            ("split", split_fn),
            ("truncate", truncate_fn),
            ("pad", pad_fn),
        ];
        template.add_funcs(&funcs);
        template
            .parse(text)
            .map_err(|e| anyhow::anyhow!("invalid --format template {format:?}: {e}"))?;
        Ok(Format {
            template,
            table,
            json: false,
        })
    }

    fn render(&self, value: &serde_json::Value) -> anyhow::Result<String> {
        if self.json {
            return Ok(value.to_string());
        }
        self.template
            .render(&Context::from(to_value(value)))
            .map_err(|e| anyhow::anyhow!("cannot apply the --format template: {e}"))
    }
}

/// Docker's header for a field: `.Names` -> NAMES, `.CreatedAt` -> CREATED AT, `.ID`
/// -> ID; `headers` overrides (ps: `ID` -> CONTAINER ID).
fn header_of(key: &str, headers: &[(&str, &str)]) -> String {
    if let Some((_, h)) = headers.iter().find(|(k, _)| *k == key) {
        return h.to_string();
    }
    let mut out = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase();
        out.extend(c.to_uppercase());
    }
    out
}

/// Aligns tab-separated cells in columns as the docker CLI's tabwriter does: a column
/// is its widest cell plus 3 spaces, and at least 10 wide.
fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                out.push_str(&format!("{cell:<w$}", w = (widths[i] + 3).max(10)));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

/// Prints `rows` (one JSON object each) through `format`; `headers` names the columns
/// of a `table` whose field names differ from Docker's headers. Every `ls` verb prints
/// its `--format` through here (network ls too: its rows, its headers).
pub fn print_rows_with(
    format: &str,
    rows: &[serde_json::Value],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    let format = Format::parse(format)?;
    let mut lines = Vec::new();
    if format.table {
        let mut names: HashMap<String, serde_json::Value> = HashMap::new();
        let keys = rows
            .first()
            .and_then(|r| r.as_object())
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        for key in keys {
            names.insert(key.clone(), header_of(&key, headers).into());
        }
        let header = format.render(&serde_json::to_value(names)?)?;
        lines.push(header);
    }
    for row in rows {
        lines.push(format.render(row)?);
    }
    let text = if format.table {
        align(&lines)
    } else {
        lines.iter().map(|l| format!("{l}\n")).collect()
    };
    use std::io::Write;
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("cannot write to stdout")
}

/// `inspect --format`: the template applied to each object; `json` prints each object.
pub fn print_each(format: &str, values: &[serde_json::Value]) -> anyhow::Result<()> {
    let format = Format::parse(format)?;
    for value in values {
        println!("{}", format.render(value)?);
    }
    Ok(())
}

/// Sizes as the docker CLI prints them (decimal units: 1.5MB, 320kB, 12B).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", size)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + UNITS[unit]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: &str, value: serde_json::Value) -> String {
        Format::parse(format).unwrap().render(&value).unwrap()
    }

    #[test]
    fn go_templates_render_as_docker_users_write_them() {
        let row =
            json!({"Names": "web", "Status": "Up", "Labels": {"a": "1"}, "Ports": ["1", "2"]});
        assert_eq!(render("{{.Names}}\\t{{.Status}}", row.clone()), "web\tUp");
        assert_eq!(render("{{json .Labels}}", row.clone()), r#"{"a":"1"}"#);
        assert_eq!(render("{{upper .Names}}", row.clone()), "WEB");
        assert_eq!(render("{{join .Ports \",\"}}", row.clone()), "1,2");
        assert_eq!(render("{{index .Labels \"a\"}}", row.clone()), "1");
        assert_eq!(render("json", json!({"A": 1})), r#"{"A":1}"#);
        assert!(Format::parse("{{.Names").is_err());
    }

    #[test]
    fn tables_get_headers_and_aligned_columns() {
        assert_eq!(header_of("CreatedAt", &[]), "CREATED AT");
        assert_eq!(header_of("ID", &[("ID", "CONTAINER ID")]), "CONTAINER ID");
        let lines = vec!["NAMES\tSTATUS".to_string(), "a\tUp".to_string()];
        assert_eq!(align(&lines), "NAMES     STATUS\na         Up\n");
    }

    #[test]
    fn sizes_print_in_decimal_units() {
        assert_eq!(human_size(12), "12B");
        assert_eq!(human_size(1_500_000), "1.5MB");
    }
}
