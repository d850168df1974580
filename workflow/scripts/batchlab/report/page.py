"""The page: a section's parts, and the one self-contained HTML file they are poured into (a
template with the Vega bundle and every chart's spec inline, so it works offline)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from string import Template


@dataclass
class Section:
    """One part of the report: a heading, prose, tables, charts and findings, in that order on
    the page (the tables come first where they carry the answer)."""

    id: str
    title: str
    intro: str = ""
    charts: list[tuple[str, dict, str]] = field(default_factory=list)  # (id, vega-lite, caption)
    tables: list[str] = field(default_factory=list)  # HTML
    findings: list[str] = field(default_factory=list)
    tables_first: bool = False


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.sub{color:#666;margin-top:0} .charts{display:flex;flex-wrap:wrap;gap:1.5em}
figure{margin:0} ul.findings li{margin:.35em 0}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}
table.data th{background:#f4f4f4} table.stamp th{background:#f4f4f4;width:16em}
table.answers td:first-child{font-size:1.3em;text-align:center;width:1.5em}
nav a{margin-right:1em}
.partial{background:#fff3cd;border:1px solid #e0c060;padding:.5em .8em}
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="batchlab $version">
<meta name="batchlab-version" content="$commit params $params_hash">
<title>$title</title>
<style>$css</style>
<script>$bundle</script>
</head>
<body>
<h1>$title</h1>
<p class="sub">batchlab $version · commit $commit · params $params_hash · $date</p>
$banner
<nav>$nav <a href="#version">Version</a></nav>
$sections
<section id="version"><h2>Version</h2>
<p>What produced this report. The same commit, params hash and data checksums reproduce it.</p>
$stamp_table
<script type="application/json" id="version-stamp-json">$stamp_json</script>
</section>
<script>
const SPECS = $specs;
for (const [id, spec] of Object.entries(SPECS)) {
  vegaEmbed('#' + id, spec, {renderer: 'svg', actions: false})
    .catch(err => { document.getElementById(id).textContent = 'chart failed: ' + err; console.error(err); });
}
</script>
</body>
</html>
""")


def section_html(s: Section) -> tuple[str, list[tuple[str, dict]]]:
    parts = [f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>']
    if s.intro:
        parts.append(f"<p>{html.escape(s.intro)}</p>")
    if s.tables_first:
        parts.extend(s.tables)
    if s.findings:
        parts.append('<ul class="findings">' + "".join(f"<li>{html.escape(f)}</li>" for f in s.findings) + "</ul>")
    embeds = []
    if s.charts:
        parts.append('<div class="charts">')
        for chart_id, chart, caption in s.charts:
            parts.append(
                f'<figure><div class="chart" id="{chart_id}"></div>'
                + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "")
                + "</figure>"
            )
            embeds.append((chart_id, chart))
        parts.append("</div>")
    if not s.tables_first:
        parts.extend(s.tables)
    parts.append("</section>")
    return "".join(parts), embeds


def render_html(title: str, sections: list[Section], stamp: dict, vega_bundle: str, banner: str = "") -> str:
    """One self-contained page. Element ids must be unique: vegaEmbed('#id') draws into the
    first element with that id, so a section sharing its id with a chart would be overwritten."""
    ids = [s.id for s in sections] + [c[0] for s in sections for c in s.charts] + ["version"]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"report element ids used twice: {', '.join(duplicates)}")
    bodies, embeds = [], []
    for s in sections:
        body, charts = section_html(s)
        bodies.append(body)
        embeds += charts
    commit = (stamp["git_commit"] or "no git")[:10] + ("+dirty" if stamp["git_dirty"] else "")
    return PAGE.substitute(
        version=html.escape(stamp["batchlab"]),
        commit=html.escape(commit),
        params_hash=html.escape(stamp["params_hash"]),
        date=html.escape(stamp["date"]),
        title=html.escape(title),
        css=CSS,
        bundle=vega_bundle.replace("</script", "<\\/script"),
        nav=" ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections),
        sections="".join(bodies),
        stamp_table=stamp_table(stamp),
        stamp_json=json.dumps(stamp).replace("</", "<\\/"),
        specs=json.dumps(dict(embeds)).replace("</", "<\\/"),
        banner=f'<p class="partial" id="partial">{html.escape(banner)}</p>' if banner else "",
    )


def stamp_table(stamp: dict) -> str:
    dirty = {True: " (uncommitted changes)", False: " (clean)"}.get(stamp["git_dirty"], "")
    rows = [
        ("batchlab", stamp["batchlab"]),
        ("git commit", (stamp["git_commit"] or "not a git checkout") + dirty),
        ("params hash", stamp["params_hash"]),
        ("data (MD5 of decompressed MNIST files)", "; ".join(f"{k}: {v}" for k, v in stamp["data_md5"].items())),
        ("packages", ", ".join(f"{k} {v}" for k, v in stamp["packages"].items() if v)),
        ("devices", ", ".join(stamp["devices"])),
        ("host", stamp["host"]),
        ("date", stamp["date"]),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="stamp" id="version-stamp">{body}</table>'


def vega_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one inline script (no CDN: the page works offline),
    at the Vega-Lite version Altair writes its specs for (altair.VEGALITE_VERSION)."""
    import altair as alt
    import vl_convert as vlc

    major_minor = ".".join(alt.VEGALITE_VERSION.split(".")[:2])
    return vlc.javascript_bundle(vl_version=major_minor)


def dvc_plots_template(bundle: str) -> str:
    """An HTML template for `dvc plots show/diff` with Vega inline: DVC's default page loads
    Vega from a CDN and renders blank offline. DVC fills {plot_divs}; no {scripts} placeholder,
    so no CDN script tags are added."""
    bundle = bundle.replace("</script", "<\\/script")
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>batchlab: DVC plots</title>\n'
        f"<script>{bundle}</script>\n"
        "<style>body{font-family:system-ui,sans-serif;margin:2em}</style>\n</head>\n<body>\n"
        "{plot_divs}\n</body>\n</html>\n"
    )
