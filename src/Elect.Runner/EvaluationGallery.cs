using System.Globalization;
using System.Net;
using System.Text;
using Elect.Evaluation;
using Elect.Imaging;

namespace Elect.Runner;

/// <summary>
/// The HTML gallery of an evaluation: one row per item with the input, the ground-truth mask (written as PNGs beside
/// the page), and per method its evaluated output, its metrics, and for an ELECT report the relevance mask and every
/// candidate found on disk with its BIS. Sortable (click a header) by any metric or by the gain of the first method
/// over the second on the first metric (positive: the first is better). Self-contained: relative links, inline
/// script and style, no server.
/// </summary>
public static class EvaluationGallery
{
    public const string MaskFolder = "gallery_masks";

    /// <summary>True when a larger value of the metric is better (PSNR, SSIM, CLIP); false for the distances.</summary>
    public static bool HigherIsBetter(string metric) => PieBenchMetrics.Base(metric) is "psnr" or "ssim" || metric.StartsWith("clip_", StringComparison.Ordinal)
                                                        || metric.StartsWith("clip-", StringComparison.Ordinal) || metric == "dino";

    /// <summary>The first method's gain over the second on <paramref name="metric"/> (null without two numbers).</summary>
    public static double? Gain(ItemEvaluation item, string metric)
    {
        if (item.Methods.Count < 2) return null;
        if (!item.Methods[0].Values.TryGetValue(metric, out var a) || !item.Methods[1].Values.TryGetValue(metric, out var b)) return null;
        if (double.IsNaN(a) || double.IsNaN(b)) return null;
        if (double.IsInfinity(a) && double.IsInfinity(b)) return a == b ? 0 : null;
        return HigherIsBetter(metric) ? a - b : b - a;
    }

    public static void Write(string htmlPath, IReadOnlyList<ItemEvaluation> items, EvaluationSummary summary)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(htmlPath))!;
        Directory.CreateDirectory(Path.Combine(dir, MaskFolder));
        string Link(string file) => string.Join('/', Path.GetRelativePath(dir, Path.GetFullPath(file))
            .Split(Path.DirectorySeparatorChar).Select(Uri.EscapeDataString));
        var metrics = summary.MetricNames;
        string? gainMetric = metrics.Count > 0 && summary.Methods.Count >= 2 ? metrics[0] : null;
        var h = new StringBuilder();
        h.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>elect evaluate: ")
         .Append(Enc(summary.Dataset)).Append("</title>\n<style>")
         .Append("body{font-family:sans-serif;margin:12px;background:#fafafa}table{border-collapse:collapse}")
         .Append("td,th{border:1px solid #ccc;padding:4px;vertical-align:top;font-size:12px;background:#fff}")
         .Append("th{cursor:pointer;background:#eee;position:sticky;top:0}img{width:160px;height:auto;display:block}")
         .Append(".cands img{width:72px}.cands figure{display:inline-block;margin:2px}figcaption{font-size:10px}")
         .Append(".skip{color:#a00}.win{outline:3px solid #0a0}.pos{color:#070}.neg{color:#a00}")
         .Append("</style></head><body>\n<h1>elect evaluate</h1>\n<p>Dataset <code>").Append(Enc(summary.Dataset)).Append("</code>, ")
         .Append(summary.Items).Append(" items. Methods: ")
         .Append(string.Join(", ", summary.Methods.Select(m => $"<b>{Enc(m.Method)}</b> (<code>{Enc(m.Folder)}</code>)")))
         .Append(gainMetric is null ? "" : $". Gain: {Enc(summary.Methods[0].Method)} over {Enc(summary.Methods[1].Method)} on {Enc(gainMetric)}, positive when the first is better")
         .Append(". Click a header to sort.</p>\n");
        h.Append("<table id=\"summary\"><tr><th>method</th><th>items</th>");
        foreach (var m in metrics) h.Append("<th>").Append(Enc(m)).Append(TableScaleSuffix(m)).Append("</th>");
        h.Append("</tr>\n");
        foreach (var row in summary.Methods)
        {
            h.Append("<tr><td>").Append(Enc(row.Method)).Append("</td><td>").Append(row.Evaluated).Append(row.Skipped > 0 ? $" ({row.Skipped} skipped)" : "").Append("</td>");
            foreach (var m in row.Metrics) h.Append("<td>").Append(DatasetEvaluation.TableValue(m.Table, summary.Benchmark == DatasetEvaluation.MagicBrush ? 4 : 2)).Append("</td>");
            h.Append("</tr>\n");
        }
        h.Append("</table><br>\n<table id=\"items\"><thead><tr><th data-type=\"text\">item</th>");
        if (gainMetric is not null) h.Append("<th data-type=\"num\">gain</th>");
        h.Append("<th>input</th><th>").Append(summary.Benchmark == DatasetEvaluation.MagicBrush ? "ground truth" : "ground-truth mask").Append("</th>");
        foreach (var m in summary.Methods)
        {
            h.Append("<th>").Append(Enc(m.Method)).Append("</th>");
            foreach (var metric in metrics) h.Append("<th data-type=\"num\">").Append(Enc(m.Method)).Append("<br>").Append(Enc(metric)).Append("</th>");
        }
        h.Append("</tr></thead><tbody>\n");
        foreach (var it in items)
        {
            var item = it.Item;
            h.Append("<tr><td data-v=\"").Append(Enc(item.Key)).Append("\"><b>").Append(Enc(item.Key)).Append("</b><br>")
             .Append(Enc(item.EditingPrompt)).Append(item.EditingTypeId is { } t ? $"<br>type {Enc(t)}" : "").Append("</td>");
            if (gainMetric is not null)
            {
                var g = Gain(it, gainMetric);
                h.Append("<td data-v=\"").Append(g is { } gv ? DatasetEvaluation.FormatValue(gv).Replace("inf", "Infinity") : "").Append("\" class=\"")
                 .Append(g > 0 ? "pos" : g < 0 ? "neg" : "").Append("\">").Append(g is { } gg ? (double.IsInfinity(gg) ? (gg > 0 ? "+inf" : "-inf") : gg.ToString("+0.000;-0.000;0", CultureInfo.InvariantCulture)) : "-").Append("</td>");
            }
            h.Append("<td>").Append(File.Exists(item.ImagePath) ? Img(Link(item.ImagePath), "input") : "<span class=\"skip\">missing</span>").Append("</td><td>");
            if (item.MaskRle is { } rle)
            {
                var maskFile = Path.Combine(dir, MaskFolder, item.Key + "_gt-mask.png");
                try
                {
                    PieBenchMetrics.MaskImage(rle).SavePng(maskFile);
                    h.Append(Img(Link(maskFile), "ground-truth mask"));
                }
                catch (ArgumentException e) { h.Append("<span class=\"skip\">").Append(Enc(e.Message)).Append("</span>"); }
            }
            else if (item.Target is { } gt)
                h.Append(File.Exists(gt.ImagePath) ? Img(Link(gt.ImagePath), "ground truth") : "<span class=\"skip\">missing</span>")
                 .Append(gt.Caption is { } cap ? $"<br>{Enc(cap)}" : "");
            else h.Append('-');
            h.Append("</td>");
            foreach (var r in it.Methods)
            {
                h.Append("<td>");
                if (r.Skipped is null && r.File is not null) h.Append(Img(Link(r.File), r.Method)).Append("seed ").Append(r.Seed);
                else h.Append("<span class=\"skip\">skipped: ").Append(Enc(r.Skipped ?? "")).Append("</span>");
                if (r.Report is { } rep && r.File is not null)
                {
                    var folder = Path.GetDirectoryName(r.File)!;
                    var rel = Path.Combine(folder, EditOutputs.MaskFile(item.Key));
                    if (File.Exists(rel)) h.Append("<br>relevance mask").Append(Img(Link(rel), "relevance mask"));
                    var cands = rep.Candidates.Where(c => File.Exists(Path.Combine(folder, EditOutputs.OutputFile(item.Key, c.Seed)))).ToList();
                    if (cands.Count > 1 || (cands.Count == 1 && rep.Candidates.Count > 1))
                    {
                        h.Append("<div class=\"cands\">");
                        foreach (var c in rep.Candidates)
                        {
                            var f = Path.Combine(folder, EditOutputs.OutputFile(item.Key, c.Seed));
                            h.Append("<figure").Append(c.Seed == rep.BestSeed ? " class=\"win\"" : "").Append('>')
                             .Append(File.Exists(f) ? Img(Link(f), $"seed {c.Seed}") : "")
                             .Append("<figcaption>seed ").Append(c.Seed)
                             .Append(c.Bis is { } b ? $" BIS {b.ToString("0.0000", CultureInfo.InvariantCulture)}" : "").Append("</figcaption></figure>");
                        }
                        h.Append("</div>");
                    }
                }
                h.Append("</td>");
                foreach (var metric in metrics)
                {
                    bool has = r.Values.TryGetValue(metric, out var v);
                    h.Append("<td data-v=\"").Append(has && !double.IsNaN(v) ? DatasetEvaluation.FormatValue(v).Replace("inf", "Infinity") : "").Append("\">")
                     .Append(has ? Format(v) : "-").Append("</td>");
                }
            }
            h.Append("</tr>\n");
        }
        h.Append("</tbody></table>\n<script>\n").Append(Script).Append("</script>\n</body></html>\n");
        var tmp = htmlPath + ".tmp";
        File.WriteAllText(tmp, h.ToString());
        File.Move(tmp, htmlPath, overwrite: true);
    }

    private static string TableScaleSuffix(string m)
    {
        double s = PieBenchMetrics.TableScale(m);
        return s == 1 ? "" : $" x10^{Math.Log10(s):0}";
    }

    private static string Format(double v) =>
        double.IsNaN(v) ? "nan" : double.IsInfinity(v) ? (v > 0 ? "inf" : "-inf") : v.ToString("0.0000", CultureInfo.InvariantCulture);

    private static string Img(string src, string alt) => $"<img src=\"{Enc(src)}\" alt=\"{Enc(alt)}\" loading=\"eager\">";

    private static string Enc(string s) => WebUtility.HtmlEncode(s);

    // sorting by a header's column (numbers by data-v, empty last), and a count of images that failed to load,
    // exposed as <body data-images / data-broken> for headless checks
    private const string Script = """
        document.querySelectorAll('#items th').forEach((th, col) => {
          th.addEventListener('click', () => {
            const tbody = document.querySelector('#items tbody');
            const num = th.dataset.type === 'num';
            const dir = th.dataset.dir === 'desc' ? 1 : -1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
            const rows = Array.from(tbody.rows);
            const key = r => { const c = r.cells[col]; const v = c.dataset.v ?? c.textContent; return num ? (v === '' ? NaN : parseFloat(v)) : v; };
            rows.sort((a, b) => { const x = key(a), y = key(b);
              if (num) { if (isNaN(x)) return 1; if (isNaN(y)) return -1; return dir * (y - x); }
              return dir * String(y).localeCompare(String(x)); });
            rows.forEach(r => tbody.appendChild(r));
          });
        });
        window.addEventListener('load', () => {
          const imgs = Array.from(document.images);
          document.body.dataset.images = imgs.length;
          document.body.dataset.broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
        });

        """;
}
