using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Elect.Datasets;
using Elect.Evaluation;
using Elect.Imaging;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;

namespace Elect.Runner;

/// <summary>Settings of <c>elect evaluate</c>.</summary>
public sealed record EvaluationOptions
{
    public required string DatasetDir { get; init; }

    /// <summary>Output folders of dataset runs (one method each, named by the folder).</summary>
    public required IReadOnlyList<string> Outputs { get; init; }

    /// <summary>Metric names of <see cref="PieBenchMetrics"/>, or of <see cref="MagicBrushMetrics"/> for a MagicBrush dataset.</summary>
    public required IReadOnlyList<string> Metrics { get; init; }

    /// <summary>Seed whose output is evaluated for items whose report names no winner (a plain run), or that have no report.</summary>
    public long? Seed { get; init; }

    /// <summary>Only items whose <c>editing_type_id</c> is one of these (null: all).</summary>
    public IReadOnlyList<string>? EditCategories { get; init; }

    /// <summary>The per-item CSV; <c>evaluation_summary.json</c> is written beside it.</summary>
    public required string ResultCsv { get; init; }

    /// <summary>Called with one line per skipped item ("skip KEY (METHOD): reason"); default: a logged warning.</summary>
    public Action<string>? OnSkip { get; init; }

    public IPairMetric? Lpips { get; init; }
    public ClipScore? Clip { get; init; }
    public IPairMetric? StructureDistance { get; init; }

    /// <summary>CLIP ViT-B/32 for MagicBrush's <c>clip-i</c> / <c>clip-t</c>.</summary>
    public MagicBrushClip? MagicBrushClip { get; init; }

    /// <summary>DINO ViT-S/16 for MagicBrush's <c>dino</c>.</summary>
    public MagicBrushDino? MagicBrushDino { get; init; }

    /// <summary>Which caption file of the published MagicBrush test set CLIP-T reads.</summary>
    public MagicBrushCaptions Captions { get; init; } = MagicBrushCaptions.Local;

    /// <summary>The published MagicBrush test set's setting: every turn (<c>{id}_1</c>, <c>{id}_inde_{t}</c>), or each session's final turn.</summary>
    public MagicBrushSetting MagicBrushSetting { get; init; } = MagicBrushSetting.AllTurn;
}

/// <summary>image_eval.py's two settings (its result dicts <c>all_turn</c> and <c>final_turn</c>).</summary>
public enum MagicBrushSetting
{
    /// <summary>Every turn's independent output against the turn's ground truth (<c>get_all_turn_imgs</c>).</summary>
    AllTurn,

    /// <summary>Each session's last iterative output against its last ground-truth output (<c>get_final_turn_img</c>).</summary>
    FinalTurn,
}

/// <summary>One item of a dataset as the evaluation reads it (<paramref name="Target"/>: MagicBrush's ground truth).</summary>
public sealed record EvaluationItem(string Key, string ImagePath, int[]? MaskRle, string? EditingTypeId, string OriginalPrompt, string EditingPrompt,
                                    GroundTruth? Target = null);

/// <summary>What one method gave for one item.</summary>
public sealed record MethodItemResult
{
    public string Method { get; init; } = "";

    /// <summary>The evaluated output file (null when none could be chosen).</summary>
    public string? File { get; init; }
    public long? Seed { get; init; }

    /// <summary>Metric → value (NaN: the reference's "nan"); empty when skipped.</summary>
    public IReadOnlyDictionary<string, double> Values { get; init; } = new Dictionary<string, double>();

    /// <summary>Why this item was not evaluated for this method (null: evaluated).</summary>
    public string? Skipped { get; init; }

    /// <summary>The item's report in the method's folder, when there is one.</summary>
    [JsonIgnore]
    public EditReport? Report { get; init; }
}

/// <summary>One item and every method's result.</summary>
public sealed record ItemEvaluation
{
    public EvaluationItem Item { get; init; } = new("", "", null, null, "", "");
    public IReadOnlyList<MethodItemResult> Methods { get; init; } = [];
}

/// <summary>The mean of one metric over the items that have a number for it.</summary>
public sealed record MetricMean
{
    public string Metric { get; init; } = "";
    public double? Mean { get; init; }

    /// <summary>The mean times the paper's table factor (<see cref="PieBenchMetrics.TableScale"/>).</summary>
    public double? Table { get; init; }
    public double Scale { get; init; }
    public int Count { get; init; }
    public int Nan { get; init; }
}

/// <summary>One method's row of the summary.</summary>
public sealed record MethodSummary
{
    public string Method { get; init; } = "";
    public string Folder { get; init; } = "";
    public int Evaluated { get; init; }
    public int Skipped { get; init; }
    public IReadOnlyList<MetricMean> Metrics { get; init; } = [];

    /// <summary>
    /// Model evaluations the run spent on the evaluated items, summed from their reports' <c>nfe</c> (every candidate
    /// of the item included); null when no evaluated item has a report.
    /// </summary>
    public long? Nfe { get; init; }

    /// <summary>What Best-of-N over the same candidates would have spent on those items (the reports' <c>nfe_best_of_n</c>).</summary>
    public long? NfeBestOfN { get; init; }

    /// <summary>How many evaluated items had a report (the items <see cref="Nfe"/> sums over).</summary>
    public int NfeItems { get; init; }

    /// <summary><see cref="Nfe"/> per item with a report.</summary>
    public double? NfePerItem => NfeItems == 0 ? null : (double)Nfe!.Value / NfeItems;
}

/// <summary>An item a method could not be evaluated on, and why.</summary>
public sealed record EvaluationSkip
{
    public string Key { get; init; } = "";
    public string Method { get; init; } = "";
    public string Reason { get; init; } = "";
}

/// <summary><c>evaluation_summary.json</c>.</summary>
public sealed record EvaluationSummary
{
    public string Dataset { get; init; } = "";

    /// <summary><c>pie-bench</c> (PnPInversion's metrics) or <c>magicbrush</c> (image_eval.py's).</summary>
    public string Benchmark { get; init; } = DatasetEvaluation.PieBench;

    /// <summary>
    /// MagicBrush: for the published test set <c>all_turn</c> (every turn edited from its ground-truth input, the reference's
    /// single-turn setting) or <c>final_turn</c> (each session's last iterative output); <c>items</c> for a preprocessed.json.
    /// </summary>
    public string? Setting { get; init; }
    public IReadOnlyList<string>? EditCategories { get; init; }
    public int Items { get; init; }
    public IReadOnlyList<string> MetricNames { get; init; } = [];
    public IReadOnlyList<MethodSummary> Methods { get; init; } = [];
    public IReadOnlyList<EvaluationSkip> Skips { get; init; } = [];
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(EvaluationSummary))]
internal sealed partial class EvaluationJsonContext : JsonSerializerContext;

/// <summary>
/// <c>elect evaluate</c>: PIE-Bench's evaluation (cure-lab/PnPInversion evaluation/evaluate.py) over the output
/// folders of dataset runs. Per item and method, the evaluated file is the winner its report names
/// (<c>best_seed</c>), else the one seed of a plain report, else <see cref="EvaluationOptions.Seed"/>. A missing or
/// unreadable output, or one of another size than the source, is skipped with a warning line naming item, method and
/// reason; the run goes on. Writes the per-item CSV (the reference's columns: <c>file_id</c>, then
/// <c>{method}|{metric}</c>; <c>nan</c> as it writes it, an empty cell for a skipped item) and the summary.
/// </summary>
public static class DatasetEvaluation
{
    public const string SummaryFile = "evaluation_summary.json";

    /// <summary>The summary table (<see cref="Table"/>) as a Markdown file beside <see cref="SummaryFile"/>.</summary>
    public const string SummaryMarkdownFile = "evaluation_summary.md";

    /// <summary>The benchmark names of <see cref="EvaluationSummary.Benchmark"/>.</summary>
    public const string PieBench = "pie-bench", MagicBrush = "magicbrush";

    /// <summary>The names of <see cref="EvaluationSummary.Setting"/> for the published MagicBrush test set (image_eval.py's result keys).</summary>
    public static string SettingName(MagicBrushSetting s) => s == MagicBrushSetting.FinalTurn ? "final_turn" : "all_turn";

    /// <summary>
    /// A result file of a setting: the all-turn setting's as given; the final-turn setting's with <c>_final_turn</c> before the
    /// extension (<c>evaluation_result.csv</c> -&gt; <c>evaluation_result_final_turn.csv</c>), so that both settings' files sit side by side.
    /// </summary>
    public static string SettingFile(string path, MagicBrushSetting s) =>
        s == MagicBrushSetting.AllTurn ? path
            : Path.Combine(Path.GetDirectoryName(path) ?? "", Path.GetFileNameWithoutExtension(path) + "_final_turn" + Path.GetExtension(path));

    /// <summary>
    /// The settings <c>elect evaluate</c> runs on the published MagicBrush test set when none is asked for, from the files in
    /// the output folders: final-turn where any holds an iterative output of a session's turn 2 or later (<c>{id}_iter_{t}</c>),
    /// all-turn where any holds an independent one (<c>{id}_inde_{t}</c>), both where both are there; all-turn otherwise
    /// (only one-turn sessions, or nothing yet). Other datasets: all-turn (one setting).
    /// </summary>
    public static IReadOnlyList<MagicBrushSetting> DefaultMagicBrushSettings(string datasetDir, IReadOnlyList<string> outputs)
    {
        var (items, _, format) = EditDataset.Load(datasetDir, MagicBrushCaptions.Local, MagicBrushTurns.Iterative);
        if (format != EditDataset.MagicBrushSessionsFormat) return [MagicBrushSetting.AllTurn];
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var folder in outputs.Where(Directory.Exists))
            foreach (var file in Directory.EnumerateFiles(folder))
            {
                var name = Path.GetFileName(file);
                int output = name.IndexOf("_output", StringComparison.Ordinal);
                if (name.EndsWith(DatasetRunner.ItemReportFile(""), StringComparison.Ordinal)) keys.Add(name[..^DatasetRunner.ItemReportFile("").Length]);
                else if (output > 0) keys.Add(name[..output]);
            }
        var later = items.Where(i => i.Turn >= 2).ToList();
        bool iterative = later.Any(i => keys.Contains(i.Key));
        bool independent = later.Any(i => keys.Contains(EditDataset.MagicBrushKey(i.Session!, i.Turn, MagicBrushTurns.Independent)));
        return iterative && independent ? [MagicBrushSetting.FinalTurn, MagicBrushSetting.AllTurn]
             : iterative ? [MagicBrushSetting.FinalTurn] : [MagicBrushSetting.AllTurn];
    }

    /// <summary>
    /// The final-turn setting's items of the published MagicBrush test set, one per session, as image_eval.py's
    /// <c>load_data</c> pairs them: keyed by the session's final output (<c>{id}_1</c> for a one-turn session, else
    /// <c>{id}_iter_{n}</c>, n its number of turns), the input the session's source image, the ground truth the last
    /// <c>output</c> image of its folder (<see cref="MagicBrushPairing.FinalTurnGroundTruth"/>, which on the published naming is the
    /// last turn's <c>output</c>) with that turn's caption. A session whose last turn is malformed is returned in Bad.
    /// </summary>
    public static (IReadOnlyList<EvaluationItem> Items, IReadOnlyList<EditDataset.BadEntry> Bad) FinalTurnItems(string datasetDir, MagicBrushCaptions captions)
    {
        var (items, bad, format) = EditDataset.Load(datasetDir, captions, MagicBrushTurns.Iterative);
        if (format != EditDataset.MagicBrushSessionsFormat)
            throw new ArgumentException($"the final-turn setting (--magicbrush-setting final-turn) needs the published MagicBrush test set (edit_sessions.json and images/); {datasetDir} is a {format} dataset");
        var badKeys = bad.Select(b => b.Key).ToHashSet(StringComparer.Ordinal);
        var result = new List<EvaluationItem>();
        var problems = new List<EditDataset.BadEntry>(bad);
        foreach (var session in items.GroupBy(i => i.Session!, StringComparer.Ordinal))
        {
            var turns = session.OrderBy(i => i.Turn).ToList();
            var last = turns[^1];
            int n = last.Turn;
            while (badKeys.Contains(EditDataset.MagicBrushKey(session.Key, n + 1, MagicBrushTurns.Iterative))) n++;
            if (n != last.Turn)
            {
                problems.Add(new EditDataset.BadEntry(EditDataset.MagicBrushKey(session.Key, n, MagicBrushTurns.Iterative),
                    $"session {session.Key}: its last turn is a malformed dataset entry, so it has no final-turn pair"));
                continue;
            }
            var target = last.Target!;
            var gtDir = Path.GetDirectoryName(target.ImagePath)!;
            if (Directory.Exists(gtDir) && MagicBrushPairing.FinalTurnGroundTruth(Directory.EnumerateFiles(gtDir).Select(Path.GetFileName)!) is { } pick
                && pick != Path.GetFileName(target.ImagePath))
                target = new GroundTruth(Path.Combine(gtDir, pick), turns.FirstOrDefault(t => Path.GetFileName(t.Target!.ImagePath) == pick)?.Target!.Caption);
            result.Add(new EvaluationItem(last.Key, turns[0].ImagePath, null, null, "", string.Join(" -> ", turns.Select(t => t.Instruction)), target));
        }
        return (result, problems);
    }

    /// <summary>The benchmark a dataset folder is evaluated as (detected as <see cref="EditDataset.Load"/> detects its format).</summary>
    public static string BenchmarkOf(string datasetDir) =>
        EditDataset.Load(datasetDir).Format is EditDataset.MagicBrushFormat or EditDataset.MagicBrushSessionsFormat ? MagicBrush : PieBench;

    /// <summary>Reads <c>mapping_file.json</c> (or a generic <c>dataset.json</c>) with the fields the evaluation needs.</summary>
    public static (IReadOnlyList<EvaluationItem> Items, IReadOnlyList<EditDataset.BadEntry> Bad) LoadItems(string datasetDir)
    {
        var (items, bad, _) = LoadItems(datasetDir, MagicBrushCaptions.Local);
        return (items, bad);
    }

    /// <summary>
    /// Reads a dataset folder with the fields the evaluation needs and the benchmark it is evaluated as. MagicBrush
    /// items carry their ground truth; a MagicBrush <c>preprocessed.json</c> where no item has one is an error.
    /// </summary>
    /// <exception cref="InvalidDataException">a MagicBrush dataset without any ground truth.</exception>
    public static (IReadOnlyList<EvaluationItem> Items, IReadOnlyList<EditDataset.BadEntry> Bad, string Benchmark) LoadItems(string datasetDir, MagicBrushCaptions captions)
    {
        var (items, bad, format) = EditDataset.Load(datasetDir, captions);
        if (format is EditDataset.MagicBrushFormat or EditDataset.MagicBrushSessionsFormat)
        {
            if (items.Count > 0 && items.All(i => i.Target is null))
                throw new InvalidDataException($"{Path.Combine(datasetDir, EditDataset.MagicBrushFile)}: no item has a ground truth (target_image_path, and target_caption for CLIP-T), which MagicBrush's metrics compare with; add them, or point --dataset-dir at the published test set (edit_sessions.json, images/, local_descriptions.json)");
            return (items.Select(i => new EvaluationItem(i.Key, i.ImagePath, null, null, "", i.Instruction, i.Target)).ToList(), bad, MagicBrush);
        }
        var file = Path.Combine(datasetDir, format == EditDataset.PieBenchFormat ? EditDataset.PieBenchFile : EditDataset.GenericFile);
        using var doc = JsonDocument.Parse(File.ReadAllText(file));
        var result = new List<EvaluationItem>();
        foreach (var item in items)
        {
            var e = doc.RootElement.GetProperty(item.Key);
            string? Str(string name) => e.TryGetProperty(name, out var v) ? v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Number => v.GetRawText(),
                _ => null,
            } : null;
            result.Add(new EvaluationItem(item.Key, item.ImagePath, item.MaskRle, Str("editing_type_id"),
                StripBrackets(Str("original_prompt") ?? ""), StripBrackets(Str("editing_prompt") ?? item.Instruction)));
        }
        return (result, bad, PieBench);
    }

    /// <summary>The reference's <c>.replace("[", "").replace("]", "")</c>.</summary>
    public static string StripBrackets(string prompt) => prompt.Replace("[", "").Replace("]", "");

    /// <summary>Method names: each folder's name, made unique with a suffix.</summary>
    public static IReadOnlyList<string> MethodNames(IReadOnlyList<string> folders)
    {
        var names = new List<string>();
        foreach (var f in folders)
        {
            var name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(f)));
            if (name.Length == 0) name = "output";
            var unique = name;
            for (int i = 2; names.Contains(unique); i++) unique = $"{name}-{i}";
            names.Add(unique);
        }
        return names;
    }

    /// <summary>Runs the evaluation; never throws for a bad item (it is skipped and listed).</summary>
    public static (IReadOnlyList<ItemEvaluation> Items, EvaluationSummary Summary) Run(EvaluationOptions o, ILogger? logger = null)
    {
        var log = logger ?? NullLogger.Instance;
        foreach (var f in o.Outputs)
            if (!Directory.Exists(f)) throw new DirectoryNotFoundException($"output folder not found: {f}");
        var (all, bad, benchmark) = LoadItems(o.DatasetDir, o.Captions);
        bool magicBrush = benchmark == MagicBrush;
        bool finalTurn = magicBrush && o.MagicBrushSetting == MagicBrushSetting.FinalTurn;
        if (!magicBrush && o.MagicBrushSetting != MagicBrushSetting.AllTurn)
            throw new ArgumentException($"--magicbrush-setting final-turn is MagicBrush's; {o.DatasetDir} is a {benchmark} dataset");
        if (finalTurn) (all, bad) = FinalTurnItems(o.DatasetDir, o.Captions);
        var known = magicBrush ? MagicBrushMetrics.All : PieBenchMetrics.All;
        foreach (var m in o.Metrics)
            if (!known.Contains(m)) throw new ArgumentException($"unknown {benchmark} metric '{m}' (known: {string.Join(", ", known)})");
        if (magicBrush && o.EditCategories is not null) throw new ArgumentException("--edit-category selects PIE-Bench editing types; a MagicBrush dataset has none");
        var onSkip = o.OnSkip ?? (line => log.LogWarning("{Line}", line));
        foreach (var b in bad) onSkip($"skip {b.Key}: malformed dataset entry ({b.Error})");
        var items = o.EditCategories is { } cats ? all.Where(i => i.EditingTypeId is { } t && cats.Contains(t)).ToList() : all.ToList();
        var methods = MethodNames(o.Outputs);
        var results = new List<ItemEvaluation>();
        var skips = new List<EvaluationSkip>();
        var csv = new StringBuilder();
        csv.Append("file_id");
        foreach (var m in methods) foreach (var metric in o.Metrics) csv.Append(',').Append(CsvField($"{m}|{metric}"));
        csv.Append('\n');
        for (int n = 0; n < items.Count; n++)
        {
            var item = items[n];
            log.LogInformation("item {Index}/{Count}: evaluating {Key}", n + 1, items.Count, item.Key);
            var perMethod = new List<MethodItemResult>();
            if (magicBrush)
            {
                for (int k = 0; k < methods.Count; k++) perMethod.Add(EvaluateMagicBrush(item, o.Outputs[k], methods[k], o));
                Record(item, perMethod);
                continue;
            }
            RgbImage? source = null;
            string? sourceError = null;
            try { source = RgbImage.Load(item.ImagePath); }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
            { sourceError = $"source image unreadable: {e.Message}"; }
            bool[,]? mask = null;
            if (item.MaskRle is { } rle)
            {
                try { mask = PieBenchMetrics.Mask(rle); }
                catch (ArgumentException e) { sourceError ??= $"bad mask: {e.Message}"; }
            }
            for (int k = 0; k < methods.Count; k++)
                perMethod.Add(EvaluateOne(item, source, sourceError, mask, o.Outputs[k], methods[k], o));
            Record(item, perMethod);
        }

        void Record(EvaluationItem item, List<MethodItemResult> perMethod)
        {
            foreach (var r in perMethod)
                if (r.Skipped is { } why)
                {
                    onSkip($"skip {item.Key} ({r.Method}): {why}");
                    skips.Add(new EvaluationSkip { Key = item.Key, Method = r.Method, Reason = why });
                }
            results.Add(new ItemEvaluation { Item = item, Methods = perMethod });
            csv.Append(CsvField(item.Key));
            foreach (var r in perMethod)
                foreach (var metric in o.Metrics)
                    csv.Append(',').Append(r.Values.TryGetValue(metric, out var v) ? FormatValue(v) : "");
            csv.Append('\n');
        }
        WriteAtomically(o.ResultCsv, csv.ToString());
        var summary = new EvaluationSummary
        {
            Dataset = o.DatasetDir,
            Benchmark = benchmark,
            Setting = !magicBrush ? null : EditDataset.Load(o.DatasetDir).Format == EditDataset.MagicBrushSessionsFormat ? SettingName(o.MagicBrushSetting) : "items",
            EditCategories = o.EditCategories,
            Items = items.Count,
            MetricNames = o.Metrics.ToArray(),
            Methods = methods.Select((m, k) => Summarise(m, o.Outputs[k], results.Select(r => r.Methods[k]).ToList(), o.Metrics)).ToArray(),
            Skips = skips,
        };
        var resultDir = Path.GetDirectoryName(Path.GetFullPath(o.ResultCsv))!;
        WriteAtomically(Path.Combine(resultDir, SettingFile(SummaryFile, o.MagicBrushSetting)), ToJson(summary) + "\n");
        WriteAtomically(Path.Combine(resultDir, SettingFile(SummaryMarkdownFile, o.MagicBrushSetting)), Table(summary));
        return (results, summary);
    }

    /// <summary>
    /// The output evaluated for one item and method: the winner the item's report names (<c>best_seed</c>), else
    /// <see cref="EvaluationOptions.Seed"/>, else the one seed of a plain report. Returns a skipped result when none can be chosen.
    /// </summary>
    private static (EditReport? Report, long? Seed, string? File, MethodItemResult? Skip) ChooseOutput(string key, string folder, string method, EvaluationOptions o)
    {
        EditReport? report = null;
        var reportPath = Path.Combine(folder, DatasetRunner.ItemReportFile(key));
        if (File.Exists(reportPath))
        {
            try { report = JsonFiles.FromJsonObject<EditReport>(File.ReadAllText(reportPath)); }
            catch (Exception e) when (e is JsonException or IOException)
            { return (null, null, null, new MethodItemResult { Method = method, Skipped = $"report {reportPath} unreadable ({e.Message})" }); }
        }
        long? seed = report?.BestSeed ?? o.Seed ?? (report is { Candidates.Count: 1 } ? report.Candidates[0].Seed : null);
        if (seed is null)
            return (report, null, null, new MethodItemResult
            {
                Method = method, Report = report,
                Skipped = report is null
                    ? $"no {DatasetRunner.ItemReportFile(key)} in {folder} (pass --seed S for a folder of plain outputs)"
                    : $"the report names no winner and {report.Candidates.Count} seeds (pass --seed S)",
            });
        return (report, seed, Path.Combine(folder, EditOutputs.OutputFile(key, seed.Value)), null);
    }

    private static RgbImage? TryLoad(string file, out string? error)
    {
        error = null;
        try { return RgbImage.Load(file); }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            error = e.Message;
            return null;
        }
    }

    /// <summary>One MagicBrush item: image_eval.py's metrics of the chosen output against the item's ground truth.</summary>
    private static MethodItemResult EvaluateMagicBrush(EvaluationItem item, string folder, string method, EvaluationOptions o)
    {
        var (report, seed, chosen, skipped) = ChooseOutput(item.Key, folder, method, o);
        if (skipped is not null) return skipped;
        var file = chosen!;
        MethodItemResult Skip(string why) => new() { Method = method, Skipped = why, File = file, Seed = seed, Report = report };
        if (item.Target is not { } gt) return Skip("the dataset gives no ground truth for this item (target_image_path)");
        if (!File.Exists(file)) return Skip($"output {file} is missing");
        if (!File.Exists(gt.ImagePath)) return Skip($"ground truth {gt.ImagePath} is missing");
        var generated = TryLoad(file, out var genError);
        if (generated is null) return Skip($"output {file} unreadable: {genError}");
        var target = TryLoad(gt.ImagePath, out var gtError);
        if (target is null) return Skip($"ground truth {gt.ImagePath} unreadable: {gtError}");
        var values = new Dictionary<string, double>();
        float[]? clipGen = null, clipGt = null, text = null;
        float[] ClipGen() => clipGen ??= (o.MagicBrushClip ?? throw new ArgumentException("clip-i/clip-t need the CLIP model (--clip-path)")).ImageFeatures(generated);
        float[] ClipGt() => clipGt ??= o.MagicBrushClip!.ImageFeatures(target);
        try
        {
            foreach (var metric in o.Metrics)
            {
                if (MagicBrushMetrics.CaptionMetrics.Contains(metric) && gt.Caption is null)
                    return Skip($"{metric}: no ground-truth caption for this item (target_caption, or the {o.Captions.ToString().ToLowerInvariant()} descriptions file of the test set)");
                values[metric] = metric switch
                {
                    "l1" => MagicBrushMetrics.L1(generated, target),
                    "l2" => MagicBrushMetrics.L2(generated, target),
                    "clip-i" => MagicBrushMetrics.Cosine(ClipGen(), ClipGt()),
                    "dino" => MagicBrushMetrics.Cosine(
                        (o.MagicBrushDino ?? throw new ArgumentException("dino needs the DINO model (--dino-path)")).Features(generated), o.MagicBrushDino.Features(target)),
                    "clip-t" => MagicBrushMetrics.Cosine(ClipGen(), text ??= o.MagicBrushClip!.TextFeatures(gt.Caption!)),
                    "clip-t_oracle" => MagicBrushMetrics.Cosine(ClipGt(), text ??= (o.MagicBrushClip ?? throw new ArgumentException("clip-t needs the CLIP model (--clip-path)")).TextFeatures(gt.Caption!)),
                    _ => throw new ArgumentException($"unknown MagicBrush metric '{metric}'"),
                };
            }
        }
        catch (ArgumentException e) { return Skip(e.Message); }
        return new MethodItemResult { Method = method, File = file, Seed = seed, Values = values, Report = report };
    }

    private static MethodItemResult EvaluateOne(EvaluationItem item, RgbImage? source, string? sourceError, bool[,]? mask,
                                                string folder, string method, EvaluationOptions o)
    {
        var (report, seed, chosen, skipped) = ChooseOutput(item.Key, folder, method, o);
        if (skipped is not null) return skipped;
        var file = chosen!;
        MethodItemResult Skip(string why, string? f = null) => new() { Method = method, Skipped = why, File = f, Seed = seed, Report = report };
        if (sourceError is not null) return Skip(sourceError, file);
        if (!File.Exists(file)) return Skip($"output {file} is missing", file);
        if (TryLoad(file, out var loadError) is not { } target) return Skip($"output {file} unreadable: {loadError}", file);
        if (target.Width != target.Height && target.Width >= source!.Width && target.Height >= source.Height)
            target = target.Crop(target.Width - source.Width, target.Height - source.Height, source.Width, source.Height);   // the reference's crop of side-by-side outputs
        if (target.Width != source!.Width || target.Height != source.Height)
            return Skip($"output {file} is {target.Width}x{target.Height}, the source {source.Width}x{source.Height}", file);
        try
        {
            using var scope = torch.NewDisposeScope();
            var s = ImageMetrics.ToUnit(source);
            var t = ImageMetrics.ToUnit(target);
            var values = new Dictionary<string, double>();
            foreach (var metric in o.Metrics)
                values[metric] = PieBenchMetrics.ClipMetrics.Contains(metric)
                    ? PieBenchMetrics.ComputeClip(metric, o.Clip ?? throw new ArgumentException($"metric '{metric}' needs the CLIP model"),
                                                  source, target, mask, item.OriginalPrompt, item.EditingPrompt)
                    : PieBenchMetrics.Compute(metric, s, t, mask, o.Lpips, o.StructureDistance);
            return new MethodItemResult { Method = method, File = file, Seed = seed, Values = values, Report = report };
        }
        catch (ArgumentException e) { return Skip(e.Message, file); }
    }

    private static MethodSummary Summarise(string method, string folder, IReadOnlyList<MethodItemResult> rs, IReadOnlyList<string> metrics)
    {
        var evaluated = rs.Where(r => r.Skipped is null).ToList();
        var reported = evaluated.Where(r => r.Report is not null).Select(r => r.Report!).ToList();
        return new MethodSummary
        {
            Method = method,
            Folder = folder,
            Evaluated = evaluated.Count,
            Skipped = rs.Count - evaluated.Count,
            Metrics = metrics.Select(m =>
            {
                var vals = evaluated.Select(r => r.Values[m]).ToList();
                var finite = vals.Where(v => !double.IsNaN(v)).ToList();
                double? mean = finite.Count == 0 ? null : finite.Average();
                double scale = PieBenchMetrics.TableScale(m);
                return new MetricMean { Metric = m, Mean = mean, Table = mean * scale, Scale = scale, Count = finite.Count, Nan = vals.Count - finite.Count };
            }).ToArray(),
            Nfe = reported.Count == 0 ? null : reported.Sum(r => r.Nfe),
            NfeBestOfN = reported.Count == 0 ? null : reported.Sum(r => r.NfeBestOfN),
            NfeItems = reported.Count,
        };
    }

    /// <summary>
    /// The summary as a Markdown table: one row per method. PIE-Bench: the paper's scaling in the headers, two decimals;
    /// MagicBrush: image_eval.py's raw means with its four decimals, the setting in the first header.
    /// </summary>
    public static string Table(EvaluationSummary s)
    {
        const string NfeHeader = " NFE/item |";
        if (s.Benchmark == MagicBrush)
        {
            var mb = new StringBuilder();
            mb.Append("| method (").Append(s.Setting ?? "items").Append(") | items |").Append(string.Concat(s.MetricNames.Select(m => $" {m} |"))).Append(NfeHeader).Append('\n')
              .Append("| --- | --- |").Append(string.Concat(s.MetricNames.Select(_ => " --- |"))).Append(" --- |\n");
            foreach (var row in s.Methods)
            {
                mb.Append("| ").Append(row.Method).Append(" | ").Append(row.Evaluated).Append(row.Skipped > 0 ? $" ({row.Skipped} skipped)" : "").Append(" |");
                foreach (var m in row.Metrics) mb.Append(' ').Append(TableValue(m.Table, 4)).Append(" |");
                mb.Append(' ').Append(TableValue(row.NfePerItem, 0)).Append(" |\n");
            }
            return mb.ToString();
        }
        var sb = new StringBuilder();
        sb.Append("| method | items |");
        foreach (var m in s.MetricNames)
        {
            double scale = PieBenchMetrics.TableScale(m);
            sb.Append(' ').Append(m).Append(scale == 1 ? "" : $" x10^{Math.Log10(scale):0}").Append(" |");
        }
        sb.Append(NfeHeader).Append('\n').Append("| --- | --- |").Append(string.Concat(s.MetricNames.Select(_ => " --- |"))).Append(" --- |\n");
        foreach (var row in s.Methods)
        {
            sb.Append("| ").Append(row.Method).Append(" | ").Append(row.Evaluated).Append(row.Skipped > 0 ? $" ({row.Skipped} skipped)" : "").Append(" |");
            foreach (var m in row.Metrics) sb.Append(' ').Append(TableValue(m.Table)).Append(" |");
            sb.Append(' ').Append(TableValue(row.NfePerItem, 0)).Append(" |\n");
        }
        return sb.ToString();
    }

    /// <summary>A table cell: <paramref name="decimals"/> decimals, <c>inf</c>, or <c>-</c> for no value.</summary>
    public static string TableValue(double? v, int decimals = 2) => v switch
    {
        null => "-",
        double.PositiveInfinity => "inf",
        double.NegativeInfinity => "-inf",
        { } x => x.ToString(decimals == 0 ? "0" : "0." + new string('0', decimals), CultureInfo.InvariantCulture),
    };

    /// <summary>A value as the reference's CSV has it: <c>nan</c>, <c>inf</c>, or the shortest round-trip decimal.</summary>
    public static string FormatValue(double v) =>
        double.IsNaN(v) ? "nan" : double.IsPositiveInfinity(v) ? "inf" : double.IsNegativeInfinity(v) ? "-inf" : v.ToString("R", CultureInfo.InvariantCulture);

    private static string CsvField(string s) =>
        s.IndexOfAny([',', '"', '\n', '\r']) < 0 ? s : "\"" + s.Replace("\"", "\"\"") + "\"";

    private static readonly JsonSerializerOptions JsonOptions = new(EvaluationJsonContext.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static System.Text.Json.Serialization.Metadata.JsonTypeInfo<EvaluationSummary> SummaryType =>
        (System.Text.Json.Serialization.Metadata.JsonTypeInfo<EvaluationSummary>)JsonOptions.GetTypeInfo(typeof(EvaluationSummary));

    public static string ToJson(EvaluationSummary s) => JsonSerializer.Serialize(s, SummaryType);

    /// <summary>Reads an <c>evaluation_summary.json</c> back.</summary>
    public static EvaluationSummary FromJson(string json) =>
        JsonSerializer.Deserialize(json, SummaryType) ?? throw new InvalidDataException("evaluation summary: the JSON is null");

    private static void WriteAtomically(string path, string text)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
