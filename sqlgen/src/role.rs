//! The attributes a role was created with, read back from a captured `CREATE ROLE`.
//!
//! A restore creates the roles of later globals snapshots before it replays the stream, so a
//! role the stream creates may already exist with the attributes it had at the snapshot, not
//! those it was created with; the stream's `CREATE ROLE` is then skipped (it runs only where
//! the role is missing). The statements that follow it on the source saw the attributes of the
//! `CREATE` (a foreign-data wrapper owned by a role that was still a superuser, say), so the
//! restore gives the role those attributes back at that point, with the statement made here.
//!
//! Reading is strict: anything but the documented grammar (a comment, a password, an unknown
//! word) gives nothing, and the role keeps the snapshot's attributes.

use crate::ident::quote_ident;
use crate::lexer::string_constant_end;

/// The attributes `CREATE ROLE` sets, with PostgreSQL's defaults for those it does not name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAttributes {
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub inherit: bool,
    pub login: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub connection_limit: i64,
    /// The `VALID UNTIL` literal as written; `None` leaves the role's expiry as it is.
    pub valid_until: Option<String>,
}

/// The start of a `CREATE ROLE` replay block that decoder_sql writes
/// ([`crate::ddl::create_role_if_missing`]): the role it creates and the line that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRoleBlock {
    pub role: String,
    pub end_line: String,
}

const BLOCK_TEST: &str = "BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ";

/// The block started by `line`, when `line` is the first line of such a block. A role named
/// with control characters (written as an `E''` literal) is not recognised.
pub fn create_role_block(line: &str) -> Option<CreateRoleBlock> {
    let rest = line.strip_prefix("DO $decoder_sql")?;
    let (tag_tail, rest) = rest.split_once('$')?;
    let numbered = tag_tail
        .strip_prefix('_')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if !(tag_tail.is_empty() || numbered) {
        return None;
    }
    let literal = rest.strip_prefix(BLOCK_TEST)?.strip_suffix(") THEN")?;
    let inner = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(CreateRoleBlock {
        role: inner.replace("''", "'"),
        end_line: format!("END IF; END$decoder_sql{tag_tail}$;"),
    })
}

#[derive(Debug, PartialEq)]
enum Token {
    /// An unquoted word, lower-cased as PostgreSQL folds it (ASCII only).
    Word(String),
    Quoted(String),
    Int(i64),
    Str(String),
    Comma,
    Semicolon,
}

fn tokens(text: &str) -> Option<Vec<Token>> {
    let bytes = text.as_bytes();
    let word_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80;
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
        } else if b == b',' {
            out.push(Token::Comma);
            i += 1;
        } else if b == b';' {
            out.push(Token::Semicolon);
            i += 1;
        } else if b == b'"' {
            let mut name = Vec::new();
            i += 1;
            loop {
                match bytes.get(i)? {
                    b'"' if bytes.get(i + 1) == Some(&b'"') => {
                        name.push(b'"');
                        i += 2;
                    }
                    b'"' => {
                        i += 1;
                        break;
                    }
                    &c => {
                        name.push(c);
                        i += 1;
                    }
                }
            }
            out.push(Token::Quoted(String::from_utf8(name).ok()?));
        } else if b == b'\'' || (matches!(b, b'E' | b'e') && bytes.get(i + 1) == Some(&b'\'')) {
            let end = string_constant_end(bytes, i)?;
            let literal = &text[i..end];
            // A backslash means something else with standard_conforming_strings off.
            if literal.contains('\\') {
                return None;
            }
            out.push(Token::Str(literal.to_owned()));
            i = end;
        } else if b.is_ascii_digit()
            || (b == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if bytes.get(i).is_some_and(|&c| word_byte(c)) {
                return None;
            }
            out.push(Token::Int(text[start..i].parse().ok()?));
        } else if word_byte(b) && !b.is_ascii_digit() && b != b'$' {
            let start = i;
            while bytes.get(i).is_some_and(|&c| word_byte(c)) {
                i += 1;
            }
            // U&"…" and U&'…' are not read.
            if bytes.get(i) == Some(&b'&') {
                return None;
            }
            out.push(Token::Word(text[start..i].to_ascii_lowercase()));
        } else {
            return None; // a comment, an operator, a parameter, …
        }
    }
    Some(out)
}

/// The attributes `statement` (`CREATE ROLE | USER | GROUP role …`, as captured, without
/// passwords) creates `role` with. None when the statement creates another role or is not
/// read exactly.
pub fn created_role_attributes(statement: &str, role: &str) -> Option<RoleAttributes> {
    let tokens = tokens(statement)?;
    let mut t = tokens.iter().peekable();
    let word = |tok: Option<&Token>| match tok {
        Some(Token::Word(w)) => Some(w.clone()),
        _ => None,
    };
    if word(t.next())? != "create" {
        return None;
    }
    let kind = word(t.next())?;
    if !matches!(kind.as_str(), "role" | "user" | "group") {
        return None;
    }
    let named = match t.next()? {
        Token::Word(w) => w.clone(),
        Token::Quoted(q) => q.clone(),
        _ => return None,
    };
    if named != role {
        return None;
    }
    let mut attrs = RoleAttributes {
        superuser: false,
        createdb: false,
        createrole: false,
        inherit: true,
        login: kind == "user",
        replication: false,
        bypassrls: false,
        connection_limit: -1,
        valid_until: None,
    };
    if matches!(t.peek(), Some(Token::Word(w)) if w == "with") {
        t.next();
    }
    // A list of role names: `a, "b", c`.
    let skip_names = |t: &mut std::iter::Peekable<std::slice::Iter<'_, Token>>| -> Option<()> {
        loop {
            match t.next()? {
                Token::Word(_) | Token::Quoted(_) => {}
                _ => return None,
            }
            if t.peek() != Some(&&Token::Comma) {
                return Some(());
            }
            t.next();
        }
    };
    while let Some(tok) = t.next() {
        let w = match tok {
            Token::Semicolon if t.peek().is_none() => break,
            Token::Word(w) => w.as_str(),
            _ => return None,
        };
        let (on, base) = match w.strip_prefix("no") {
            Some(rest) => (false, rest),
            None => (true, w),
        };
        match base {
            "superuser" => attrs.superuser = on,
            "createdb" => attrs.createdb = on,
            "createrole" => attrs.createrole = on,
            "inherit" => attrs.inherit = on,
            "login" => attrs.login = on,
            "replication" => attrs.replication = on,
            "bypassrls" => attrs.bypassrls = on,
            _ => match w {
                "connection" => {
                    if word(t.next())? != "limit" {
                        return None;
                    }
                    match t.next()? {
                        Token::Int(n) => attrs.connection_limit = *n,
                        _ => return None,
                    }
                }
                "valid" => {
                    if word(t.next())? != "until" {
                        return None;
                    }
                    match t.next()? {
                        Token::Str(s) => attrs.valid_until = Some(s.clone()),
                        _ => return None,
                    }
                }
                "in" => {
                    if !matches!(word(t.next())?.as_str(), "role" | "group") {
                        return None;
                    }
                    skip_names(&mut t)?;
                }
                "role" | "admin" | "user" => skip_names(&mut t)?,
                "sysid" => match t.next()? {
                    Token::Int(_) => {}
                    _ => return None,
                },
                _ => return None,
            },
        }
    }
    Some(attrs)
}

/// `ALTER ROLE role WITH …` giving `role` exactly `attrs` (its expiry only when `attrs` has
/// one). Memberships are not touched.
pub fn alter_role_to(role: &str, attrs: &RoleAttributes) -> String {
    let flag = |on: bool, name: &str| {
        if on {
            name.to_owned()
        } else {
            format!("NO{name}")
        }
    };
    let mut out = format!(
        "ALTER ROLE {} WITH {} {} {} {} {} {} {} CONNECTION LIMIT {}",
        quote_ident(role),
        flag(attrs.superuser, "SUPERUSER"),
        flag(attrs.createdb, "CREATEDB"),
        flag(attrs.createrole, "CREATEROLE"),
        flag(attrs.inherit, "INHERIT"),
        flag(attrs.login, "LOGIN"),
        flag(attrs.replication, "REPLICATION"),
        flag(attrs.bypassrls, "BYPASSRLS"),
        attrs.connection_limit
    );
    if let Some(v) = &attrs.valid_until {
        out.push_str(" VALID UNTIL ");
        out.push_str(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ddl::create_role_if_missing;

    fn defaults(login: bool) -> RoleAttributes {
        RoleAttributes {
            superuser: false,
            createdb: false,
            createrole: false,
            inherit: true,
            login,
            replication: false,
            bypassrls: false,
            connection_limit: -1,
            valid_until: None,
        }
    }

    #[test]
    fn blocks_written_by_the_capture_are_recognised_with_their_end() {
        for role in ["plain", "O'Brien", "Mixed Case", "$decoder_sql$"] {
            let block = create_role_if_missing(&format!("CREATE ROLE {}", quote_ident(role)), role);
            let mut lines = block.lines();
            let found = create_role_block(lines.next().unwrap()).unwrap();
            assert_eq!(found.role, role);
            assert_eq!(lines.last().unwrap(), found.end_line, "{block}");
        }
        assert_eq!(create_role_block("DO $x$BEGIN END$x$;"), None);
        assert_eq!(
            create_role_block(
                "DO $decoder_sql_x$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'a') THEN"
            ),
            None
        );
        assert_eq!(
            create_role_block(
                "DO $decoder_sql$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'a'' OR ''b') THEN"
            )
            .unwrap()
            .role,
            "a' OR 'b"
        );
        assert_eq!(
            create_role_block(
                "DO $decoder_sql$BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'a' OR 'b') THEN"
            ),
            None
        );
    }

    #[test]
    fn attributes_are_the_statement_s_over_the_defaults() {
        assert_eq!(
            created_role_attributes("CREATE ROLE r", "r"),
            Some(defaults(false))
        );
        assert_eq!(
            created_role_attributes("create user r;", "r"),
            Some(defaults(true))
        );
        assert_eq!(
            created_role_attributes("CREATE GROUP r", "r"),
            Some(defaults(false))
        );
        let all = created_role_attributes(
            "CREATE ROLE \"R x\" WITH SUPERUSER CREATEDB CREATEROLE NOINHERIT LOGIN REPLICATION \
             BYPASSRLS CONNECTION LIMIT 5 VALID UNTIL '2030-01-01' IN ROLE a, \"b\" ROLE c \
             ADMIN d USER e SYSID 7",
            "R x",
        )
        .unwrap();
        assert_eq!(
            all,
            RoleAttributes {
                superuser: true,
                createdb: true,
                createrole: true,
                inherit: false,
                login: true,
                replication: true,
                bypassrls: true,
                connection_limit: 5,
                valid_until: Some("'2030-01-01'".into()),
            }
        );
        let no = created_role_attributes(
            "CREATE USER r NOLOGIN NOSUPERUSER CONNECTION LIMIT -1 IN GROUP g",
            "r",
        )
        .unwrap();
        assert_eq!(no, defaults(false));
        // Upper-case unquoted names fold to lower case.
        assert!(created_role_attributes("CREATE ROLE Admin SUPERUSER", "admin").is_some());
    }

    #[test]
    fn anything_not_read_exactly_gives_nothing() {
        for text in [
            "CREATE ROLE other SUPERUSER",
            "CREATE ROLE \"R\" SUPERUSER",
            "CREATE ROLE r /* SUPERUSER */ LOGIN",
            "CREATE ROLE r -- SUPERUSER\n LOGIN",
            "CREATE ROLE r PASSWORD 'x'",
            "CREATE ROLE r SUPERUSER; CREATE ROLE s",
            "CREATE ROLE r VALID UNTIL E'2030\\'-01-01'",
            "CREATE ROLE r CONNECTION LIMIT x",
            "CREATE ROLE r CONNECTION LIMIT 5x",
            "CREATE ROLE r IN SCHEMA s",
            "CREATE ROLE r U&\"x\"",
            "CREATE TABLE r (a int)",
            "ALTER ROLE r SUPERUSER",
            "CREATE ROLE r SUPERUSERS",
        ] {
            assert_eq!(created_role_attributes(text, "r"), None, "{text}");
        }
    }

    #[test]
    fn the_alter_names_every_attribute_once() {
        let mut attrs = defaults(true);
        attrs.superuser = true;
        attrs.connection_limit = 3;
        assert_eq!(
            alter_role_to("O'k", &attrs),
            "ALTER ROLE \"O'k\" WITH SUPERUSER NOCREATEDB NOCREATEROLE INHERIT LOGIN \
             NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3"
        );
        attrs.valid_until = Some("'infinity'".into());
        assert!(alter_role_to("r", &attrs).ends_with(" VALID UNTIL 'infinity'"));
    }
}
