//! Canal's instance filters as a module: `filter.regex` (tables to keep),
//! `black.regex` (tables to drop) and `filter.query.ddl` (drop DDL), sending what
//! passes to one `topic`, keyed by primary key.

use sluice_sdk::canal::TableFilter;
use sluice_sdk::prelude::*;

/// The filter router. The filtering itself is the subscription: the agent applies it
/// before calling the module (to DDL by the table the statement names, `db.` for
/// statements naming none), so everything `route` sees has passed.
pub struct Filter {
    key: KeyBuilder,
}

impl Router for Filter {
    fn configure(config: &Config) -> Result<(Self, Subscription), String> {
        let keep = config.get_or("filter.regex", ".*\\..*");
        let black = config.get_or("black.regex", "");
        let drop_ddl = config.parse_or("filter.query.ddl", false)?;
        let topic = config.get("topic").ok_or("config `topic` is required")?;
        // Parsed here too so a bad pattern is named by its Canal key.
        TableFilter::parse(keep).map_err(|e| format!("filter.regex: {e}"))?;
        TableFilter::parse(black).map_err(|e| format!("black.regex: {e}"))?;
        let f = Filter {
            key: KeyBuilder::new(),
        };
        let kinds: &[Kind] = if drop_ddl {
            &[Kind::Insert, Kind::Update, Kind::Delete]
        } else {
            &[Kind::Insert, Kind::Update, Kind::Delete, Kind::Ddl]
        };
        let sub = Subscription::all()
            .tables(keep)
            .exclude(black)
            .kinds(kinds)
            .before_images(false)
            .topics([topic]);
        Ok((f, sub))
    }

    fn route(
        &mut self,
        tables: &Tables,
        batch: &Batch<'_>,
        out: &mut Decisions,
    ) -> Result<(), String> {
        for ev in batch.iter() {
            match tables.of(&ev) {
                Some(t) => {
                    self.key.clear().text(&t.name).primary_key(t, &ev);
                    out.send(Destination::to_index(0).key(self.key.as_bytes()));
                }
                // DDL, unkeyed.
                None => out.send(Destination::to_index(0)),
            }
        }
        Ok(())
    }
}

sluice_sdk::export_router!(Filter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_blacklists_and_drops_ddl() {
        let mut h = Harness::<Filter>::new(&[
            ("filter.regex", "shop\\\\..*"),
            ("black.regex", "shop\\\\.tmp_.*"),
            ("filter.query.ddl", "true"),
            ("topic", "shop"),
        ])
        .unwrap();
        assert_eq!(
            h.subscription.kinds,
            vec![Kind::Insert, Kind::Update, Kind::Delete]
        );
        h.table(1, "shop", "orders", &[("id", "int")], &["id"]);
        h.table(2, "shop", "tmp_x", &[("id", "int")], &["id"]);
        h.insert(1, &[Some("5")]).insert(2, &[Some("6")]);
        let out = h.run().unwrap();
        assert_eq!(
            out[0],
            Outcome::Sent(vec![Sent {
                topic: "shop".into(),
                key: Some(b"orders|5".to_vec()),
                partition: None,
                headers: vec![]
            }])
        );
        assert_eq!(out[1], Outcome::Unsubscribed);
    }

    #[test]
    fn ddl_follows_the_table_filter() {
        let mut h =
            Harness::<Filter>::new(&[("filter.regex", "shop\\..*"), ("topic", "t")]).unwrap();
        h.ddl("shop", "orders", "ALTER TABLE orders ADD x INT")
            .ddl("crm", "u", "DROP TABLE u")
            .ddl("shop", "", "CREATE DATABASE shop")
            .ddl("crm", "", "CREATE DATABASE crm");
        let out = h.run().unwrap();
        assert!(matches!(out[0], Outcome::Sent(_)));
        assert_eq!(out[1], Outcome::Unsubscribed);
        assert!(matches!(out[2], Outcome::Sent(_)));
        assert_eq!(out[3], Outcome::Unsubscribed);
        assert!(Harness::<Filter>::new(&[]).is_err(), "topic is required");
    }
}
