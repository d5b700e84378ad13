//! `sluice module`: build, export, check, test and diff routing modules offline, with
//! the same engine and limits the agent uses.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use super::ModuleCmd;

pub(crate) fn module_spec(
    name: &str,
    config: &Option<PathBuf>,
) -> anyhow::Result<sluice::router::ModuleSpec> {
    let mut spec = sluice::router::ModuleSpec::new(name);
    if let Some(c) = config {
        let text =
            std::fs::read_to_string(c).with_context(|| format!("reading {}", c.display()))?;
        spec.config = sluice::router::tools::flatten_config(&text)
            .with_context(|| format!("in {}", c.display()))?;
    }
    Ok(spec)
}

pub(crate) fn module_name(p: &std::path::Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "module".into())
}

pub(crate) fn module_cmd(cmd: ModuleCmd) -> anyhow::Result<()> {
    use sluice::router::tools::{load_events, routes_json, run_module};
    use sluice::router::{ModuleInstance, RouterEngine};
    match cmd {
        ModuleCmd::Export { name, out, list } => {
            use sluice::router::builtin;
            if list || name.is_none() {
                for n in builtin::names() {
                    println!("{n}");
                }
                return Ok(());
            }
            let name = name.unwrap_or_default();
            let bytes =
                builtin::bytes(&name).ok_or_else(|| anyhow::anyhow!(builtin::unknown(&name)))?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.wasm")));
            std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
            println!("{} ({} bytes)", out.display(), bytes.len());
            Ok(())
        }
        ModuleCmd::Build { dir, out, profile } => {
            let path = sluice::router::build::build_module(&dir, &out, &profile)?;
            let bytes = std::fs::read(&path)?;
            let engine = RouterEngine::new(2, None)?;
            let (code, _) = engine.compile(&module_name(&path), &bytes)?;
            println!(
                "{} ({} bytes, version {})",
                path.display(),
                bytes.len(),
                code.hash
            );
            Ok(())
        }
        ModuleCmd::Check { file, config } => {
            let bytes = sluice::router::builtin::read(&file)?;
            let engine = RouterEngine::new(2, None)?;
            let component = wasmtime_component_summary(&engine, &bytes)?;
            println!("{component}");
            let name = module_name(&file);
            let (code, _) = engine.compile(&name, &bytes)?;
            println!("version: {}", code.hash);
            if config.is_some() {
                let spec = module_spec(&name, &config)?;
                let m = ModuleInstance::new(&engine, code, std::sync::Arc::new(spec))?;
                println!("configured: ok");
                println!(
                    "subscription: {}",
                    serde_json::to_string_pretty(m.subscription()).unwrap_or_default()
                );
            }
            Ok(())
        }
        ModuleCmd::Test {
            file,
            config,
            events,
            batch,
        } => {
            let bytes = sluice::router::builtin::read(&file)?;
            let evs = load_events(&events)?;
            let engine = RouterEngine::new(2, None)?;
            let t = std::time::Instant::now();
            let (decided, code) = run_module(
                &engine,
                &bytes,
                module_spec(&module_name(&file), &config)?,
                &evs,
                batch,
            )?;
            let took = t.elapsed();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let (mut routed, mut dropped, mut skipped) = (0, 0, 0);
            for d in &decided {
                let ev = &evs[d.event];
                match &d.routes {
                    None => skipped += 1,
                    Some(r) if r.is_empty() => dropped += 1,
                    Some(_) => routed += 1,
                }
                let line = serde_json::json!({
                    "at": ev.position.to_string(),
                    "row": d.row,
                    "table": ev.table.qualified_name(),
                    "kind": ev.kind.canal_name(),
                    "routes": routes_json(&d.routes),
                });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            eprintln!(
                "{} events: {routed} routed, {dropped} dropped, {skipped} not subscribed; version {}; {:.0} ns/event including compile",
                decided.len(),
                code.short_hash(),
                took.as_nanos() as f64 / decided.len().max(1) as f64
            );
            Ok(())
        }
        ModuleCmd::Diff {
            old,
            new,
            config,
            new_config,
            events,
        } => {
            let evs = load_events(&events)?;
            let engine = RouterEngine::new(4, None)?;
            let name = module_name(&old);
            let a = sluice::router::builtin::read(&old)?;
            let b = sluice::router::builtin::read(&new)?;
            let (da, _) = run_module(&engine, &a, module_spec(&name, &config)?, &evs, 500)?;
            let new_config = new_config.or(config);
            let (db, _) = run_module(&engine, &b, module_spec(&name, &new_config)?, &evs, 500)?;
            let mut differ = 0;
            for (x, y) in da.iter().zip(&db) {
                if x.routes != y.routes {
                    differ += 1;
                    let ev = &evs[x.event];
                    println!(
                        "{}",
                        serde_json::json!({
                            "at": ev.position.to_string(),
                            "row": x.row,
                            "table": ev.table.qualified_name(),
                            "old": routes_json(&x.routes),
                            "new": routes_json(&y.routes),
                        })
                    );
                }
            }
            eprintln!("{differ} of {} decisions differ", da.len());
            if differ > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

pub(crate) fn wasmtime_component_summary(
    engine: &sluice::router::RouterEngine,
    bytes: &[u8],
) -> anyhow::Result<String> {
    let c = wasmtime::component::Component::new(engine.engine(), bytes)
        .map_err(|e| anyhow::anyhow!("not a valid component: {e:#}"))?;
    let ty = c.component_type();
    let imports: Vec<String> = ty
        .imports(engine.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine.engine())
        .map(|(n, _)| n.to_string())
        .collect();
    Ok(format!(
        "imports: {}\nexports: {}",
        imports.join(", "),
        exports.join(", ")
    ))
}
