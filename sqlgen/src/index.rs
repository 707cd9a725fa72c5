//! Statements about indexes that are invalid on the source. A failed `CREATE INDEX
//! CONCURRENTLY` or `REINDEX CONCURRENTLY` leaves an invalid index behind that the stream
//! never created (pg_dump skips such indexes too); statements that later name it are written
//! so that they replay whether or not the target has it.

use crate::ident::quote_qualified;
use crate::literal::quote_literal;

/// A `DROP INDEX` made to drop only what exists: `IF EXISTS` after `INDEX` (and after
/// `CONCURRENTLY`, if it is still there). The text as it is when it already says `IF EXISTS`;
/// None when it is not a DROP INDEX.
pub fn drop_index_if_exists(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    // (Called for DROP INDEX statements: the first DROP outside comments begins it.)
    let drop = *crate::lexer::keyword_positions(bytes, "DROP").first()?;
    let rest = text[drop + "DROP".len()..].trim_start();
    let mut at = text.len() - rest.len();
    if !starts_with_word(rest, "INDEX") {
        return None;
    }
    at += "INDEX".len();
    let rest = text[at..].trim_start();
    if starts_with_word(rest, "CONCURRENTLY") {
        at = text.len() - rest.len() + "CONCURRENTLY".len();
    }
    if starts_with_word(text[at..].trim_start(), "IF") {
        return Some(text.to_owned());
    }
    Some(format!("{} IF EXISTS{}", &text[..at], &text[at..]))
}

/// Whether `text` begins with `word` (ASCII, any case) followed by a non-word character.
fn starts_with_word(text: &str, word: &str) -> bool {
    text.len() >= word.len()
        && text[..word.len()].eq_ignore_ascii_case(word)
        && !text[word.len()..]
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
}

/// `statement` run only where the relation `schema.name` exists: a `DO` block that tests
/// `to_regclass` (the name quoted, never spliced raw) and runs the statement as it is.
pub fn if_relation_exists(schema: &str, name: &str, statement: &str) -> String {
    let relation = quote_literal(&quote_qualified(schema, name));
    let body = format!(
        "BEGIN IF pg_catalog.to_regclass({relation}) IS NOT NULL THEN\n{}\nEND IF; END",
        crate::ddl::terminate_statement(statement)
    );
    format!("DO {};", crate::ddl::dollar_quoted(&body))
}

/// `definition` (pg_get_indexdef: `CREATE [UNIQUE] INDEX name ON …`) with `IF NOT EXISTS`,
/// ending in `;`. None when it does not begin so.
pub fn create_index_if_not_exists(definition: &str) -> Option<String> {
    let head = ["CREATE INDEX ", "CREATE UNIQUE INDEX "]
        .into_iter()
        .find(|h| definition.starts_with(h))?;
    Some(crate::ddl::terminate_statement(&format!(
        "{head}IF NOT EXISTS {}",
        &definition[head.len()..]
    )))
}

/// `ALTER INDEX parent ATTACH PARTITION child;`, each name `(schema, name)`.
pub fn attach_index(parent: (&str, &str), child: (&str, &str)) -> String {
    format!(
        "ALTER INDEX {} ATTACH PARTITION {};",
        quote_qualified(parent.0, parent.1),
        quote_qualified(child.0, child.1)
    )
}

/// One index of a partitioned index's tree, as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeIndex {
    /// pg_get_indexdef (`… ON ONLY …` for a partitioned index).
    pub definition: String,
    pub schema: String,
    pub name: String,
    /// The index it is a partition of; None for the root.
    pub parent: Option<(String, String)>,
    /// Depth below the root (pg_partition_tree's level).
    pub level: i32,
    /// A partitioned index (it has partitions of its own).
    pub partitioned: bool,
    pub valid: bool,
}

/// A `CREATE INDEX` on a partitioned table whose tree holds an invalid partition index
/// (adopted on the source, where it was left by a failed `CREATE INDEX CONCURRENTLY`):
/// building it on the target would build that index too, and fail as it did, or make an index
/// the source does not have. Written as its tree: the root `ON ONLY`, the other partitioned
/// indexes and the valid leaves (`IF NOT EXISTS`: some were adopted, and exist), then each
/// attached to its parent from the leaves up, invalid leaves only where the target has them.
/// The parents stay invalid where the source's are. None without such an index in the tree
/// (an index `ON ONLY` is invalid too, until its partitions have theirs), without a root, or
/// when a definition is not of the expected form.
pub fn partitioned_index_as_tree(tree: &[TreeIndex]) -> Option<String> {
    if !tree.iter().any(|i| !i.partitioned && !i.valid) {
        return None;
    }
    let root = tree.iter().find(|i| i.parent.is_none())?;
    let mut out = vec![crate::ddl::terminate_statement(&root.definition)];
    let mut members: Vec<&TreeIndex> = tree.iter().filter(|i| i.parent.is_some()).collect();
    members.sort_by_key(|i| i.level);
    for index in &members {
        if index.partitioned || index.valid {
            out.push(create_index_if_not_exists(&index.definition)?);
        }
    }
    for index in members.iter().rev() {
        let (schema, name) = index.parent.as_ref()?;
        let attach = attach_index((schema, name), (&index.schema, &index.name));
        out.push(if index.partitioned || index.valid {
            attach
        } else {
            if_relation_exists(&index.schema, &index.name, &attach)
        });
    }
    Some(out.join("\n"))
}

/// An index that a REINDEX made valid on the source, where it had been invalid (so the stream
/// never created it): `CREATE INDEX IF NOT EXISTS` from its definition, attached to the
/// partitioned index it belongs to, in its tablespace, with its comment.
pub fn index_made_valid(
    definition: &str,
    index: (&str, &str),
    attached_to: Option<(&str, &str)>,
    tablespace: Option<&str>,
    comment: Option<&str>,
) -> Option<String> {
    let mut out = vec![create_index_if_not_exists(definition)?];
    let qualified = quote_qualified(index.0, index.1);
    if let Some(parent) = attached_to {
        out.push(attach_index(parent, index));
    }
    if let Some(tablespace) = tablespace {
        out.push(format!(
            "ALTER INDEX {qualified} SET TABLESPACE {};",
            crate::ident::quote_ident(tablespace)
        ));
    }
    if let Some(comment) = comment {
        out.push(format!(
            "COMMENT ON INDEX {qualified} IS {};",
            quote_literal(comment)
        ));
    }
    Some(out.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_index_gets_if_exists() {
        assert_eq!(
            drop_index_if_exists("DROP INDEX a_ccnew").as_deref(),
            Some("DROP INDEX IF EXISTS a_ccnew")
        );
        assert_eq!(
            drop_index_if_exists("drop index concurrently \"x\", s.y cascade;").as_deref(),
            Some("drop index concurrently IF EXISTS \"x\", s.y cascade;")
        );
        assert_eq!(
            drop_index_if_exists("DROP INDEX IF EXISTS a").as_deref(),
            Some("DROP INDEX IF EXISTS a")
        );
        assert_eq!(
            drop_index_if_exists("/* c */ DROP\n  INDEX index_x").as_deref(),
            Some("/* c */ DROP\n  INDEX IF EXISTS index_x")
        );
        // A name that begins like a keyword is a name.
        assert_eq!(
            drop_index_if_exists("DROP INDEX concurrently_made").as_deref(),
            Some("DROP INDEX IF EXISTS concurrently_made")
        );
        assert_eq!(
            drop_index_if_exists("DROP INDEX ifx").as_deref(),
            Some("DROP INDEX IF EXISTS ifx")
        );
        assert_eq!(drop_index_if_exists("DROP TABLE t"), None);
        assert_eq!(drop_index_if_exists("ALTER INDEX a RENAME TO b"), None);
    }

    #[test]
    fn guard_quotes_the_relation_and_keeps_the_statement() {
        assert_eq!(
            if_relation_exists(
                "public",
                "Idx'1",
                "ALTER INDEX p ATTACH PARTITION \"Idx'1\""
            ),
            "DO $decoder_sql$BEGIN IF pg_catalog.to_regclass('public.\"Idx''1\"') IS NOT NULL \
             THEN\nALTER INDEX p ATTACH PARTITION \"Idx'1\";\nEND IF; END$decoder_sql$;"
        );
        // A name holding the dollar tag cannot end the block.
        let guarded = if_relation_exists("s", "a$decoder_sql$b", "COMMENT ON INDEX x IS 'y'");
        assert!(
            guarded.starts_with("DO $decoder_sql_1$") && guarded.ends_with("$decoder_sql_1$;"),
            "{guarded}"
        );
    }

    #[test]
    fn index_definitions_get_if_not_exists() {
        assert_eq!(
            create_index_if_not_exists("CREATE UNIQUE INDEX i ON public.t USING btree (c1)")
                .as_deref(),
            Some("CREATE UNIQUE INDEX IF NOT EXISTS i ON public.t USING btree (c1);")
        );
        assert_eq!(
            create_index_if_not_exists("CREATE INDEX i ON ONLY public.t USING btree (a)")
                .as_deref(),
            Some("CREATE INDEX IF NOT EXISTS i ON ONLY public.t USING btree (a);")
        );
        assert_eq!(create_index_if_not_exists("DROP INDEX i"), None);
    }

    fn member(name: &str, parent: &str, level: i32, partitioned: bool, valid: bool) -> TreeIndex {
        let only = if partitioned { "ONLY " } else { "" };
        TreeIndex {
            definition: format!("CREATE INDEX {name} ON {only}public.t_{name} USING btree (a)"),
            schema: "public".into(),
            name: name.into(),
            parent: (!parent.is_empty()).then(|| ("public".into(), parent.into())),
            level,
            partitioned,
            valid,
        }
    }

    #[test]
    fn partitioned_index_is_written_as_its_tree() {
        let tree = [
            member("top", "", 0, true, false),
            member("leaf2", "top", 1, false, true),
            member("mid", "top", 1, true, false),
            member("leaf11", "mid", 2, false, false),
            member("leaf12", "mid", 2, false, true),
        ];
        let sql = partitioned_index_as_tree(&tree).unwrap();
        let lines: Vec<&str> = sql.lines().collect();
        assert_eq!(
            lines,
            [
                "CREATE INDEX top ON ONLY public.t_top USING btree (a);",
                "CREATE INDEX IF NOT EXISTS leaf2 ON public.t_leaf2 USING btree (a);",
                "CREATE INDEX IF NOT EXISTS mid ON ONLY public.t_mid USING btree (a);",
                "CREATE INDEX IF NOT EXISTS leaf12 ON public.t_leaf12 USING btree (a);",
                "ALTER INDEX public.mid ATTACH PARTITION public.leaf12;",
                "DO $decoder_sql$BEGIN IF pg_catalog.to_regclass('public.leaf11') IS NOT NULL THEN",
                "ALTER INDEX public.mid ATTACH PARTITION public.leaf11;",
                "END IF; END$decoder_sql$;",
                "ALTER INDEX public.top ATTACH PARTITION public.mid;",
                "ALTER INDEX public.top ATTACH PARTITION public.leaf2;",
            ]
        );
        assert_eq!(partitioned_index_as_tree(&tree[1..]), None);
        // Nothing invalid but partitioned indexes: as written.
        assert_eq!(partitioned_index_as_tree(&tree[..3]), None);
    }

    #[test]
    fn an_index_made_valid_is_created_attached_placed_and_commented() {
        assert_eq!(
            index_made_valid(
                "CREATE INDEX \"I\" ON public.t USING btree (a)",
                ("public", "I"),
                Some(("public", "parent")),
                Some("space"),
                Some("it's"),
            )
            .unwrap(),
            "CREATE INDEX IF NOT EXISTS \"I\" ON public.t USING btree (a);\n\
             ALTER INDEX public.parent ATTACH PARTITION public.\"I\";\n\
             ALTER INDEX public.\"I\" SET TABLESPACE space;\n\
             COMMENT ON INDEX public.\"I\" IS 'it''s';"
        );
        assert_eq!(
            index_made_valid("CREATE INDEX i ON s.t (a)", ("s", "i"), None, None, None).unwrap(),
            "CREATE INDEX IF NOT EXISTS i ON s.t (a);"
        );
    }
}
