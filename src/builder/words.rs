//! Words of an instruction as Docker reads them: quotes (`"a b"`, `'a b'`), backslash
//! escapes, and `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}` expanded from the
//! stage's ENV and ARGs (not inside single quotes).

use anyhow::bail;

#[cfg(test)]
/// Splits `text` into words, removing quotes and expanding variables with `lookup`.
pub fn split(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Vec<String>> {
    process(text, lookup, true)
}

/// One word (spaces kept), quotes removed, variables expanded.
pub fn word(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    Ok(process(text, lookup, false)?.join(" "))
}

/// Splits on whitespace without expanding or unquoting (keeps words as written).
pub fn split_raw(text: &str) -> anyhow::Result<Vec<String>> {
    process(text, &|_| None, true).map(|_| ())?;
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (_, '\\') => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            (_, c) => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    Ok(words)
}

fn process(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    split: bool,
) -> anyhow::Result<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    // A word exists once anything (even "") was written to it.
    let mut started = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if split && c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
                i += 1;
            }
            '\'' => {
                started = true;
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    current.push(chars[i]);
                    i += 1;
                }
                if i == chars.len() {
                    bail!("unterminated single quote in {text:?}");
                }
                i += 1;
            }
            '"' => {
                started = true;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if i + 1 < chars.len() && matches!(chars[i + 1], '"' | '\\' | '$') => {
                            current.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' => i = expand(&chars, i, lookup, &mut current)?,
                        c => {
                            current.push(c);
                            i += 1;
                        }
                    }
                }
                if i == chars.len() {
                    bail!("unterminated double quote in {text:?}");
                }
                i += 1;
            }
            '\\' if i + 1 < chars.len() => {
                started = true;
                current.push(chars[i + 1]);
                i += 2;
            }
            '$' => {
                started = true;
                i = expand(&chars, i, lookup, &mut current)?;
            }
            c => {
                started = true;
                current.push(c);
                i += 1;
            }
        }
    }
    if started {
        words.push(current);
    }
    Ok(words)
}

/// Expands the variable at `chars[at]` (a `$`) into `out`; returns the index after it.
fn expand(
    chars: &[char],
    at: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> anyhow::Result<usize> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = at + 1;
    if i < chars.len() && chars[i] == '{' {
        let close = chars[i..]
            .iter()
            .position(|c| *c == '}')
            .map(|p| p + i)
            .ok_or_else(|| anyhow::anyhow!("missing '}}' in a ${{...}} variable"))?;
        let inner: String = chars[i + 1..close].iter().collect();
        let (name, op, arg) = match inner.find(':') {
            Some(p) if inner[p..].starts_with(":-") || inner[p..].starts_with(":+") => {
                (&inner[..p], &inner[p..p + 2], &inner[p + 2..])
            }
            Some(_) => bail!("unsupported modifier in ${{{inner}}}: use :- or :+"),
            None => (inner.as_str(), "", ""),
        };
        if name.is_empty() || !name.chars().all(is_name) {
            bail!("bad variable name in ${{{inner}}}");
        }
        let value = lookup(name).filter(|v| !v.is_empty());
        let arg = || word(arg, lookup);
        match (op, value) {
            (":-", Some(v)) | ("", Some(v)) => out.push_str(&v),
            (":-", None) => out.push_str(&arg()?),
            (":+", Some(_)) => out.push_str(&arg()?),
            _ => {}
        }
        return Ok(close + 1);
    }
    let start = i;
    while i < chars.len() && is_name(chars[i]) {
        i += 1;
    }
    if i == start {
        out.push('$');
        return Ok(i);
    }
    let name: String = chars[start..i].iter().collect();
    out.push_str(&lookup(&name).unwrap_or_default());
    Ok(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("one".into()),
            "SP" => Some("x y".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn quotes_escapes_and_variables() {
        assert_eq!(split("a  b", &env).unwrap(), ["a", "b"]);
        assert_eq!(split("k=\"v w\" j='$A'", &env).unwrap(), ["k=v w", "j=$A"]);
        assert_eq!(split("$A ${A}x \\$A", &env).unwrap(), ["one", "onex", "$A"]);
        assert_eq!(split("${NONE:-d} ${A:-d}", &env).unwrap(), ["d", "one"]);
        assert_eq!(split("${A:+set}${NONE:+set}.", &env).unwrap(), ["set."]);
        assert_eq!(split("${EMPTY:-e}", &env).unwrap(), ["e"]);
        assert_eq!(split("\"$SP\"", &env).unwrap(), ["x y"]);
        assert_eq!(split("\"\"", &env).unwrap(), [""]);
        assert_eq!(word("/app/$A dir", &env).unwrap(), "/app/one dir");
        assert_eq!(split("cost=5$", &env).unwrap(), ["cost=5$"]);
        assert!(split("'open", &env).is_err());
        assert!(split("${A", &env).is_err());
        assert_eq!(split_raw("k=\"a b\" c").unwrap(), ["k=\"a b\"", "c"]);
    }
}
