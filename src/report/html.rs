//! `addrmunge report --html`: one self-contained page with inline SVG charts.

use std::fmt::Write as _;

use super::fmt_time;
use super::summary::{Report, Target};
use crate::token::Kind;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A vertical bar chart as inline SVG; `series` share the x axis.
fn bar_chart(id: &str, title: &str, labels: &[String], series: &[(&str, &str, Vec<f64>)]) -> String {
    let (w, h, left, bottom, top) = (720.0, 260.0, 48.0, 56.0, 28.0);
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let n = labels.len().max(1) as f64;
    let slot = (w - left - 10.0) / n;
    let bar = (slot * 0.8 / series.len().max(1) as f64).clamp(1.0, 40.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="{id}" class="chart" role="img" aria-label="{t}" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r##"<text x="{left}" y="18" font-size="14" font-weight="bold" fill="#222">{}</text>"##,
        esc(title)
    );
    let base = h - bottom;
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{base}" x2="{}" y2="{base}" stroke="#888"/>"##,
        w - 10.0
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" font-size="11" text-anchor="end" fill="#555">{}</text>"##,
        left - 4.0,
        top + 4.0,
        max
    );
    for (k, (name, colour, values)) in series.iter().enumerate() {
        for (i, v) in values.iter().enumerate() {
            let bh = (v / max) * (base - top);
            let group = bar * series.len() as f64;
            let x = left + i as f64 * slot + (slot - group) / 2.0 + k as f64 * bar;
            let _ = write!(
                s,
                r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{colour}"><title>{}: {}</title></rect>"#,
                base - bh,
                esc(name),
                v
            );
        }
    }
    let every = (labels.len() / 10).max(1);
    for (i, l) in labels.iter().enumerate() {
        if i % every == 0 {
            let x = left + i as f64 * slot + slot / 2.0;
            let _ = write!(
                s,
                r##"<text x="{x:.1}" y="{}" font-size="10" text-anchor="end" fill="#555" transform="rotate(-40 {x:.1} {})">{}</text>"##,
                base + 14.0,
                base + 14.0,
                esc(l)
            );
        }
    }
    for (k, (name, colour, _)) in series.iter().enumerate() {
        let x = w - 200.0 + k as f64 * 100.0;
        let _ = write!(
            s,
            r##"<rect x="{x}" y="8" width="10" height="10" fill="{colour}"/><text x="{}" y="17" font-size="11" fill="#333">{}</text>"##,
            x + 14.0,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// The report as one self-contained HTML page: inline CSS and SVG, no
/// script, nothing fetched.
pub fn html_report(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>addrmunge report {from} .. {to}</title>
<style>
body {{ font: 14px/1.45 sans-serif; margin: 2em; color: #222; max-width: 800px; }}
h1 {{ font-size: 1.5em; }} h2 {{ font-size: 1.15em; margin-top: 2em; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }}
.num {{ text-align: right; }} .chart {{ display: block; margin: 1em 0; }}
.summary span {{ display: inline-block; margin-right: 2em; }}
</style></head><body>
<h1>addrmunge report, {from} to {to}</h1>
<p class="summary"><span id="trap-hits"><b>{trap}</b> trap hits</span><span><b>{tc}</b> trap clients</span><span id="mangled-hits"><b>{mh}</b> to mangled copies</span><span id="harvester-count"><b>{hv}</b> harvesters</span><span><b>{bl}</b> blocks</span><span><b>{tg}</b> addresses drew mail</span></p>
"#,
        from = r.from,
        to = r.to,
        trap = r.trap_hits,
        tc = r.trap_clients,
        mh = r.mangled_hits,
        hv = r.harvesters.len(),
        bl = r.blocks.len(),
        tg = r.targets.len(),
    );
    h.push_str(&charts(r));
    h.push_str(&tables(r));
    h.push_str("</table>\n<p>Made by <code>addrmunge report --html</code>.</p>\n</body></html>\n");
    h
}

/// The three charts: by day, harvest-to-mail delays, the top targets.
fn charts(r: &Report) -> String {
    let days: Vec<String> = r.by_day.iter().map(|(d, ..)| d.to_string()).collect();
    let served: Vec<f64> = r.by_day.iter().map(|(_, _, m, _)| *m as f64).collect();
    let mail: Vec<f64> = r.by_day.iter().map(|(.., a)| *a as f64).collect();
    let delay_labels: Vec<String> = r.delays.iter().map(|(l, _)| l.clone()).collect();
    let delay_counts: Vec<f64> = r.delays.iter().map(|(_, n)| *n as f64).collect();
    let top: Vec<&Target> = r.targets.iter().take(15).collect();
    // Rotated labels must fit in the margin: the start of the address is enough
    // to find it in the table below.
    let top_labels: Vec<String> = top
        .iter()
        .map(|t| {
            let short: String = t.address.chars().take(14).collect();
            if t.address.len() > 14 {
                format!("{short}…")
            } else {
                short
            }
        })
        .collect();
    let top_clients: Vec<f64> = top.iter().map(|t| t.clients as f64).collect();
    let mut h = String::new();
    h.push_str(&bar_chart(
        "by-day",
        "Addresses served and mail received, by day",
        &days,
        &[("served", "#2d5a88", served), ("mail", "#c0392b", mail)],
    ));
    h.push_str(&bar_chart(
        "delays",
        "Harvest to first mail",
        &delay_labels,
        &[("addresses", "#8e44ad", delay_counts)],
    ));
    if !top.is_empty() {
        h.push_str(&bar_chart(
            "targets",
            "Distinct clients per munged address (top 15)",
            &top_labels,
            &[("clients", "#d35400", top_clients)],
        ));
    }
    h
}

/// The tables of targets, harvesters and blocks.
fn tables(r: &Report) -> String {
    let mut h = String::new();
    h.push_str("<h2>Munged addresses that drew mail</h2>\n<table id=\"targets-table\"><tr><th>address</th><th>kind</th><th>visitor</th><th>day</th><th class=\"num\">clients</th><th class=\"num\">messages</th></tr>\n");
    for t in r.targets.iter().take(100) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&t.address),
            esc(t.kind.map_or("", Kind::as_str)),
            esc(t.visitor.as_deref().unwrap_or("")),
            t.day.map(|d| d.to_string()).unwrap_or_default(),
            t.clients,
            t.arrivals
        );
    }
    h.push_str("</table>\n<h2>Harvesters</h2>\n<table id=\"harvesters-table\"><tr><th>day</th><th>visitor</th><th>why</th><th>User-Agent</th><th>first page</th></tr>\n");
    for v in &r.harvesters {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.day,
            esc(&v.visitor),
            esc(v.harvester.as_deref().unwrap_or("")),
            esc(&v.user_agent),
            esc(v.first_page.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table>\n<h2>Blocked clients</h2>\n<table id=\"blocks-table\"><tr><th>client</th><th>since</th><th>until</th><th>why</th></tr>\n");
    for b in &r.blocks {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&b.ip),
            fmt_time(b.created),
            fmt_time(b.until),
            esc(&b.reason)
        );
    }
    h.push_str("</table>\n<h2>Cut off automatically</h2>\n<table id=\"contained-table\"><tr><th>rule</th><th>made</th><th>why</th></tr>\n");
    for rule in &r.contained {
        let _ = writeln!(
            h,
            "<tr><td>#{} {}</td><td>{}</td><td>{}</td></tr>",
            rule.id,
            esc(&rule.scope.to_string()),
            fmt_time(rule.created),
            esc(&rule.reason)
        );
    }
    h
}
