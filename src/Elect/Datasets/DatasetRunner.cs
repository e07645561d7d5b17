using System.Diagnostics;
using System.Text.Json.Nodes;
using Elect.Editing;
using Elect.Imaging;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Elect.Datasets;

/// <summary>Settings of a dataset run.</summary>
public sealed record DatasetRunOptions
{
    public required string DatasetDir { get; init; }
    public required string OutputDir { get; init; }
    public int Resolution { get; init; } = 512;
    public required IReadOnlyList<long> Seeds { get; init; }
    public required EditOptions Edit { get; init; }

    /// <summary>ELECT selection; null runs every seed plainly.</summary>
    public SelectionOptions? Selection { get; init; }

    /// <summary>Skip items whose report already exists.</summary>
    public bool Resume { get; init; } = true;

    /// <summary>Stop after this many items (null: all).</summary>
    public int? Limit { get; init; }
}

/// <summary>
/// Runs an editor over a dataset: one item at a time, each written as it finishes together with a
/// per-item report (<c>{key}_report.json</c>, written last, which is what resume looks for). A bad
/// item (unreadable image, empty instruction, malformed entry) is logged and skipped; the others go
/// on. Writes <c>summary.json</c> with per-item results, totals and the memory readings after each
/// item with their course over the run (<see cref="MemoryProbe.Trend"/>).
/// </summary>
public sealed class DatasetRunner
{
    private readonly Editor _editor;
    private readonly ILogger _log;

    public DatasetRunner(Editor editor, ILogger? logger = null)
    {
        _editor = editor;
        _log = logger ?? NullLogger.Instance;
    }

    public static string ItemReportFile(string key) => $"{key}_report.json";

    public JsonObject Run(DatasetRunOptions o, IProgress<EditProgress>? progress = null, CancellationToken cancel = default)
    {
        var (items, bad, format) = EditDataset.Load(o.DatasetDir);
        Directory.CreateDirectory(o.OutputDir);
        _log.LogInformation("{Format} dataset {Dir}: {Count} items, {Bad} malformed", format, o.DatasetDir, items.Count, bad.Count);
        var results = new JsonArray();
        var failures = new JsonArray();
        var memory = new List<JsonObject>();
        foreach (var b in bad)
        {
            _log.LogError("skipping item {Key}: {Error}", b.Key, b.Error);
            failures.Add(new JsonObject { ["key"] = b.Key, ["error"] = b.Error });
        }
        int done = 0, skipped = 0, processed = 0;
        long nfe = 0, nfeBestOfN = 0;
        var total = Stopwatch.StartNew();
        foreach (var item in items)
        {
            cancel.ThrowIfCancellationRequested();
            if (o.Limit is { } limit && processed >= limit) break;
            var reportPath = Path.Combine(o.OutputDir, ItemReportFile(item.Key));
            if (o.Resume && File.Exists(reportPath))
            {
                skipped++;
                _log.LogInformation("item {Key}: already done, skipped (resume)", item.Key);
                continue;
            }
            processed++;
            try
            {
                if (string.IsNullOrWhiteSpace(item.Instruction))
                    throw new ArgumentException("empty editing instruction");
                var image = ImageOps.ImageResize(RgbImage.Load(item.ImagePath), o.Resolution);
                using var result = _editor.Edit(image, item.Instruction, o.Seeds, o.Edit, o.Selection, null, progress, cancel);
                var files = EditOutputs.Write(o.OutputDir, item.Key, image, result);
                var report = EditOutputs.Report(item.Key, item.Instruction, result, files, _editor);
                report["image_path"] = item.ImagePath;
                var snapshot = MemoryProbe.Snapshot(_editor.Model.Device);
                memory.Add(snapshot);
                report["memory"] = snapshot.DeepClone();
                EditOutputs.WriteJson(reportPath, report);
                results.Add(report.DeepClone());
                nfe += result.ModelEvaluations;
                nfeBestOfN += result.BestOfNEvaluations;
                done++;
                _log.LogInformation("item {Key}: done{Best} in {Seconds:F2} s", item.Key,
                    result.BestSeed is { } b ? $" (best seed {b})" : "", result.Times.Total);
            }
            catch (Exception e) when (e is not OperationCanceledException && !IsFatal(e))
            {
                _log.LogError("skipping item {Key}: {Error}", item.Key, e.Message);
                failures.Add(new JsonObject { ["key"] = item.Key, ["error"] = e.Message });
            }
        }
        var summary = new JsonObject
        {
            ["dataset"] = o.DatasetDir,
            ["format"] = format,
            ["items"] = items.Count + bad.Count,
            ["done"] = done,
            ["skipped_resume"] = skipped,
            ["failed"] = failures.Count,
            ["nfe"] = nfe,
            ["nfe_best_of_n"] = nfeBestOfN,
            ["seconds"] = Math.Round(total.Elapsed.TotalSeconds, 3),
            ["memory"] = MemoryProbe.Trend(memory),
            ["results"] = results,
            ["failures"] = failures,
        };
        EditOutputs.WriteJson(Path.Combine(o.OutputDir, "summary.json"), summary);
        return summary;
    }

    private static bool IsFatal(Exception e) => e is OutOfMemoryException or StackOverflowException or AccessViolationException;
}
