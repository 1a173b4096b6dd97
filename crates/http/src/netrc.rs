//! `.netrc` files (the format of ftp(1) that curl and wget read): `machine NAME login USER
//! password PASS` entries, a `default` entry for any other host, `account` ignored, `macdef`
//! bodies skipped to the next empty line. Tokens are separated by any white space and may be
//! double-quoted with `\"` and `\\` escapes (as curl accepts them).

/// A login from a `.netrc` file.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The login name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login").field("user", &self.user).finish_non_exhaustive()
    }
}

/// A parsed `.netrc`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Netrc {
    machines: Vec<(String, Login)>,
    default: Option<Login>,
}

/// Why a `.netrc` text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    /// Where, counting from 1.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

impl Netrc {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let tokens = tokens(text)?;
        let mut netrc = Self::default();
        // The entry being read: its machine (None for `default`) and what it has so far.
        let mut entry: Option<(Option<String>, Option<String>, Option<String>)> = None;
        let finish =
            |netrc: &mut Self, entry: Option<(Option<String>, Option<String>, Option<String>)>| {
                if let Some((machine, user, password)) = entry {
                    let login = Login {
                        user: user.unwrap_or_default(),
                        password: password.unwrap_or_default(),
                    };
                    match machine {
                        Some(m) => netrc.machines.push((m.to_ascii_lowercase(), login)),
                        None => netrc.default = netrc.default.take().or(Some(login)),
                    }
                }
            };
        let mut i = 0;
        while i < tokens.len() {
            let (line, word) = (tokens[i].0, tokens[i].1.as_str());
            let value = |i: usize| {
                tokens
                    .get(i + 1)
                    .map(|t| t.1.clone())
                    .ok_or(ParseError { line, why: format!("{word:?} needs a value after it") })
            };
            match word {
                "machine" => {
                    finish(&mut netrc, entry.take());
                    entry = Some((Some(value(i)?), None, None));
                    i += 2;
                }
                "default" => {
                    finish(&mut netrc, entry.take());
                    entry = Some((None, None, None));
                    i += 1;
                }
                "login" | "password" | "account" => {
                    let v = value(i)?;
                    let Some(e) = entry.as_mut() else {
                        return Err(ParseError {
                            line,
                            why: format!("{word:?} before any machine"),
                        });
                    };
                    match word {
                        "login" => e.1 = Some(v),
                        "password" => e.2 = Some(v),
                        _ => {}
                    }
                    i += 2;
                }
                "macdef" => {
                    // The macro's body runs to the next empty line: skip its tokens.
                    let name_line = tokens.get(i + 1).map_or(line, |t| t.0);
                    let end = macro_end(text, name_line);
                    i += 2;
                    while i < tokens.len() && tokens[i].0 < end {
                        i += 1;
                    }
                }
                other => {
                    return Err(ParseError { line, why: format!("unknown word {other:?}") });
                }
            }
        }
        finish(&mut netrc, entry);
        Ok(netrc)
    }

    /// The login for `host` (its `machine` entry, the first when there are several, else the
    /// `default` one).
    pub fn login_for(&self, host: &str) -> Option<&Login> {
        let host = host.to_ascii_lowercase();
        self.machines.iter().find(|(m, _)| *m == host).map(|(_, l)| l).or(self.default.as_ref())
    }
}

/// The line after the empty line that ends a macro defined on `line`.
fn macro_end(text: &str, line: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(line) // lines after the macdef line (`line` is 1-based)
        .find(|(_, l)| l.trim().is_empty())
        .map_or(usize::MAX, |(i, _)| i + 1)
}

/// The tokens of `text`, each with its 1-based line.
fn tokens(text: &str) -> Result<Vec<(usize, String)>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '"' {
                chars.next();
                let mut token = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(ParseError { line: n + 1, why: "unclosed quote".into() });
                        }
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e) => token.push(e),
                            None => {
                                return Err(ParseError {
                                    line: n + 1,
                                    why: "unclosed quote".into(),
                                });
                            }
                        },
                        Some(c) => token.push(c),
                    }
                }
                out.push((n + 1, token));
            } else if c == '#' && out.last().is_none_or(|t: &(usize, String)| t.0 != n + 1) {
                break; // a comment line
            } else {
                let mut token = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    token.push(c);
                    chars.next();
                }
                out.push((n + 1, token));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_machine_then_the_default() {
        let netrc = Netrc::parse(
            "# my logins\nmachine Example.org login alice password s3cret\n\
             machine api.test\n  login bob\n  password \"two words \\\" quoted\"\n  account x\n\
             macdef init\ncd /pub\nget file\n\nmachine after.test login carol password c\n\
             default login anon password guest\n",
        )
        .unwrap();
        let login = |h| netrc.login_for(h).map(|l| (l.user.clone(), l.password.clone()));
        assert_eq!(login("example.org"), Some(("alice".into(), "s3cret".into())));
        assert_eq!(login("api.test"), Some(("bob".into(), "two words \" quoted".into())));
        assert_eq!(login("after.test"), Some(("carol".into(), "c".into())), "after a macdef");
        assert_eq!(login("elsewhere.test"), Some(("anon".into(), "guest".into())));
        assert!(!format!("{:?}", netrc.login_for("example.org")).contains("s3cret"));
        let none = Netrc::parse("machine a login b password c").unwrap();
        assert_eq!(none.login_for("z"), None);
    }

    #[test]
    fn malformed_files_say_where() {
        for (text, line, why) in [
            ("machine", 1, "needs a value"),
            ("\nlogin alice", 2, "before any machine"),
            ("machine a\nfrobnicate b", 2, "unknown word"),
            ("machine a password \"open", 1, "unclosed quote"),
        ] {
            let e = Netrc::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.why.contains(why), "{text:?}: {e}");
        }
    }
}
