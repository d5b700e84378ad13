//! A secret string (passwords, tokens): its `Debug` and `Display` print `***`, so a
//! secret inside any configuration struct never reaches a log line or an error; and
//! TOML parse errors rendered with the values of secret-looking keys masked, since a
//! parser's error quotes the line it stopped at.

/// A secret string; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that needs it (a connection, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A secret named by a config section as `NAME_env` (an environment variable) or
/// `NAME_file` (a file, its trailing newline dropped); `key` is the section and name for
/// errors (`sink.rabbitmq.password`). `Ok(None)` when neither is set; both set is an
/// error. The secret itself never appears in an error, only where it was looked for.
pub fn from_env_or_file(
    key: &str,
    env: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Secret>> {
    use anyhow::Context;
    match (env, file) {
        (Some(_), Some(_)) => {
            anyhow::bail!("{key}: set one of `{key}_env` and `{key}_file`, not both")
        }
        (Some(var), None) => std::env::var(var)
            .with_context(|| format!("{key}_env: environment variable `{var}` is not set"))
            .map(|v| Some(Secret(v))),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("{key}_file: cannot read `{}`", f.display()))
            .map(|v| Some(Secret(v.trim_end_matches(['\n', '\r']).to_string()))),
        (None, None) => Ok(None),
    }
}

/// Whether a config key (a TOML key, a librdkafka property) probably holds a secret.
/// Deliberately broad, so a misspelt `sasl.pasword` is masked too: masking a harmless
/// value costs a less helpful message, printing a password costs the password.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "pass",
        "pasw",
        "pwd",
        "secret",
        "token",
        "key",
        "jaas",
        "credential",
        "auth",
        "cert",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A TOML parse error of `text` as the parser reports it (line, column, what is
/// wrong, the line itself), with every value of a secret-looking key masked: in the
/// quoted line and wherever the message repeats it. Lines are masked on their own, so
/// a secret is hidden even when the error is on another line of the snippet.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let mut secrets: Vec<&str> = Vec::new();
    let masked: String = text
        .split_inclusive('\n')
        .map(|line| match secret_value(line) {
            Some((at, value)) => {
                if !value.is_empty() {
                    secrets.push(value);
                }
                let end = line.trim_end_matches(['\r', '\n']).len();
                format!("{}\"***\"{}", &line[..at], &line[end..])
            }
            None => line.to_string(),
        })
        .collect();
    let mut message = e.message().trim_end().to_string();
    for v in &secrets {
        message = message.replace(v, "***");
    }
    let Some(span) = e.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..start].chars().count() + 1;
    let mut shown = masked.lines().nth(line_no - 1).unwrap_or("").to_string();
    for v in &secrets {
        shown = shown.replace(v, "***");
    }
    format!("line {line_no}, column {column}: {message}\n  | {shown}")
}

/// Where the value of a `key = value` line with a secret-looking key starts, and the
/// value without quotes.
fn secret_value(line: &str) -> Option<(usize, &str)> {
    let eq = line.find('=')?;
    let key = line[..eq].trim().trim_matches(['"', '\'']);
    if key.is_empty() || key.starts_with('#') || !is_secret_key(key) {
        return None;
    }
    let rest = &line[eq + 1..];
    let at = eq + 1 + (rest.len() - rest.trim_start().len());
    let value = line[at..].trim_end().trim_matches(['"', '\'']).trim();
    Some((at, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(text: &str) -> String {
        match toml::from_str::<toml::Table>(text) {
            Ok(_) => panic!("expected a parse error"),
            Err(e) => toml_error(text, &e),
        }
    }

    #[test]
    fn toml_errors_never_quote_a_secret() {
        // A broken line holding a password, and an error on the line after one.
        let e = parse_error("[source]\npassword = \"hunter2-secret\nuser = 1\n");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.starts_with("line 2"), "{e}");
        let e = parse_error("[sink.librdkafka]\n\"sasl.pasword\" = \"kafka-pw-1\" junk\n");
        assert!(!e.contains("kafka-pw-1"), "{e}");
        assert!(e.contains("***"), "{e}");
        // Not a secret: shown as it is, so the error stays useful.
        let e = parse_error("[source]\nhost = \"db1\" junk\n");
        assert!(e.contains("host = \"db1\" junk"), "{e}");
    }

    #[test]
    fn type_errors_do_not_repeat_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            port: u16,
        }
        let text = "port = \"s3cr3t-value\"\npassword = \"s3cr3t-value\"\n";
        let e = toml::from_str::<S>(text).expect_err("a type error");
        let shown = toml_error(text, &e);
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert_eq!(
            format!("{s} {s:?} {:?}", Some(&s)),
            "*** Secret(***) Some(Secret(***))"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
