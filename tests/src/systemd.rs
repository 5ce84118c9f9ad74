//! Just enough of systemd to run a unit's command the way systemd would, for tests of the
//! units in `deploy/systemd/`: unit files (sections, `key=value`, comments, backslash
//! continuations), `EnvironmentFile=` files, and `ExecStart=` command lines with `${VAR}`
//! and `$VAR` expanded from the environment (systemd.service(5), "Command lines").
//!
//! One deliberate difference: a variable that is not set is an error here (systemd expands it
//! to nothing), so a unit that uses a variable its environment file does not define fails the
//! test instead of starting with an empty flag.

use std::collections::BTreeMap;

/// A parsed unit file: `(section, key, value)` in file order.
#[derive(Debug, Clone, Default)]
pub struct Unit {
    pub entries: Vec<(String, String, String)>,
}

impl Unit {
    pub fn parse(text: &str) -> Self {
        let mut entries = vec![];
        let mut section = String::new();
        let mut pending: Option<String> = None;
        for raw in text.lines() {
            let line = raw.trim();
            // Comment lines end nothing, even inside a continuation (as systemd reads them).
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let line = match pending.take() {
                Some(mut p) => {
                    p.push(' ');
                    p.push_str(line);
                    p
                }
                None => line.to_string(),
            };
            if let Some(cont) = line.strip_suffix('\\') {
                pending = Some(cont.trim_end().to_string());
                continue;
            }
            if line.is_empty() {
                continue;
            }
            if line.starts_with('[') && line.ends_with(']') {
                section = line[1..line.len() - 1].to_string();
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                entries.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
            }
        }
        Unit { entries }
    }

    /// Every value of `key` in `section`, in order.
    pub fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v.as_str()).collect()
    }

    /// The single value of `key` in `section`.
    pub fn value(&self, section: &str, key: &str) -> Option<&str> {
        self.values(section, key).last().copied()
    }

    /// The `EnvironmentFile=` paths of `[Service]` (a leading `-`, "ignore if missing", dropped).
    pub fn environment_files(&self) -> Vec<&str> {
        self.values("Service", "EnvironmentFile").into_iter().map(|f| f.trim_start_matches('-')).collect()
    }
}

/// An environment file: `KEY=VALUE` lines; `#`/`;` comments and blank lines skipped; values
/// may be quoted with `"` or `'`; whitespace around keys and unquoted values trimmed.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("line {}: not KEY=VALUE: {line}", i + 1))?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: bad variable name {k:?}", i + 1));
        }
        let v = v.trim();
        let v = match (v.chars().next(), v.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if v.len() >= 2 && e == q => &v[1..v.len() - 1],
            _ => v,
        };
        env.insert(k.to_string(), v.to_string());
    }
    Ok(env)
}

/// The argv of an `ExecStart=` value: the command's prefixes (`-`, `@`, `:`, `+`, `!`)
/// dropped, words split as systemd splits them (double and single quotes, backslash
/// escapes), `${VAR}` replaced inside a word by the variable's exact value, a word that is
/// exactly `$VAR` replaced by the value split at whitespace (zero or more words), `$$` → `$`.
pub fn exec_argv(command: &str, env: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let command = command.trim_start_matches(['-', '@', ':', '+', '!']);
    let mut argv = vec![];
    for word in split_words(command)? {
        if let Some(name) = word.strip_prefix('$').filter(|n| is_name(n)) {
            let value = env.get(name).ok_or_else(|| format!("${name} is not set"))?;
            argv.extend(value.split_whitespace().map(String::from));
            continue;
        }
        argv.push(expand(&word, env)?);
    }
    if argv.is_empty() {
        return Err("empty command".into());
    }
    Ok(argv)
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `${VAR}` and `$$` inside one word.
fn expand(word: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unclosed ${{ in {word:?}"))?;
            let name = &body[..end];
            out.push_str(env.get(name).ok_or_else(|| format!("${{{name}}} is not set"))?);
            rest = &body[end + 1..];
        } else {
            // `$VAR` inside a word is not expanded by systemd; keep it literally.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The words of a command line, unquoted.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = vec![];
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            match c {
                '"' | '\'' => loop {
                    match chars.next() {
                        Some(e) if e == c => break,
                        Some('\\') if c == '"' => word.push(chars.next().ok_or("dangling backslash")?),
                        Some(x) => word.push(x),
                        None => return Err(format!("unclosed quote in {s:?}")),
                    }
                },
                '\\' => word.push(chars.next().ok_or("dangling backslash")?),
                _ => word.push(c),
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn units_parse_with_continuations_and_comments() {
        let u = Unit::parse(
            "# head\n[Unit]\nDescription=x\n\n[Service]\nEnvironmentFile=-/etc/a.env\nExecStart=/bin/prog \\\n    --a ${A} \\\n# a comment inside\n    --b $B\nRestart=always\n",
        );
        assert_eq!(u.value("Unit", "Description"), Some("x"));
        assert_eq!(u.value("Service", "ExecStart"), Some("/bin/prog --a ${A} --b $B"));
        assert_eq!(u.environment_files(), vec!["/etc/a.env"]);
        assert_eq!(u.value("Service", "Restart"), Some("always"));
    }

    #[test]
    fn env_files_and_expansion_as_systemd() {
        let e = parse_env_file("# c\nA=1\n B = two words \nC=\"quoted value\"\nD='x'\nE=\n").unwrap();
        assert_eq!(e, env(&[("A", "1"), ("B", "two words"), ("C", "quoted value"), ("D", "x"), ("E", "")]));
        assert!(parse_env_file("no equals sign\n").is_err());
        let argv = exec_argv("-/bin/p --x=${A} ${B} $B $E \"q ${B}\" 'q ${A}' a$$b pre${A}post", &e).unwrap();
        assert_eq!(argv, ["/bin/p", "--x=1", "two words", "two", "words", "q two words", "q 1", "a$b", "pre1post"]);
        assert_eq!(exec_argv("/bin/p ${NOPE}", &e).unwrap_err(), "${NOPE} is not set");
        assert_eq!(exec_argv("/bin/p $NOPE", &e).unwrap_err(), "$NOPE is not set");
    }
}
