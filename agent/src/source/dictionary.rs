//! Reads table definitions from `information_schema`: one table's for
//! [`crate::binlog::schema::refine`], or every user table's (`sluice topics create
//! --tables` asks the modules where each table's rows go).

use mysql_async::prelude::Queryable;

use crate::binlog::schema::{DictColumn, DictTable};

/// Fetches `db.table`'s columns, collation ids and primary key. `None` if the table no
/// longer exists.
pub async fn fetch(
    conn: &mut mysql_async::Conn,
    db: &str,
    table: &str,
) -> Result<Option<DictTable>, mysql_async::Error> {
    type Row = (String, String, String, Option<u64>, Option<u64>, String);
    let rows: Vec<Row> = conn
        .exec(
            "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, co.ID, k.ORDINAL_POSITION, \
                    c.IS_NULLABLE \
             FROM information_schema.COLUMNS c \
             LEFT JOIN information_schema.COLLATIONS co ON co.COLLATION_NAME = c.COLLATION_NAME \
             LEFT JOIN information_schema.KEY_COLUMN_USAGE k \
               ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
              AND k.COLUMN_NAME = c.COLUMN_NAME AND k.CONSTRAINT_NAME = 'PRIMARY' \
             WHERE c.TABLE_SCHEMA = ? AND c.TABLE_NAME = ? \
             ORDER BY c.ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(DictTable {
        columns: rows
            .into_iter()
            .map(
                |(name, data_type, column_type, coll, pk, nullable)| DictColumn {
                    name,
                    data_type,
                    column_type,
                    collation_id: coll.and_then(|c| u16::try_from(c).ok()),
                    pk_ordinal: pk.and_then(|p| u32::try_from(p).ok()),
                    nullable: nullable.eq_ignore_ascii_case("YES"),
                },
            )
            .collect(),
    }))
}

/// Schemas that hold the server's own tables, never captured as user data.
const SYSTEM_SCHEMAS: &[&str] = &["mysql", "information_schema", "performance_schema", "sys"];

/// Every base table outside the system schemas with its columns, in one query:
/// `(database, table, definition)`, ordered by database and table.
pub async fn all_tables(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<(String, String, DictTable)>, mysql_async::Error> {
    type Row = (String, String, String, String, String, Option<u64>, String);
    let rows: Vec<Row> = conn
        .query(
            "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, \
                    k.ORDINAL_POSITION, c.IS_NULLABLE \
             FROM information_schema.COLUMNS c \
             JOIN information_schema.TABLES t \
               ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
              AND t.TABLE_TYPE = 'BASE TABLE' \
             LEFT JOIN information_schema.KEY_COLUMN_USAGE k \
               ON k.TABLE_SCHEMA = c.TABLE_SCHEMA AND k.TABLE_NAME = c.TABLE_NAME \
              AND k.COLUMN_NAME = c.COLUMN_NAME AND k.CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION",
        )
        .await?;
    let mut out: Vec<(String, String, DictTable)> = Vec::new();
    for (db, table, name, data_type, column_type, pk, nullable) in rows {
        if SYSTEM_SCHEMAS.iter().any(|s| s.eq_ignore_ascii_case(&db)) {
            continue;
        }
        let column = DictColumn {
            name,
            data_type,
            column_type,
            collation_id: None,
            pk_ordinal: pk.and_then(|p| u32::try_from(p).ok()),
            nullable: nullable.eq_ignore_ascii_case("YES"),
        };
        match out.last_mut() {
            Some((d, t, def)) if *d == db && *t == table => def.columns.push(column),
            _ => out.push((
                db,
                table,
                DictTable {
                    columns: vec![column],
                },
            )),
        }
    }
    Ok(out)
}
