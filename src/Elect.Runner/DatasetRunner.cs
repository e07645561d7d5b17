using System.Diagnostics;
using System.Text.Json;
using Elect.Selection;
using Elect.Datasets;
using Elect.Imaging;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Elect.Runner;

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

    /// <summary>
    /// Score BIS outside each item's PIE-Bench mask (<see cref="DatasetItem.MaskRle"/>) instead of the estimated
    /// relevance map (<see cref="SelectionOptions.KnownMask"/>); an item without a mask fails. Needs <see cref="Selection"/>.
    /// </summary>
    public bool UseDatasetMask { get; init; }

    /// <summary>Skip items whose report already exists.</summary>
    public bool Resume { get; init; } = true;

    /// <summary>Stop after this many items (null: all).</summary>
    public int? Limit { get; init; }

    /// <summary>Size limits each item's image is checked against before editing (null: none).</summary>
    public ResourceLimits? Limits { get; init; }

    /// <summary>
    /// The published MagicBrush test set only: <see cref="MagicBrushTurns.Iterative"/> edits turn t &gt;= 2 of each session from the
    /// output of turn t-1 on disk (the winner its report names, or the plain run's one seed) instead of its ground-truth input.
    /// </summary>
    public MagicBrushTurns MagicBrushTurns { get; init; } = MagicBrushTurns.Independent;
}

/// <summary>A dataset item starts: item <c>Index</c> (1-based) of <c>Count</c>.</summary>
public readonly record struct DatasetItemProgress(int Index, int Count, string Key);

/// <summary>
/// Runs an editor over a dataset: one item at a time, each written as it finishes together with a
/// per-item report (<c>{key}_report.json</c>, written last, which is what resume looks for). A bad
/// item (unreadable image, empty instruction, malformed entry) is logged and skipped; the others go
/// on. Writes <c>summary.json</c>, rebuilt from every item report in the output folder, with per-item
/// results, totals and the memory readings of each item with their course (<see cref="MemoryProbe.Trend"/>).
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

    /// <summary>
    /// Checks every item's image size (read from the file header, not decoded) against <paramref name="limits"/>
    /// before any model work; returns the items that break them with the reason. Unreadable headers are left
    /// to the run (which reports them per item).
    /// </summary>
    public static IReadOnlyList<(string Key, string Error)> PrecheckSizes(string datasetDir, int resolution, ResourceLimits limits)
    {
        var (items, _, _) = EditDataset.Load(datasetDir);
        var over = new List<(string, string)>();
        foreach (var item in items)
        {
            try
            {
                using var stream = File.OpenRead(item.ImagePath);
                var info = StbImageSharp.ImageInfo.FromStream(stream);
                if (info is not { } i || i.Width < 1 || i.Height < 1) continue;
                limits.CheckImage(i.Width, i.Height, resolution, item.ImagePath);
            }
            catch (ArgumentException e) { over.Add((item.Key, e.Message)); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException) { }
        }
        return over;
    }

    /// <summary>
    /// Refuses <see cref="MagicBrushTurns.Iterative"/> where it cannot work: a dataset that is not the published MagicBrush test
    /// set, or a plain run with other than one seed (each turn edits one output of the previous turn).
    /// </summary>
    public static void CheckMagicBrushTurns(string datasetDir, MagicBrushTurns turns, bool elect, int seeds)
    {
        if (turns != MagicBrushTurns.Iterative) return;
        var format = EditDataset.Load(datasetDir).Format;
        if (format != EditDataset.MagicBrushSessionsFormat)
            throw new ArgumentException($"--magicbrush-turns iterative needs the published MagicBrush test set (edit_sessions.json and images/); {datasetDir} is a {format} dataset");
        if (!elect && seeds != 1)
            throw new ArgumentException($"--magicbrush-turns iterative edits each turn from one output of the previous turn: a plain run needs exactly one seed (got {seeds}), or add --select-one-seed");
    }

    /// <summary>The seed whose output a report stands for: its winner (<c>best_seed</c>), else its only candidate; null otherwise.</summary>
    public static long? ChosenSeed(EditReport report) =>
        report.BestSeed ?? (report is { Candidates.Count: 1 } ? report.Candidates[0].Seed : null);

    /// <summary>The output file a finished item's report stands for in <paramref name="outputDir"/>, or null with why not.</summary>
    public static string? ChosenOutput(string outputDir, string key, out string? why)
    {
        var reportPath = Path.Combine(outputDir, ItemReportFile(key));
        why = null;
        if (!File.Exists(reportPath)) { why = $"{key} has no report ({reportPath})"; return null; }
        EditReport? report;
        try { report = JsonFiles.FromJsonObject<EditReport>(File.ReadAllText(reportPath)); }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        { why = $"{key}'s report {reportPath} is unreadable ({e.Message})"; return null; }
        if (report is null || ChosenSeed(report) is not { } seed) { why = $"{key}'s report names no winner and not one seed"; return null; }
        var file = Path.Combine(outputDir, EditOutputs.OutputFile(key, seed));
        if (!File.Exists(file)) { why = $"{key}'s output {file} is missing"; return null; }
        return file;
    }

    /// <summary>The dataset summary's file name in the output folder.</summary>
    public const string SummaryFile = "summary.json";

    /// <summary>
    /// Runs the dataset. <c>summary.json</c> is rebuilt from every item report on disk (this run's and earlier
    /// runs'), so it is complete after any interruption or rerun; it is written when the run ends, however it
    /// ends (cancellation and fatal errors included, with <c>interrupted: true</c>).
    /// </summary>
    public DatasetSummary Run(DatasetRunOptions o, IProgress<EditProgress>? progress = null, CancellationToken cancel = default)
    {
        var (items, bad, format) = EditDataset.Load(o.DatasetDir, MagicBrushCaptions.Local, o.MagicBrushTurns);
        bool iterative = o.MagicBrushTurns == MagicBrushTurns.Iterative;
        CheckMagicBrushTurns(o.DatasetDir, o.MagicBrushTurns, o.Selection is not null, o.Seeds.Count);
        if (o.Limit is < 0) throw new ArgumentOutOfRangeException(nameof(o.Limit), $"--limit must be >= 0, got {o.Limit}");
        if (o.UseDatasetMask && o.Selection is null)
            throw new ArgumentException("DatasetRunOptions.UseDatasetMask needs a selection (--select-one-seed)", nameof(o.UseDatasetMask));
        Directory.CreateDirectory(o.OutputDir);
        _log.LogInformation("{Format} dataset {Dir}: {Count} items, {Bad} malformed", format, o.DatasetDir, items.Count, bad.Count);
        var failures = new List<ItemFailure>();
        foreach (var b in bad)
        {
            _log.LogError("skipping item {Key}: {Error}", b.Key, b.Error);
            failures.Add(new ItemFailure { Key = b.Key, Error = b.Error });
        }
        int done = 0, skipped = 0, processed = 0;
        var total = Stopwatch.StartNew();
        bool finished = false;
        DatasetSummary? summary = null;
        var itemProgress = progress as IProgress<DatasetItemProgress>;
        var blocked = new Dictionary<string, string>(StringComparer.Ordinal);   // iterative: session -> why its later turns cannot run
        try
        {
            for (int index = 0; index < items.Count; index++)
            {
                var item = items[index];
                cancel.ThrowIfCancellationRequested();
                if (o.Limit is { } limit && processed >= limit) break;
                var reportPath = Path.Combine(o.OutputDir, ItemReportFile(item.Key));
                string inputPath = item.ImagePath;
                if (iterative && item.Turn >= 2)
                {
                    var prevKey = EditDataset.MagicBrushKey(item.Session!, item.Turn - 1, MagicBrushTurns.Iterative);
                    var prev = index > 0 ? items[index - 1] : null;
                    string? why = blocked.GetValueOrDefault(item.Session!);
                    if (why is null && (prev is null || prev.Session != item.Session || prev.Turn != item.Turn - 1))
                        why = $"turn {item.Turn - 1} of session {item.Session} ({prevKey}) is a malformed dataset entry";
                    string? previous = null;
                    if (why is null && (previous = ChosenOutput(o.OutputDir, prevKey, out var missing)) is null)
                        why = $"the previous turn's output is not there: {missing}";
                    if (why is not null)
                    {
                        blocked[item.Session!] = why;
                        var error = $"not edited: {why}; iterative editing edits the previous turn's output, so the session's later turns are skipped";
                        _log.LogError("skipping item {Key}: {Error}", item.Key, error);
                        failures.Add(new ItemFailure { Key = item.Key, Error = error });
                        continue;
                    }
                    inputPath = previous!;
                }
                if (o.Resume && File.Exists(reportPath) && (!iterative || ChosenOutput(o.OutputDir, item.Key, out _) is not null))
                {
                    skipped++;
                    _log.LogInformation("item {Index}/{Count} {Key}: already done, skipped (resume)", index + 1, items.Count, item.Key);
                    continue;
                }
                processed++;
                if (iterative) InvalidateLaterTurns(o.OutputDir, items, index);
                itemProgress?.Report(new DatasetItemProgress(index + 1, items.Count, item.Key));
                _log.LogInformation("item {Index}/{Count} {Key}: editing", index + 1, items.Count, item.Key);
                try
                {
                    if (string.IsNullOrWhiteSpace(item.Instruction))
                        throw new ArgumentException("empty editing instruction");
                    var loaded = RgbImage.Load(inputPath);
                    o.Limits?.CheckImage(loaded.Width, loaded.Height, o.Resolution, inputPath);
                    var image = ImageOps.ImageResize(loaded, o.Resolution);
                    var selection = o.Selection;
                    if (o.UseDatasetMask)
                    {
                        if (item.MaskRle is null) throw new ArgumentException("the item has no mask (--use-dataset-mask needs PIE-Bench's mask field)");
                        selection = selection! with { KnownMask = KnownMask.FromRle(item.MaskRle, loaded.Width, loaded.Height, image.Width, image.Height) };
                    }
                    using var result = _editor.Edit(image, item.Instruction, o.Seeds, o.Edit, selection, null, progress, cancel);
                    var files = EditOutputs.Write(o.OutputDir, item.Key, image, result);
                    var report = EditReport.Create(item.Key, item.Instruction, result, files, _editor) with
                    {
                        ImagePath = inputPath,
                        Memory = MemoryProbe.Snapshot(_editor.Model.Device),
                    };
                    JsonFiles.Write(reportPath, report);
                    done++;
                    _log.LogInformation("item {Index}/{Count} {Key}: done{Best} in {Seconds:F2} s", index + 1, items.Count, item.Key,
                        result.BestSeed is { } b ? $" (best seed {b})" : "", result.Times.Total);
                }
                catch (Exception e) when (e is not OperationCanceledException && !IsFatal(e))
                {
                    _log.LogError("skipping item {Key}: {Error}", item.Key, e.Message);
                    failures.Add(new ItemFailure { Key = item.Key, Error = e.Message });
                    if (iterative && item.Session is { } session) blocked[session] = $"turn {item.Turn} of session {session} ({item.Key}) failed";
                }
            }
            finished = true;
        }
        finally
        {
            summary = Summary(o, items, bad.Count, format, failures, done, skipped, total.Elapsed.TotalSeconds, !finished);
            try { JsonFiles.Write(Path.Combine(o.OutputDir, SummaryFile), summary); }
            catch (Exception e) when (!finished && e is IOException or UnauthorizedAccessException)
            {
                _log.LogError("could not write {File}: {Error}", SummaryFile, e.Message);
            }
        }
        return summary;
    }

    /// <summary>
    /// The summary of the output folder: every item of the dataset that has a report on disk (in dataset
    /// order, whichever run wrote it) with totals over them, plus this run's failures and counters.
    /// </summary>
    private DatasetSummary Summary(DatasetRunOptions o, IReadOnlyList<DatasetItem> items, int malformed, string format,
                                   List<ItemFailure> failures, int done, int skipped, double seconds, bool interrupted)
    {
        var results = new List<EditReport>();
        var memory = new List<MemorySnapshot>();
        long nfe = 0, nfeBestOfN = 0;
        var failedKeys = failures.Select(f => f.Key).ToHashSet(StringComparer.Ordinal);
        int pending = 0;
        foreach (var item in items)
        {
            var path = Path.Combine(o.OutputDir, ItemReportFile(item.Key));
            EditReport? report = null;
            if (File.Exists(path))
            {
                try { report = JsonFiles.FromJsonObject<EditReport>(File.ReadAllText(path)); }
                catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
                {
                    _log.LogWarning("item {Key}: unreadable report {Path} ({Error}); not counted", item.Key, path, e.Message);
                }
            }
            if (report is null)
            {
                if (!failedKeys.Contains(item.Key)) pending++;
                continue;
            }
            nfe += report.Nfe;
            nfeBestOfN += report.NfeBestOfN;
            if (report.Memory is { } m) memory.Add(m);
            results.Add(report);
        }
        return new DatasetSummary
        {
            Dataset = o.DatasetDir,
            Format = format,
            Items = items.Count + malformed,
            Completed = results.Count,
            Done = done,
            SkippedResume = skipped,
            Failed = failures.Count,
            Pending = pending,
            Interrupted = interrupted,
            Nfe = nfe,
            NfeBestOfN = nfeBestOfN,
            Seconds = Math.Round(seconds, 3),
            Memory = MemoryProbe.Trend(memory),
            Results = results,
            Failures = failures.ToArray(),
            NfePlainElect = results.Any(r => r.NfePlainElect is not null) ? results.Sum(r => r.NfePlainElect ?? 0) : null,
            Review = results.Any(r => r.Confidence is not null)
                ? results.Where(r => r.Confidence is { Flags.Count: > 0 }).Select(r => new ReviewItem { Key = r.Input, Flags = r.Confidence!.Flags }).ToArray()
                : null,
        };
    }

    /// <summary>
    /// Iterative MagicBrush: item <paramref name="index"/> is about to be (re)edited, so its own report and those of its session's
    /// later turns (which edited its old output) are removed first; an interruption then leaves them pending, never stale.
    /// </summary>
    private void InvalidateLaterTurns(string outputDir, IReadOnlyList<DatasetItem> items, int index)
    {
        var session = items[index].Session;
        if (session is null) return;
        int removed = 0;
        for (int k = index; k < items.Count && items[k].Session == session; k++)
        {
            var report = Path.Combine(outputDir, ItemReportFile(items[k].Key));
            if (!File.Exists(report)) continue;
            File.Delete(report);
            if (k > index) removed++;
        }
        if (removed > 0)
            _log.LogInformation("item {Key}: edited again, so the reports of the session's {Count} later turn(s) are removed (they edited its old output)",
                items[index].Key, removed);
    }

    private static bool IsFatal(Exception e) => e is OutOfMemoryException or StackOverflowException or AccessViolationException;
}
