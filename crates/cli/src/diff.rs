//! `rprof diff BASE NEW`: the top table of NEW minus BASE, as `pprof -top -diff_base BASE
//! NEW` prints it: per function, the change of flat and cum, percentages of BASE's total.

use std::collections::HashMap;
use std::fmt::Write;

use rprof_profile::Profile;

use crate::top::{drop_small, formatter, rows, sample_index, sort_by_flat, write_table, Row};
use crate::units;

pub fn report(
    base: &Profile,
    new: &Profile,
    index: Option<&str>,
    limit: Option<usize>,
) -> Result<String, String> {
    let new_idx = sample_index(new, index)?;
    let name = new.str(new.sample_type[new_idx].r#type).to_owned();
    let base_idx = base.sample_type_index(&name).ok_or_else(|| {
        format!(
            "BASE has no sample type {name:?} (it has: {}); compare profiles of one kind",
            base.sample_type_names().join(", ")
        )
    })?;
    let unit = new.str(new.sample_type[new_idx].unit).to_owned();
    let (base_rows, base_total) = rows(base, base_idx);
    let (new_rows, new_total) = rows(new, new_idx);
    let mut diff: HashMap<String, Row> = HashMap::new();
    for (sign, rs) in [(-1, base_rows), (1, new_rows)] {
        for r in rs {
            let d = diff.entry(r.name.clone()).or_insert(Row {
                name: r.name,
                flat: 0,
                cum: 0,
                inlined: (false, false),
            });
            d.flat += sign * r.flat;
            d.cum += sign * r.cum;
            // pprof's graph of a diff holds the edges of both profiles.
            d.inlined.0 |= r.inlined.0;
            d.inlined.1 |= r.inlined.1;
        }
    }
    let mut rows: Vec<Row> = diff
        .into_values()
        .filter(|r| r.flat != 0 || r.cum != 0)
        .collect();
    sort_by_flat(&mut rows);
    drop_small(&mut rows);
    rows.truncate(limit.unwrap_or(usize::MAX));
    // pprof's total of a diff is the base's.
    let fmt = formatter(rows.iter(), base_total, &unit);
    let mut s = String::new();
    let _ = writeln!(s, "Type: {name}");
    let _ = writeln!(
        s,
        "Base total {}, new total {}, change {} ({} of base)",
        fmt(base_total),
        fmt(new_total),
        fmt(new_total - base_total),
        units::percent(new_total - base_total, base_total).trim()
    );
    write_table(&mut s, &rows, base_total, &fmt);
    Ok(s)
}
