//! Connection strings as libpq spells them (`key=value` pairs or a `postgresql://` URI).
//!
//! pgincr hands the user's connection string to pg_dump, psql and pg_recvlogical. Two edits
//! are needed on the way: adding parameters (`replication=database`, another `dbname`) and
//! taking a password out, so it reaches the child through `PGPASSWORD` and never shows up
//! on a command line (`ps`) or in a log.

/// True for `postgresql://` and `postgres://` URIs.
pub fn is_uri(dsn: &str) -> bool {
    let d = dsn.trim_start();
    d.starts_with("postgresql://") || d.starts_with("postgres://")
}

/// One `key=value` pair of a conninfo string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    pub value: String,
}

/// Splits a `key=value` conninfo string, honouring libpq's single quotes and backslashes.
pub fn parse_pairs(dsn: &str) -> Result<Vec<Pair>, String> {
    let mut pairs = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "missing \"=\" after \"{key}\" in connection string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err("unterminated quoted string in connection string".into()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push(Pair { key, value });
    }
}

/// Writes pairs back as a conninfo string, quoting every value.
pub fn render_pairs(pairs: &[Pair]) -> String {
    pairs
        .iter()
        .map(|p| {
            let v = p.value.replace('\\', "\\\\").replace('\'', "\\'");
            format!("{}='{v}'", p.key)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sets `key` to `value`, replacing an existing setting.
pub fn with_param(dsn: &str, key: &str, value: &str) -> Result<String, String> {
    if is_uri(dsn) {
        let (base, query) = dsn.split_once('?').unwrap_or((dsn, ""));
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && p.split('=').next() != Some(key))
            .collect();
        let added = format!("{key}={}", percent_encode(value));
        params.push(&added);
        // A dbname in the path would win over nothing, but libpq lets query parameters
        // override the path, so setting dbname as a parameter is enough.
        return Ok(format!("{base}?{}", params.join("&")));
    }
    let mut pairs = parse_pairs(dsn)?;
    pairs.retain(|p| p.key != key);
    pairs.push(Pair {
        key: key.to_owned(),
        value: value.to_owned(),
    });
    Ok(render_pairs(&pairs))
}

/// Takes the password out of a connection string: returns the string without it and the
/// password itself (for `PGPASSWORD`).
pub fn split_password(dsn: &str) -> Result<(String, Option<String>), String> {
    if is_uri(dsn) {
        let (scheme, rest) = dsn.split_once("://").expect("is_uri");
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let mut password = None;
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => match userinfo.split_once(':') {
                Some((user, pw)) => {
                    password = Some(percent_decode(pw));
                    format!("{user}@{hosts}")
                }
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let mut kept = Vec::new();
        for p in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match p.split_once('=') {
                Some(("password", v)) => password = Some(percent_decode(v)),
                _ => kept.push(p),
            }
        }
        let mut out = format!("{scheme}://{authority}{path}");
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        return Ok((out, password));
    }
    let mut pairs = parse_pairs(dsn)?;
    let password = pairs
        .iter()
        .rev()
        .find(|p| p.key == "password")
        .map(|p| p.value.clone());
    if password.is_none() {
        return Ok((dsn.to_owned(), None));
    }
    pairs.retain(|p| p.key != "password");
    Ok((render_pairs(&pairs), password))
}

/// Parameters pgincr reads itself before tokio-postgres sees the rest: the ones tokio-postgres
/// does not know, and `sslmode`, whose verify-ca / verify-full it does not have.
pub const READ_BY_PGINCR: &[&str] = &[
    "service",
    "passfile",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslpassword",
    "sslcompression",
    "sslmin_protocol_version",
    "sslmax_protocol_version",
    "requiressl",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "requirepeer",
    "fallback_application_name",
    "replication",
];

/// Takes the [`READ_BY_PGINCR`] parameters out of a connection string: returns the rest (for
/// tokio-postgres) and those parameters.
pub fn split_libpq_only(dsn: &str) -> Result<(String, Vec<Pair>), String> {
    let ours = |k: &str| READ_BY_PGINCR.contains(&k);
    if is_uri(dsn) {
        let Some((base, query)) = dsn.split_once('?') else {
            return Ok((dsn.to_owned(), Vec::new()));
        };
        let mut kept = Vec::new();
        let mut taken = Vec::new();
        for p in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            if ours(k) {
                taken.push(Pair {
                    key: k.to_owned(),
                    value: percent_decode(v),
                });
            } else {
                kept.push(p);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, taken));
    }
    let (taken, kept): (Vec<Pair>, Vec<Pair>) =
        parse_pairs(dsn)?.into_iter().partition(|p| ours(&p.key));
    Ok((render_pairs(&kept), taken))
}

/// The password `~/.pgpass` (or another password file) holds for a connection, as libpq
/// finds it: the first line whose host, port, database and user fields match (`*` matches
/// anything, `\:` and `\\` escape). A host given as a socket directory matches `localhost`.
pub fn password_from_file(
    contents: &str,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let host = if host.is_empty() || host.starts_with('/') || host.starts_with('@') {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    for line in contents.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_passfile_line(line);
        let [h, p, d, u, pw] = fields.as_slice() else {
            continue;
        };
        let matches = |field: &str, value: &str| field == "*" || field == value;
        if matches(h, host) && matches(p, &port) && matches(d, dbname) && matches(u, user) {
            return Some(pw.clone());
        }
    }
    None
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut().expect("one field").extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// The parameters of `service` in a connection service file (`pg_service.conf` format);
/// `None` when the file has no such section.
pub fn service_from_file(contents: &str, service: &str) -> Option<Vec<Pair>> {
    let mut found = None;
    let mut in_section = false;
    for line in contents.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name == service;
            if in_section {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if in_section && let Some((k, v)) = line.split_once('=') {
            found.get_or_insert_with(Vec::new).push(Pair {
                key: k.trim().to_owned(),
                value: v.trim().to_owned(),
            });
        }
    }
    found
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_with_quotes_and_escapes() {
        let pairs = parse_pairs(r"host=/tmp port = 5432 application_name='a b\'c' x=d\ e").unwrap();
        let values: Vec<_> = pairs.iter().map(|p| (&*p.key, &*p.value)).collect();
        assert_eq!(
            values,
            [
                ("host", "/tmp"),
                ("port", "5432"),
                ("application_name", "a b'c"),
                ("x", "d e")
            ]
        );
        assert_eq!(parse_pairs(&render_pairs(&pairs)).unwrap(), pairs);
        assert!(parse_pairs("host").is_err());
        assert!(parse_pairs("host='x").is_err());
    }

    #[test]
    fn with_param_replaces_and_adds() {
        assert_eq!(
            with_param("host=/tmp dbname=a", "dbname", "b").unwrap(),
            "host='/tmp' dbname='b'"
        );
        assert_eq!(
            with_param("", "replication", "database").unwrap(),
            "replication='database'"
        );
        assert_eq!(
            with_param("postgresql://u@h/db", "replication", "database").unwrap(),
            "postgresql://u@h/db?replication=database"
        );
        assert_eq!(
            with_param(
                "postgres://h/db?sslmode=require&dbname=x",
                "dbname",
                "my db"
            )
            .unwrap(),
            "postgres://h/db?sslmode=require&dbname=my%20db"
        );
    }

    #[test]
    fn libpq_only_parameters_are_taken_out() {
        let (rest, taken) =
            split_libpq_only("host=h service=s sslmode=verify-full sslrootcert='/a b' port=1")
                .unwrap();
        assert_eq!(rest, "host='h' port='1'");
        let taken: Vec<_> = taken.iter().map(|p| (&*p.key, &*p.value)).collect();
        assert_eq!(
            taken,
            [
                ("service", "s"),
                ("sslmode", "verify-full"),
                ("sslrootcert", "/a b")
            ]
        );
        let (rest, taken) =
            split_libpq_only("postgresql://u@h/db?sslrootcert=%2Fca.crt&application_name=x")
                .unwrap();
        assert_eq!(rest, "postgresql://u@h/db?application_name=x");
        assert_eq!(taken[0].value, "/ca.crt");
    }

    #[test]
    fn passfile_lines_match_like_libpq() {
        let file = "# comment\nother:5432:*:*:no\nlocalhost:5433:app:alice:first\n*:*:*:alice:a\\:b\\\\c\n";
        assert_eq!(
            password_from_file(file, "/tmp/sock", 5433, "app", "alice").as_deref(),
            Some("first")
        );
        assert_eq!(
            password_from_file(file, "db.example", 5432, "x", "alice").as_deref(),
            Some("a:b\\c")
        );
        assert_eq!(
            password_from_file(file, "db.example", 5432, "x", "bob"),
            None
        );
    }

    #[test]
    fn service_sections_are_read() {
        let file = "[a]\nhost=h1\n[b]\n# c\nhost = h2\nport=5433\n";
        let b = service_from_file(file, "b").unwrap();
        let b: Vec<_> = b.iter().map(|p| (&*p.key, &*p.value)).collect();
        assert_eq!(b, [("host", "h2"), ("port", "5433")]);
        assert!(service_from_file(file, "c").is_none());
    }

    #[test]
    fn password_is_taken_out() {
        assert_eq!(
            split_password("host=h password='s3 cr\\'et' user=u").unwrap(),
            ("host='h' user='u'".to_owned(), Some("s3 cr'et".to_owned()))
        );
        assert_eq!(
            split_password("host=h user=u").unwrap(),
            ("host=h user=u".to_owned(), None)
        );
        assert_eq!(
            split_password("postgresql://alice:p%40ss@db.example:5432/app?sslmode=require")
                .unwrap(),
            (
                "postgresql://alice@db.example:5432/app?sslmode=require".to_owned(),
                Some("p@ss".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://alice@h/app?password=x&sslmode=disable").unwrap(),
            (
                "postgres://alice@h/app?sslmode=disable".to_owned(),
                Some("x".to_owned())
            )
        );
    }
}
