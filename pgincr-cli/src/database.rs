//! The backed-up database's own properties, which neither `pg_dump` (without `--create`) nor
//! `pg_dumpall --globals-only` carry: its owner, privileges, settings (its own and its
//! roles' `IN DATABASE` ones) and comment. Read with each base backup, and given to a database
//! a restore creates, under whatever name it has there. Later changes come through the
//! stream (decoder_sql writes them for whichever database replays them).

use crate::Result;
use serde::{Deserialize, Serialize};
use sqlgen::ident::quote_ident;
use sqlgen::quote_literal;
use tokio_postgres::Client;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseProperties {
    pub owner: String,
    /// The privileges, when not the defaults (`datacl` is not NULL), in the order of the
    /// ACL: granted again in that order, they give the same ACL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<DatabaseGrant>>,
    /// `ALTER DATABASE … SET` settings, as `name=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    /// `ALTER ROLE … IN DATABASE … SET` settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_settings: Vec<RoleSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatabaseGrant {
    /// A role name, or None for PUBLIC.
    pub grantee: Option<String>,
    /// `CREATE`, `CONNECT` or `TEMPORARY`.
    pub privilege: String,
    pub grantable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RoleSettings {
    pub role: String,
    pub settings: Vec<String>,
}

/// The properties of the database `client` is connected to.
pub async fn read(client: &Client) -> Result<DatabaseProperties> {
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_get_userbyid(d.datdba)::text, d.datacl IS NULL,
                    pg_catalog.shobj_description(d.oid, 'pg_database'),
                    (SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
                      WHERE s.setdatabase = d.oid AND s.setrole = 0)
               FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
            &[],
        )
        .await?;
    let default_privileges: bool = row.get(1);
    let grants = if default_privileges {
        None
    } else {
        let rows = client
            .query(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL
                             ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END,
                        a.privilege_type, a.is_grantable
                   FROM pg_catalog.pg_database d,
                        pg_catalog.aclexplode(d.datacl) WITH ORDINALITY a
                  WHERE d.datname = pg_catalog.current_database()
                  ORDER BY a.ordinality",
                &[],
            )
            .await?;
        Some(
            rows.iter()
                .map(|r| DatabaseGrant {
                    grantee: r.get(0),
                    privilege: r.get(1),
                    grantable: r.get(2),
                })
                .collect(),
        )
    };
    let role_settings = client
        .query(
            "SELECT r.rolname::text, s.setconfig
               FROM pg_catalog.pg_db_role_setting s
               JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
               JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase
              WHERE d.datname = pg_catalog.current_database() ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| RoleSettings {
            role: r.get(0),
            settings: r.get(1),
        })
        .collect();
    Ok(DatabaseProperties {
        owner: row.get(0),
        grants,
        settings: row.get::<_, Option<Vec<String>>>(3).unwrap_or_default(),
        role_settings,
        comment: row.get(2),
    })
}

/// The statements that give database `dbname` these properties, one per element. Settings of
/// preload libraries are left out: the restore target may not have the libraries, and every
/// new session would fail.
pub fn statements(props: &DatabaseProperties, dbname: &str) -> Vec<String> {
    let db = quote_ident(dbname);
    let mut out = vec![format!(
        "ALTER DATABASE {db} OWNER TO {}",
        quote_ident(&props.owner)
    )];
    if let Some(grants) = &props.grants {
        out.push(format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"));
        out.push(format!(
            "REVOKE ALL ON DATABASE {db} FROM {}",
            quote_ident(&props.owner)
        ));
        for g in grants {
            out.push(format!(
                "GRANT {} ON DATABASE {db} TO {}{}",
                g.privilege,
                g.grantee.as_deref().map_or("PUBLIC".into(), quote_ident),
                if g.grantable {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            ));
        }
    }
    let set = |prefix: &str, setting: &str| -> Option<String> {
        let (name, value) = setting.split_once('=')?;
        if name.ends_with("preload_libraries") {
            return None;
        }
        Some(format!(
            "{prefix} SET {} TO {}",
            quote_ident(name),
            setting_value(name, value)
        ))
    };
    out.extend(
        props
            .settings
            .iter()
            .filter_map(|s| set(&format!("ALTER DATABASE {db}"), s)),
    );
    for r in &props.role_settings {
        let prefix = format!("ALTER ROLE {} IN DATABASE {db}", quote_ident(&r.role));
        out.extend(r.settings.iter().filter_map(|s| set(&prefix, s)));
    }
    if let Some(comment) = &props.comment {
        out.push(format!(
            "COMMENT ON DATABASE {db} IS {}",
            quote_literal(comment)
        ));
    }
    out
}

/// A stored setting's value as SQL: list settings whose elements are quoted
/// (`search_path=app, "My Schema"`) as one literal per element, others as one literal.
fn setting_value(name: &str, value: &str) -> String {
    const LISTS: &[&str] = &["search_path", "temp_tablespaces"];
    if !LISTS.contains(&name) {
        return quote_literal(value);
    }
    let mut items = Vec::new();
    let mut item = String::new();
    let mut quoted = false;
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                item.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut item)),
            c if c.is_whitespace() && !quoted && item.is_empty() => {}
            c => item.push(c),
        }
    }
    items.push(item);
    items
        .iter()
        .map(|i| quote_literal(i.trim_end()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_become_statements_for_the_target_name() {
        let props = DatabaseProperties {
            owner: "app".into(),
            grants: Some(vec![
                DatabaseGrant {
                    grantee: None,
                    privilege: "CONNECT".into(),
                    grantable: false,
                },
                DatabaseGrant {
                    grantee: Some("Ops".into()),
                    privilege: "CREATE".into(),
                    grantable: true,
                },
            ]),
            settings: vec![
                "work_mem=8MB".into(),
                "session_preload_libraries=decoder_sql".into(),
                "search_path=app, \"My \"\"S\"\"\", public".into(),
            ],
            role_settings: vec![RoleSettings {
                role: "app".into(),
                settings: vec!["statement_timeout=1h".into()],
            }],
            comment: Some("it's ours".into()),
        };
        assert_eq!(
            statements(&props, "New DB"),
            vec![
                "ALTER DATABASE \"New DB\" OWNER TO app",
                "REVOKE ALL ON DATABASE \"New DB\" FROM PUBLIC",
                "REVOKE ALL ON DATABASE \"New DB\" FROM app",
                "GRANT CONNECT ON DATABASE \"New DB\" TO PUBLIC",
                "GRANT CREATE ON DATABASE \"New DB\" TO \"Ops\" WITH GRANT OPTION",
                "ALTER DATABASE \"New DB\" SET work_mem TO '8MB'",
                "ALTER DATABASE \"New DB\" SET search_path TO 'app', 'My \"S\"', 'public'",
                "ALTER ROLE app IN DATABASE \"New DB\" SET statement_timeout TO '1h'",
                "COMMENT ON DATABASE \"New DB\" IS 'it''s ours'",
            ]
        );
    }
}
